//! The real `shipday` binary in console mode, driven through its stdin, so tests can SIGKILL
//! it at any moment and start it again on the same state directory.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `shipday` binary Cargo built for the running test or bench. Cargo sets
/// `CARGO_BIN_EXE_shipday` only while compiling the package's own tests and benches (this crate
/// is neither; newer Cargo also sets it while running them, and that is used when present).
/// Otherwise it is where Cargo puts it: `target/<profile>/shipday`, beside the `deps/` directory
/// the running test or bench executable is in.
pub fn shipday_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_shipday") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the running test's executable");
    let profile = exe.parent().and_then(Path::parent).expect("the test executable sits in target/<profile>/deps");
    let binary = profile.join("shipday");
    assert!(
        binary.is_file(),
        "no shipday binary at {} (beside {}): run this through `cargo test` or `cargo bench`",
        binary.display(),
        exe.display()
    );
    binary
}

/// A running `shipday console`, with everything it printed so far.
pub struct RealBot {
    child: Child,
    stdin: ChildStdin,
    /// Stdout, line by line, as printed.
    pub out: Arc<Mutex<Vec<String>>>,
    /// Where its logs (stderr) go.
    pub log: PathBuf,
}

impl RealBot {
    /// Starts `shipday console --config CONFIG --as USER` (the binary [`shipday_binary`]
    /// finds); stderr goes to `log`.
    pub fn start(config: &Path, user: &str, log: &Path) -> Self {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut child = Command::new(shipday_binary())
            .args(["console", "--config"])
            .arg(config)
            .args(["--as", user])
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let lines = out.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Self { child, stdin, out, log: log.to_owned() }
    }

    /// Types a line (a command) into the console.
    pub fn say(&mut self, line: &str) {
        // A killed bot's pipe is closed; the caller's checks say what went wrong.
        let _ = writeln!(self.stdin, "{line}");
        let _ = self.stdin.flush();
    }

    /// Everything printed so far.
    pub fn printed(&self) -> String {
        self.out.lock().unwrap().join("\n")
    }

    /// Waits (under `timeout`) until what was printed satisfies `done`; returns it.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let printed = super::wait::within_blocking(timeout, || Some(self.printed()).filter(|p| done(p)));
        printed.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; printed:\n{}\nlog:\n{}",
                self.printed(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }

    /// SIGKILL, and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RealBot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (under `timeout`) until `done` holds, polling.
pub fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    super::wait::eventually_blocking(timeout, what, || done().then_some(()))
}

/// Lines of a host-side log (missing: none yet).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(String::from).collect()).unwrap_or_default()
}

/// A step that logs its start and end (with its exit code) to `log` on the host.
pub fn logged_step(name: &str, log: &Path, command: &str) -> String {
    let log = log.display();
    let script =
        format!("echo \"start {name}\" >> {log}; {command}; rc=$?; echo \"end {name} $rc\" >> {log}; exit $rc");
    format!("  {{ name = \"{name}\", run = {} }},", toml::Value::String(script))
}

/// Whether the host's deploy lock in `checkout` is free now (no step holds it).
pub fn host_lock_free(checkout: &Path) -> bool {
    Command::new("flock")
        .args(["-n", "-E", "75"])
        .arg(checkout.join(".git/shipday.lock"))
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
}
