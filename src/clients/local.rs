//! The local transport: steps run with `sh` on this host, for a bot that lives on the droplet
//! itself and for the playground.

use super::exec::{BOT_GRACE, ExecSession, OutputTail, RemoteExec, result_from_exit};
use crate::release::deploy::StepResult;
use async_trait::async_trait;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Runs steps on this host.
#[derive(Debug, Clone, Default)]
pub struct LocalExec;

#[async_trait]
impl RemoteExec for LocalExec {
    async fn connect(&self) -> anyhow::Result<Box<dyn ExecSession>> {
        Ok(Box::new(LocalSession))
    }

    fn target(&self) -> String {
        "local".into()
    }
}

/// A local "session": each step is a child process in its own process group.
struct LocalSession;

#[async_trait]
impl ExecSession for LocalSession {
    async fn run(&mut self, script: &str, timeout: Duration, output: &mut OutputTail) -> anyhow::Result<StepResult> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let pump = async {
            let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
            let (mut out_open, mut err_open) = (true, true);
            while out_open || err_open {
                tokio::select! {
                    n = stdout.read(&mut out_buf), if out_open => match n? {
                        0 => out_open = false,
                        n => output.push(out_buf.get(..n).unwrap_or_default()),
                    },
                    n = stderr.read(&mut err_buf), if err_open => match n? {
                        0 => err_open = false,
                        n => output.push(err_buf.get(..n).unwrap_or_default()),
                    },
                }
            }
            child.wait().await
        };
        match tokio::time::timeout(timeout + BOT_GRACE, pump).await {
            Ok(status) => {
                let status = status?;
                Ok(match (status.code(), status.signal()) {
                    (Some(code), _) => result_from_exit(code, timeout),
                    (None, Some(signal)) => StepResult::Signal { signal: format!("signal {signal}") },
                    (None, None) => StepResult::Error { message: "ended without a status".into() },
                })
            }
            Err(_) => {
                if let Some(pid) = pid {
                    // SAFETY: kill(2) with a negative pid signals the step's own process group,
                    // which `process_group(0)` created for this child alone.
                    unsafe {
                        libc::kill(-(pid as i32), libc::SIGKILL);
                    }
                }
                Ok(StepResult::TimedOut { limit_secs: timeout.as_secs() })
            }
        }
    }

    async fn close(self: Box<Self>) {}
}
