//! The SSH transport (russh): one connection per deploy, every step on it.
//!
//! The host key is pinned from a known_hosts file named in the config. An unknown host, a
//! changed key, or a key of another type refuses the connection; the bot never learns a key
//! and has no accept-any mode. Only the pinned key types are offered in negotiation, so a host
//! with several keys presents the pinned one.

use super::exec::{BOT_GRACE, ExecSession, OutputTail, RemoteExec, result_from_exit};
use crate::release::deploy::StepResult;
use crate::release::environment::SshTarget;
use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use russh::client::{self, AuthResult};
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Preferred};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long connecting and authenticating may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Keepalives missed before the connection counts as dead.
pub const KEEPALIVE_MAX: usize = 3;

/// Runs steps on a host over SSH.
pub struct SshExec {
    target: SshTarget,
    pinned: Vec<PublicKey>,
}

impl SshExec {
    /// Loads the pinned host keys; an environment whose host is not pinned is refused.
    pub fn new(target: &SshTarget) -> Result<Self> {
        let pinned = pinned_keys(target)?;
        Ok(Self { target: target.clone(), pinned })
    }

    fn preferred_key_algorithms(&self) -> Vec<Algorithm> {
        let mut algorithms = Vec::new();
        for key in &self.pinned {
            match key.algorithm() {
                Algorithm::Rsa { .. } => {
                    algorithms.push(Algorithm::Rsa { hash: Some(HashAlg::Sha512) });
                    algorithms.push(Algorithm::Rsa { hash: Some(HashAlg::Sha256) });
                }
                other => algorithms.push(other),
            }
        }
        algorithms.dedup();
        algorithms
    }
}

/// The keys pinned for the target's host and port in its known_hosts file.
pub fn pinned_keys(target: &SshTarget) -> Result<Vec<PublicKey>> {
    let path =
        target.known_hosts.as_ref().ok_or_else(|| anyhow!("no known_hosts file is configured for {}", target.host))?;
    std::fs::metadata(path).with_context(|| format!("cannot read known_hosts file {}", path.display()))?;
    let keys = russh::keys::known_hosts::known_host_keys_path(&target.host, target.port, path)
        .with_context(|| format!("cannot parse known_hosts file {}", path.display()))?;
    if keys.is_empty() {
        let name = host_pattern(target);
        bail!(
            "the host key of {name} is not pinned in {}. Get it with `ssh-keyscan -p {} {}`, check its fingerprint \
             (`ssh-keygen -lf FILE`) against the droplet's console, and add the line for {name}",
            path.display(),
            target.port,
            target.host
        );
    }
    Ok(keys.into_iter().map(|(_, key)| key).collect())
}

/// How known_hosts names the host: `host` on port 22, `[host]:port` otherwise.
fn host_pattern(target: &SshTarget) -> String {
    if target.port == 22 { target.host.clone() } else { format!("[{}]:{}", target.host, target.port) }
}

/// Checks the server's key against the pinned keys, and keeps why it refused.
struct PinnedHost {
    name: String,
    pinned: Vec<PublicKey>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = match offered {
            PublicKeyOrCertificate::Certificate(_) => {
                Err(format!("{} presented a host certificate; Shipday only trusts the pinned host key", self.name))
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                let fingerprint = key.fingerprint(HashAlg::Sha256);
                if self.pinned.iter().any(|pinned| pinned.key_data() == key.key_data()) {
                    Ok(())
                } else if self.pinned.iter().any(|pinned| pinned.algorithm() == key.algorithm()) {
                    Err(format!(
                        "the host key of {} has CHANGED (it now offers {} {fingerprint}). Someone may be \
                         intercepting the connection, or the droplet was rebuilt. Check the fingerprint on the \
                         droplet's console before updating known_hosts",
                        self.name,
                        key.algorithm()
                    ))
                } else {
                    Err(other_type(&self.name, key, &self.pinned))
                }
            }
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(refusal) => {
                // Not logged here: the refusal is the connection's error, and whoever asked
                // for the connection reports it (once).
                *self.refusal.lock().expect("refusal lock") = Some(refusal);
                Ok(false)
            }
        }
    }
}

/// The refusal for a host whose key is of another type than the pinned one, with the
/// fingerprint to check on the droplet's console.
fn other_type(name: &str, offered: &PublicKey, pinned: &[PublicKey]) -> String {
    format!(
        "{name} offered a {} host key ({}), but the pinned key is {}. If the droplet really has that key (check \
         its fingerprint on the droplet's console with `ssh-keygen -lf` on its host key), pin it in known_hosts",
        offered.algorithm(),
        offered.fingerprint(HashAlg::Sha256),
        pinned_types(pinned)
    )
}

/// Learns which host key a host offers when it has none of the pinned types, so the refusal
/// can show its fingerprint. Every key type is allowed in this negotiation, and the key is
/// refused whatever it is: nothing runs and nothing is learned for later.
struct Probe {
    offered: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Probe {
    type Error = russh::Error;

    async fn check_server_key(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        if let PublicKeyOrCertificate::PublicKey { key, .. } = offered {
            *self.offered.lock().expect("probe lock") = Some(key.clone());
        }
        Ok(false)
    }
}

/// The key `target` offers when any key type may be negotiated (see [`Probe`]).
async fn offered_key(target: &SshTarget) -> Option<PublicKey> {
    let offered = Arc::new(Mutex::new(None));
    let probe = Probe { offered: offered.clone() };
    let config = Arc::new(client::Config { inactivity_timeout: None, ..client::Config::default() });
    let connecting = client::connect(config, (target.host.as_str(), target.port), probe);
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await;
    offered.lock().expect("probe lock").take()
}

fn pinned_types(keys: &[PublicKey]) -> String {
    let mut types: Vec<String> = keys.iter().map(|k| k.algorithm().to_string()).collect();
    types.dedup();
    types.join(", ")
}

#[async_trait]
impl RemoteExec for SshExec {
    async fn connect(&self) -> Result<Box<dyn ExecSession>> {
        let target = &self.target;
        let name = host_pattern(target);
        let config = client::Config {
            keepalive_interval: Some(Duration::from_secs(target.keepalive_secs.max(1))),
            keepalive_max: KEEPALIVE_MAX,
            inactivity_timeout: None,
            preferred: Preferred { key: Cow::Owned(self.preferred_key_algorithms()), ..Preferred::default() },
            ..client::Config::default()
        };
        let started = std::time::Instant::now();
        let refusal = Arc::new(Mutex::new(None));
        let handler = PinnedHost { name: name.clone(), pinned: self.pinned.clone(), refusal: refusal.clone() };
        let connecting = async {
            let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
            stream.set_nodelay(true)?;
            client::connect_stream(Arc::new(config), AckAtOnce(stream), handler).await
        };
        let mut handle = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(handle)) => handle,
            Ok(Err(error)) => {
                if let Some(refusal) = refusal.lock().expect("refusal lock").take() {
                    crate::metrics::ssh_failure("host_key");
                    bail!(refusal);
                }
                if matches!(error, russh::Error::NoCommonAlgo { .. }) {
                    crate::metrics::ssh_failure("host_key");
                    match offered_key(target).await {
                        Some(key) => bail!(other_type(&name, &key, &self.pinned)),
                        None => bail!("{name} offers no host key of the pinned type ({})", pinned_types(&self.pinned)),
                    }
                }
                crate::metrics::ssh_failure("unreachable");
                bail!("cannot connect to {name}: {error}");
            }
            Err(_) => {
                crate::metrics::ssh_failure("timeout");
                bail!("connecting to {name} took longer than {}s", CONNECT_TIMEOUT.as_secs())
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, authenticate(&mut handle, target)).await {
            Ok(Ok(())) => {
                crate::metrics::ssh_logged_in(started.elapsed());
                Ok(Box::new(SshSession { handle }))
            }
            Ok(Err(error)) => {
                crate::metrics::ssh_failure("auth");
                Err(error)
            }
            Err(_) => {
                crate::metrics::ssh_failure("timeout");
                bail!("logging in to {name} took longer than {}s", CONNECT_TIMEOUT.as_secs())
            }
        }
    }

    fn target(&self) -> String {
        format!("{}@{}", self.target.user, host_pattern(&self.target))
    }
}

async fn authenticate(handle: &mut client::Handle<PinnedHost>, target: &SshTarget) -> Result<()> {
    let user = target.user.clone();
    let refused = || anyhow!("{} refused the key for user {}", target.host, target.user);
    if let Some(key_file) = &target.key_file {
        let key = russh::keys::load_secret_key(key_file, None).with_context(|| {
            format!(
                "cannot load the SSH key {} (an encrypted key needs ssh-agent instead: leave key_file out)",
                key_file.display()
            )
        })?;
        let hash = handle.best_supported_rsa_hash().await?.flatten();
        let result = handle.authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash)).await?;
        return match result {
            AuthResult::Success => Ok(()),
            AuthResult::Failure { .. } => Err(refused()),
        };
    }
    let mut agent = russh::keys::agent::client::AgentClient::connect_env()
        .await
        .context("no key_file is configured and no ssh-agent is reachable at SSH_AUTH_SOCK")?;
    let identities = agent.request_identities().await.context("cannot list the ssh-agent's keys")?;
    for identity in identities {
        let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = identity else { continue };
        let hash = handle.best_supported_rsa_hash().await?.flatten();
        if let Ok(AuthResult::Success) = handle.authenticate_publickey_with(user.clone(), key, hash, &mut agent).await {
            return Ok(());
        }
    }
    Err(refused())
}

/// One authenticated connection; each step is an `exec` channel on it.
struct SshSession {
    handle: client::Handle<PinnedHost>,
}

#[async_trait]
impl ExecSession for SshSession {
    async fn run(&mut self, script: &str, timeout: Duration, output: &mut OutputTail) -> Result<StepResult> {
        let started = std::time::Instant::now();
        let mut channel = self.handle.channel_open_session().await.context("the SSH connection is gone")?;
        channel.exec(true, script).await.context("cannot start the step over SSH")?;
        let pump = async {
            let (mut code, mut signal) = (None, None);
            while let Some(message) = channel.wait().await {
                match message {
                    ChannelMsg::Data { data } => output.push(&data),
                    ChannelMsg::ExtendedData { data, .. } => output.push(&data),
                    ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => signal = Some(format!("{signal_name:?}")),
                    _ => {}
                }
            }
            (code, signal)
        };
        let pumped = tokio::time::timeout(timeout + BOT_GRACE, pump).await;
        crate::metrics::ssh_command_ran(started.elapsed());
        Ok(match pumped {
            Ok((Some(code), _)) => result_from_exit(code as i32, timeout),
            Ok((None, Some(signal))) => StepResult::Signal { signal },
            Ok((None, None)) => StepResult::Error {
                message: "the SSH connection was lost before the step finished (no keepalive answer)".into(),
            },
            Err(_) => StepResult::TimedOut { limit_secs: timeout.as_secs() },
        })
    }

    async fn close(self: Box<Self>) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "deploy finished", "en").await;
    }
}

/// The TCP stream to a host, acknowledging what it reads at once (Linux `TCP_QUICKACK`,
/// re-armed after every read because the kernel drops back to delaying acknowledgements).
///
/// Without it the first step of every deploy waited about 40 ms. Right after the login sshd
/// sends a few small messages (the host-key announcement, the key-options notes) while
/// Nagle's algorithm is still on for its socket (it turns it off when the first session
/// starts), so it held back the confirmation of the first channel until those were
/// acknowledged, and the client's kernel delayed that acknowledgement by its 40 ms timer.
struct AckAtOnce(tokio::net::TcpStream);

impl AckAtOnce {
    fn ack_now(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Err(error) = socket2::SockRef::from(&self.0).set_tcp_quickack(true) {
            tracing::trace!(%error, "cannot set TCP_QUICKACK");
        }
    }
}

impl tokio::io::AsyncRead for AckAtOnce {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.0).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) {
            this.ack_now();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for AckAtOnce {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
