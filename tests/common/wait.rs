//! How tests wait: on a condition, under a timeout; never a fixed sleep. The poll loops below
//! are the only place a test sleeps.
//!
//! - [`eventually`] and its flavours poll a condition until it holds, or panic naming what never
//!   happened.
//! - [`bounded`] races a future against a timeout.
//! - [`announced`] waits for an announcement to the team's channel.
//! - A [`Gate`] is a named sync point for a fake host step: the step waits at it until the test
//!   opens it, and the test can wait until the step has reached it.

use shipday::engine::Announcement;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen by itself soon (a background task,
/// a restart, a webhook delivery) before it fails; generous for a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` holds, polling; panics naming `what` after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    eventually_some(timeout, what, || check().then_some(())).await
}

/// Waits until `check` gives a value and returns it; panics naming `what` after `timeout`.
pub async fn eventually_some<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    eventually_async(timeout, what, || std::future::ready(check())).await
}

/// Waits until `check` is `Ok` and returns its value; panics with the last error after `timeout`.
pub async fn eventually_ok<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let mut last = String::new();
    let found = poll(timeout, || std::future::ready(check().map_err(|error| last = format!("{error:#}")).ok())).await;
    found.unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}: {last}"))
}

/// Waits until the asynchronous `check` gives a value (e.g. a command's reply says so).
pub async fn eventually_async<T, F: Future<Output = Option<T>>>(
    timeout: Duration,
    what: &str,
    check: impl FnMut() -> F,
) -> T {
    poll(timeout, check).await.unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// The poll loop: `check` until it gives a value, or `None` once `timeout` has passed (for a
/// caller that panics with its own account of what it saw).
pub async fn within<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    poll(timeout, || std::future::ready(check())).await
}

/// The poll loop: `check` until it gives a value, or `None` once `timeout` has passed.
async fn poll<T, F: Future<Output = Option<T>>>(timeout: Duration, mut check: impl FnMut() -> F) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually_some`] for code outside a runtime (a plain `#[test]`, a std thread).
pub fn eventually_blocking<T>(timeout: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    within_blocking(timeout, check).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// [`within`] for code outside a runtime: `check` until it gives a value, or `None` once
/// `timeout` has passed.
pub fn within_blocking<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `future` to completion, or panics naming `what` when it takes longer than `timeout`.
pub async fn bounded<T>(timeout: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(timeout, future).await {
        Ok(done) => done,
        Err(_) => panic!("{what} did not finish within {timeout:?}"),
    }
}

/// The first announcement `pick` accepts (skipping the others), or a panic naming `what` when
/// none came within three times [`PATIENCE`] or the announcements closed.
pub async fn announced<T>(
    rx: &mut tokio::sync::broadcast::Receiver<Announcement>,
    what: &str,
    mut pick: impl FnMut(&Announcement) -> Option<T>,
) -> T {
    use tokio::sync::broadcast::error::RecvError;
    bounded(PATIENCE * 3, what, async {
        loop {
            match rx.recv().await {
                Ok(announcement) => {
                    if let Some(found) = pick(&announcement) {
                        return found;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the announcements closed while waiting for {what}"),
            }
        }
    })
    .await
}

/// The channel texts announced since the last call, without waiting.
pub fn texts_so_far(rx: &mut tokio::sync::broadcast::Receiver<Announcement>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(announcement) = rx.try_recv() {
        if let Announcement::Text(text) = announcement {
            out.push(text);
        }
    }
    out
}

/// For [`announced`]: a channel text that contains `needle`.
pub fn text_containing(needle: &str) -> impl FnMut(&Announcement) -> Option<String> + use<> {
    let needle = needle.to_owned();
    move |announcement| match announcement {
        Announcement::Text(text) if text.contains(&needle) => Some(text.clone()),
        _ => None,
    }
}

/// A named sync point for a fake host step (a named pipe in a test's directory). A step whose
/// `run` is [`Gate::shell`] marks that it arrived, then blocks reading the pipe until the test
/// calls [`Gate::open`]. An open gate stays open: the step waiting at it goes on and later ones
/// pass straight through. A gate that is never opened holds the step as long as the test needs
/// (a deploy that is mid-step when the bot dies, a host that freezes). Dropping the gate opens
/// it, so no step is left waiting after the test.
pub struct Gate {
    name: String,
    reached: PathBuf,
    opened: PathBuf,
    /// The pipe, held open to read and write: a step's open of it never blocks, only its read,
    /// and the test's writes never block either.
    pipe: std::fs::File,
}

/// Lines written when a gate opens: one releases each step that looked before it opened.
const RELEASES: usize = 64;

impl Gate {
    /// A closed gate called `name`, kept in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let fifo = dir.join(format!("gate-{name}.fifo"));
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo {}", fifo.display());
        let pipe = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
        Self {
            name: name.into(),
            reached: dir.join(format!("gate-{name}.reached")),
            opened: dir.join(format!("gate-{name}.opened")),
            pipe,
        }
    }

    /// The shell a step runs to wait at the gate (no double quotes: it goes in a TOML string).
    pub fn shell(&self) -> String {
        let fifo = self.reached.with_extension("fifo");
        let (opened, reached, fifo) = (self.opened.display(), self.reached.display(), fifo.display());
        format!("test -e '{opened}' || touch '{reached}'; test -e '{opened}' || read gate < '{fifo}'")
    }

    /// Whether a step has reached the gate.
    pub fn is_reached(&self) -> bool {
        self.reached.exists()
    }

    /// Waits until a step has reached the gate.
    pub async fn reached(&self) {
        eventually(PATIENCE, &format!("a step to reach the gate {:?}", self.name), || self.is_reached()).await
    }

    /// Opens the gate for good: a step waiting at it goes on, and later ones pass.
    pub async fn open(&self) {
        self.open_blocking()
    }

    /// [`Gate::open`] for code outside a runtime.
    pub fn open_blocking(&self) {
        assert!(self.open_now(), "cannot open the gate {:?}", self.name);
    }

    /// Steps that look from now on pass; each one that looked before reads a line and goes on.
    fn open_now(&self) -> bool {
        use std::io::Write;
        let marked = self.opened.exists() || std::fs::write(&self.opened, b"").is_ok();
        marked && (&self.pipe).write_all("go\n".repeat(RELEASES).as_bytes()).is_ok()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Best effort: when the pipe closes too, a step still reading it gets end-of-file.
        let _ = self.open_now();
    }
}
