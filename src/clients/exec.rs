//! The `RemoteExec` seam: open one session per deploy, run every step on it.

use crate::release::deploy::StepResult;
use async_trait::async_trait;
use std::collections::VecDeque;
use std::time::Duration;

/// Extra time the bot waits past a step's limit before it gives up on the host's own
/// `timeout` and kills the step itself.
pub const BOT_GRACE: Duration = Duration::from_secs(10);

/// A way to run commands on an environment's host.
#[async_trait]
pub trait RemoteExec: Send + Sync {
    /// Opens one session; a deploy runs all its steps on it.
    async fn connect(&self) -> anyhow::Result<Box<dyn ExecSession>>;

    /// Where it runs, for people (`local`, `deploy@10.0.0.5:22`).
    fn target(&self) -> String;
}

/// An open session on a host.
#[async_trait]
pub trait ExecSession: Send {
    /// Runs one script (already built from validated, quoted values), streaming its output into
    /// `output`. `timeout` is the step's limit: the host enforces it with `timeout`, and the bot
    /// stops waiting a little after it.
    async fn run(&mut self, script: &str, timeout: Duration, output: &mut OutputTail) -> anyhow::Result<StepResult>;

    /// Closes the session.
    async fn close(self: Box<Self>);
}

/// Maps an exit code of a script run under the host's `timeout` to a step result.
pub fn result_from_exit(code: i32, timeout: Duration) -> StepResult {
    match code {
        0 => StepResult::Ok,
        // `timeout` exits 124 when it sent TERM, 137 when it had to KILL.
        124 | 137 => StepResult::TimedOut { limit_secs: timeout.as_secs() },
        code => StepResult::Exit { code },
    }
}

/// Keeps only the last bytes of a step's output, however much it prints.
#[derive(Debug, Clone)]
pub struct OutputTail {
    buffer: VecDeque<u8>,
    capacity: usize,
    total: u64,
}

impl OutputTail {
    /// Bytes kept per step by default.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A tail that keeps `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self { buffer: VecDeque::with_capacity(capacity), capacity, total: 0 }
    }

    /// Adds output.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let keep = bytes.get(bytes.len().saturating_sub(self.capacity)..).unwrap_or_default();
        let overflow = (self.buffer.len() + keep.len()).saturating_sub(self.capacity);
        self.buffer.drain(..overflow);
        self.buffer.extend(keep);
    }

    /// Everything the step printed, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// The kept tail as text, starting at a line boundary when output was cut.
    pub fn text(&self) -> String {
        let bytes: Vec<u8> = self.buffer.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if self.total as usize > self.buffer.len() {
            let (start, kept) = text.split_once('\n').map_or((0, text.as_str()), |(cut, kept)| (cut.len() + 1, kept));
            format!("[… {} bytes earlier output cut]\n{kept}", self.total as usize - bytes.len() + start)
        } else {
            text
        }
    }
}

impl Default for OutputTail {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_bounded_and_keeps_the_end() {
        let mut tail = OutputTail::new(16);
        for i in 0..1000 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        assert!(tail.buffer.len() <= 16);
        let text = tail.text();
        assert!(text.ends_with("line 999\n"), "{text}");
        assert!(text.contains("earlier output cut"));
        assert_eq!(tail.total_bytes(), (0..1000).map(|i| format!("line {i}\n").len() as u64).sum::<u64>());
    }

    #[test]
    fn a_huge_chunk_keeps_only_its_end() {
        let mut tail = OutputTail::new(8);
        tail.push(b"abc");
        tail.push(&[b'x'; 100]);
        assert_eq!(tail.buffer.len(), 8);
    }
}
