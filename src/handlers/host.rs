//! The one way a job runs a script on a host ([`run_script`]: connect, run, close), and the one
//! way it reads what a host runs ([`read_head`]). A deploy does not use these: it keeps one
//! session from resolving its ref to verifying HEAD (`deploy.rs`, `runner.rs`).

use crate::clients::{OutputTail, RemoteExec};
use crate::config::Environment;
use crate::release::deploy::StepResult;
use crate::release::gitref::Sha;
use crate::release::plan::head_script;
use std::time::Duration;

/// How long reading HEAD may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How a script ran: its result and the tail of what it printed.
pub(crate) struct Ran {
    pub result: StepResult,
    pub output: String,
}

/// Runs `script` on `env`'s host on a session of its own: connects, runs, and closes, keeping
/// the last `capacity` bytes of output. `Err` says why it could not run (the host unreachable,
/// the session lost), naming the host.
pub(crate) async fn run_script(
    transport: &dyn RemoteExec,
    env: &str,
    script: &str,
    timeout: Duration,
    capacity: usize,
) -> Result<Ran, String> {
    let mut session = transport.connect().await.map_err(|e| format!("cannot reach {env}'s host: {e:#}"))?;
    let mut output = OutputTail::new(capacity);
    let result = session.run(script, timeout, &mut output).await;
    session.close().await;
    let result = result.map_err(|e| format!("{e:#}"))?;
    Ok(Ran { result, output: output.text() })
}

/// HEAD of an environment's checkout, read on its host.
pub(crate) async fn read_head(transport: &dyn RemoteExec, env: &Environment) -> Result<Sha, String> {
    let ran = run_script(transport, &env.name, &head_script(env), HEAD_TIMEOUT, OutputTail::DEFAULT_CAPACITY)
        .await
        .map_err(|e| format!("cannot read {}'s HEAD: {e}", env.name))?;
    if !ran.result.is_ok() {
        return Err(format!("cannot read {}'s HEAD: {}", env.name, ran.result.describe()));
    }
    let text = ran.output.trim();
    Sha::parse(text).map_err(|_| format!("cannot read {}'s HEAD: unexpected output: {text}", env.name))
}
