//! A real OpenSSH `sshd` on 127.0.0.1, on a free port, with its own generated host key,
//! config and authorized client key. Stopped when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    child: Child,
}

/// Host key types the harness can give the server.
#[derive(Clone, Copy)]
pub enum KeyType {
    Ed25519,
    Ecdsa,
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
        }
    }
}

fn keygen(kind: KeyType, path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", kind.name(), "-N", "", "-C", "shipday-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen is installed (openssh-client)");
    assert!(status.success());
}

impl Sshd {
    /// An sshd with an ed25519 host key.
    pub fn start() -> Self {
        Self::start_with(KeyType::Ed25519)
    }

    /// An sshd whose only host key is of `kind`.
    pub fn start_with(kind: KeyType) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(kind, &d.join("host_key"));
        keygen(KeyType::Ed25519, &d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let user = whoami();
        // `SetEnv SHLVL=1`: bash sources the login user's ~/.bashrc when sshd starts it (Debian
        // builds bash with SSH_SOURCE_BASHRC) unless it is a nested shell; on CI machines that
        // file runs `pyenv init`, about 90 ms per exec channel, which is this machine's login
        // environment, not what a deploy over SSH costs. A droplet's own deploy user pays for its
        // own ~/.bashrc (see the README's SSH set-up).
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\n\
                 AuthorizedKeysFile {auth}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n\
                 AllowUsers {user}\nLogLevel ERROR\nMaxStartups 100\nMaxSessions 100\nSetEnv SHLVL=1\n",
                host_key = d.join("host_key").display(),
                pid = d.join("sshd.pid").display(),
                auth = d.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        // Debian's sshd insists on its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = spawn_sshd(d);
        let sshd = Sshd { dir, port, user, child };
        sshd.wait_ready();
        sshd
    }

    fn wait_ready(&self) {
        let what = format!("sshd to start on port {}", self.port);
        super::eventually_blocking(Duration::from_secs(10), &what, || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn client_key(&self) -> PathBuf {
        self.path().join("client_key")
    }

    /// The server's public host key line (`type base64 comment`).
    pub fn host_key_line(&self) -> String {
        std::fs::read_to_string(self.path().join("host_key.pub")).unwrap().trim().to_owned()
    }

    /// Writes a known_hosts file pinning this server's key, and returns its path.
    pub fn pin(&self) -> PathBuf {
        self.pin_line(&self.host_key_line())
    }

    /// Writes a known_hosts file with `key_line` for this server's address.
    pub fn pin_line(&self, key_line: &str) -> PathBuf {
        let path = self.path().join("known_hosts");
        std::fs::write(&path, format!("[127.0.0.1]:{} {key_line}\n", self.port)).unwrap();
        path
    }

    /// Replaces the host key with a new one of the same type and restarts (a rebuilt droplet).
    pub fn rotate_host_key(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_file(self.path().join("host_key")).unwrap();
        std::fs::remove_file(self.path().join("host_key.pub")).unwrap();
        keygen(KeyType::Ed25519, &self.path().join("host_key"));
        self.child = spawn_sshd(self.dir.path());
        self.wait_ready();
        self
    }

    /// Every process below the listening sshd: the per-connection sshd processes and what
    /// they run.
    pub fn session_processes(&self) -> Vec<u32> {
        let mut all = Vec::new();
        let mut frontier = vec![self.child.id()];
        while let Some(pid) = frontier.pop() {
            let out = Command::new("pgrep").args(["-P", &pid.to_string()]).output().unwrap();
            for child in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let child: u32 = child.parse().unwrap();
                all.push(child);
                frontier.push(child);
            }
        }
        all
    }

    /// Whether every per-connection process is stopped (by `signal_sessions("STOP")`).
    pub fn sessions_stopped(&self) -> bool {
        self.session_processes().iter().all(|pid| {
            // `/proc/PID/stat` is `pid (comm) STATE ...`; a process that is gone is not running.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')))
                .unwrap_or(true)
        })
    }

    /// Sends `signal` (`STOP`, `CONT`) to every per-connection process.
    pub fn signal_sessions(&self, signal: &str) {
        for pid in self.session_processes() {
            let _ = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).stderr(Stdio::null()).status();
        }
    }

    /// Runs one command over OpenSSH's `ssh` client, as the team does by hand today.
    pub fn ssh_command(&self, known_hosts: &Path, command: &str) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args(["-q", "-p", &self.port.to_string(), "-i"])
            .arg(self.client_key())
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(command);
        ssh
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.signal_sessions("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts sshd in the foreground with its log in `dir/sshd.log` (read it when a test fails).
fn spawn_sshd(dir: &Path) -> Child {
    Command::new(sshd_path())
        .args(["-D", "-f"])
        .arg(dir.join("sshd_config"))
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd starts (openssh-server is installed)")
}

fn sshd_path() -> &'static str {
    if Path::new("/usr/sbin/sshd").exists() { "/usr/sbin/sshd" } else { "sshd" }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
