//! The operator's control socket: `shipday serve` listens on a unix socket in the state
//! directory, so `shipday backup` can have a consistent snapshot of the store the running bot
//! holds (sled lets one process open a store at a time).
//!
//! Authentication is the file system's: the socket is made mode 0600 in the state directory,
//! and a peer whose uid is not the socket owner's (or root's) is refused besides. The engine,
//! which owns the store, writes the snapshot between two of its decisions, so it never holds
//! half of one.

use super::{EngineHandle, Event};
use anyhow::{Context as _, Result, bail};
use std::future::Future;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The control socket's file name in the state directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// The one request the socket understands so far.
const BACKUP_REQUEST: &str = "backup";

/// What an answer starts with when the running bot could not make the snapshot.
const ERROR_PREFIX: &str = "error: ";

/// The control socket of the store in `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CONTROL_SOCKET)
}

impl EngineHandle {
    /// A backup of the whole store (see `Store::backup`), made by the engine between two of
    /// its decisions.
    pub async fn snapshot(&self) -> Result<Vec<u8>> {
        let (done, answer) = oneshot::channel();
        if self.events.send(Event::Snapshot(done)).is_err() {
            bail!("the engine has stopped");
        }
        answer.await.context("the engine stopped before the snapshot was made")?
    }

    /// Binds the control socket in `state_dir` (mode 0600; a socket file left by an earlier
    /// run is replaced: this process holds the store, so no other Shipday serves it) and
    /// returns the task that answers on it until the process exits.
    pub fn control_socket(&self, state_dir: &Path) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = socket_path(state_dir);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).with_context(|| format!("cannot replace the old control socket {}", path.display()));
            }
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("cannot open the control socket {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make the control socket {} private (mode 0600)", path.display()))?;
        let owner = std::fs::metadata(&path).context("cannot read the control socket's owner")?.uid();
        tracing::info!(socket = %path.display(), "control socket ready (`shipday backup` while serving)");
        let engine = self.clone();
        Ok(async move {
            let _removed = RemoveOnDrop(path);
            accept_forever(listener, engine, owner).await
        })
    }
}

/// Answers each connection on its own task, until the process exits.
async fn accept_forever(listener: tokio::net::UnixListener, engine: EngineHandle, owner: u32) -> Result<()> {
    loop {
        // A failed accept (out of file descriptors) is no reason to stop the bot.
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "the control socket could not accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(engine, stream, owner).await {
                tracing::warn!(error = format!("{error:#}"), "a control socket request failed");
            }
        });
    }
}

/// The snapshot the engine makes for [`EngineHandle::snapshot`], from its own store.
pub(super) fn snapshot(store: &crate::store::Store, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    store.backup(&mut bytes, now)?;
    Ok(bytes)
}

/// Deletes the socket file when the task that serves it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Answers one connection: a peer of another user is refused; `backup` gets the snapshot.
async fn answer(engine: EngineHandle, stream: tokio::net::UnixStream, owner: u32) -> Result<()> {
    let peer = stream.peer_cred().context("cannot read the peer's credentials")?.uid();
    let (read, mut write) = stream.into_split();
    if peer != owner && peer != 0 {
        tracing::warn!(peer, "refused a control socket peer of another user");
        write
            .write_all(format!("{ERROR_PREFIX}only the user running Shipday may use its control socket\n").as_bytes())
            .await?;
        return Ok(());
    }
    let mut request = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(64));
    tokio::time::timeout(std::time::Duration::from_secs(10), reader.read_line(&mut request))
        .await
        .context("no request in time")??;
    let answer = match request.trim() {
        BACKUP_REQUEST => match engine.snapshot().await {
            Ok(bytes) => {
                tracing::info!(bytes = bytes.len(), "backup snapshot sent over the control socket");
                bytes
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot make a backup snapshot");
                format!("{ERROR_PREFIX}the running Shipday could not make the snapshot: {error:#}\n").into_bytes()
            }
        },
        other => format!("{ERROR_PREFIX}unknown request {:?}\n", other.escape_debug().to_string()).into_bytes(),
    };
    write.write_all(&answer).await?;
    write.shutdown().await?;
    Ok(())
}

/// Asks the Shipday serving the store in `state_dir` for a backup through its control socket.
/// `Ok(None)` when none listens there (no socket, or one an exited process left behind), so the
/// caller opens the store itself.
pub fn request_backup(state_dir: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::{Read, Write};
    let path = socket_path(state_dir);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(error) if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "a Shipday serves this store, but its control socket {} refused this user; run `shipday backup` \
                     as the user that runs Shipday",
                    path.display()
                )
            });
        }
    };
    stream.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    stream.write_all(format!("{BACKUP_REQUEST}\n").as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).context("cannot read the snapshot from the running Shipday")?;
    if let Some(error) = answer.strip_prefix(ERROR_PREFIX.as_bytes()) {
        bail!("{}", String::from_utf8_lossy(error).trim_end());
    }
    Ok(Some(answer))
}
