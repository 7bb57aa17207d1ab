//! A real Django project (from `tests/fixtures/django`) in a real git origin, with the
//! branches the migration-guard stories need, served by gunicorn from a virtualenv that has
//! Django and gunicorn from PyPI.

use super::git;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn fixtures() -> PathBuf {
    super::repo_root().join("tests/fixtures")
}

/// The virtualenv with Django and gunicorn: `SHIPDAY_DJANGO_VENV`, or `target/django-venv`,
/// created here on first use (`.ci/run` creates it up front).
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("SHIPDAY_DJANGO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo_root().join("target/django-venv"));
    let ready = |dir: &Path| {
        Command::new(dir.join("bin/python")).args(["-c", "import django, gunicorn"]).status().is_ok_and(|s| s.success())
    };
    if ready(&dir) {
        return dir;
    }
    // Tests run in parallel: one creates the venv (taking the lock), the others wait for it.
    let lock = dir.with_extension("lock");
    let what = format!("another test to create the Django virtualenv ({})", lock.display());
    let ours = super::eventually_blocking(Duration::from_secs(600), &what, || {
        if ready(&dir) {
            return Some(false);
        }
        let parent = dir.parent().unwrap();
        std::fs::create_dir_all(parent).and_then(|()| std::fs::create_dir(&lock)).ok().map(|()| true)
    });
    if !ours {
        return dir;
    }
    let result = (|| {
        if !ready(&dir) {
            let made = Command::new("python3").arg("-m").arg("venv").arg(&dir).status().ok()?.success();
            let installed = Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "django", "gunicorn"])
                .status()
                .ok()?
                .success();
            (made && installed).then_some(())
        } else {
            Some(())
        }
    })();
    let _ = std::fs::remove_dir(&lock);
    assert!(result.is_some() && ready(&dir), "cannot create the Django virtualenv at {}", dir.display());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The shop's origin, its branches and dev's checkout with a migrated database.
pub struct DjangoWorld {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub venv: PathBuf,
}

impl DjangoWorld {
    #[expect(
        clippy::new_without_default,
        reason = "a world is made on disk (a Django project, git, a venv), not a default value"
    )]
    pub fn new() -> Self {
        let venv = venv();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        git(d, &["init", "--quiet", "--bare", "--initial-branch=dev", "origin.git"]);
        git(d, &["clone", "--quiet", d.join("origin.git").to_str().unwrap(), "seed"]);
        let seed = d.join("seed");
        let commit = |message: &str| {
            git(&seed, &["add", "-A"]);
            git(&seed, &["-c", "user.name=T", "-c", "user.email=t@t", "commit", "--quiet", "-m", message]);
        };
        git(&seed, &["checkout", "--quiet", "-b", "dev"]);
        copy_tree(&fixtures().join("django"), &seed);
        commit("The shop");
        for (branch, variant) in [("feature/discount", "discount"), ("feature/backfill", "irreversible")] {
            git(&seed, &["checkout", "--quiet", "-b", branch, "dev"]);
            copy_tree(&fixtures().join("django-branches").join(variant), &seed);
            commit(&format!("SHOP-7 {variant}"));
        }
        git(&seed, &["checkout", "--quiet", "dev"]);
        git(&seed, &["push", "--quiet", "origin", "dev", "feature/discount", "feature/backfill"]);
        std::fs::create_dir_all(d.join("envs")).unwrap();
        git(d, &["clone", "--quiet", "--branch", "dev", d.join("origin.git").to_str().unwrap(), "envs/dev"]);
        let world = Self { dir, port, venv };
        world.manage(&["migrate", "--noinput"]);
        world
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn app(&self) -> PathBuf {
        self.path().join("envs/dev")
    }

    /// Runs `manage.py` in dev's checkout and returns its output.
    pub fn manage(&self, args: &[&str]) -> String {
        let out = Command::new(self.venv.join("bin/python"))
            .arg("manage.py")
            .args(args)
            .current_dir(self.app())
            .output()
            .unwrap();
        assert!(out.status.success(), "manage.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Applied migrations, as `orders.0001_initial` names.
    pub fn applied(&self) -> Vec<String> {
        self.manage(&["showmigrations", "--plan"])
            .lines()
            .filter_map(|l| l.trim().strip_prefix("[X]").map(|m| m.trim().to_owned()))
            .collect()
    }

    /// The columns of the orders table, read from the sqlite file itself.
    pub fn columns(&self) -> Vec<String> {
        let out = Command::new(self.venv.join("bin/python"))
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(' '.join(r[1] for r in c.execute('PRAGMA table_info(orders_order)')))",
            ])
            .arg(self.app().join("db.sqlite3"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().map(String::from).collect()
    }

    /// The migrations the database records as applied (`orders.0002_discount`), read from the
    /// sqlite file itself, whatever code is checked out.
    pub fn db_migrations(&self) -> Vec<String> {
        let out = Command::new(self.venv.join("bin/python"))
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(' '.join(a+'.'+n for a,n in c.execute(\"select app, name from django_migrations where app='orders' order by id\")))",
            ])
            .arg(self.app().join("db.sqlite3"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().map(String::from).collect()
    }

    /// Dev's own branch gains a migration of its own in `orders` (so a branch made before it
    /// has a conflicting leaf).
    pub fn add_migration_to_dev(&self) {
        let seed = self.path().join("seed");
        git(&seed, &["checkout", "--quiet", "dev"]);
        copy_tree(&fixtures().join("django-branches/dev-other"), &seed);
        git(&seed, &["add", "-A"]);
        git(&seed, &["-c", "user.name=T", "-c", "user.email=t@t", "commit", "--quiet", "-m", "SHOP-9 notes"]);
        git(&seed, &["push", "--quiet", "origin", "dev"]);
    }

    pub fn tip(&self, branch: &str) -> String {
        git(&self.path().join("origin.git"), &["rev-parse", &format!("refs/heads/{branch}")])
    }

    pub fn head(&self) -> String {
        git(&self.app(), &["rev-parse", "HEAD"])
    }

    /// What the running gunicorn serves: the Order fields its code knows.
    pub fn served(&self) -> String {
        let out = Command::new(self.venv.join("bin/python"))
            .args([
                "-c",
                "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
            ])
            .arg(format!("http://127.0.0.1:{}/", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A config whose only environment, dev, is this checkout over SSH, with the team's steps
    /// (fetch, checkout, migrate, restart gunicorn), a health check and the migration guard.
    pub fn config(&self, sshd: &super::sshd::Sshd, known_hosts: &Path) -> PathBuf {
        let python = self.venv.join("bin/python").display().to_string();
        let steps = format!(
            "  {{ name = \"fetch\", run = \"git fetch --all --prune --quiet\" }},\n  \
             {{ name = \"checkout\", run = \"git checkout --quiet --detach {{{{sha}}}}\" }},\n  \
             {{ name = \"migrate\", run = '{python} manage.py migrate --noinput' }},\n  \
             {{ name = \"restart gunicorn\", run = '{}' }},",
            self.restart_command()
        );
        self.config_with_steps(sshd, known_hosts, &steps, &python)
    }

    /// The shell command that (re)starts gunicorn on this world's port, serving the checkout.
    pub fn restart_command(&self) -> String {
        let gunicorn = self.venv.join("bin/gunicorn").display().to_string();
        format!(
            "if [ -f ../gunicorn.pid ]; then pid=$(cat ../gunicorn.pid); kill $pid 2>/dev/null; tail --pid=$pid -f /dev/null; fi; {gunicorn} --daemon --pid ../gunicorn.pid --bind 127.0.0.1:{} --workers 1 shop.wsgi:application",
            self.port
        )
    }

    /// [`DjangoWorld::config`] with `steps` (TOML array body) and the migration guard's python.
    pub fn config_with_steps(
        &self,
        sshd: &super::sshd::Sshd,
        known_hosts: &Path,
        steps: &str,
        guard_python: &str,
    ) -> PathBuf {
        let python = guard_python;
        let port = self.port;
        let text = format!(
            r#"state_dir = "state"
[[people]]
id = "ada"
name = "Ada"
roles = ["lead"]
[[people]]
id = "grace"
name = "Grace"
roles = ["developer"]

[[environments]]
name = "dev"
branch = "dev"
personal_branches = true
step_timeout = "1m"
health_url = "http://127.0.0.1:{port}/"
health_timeout = "20s"
migrations = {{ python = '{python}', manage = "manage.py" }}
transport = {{ kind = "ssh", host = "127.0.0.1", port = {ssh_port}, user = "{user}", key_file = "{key}", known_hosts = "{known_hosts}", dir = "{dir}", keepalive_secs = 5 }}
steps = [
{steps}
]
"#,
            ssh_port = sshd.port,
            user = sshd.user,
            key = sshd.client_key().display(),
            known_hosts = known_hosts.display(),
            dir = self.app().display(),
        );
        let path = self.path().join("shipday.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for DjangoWorld {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.path().join("envs/gunicorn.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
