//! The local playground: a real git origin, three environment checkouts and a config using
//! the local transport, so Shipday can be tried with no accounts and no network.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Name of the playground's config file inside its folder.
pub const CONFIG_FILE: &str = "shipday.toml";

/// Creates the playground under `dir` on first run (later runs reuse it) and returns the
/// path of its config.
pub fn prepare(dir: &Path) -> Result<PathBuf> {
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        return Ok(config);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let origin = dir.join("origin.git");
    let seed = dir.join("seed");
    if origin.exists() || seed.exists() {
        bail!("{} holds a half-made playground; remove it and run again", dir.display());
    }
    git(&dir, &["init", "--quiet", "--bare", "--initial-branch=master", "origin.git"])?;
    git(&dir, &["clone", "--quiet", origin.to_str().context("path is not UTF-8")?, "seed"])?;
    let commit = |file: &str, text: &str, message: &str| -> Result<()> {
        std::fs::write(seed.join(file), text)?;
        git(&seed, &["add", file])?;
        git(&seed, &["commit", "--quiet", "-m", message])
    };
    git(&seed, &["checkout", "--quiet", "-b", "master"])?;
    commit("app.py", "VERSION = \"1.0\"\n", "Release 1.0")?;
    git(&seed, &["checkout", "--quiet", "-b", "staging"])?;
    commit("app.py", "VERSION = \"1.1-rc\"\n", "SHOP-1 Add the cart page")?;
    git(&seed, &["checkout", "--quiet", "-b", "dev"])?;
    commit("app.py", "VERSION = \"1.2-dev\"\n", "SHOP-2 Add search box")?;
    git(&seed, &["checkout", "--quiet", "-b", "feature/login"])?;
    commit("login.py", "def login():\n    return True\n", "SHOP-3 Log in with email")?;
    git(&seed, &["checkout", "--quiet", "dev"])?;
    git(&seed, &["checkout", "--quiet", "-b", "feature/search"])?;
    commit("search.py", "def search(q):\n    return []\n", "SHOP-4 Search by name")?;
    git(&seed, &["push", "--quiet", "origin", "master", "staging", "dev", "feature/login", "feature/search"])?;
    std::fs::remove_dir_all(&seed)?;
    for (env, branch) in [("dev", "dev"), ("staging", "staging"), ("production", "master")] {
        let checkout = format!("envs/{env}");
        std::fs::create_dir_all(dir.join("envs"))?;
        git(&dir, &["clone", "--quiet", "--branch", branch, origin.to_str().unwrap_or_default(), &checkout])?;
    }
    std::fs::write(&config, PLAYGROUND_CONFIG)?;
    Ok(config)
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Shipday Playground", "-c", "user.email=playground@shipday.invalid"])
        .args(["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=master"])
        .args(args)
        .output()
        .context("cannot run git: is it installed?")?;
    if !output.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The playground's config: the team's three environments, on this machine.
const PLAYGROUND_CONFIG: &str = r#"# Shipday playground: three environments as local git checkouts under envs/.
# The restart steps are stand-ins for gunicorn and nginx: they append to envs/restarts.log.
timezone = "Africa/Nairobi"
state_dir = "state"

[[people]]
id = "ada"
name = "Ada"
roles = ["lead"]

[[people]]
id = "grace"
name = "Grace"
roles = ["developer"]

[[people]]
id = "linus"
name = "Linus"
roles = ["developer"]

[[environments]]
name = "dev"
branch = "dev"
personal_branches = true
claim_ttl = "8h"
step_timeout = "1m"
transport = { kind = "local", dir = "envs/dev" }
steps = [
  { name = "fetch", run = "git fetch --all --prune --quiet" },
  { name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
  { name = "restart app", run = "echo \"$(date -u +%FT%TZ) {{env}} app restarted at $(git rev-parse --short HEAD)\" >> ../restarts.log" },
  { name = "reload web", run = "echo \"$(date -u +%FT%TZ) {{env}} web reloaded\" >> ../restarts.log" },
]

[[environments]]
name = "staging"
branch = "staging"
step_timeout = "1m"
transport = { kind = "local", dir = "envs/staging" }
steps = [
  { name = "fetch", run = "git fetch --all --prune --quiet" },
  { name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
  { name = "restart app", run = "echo \"$(date -u +%FT%TZ) {{env}} app restarted at $(git rev-parse --short HEAD)\" >> ../restarts.log" },
]

[[environments]]
name = "production"
branch = "master"
requires_approval = true
step_timeout = "1m"
transport = { kind = "local", dir = "envs/production" }
steps = [
  { name = "fetch", run = "git fetch --all --prune --quiet" },
  { name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
  { name = "restart app", run = "echo \"$(date -u +%FT%TZ) {{env}} app restarted at $(git rev-parse --short HEAD)\" >> ../restarts.log" },
]
"#;
