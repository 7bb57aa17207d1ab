//! The `shipday` binary as an operator and a newcomer use it: the playground on stdin,
//! `check-config`, `manifest`, and what survives a `kill -9`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::wait;

fn shipday() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shipday"));
    command.env_remove("SHIPDAY_CONFIG").env("SHIPDAY_LOG", "warn");
    command
}

fn run_with_stdin(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child =
        shipday().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[bounded::test]
fn a_newcomer_drives_a_whole_playground_session_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let pg = dir.path().join("pg");
    let pg_s = pg.to_str().unwrap();
    let session =
        "/help\n/deploy dev feature/login\n/status\n/deploy dev feature/search\n/release dev\n/status dev\n/history\n";
    let (ok, out, err) = run_with_stdin(&["playground", "--dir", pg_s], session);
    assert!(ok, "{out}\n{err}");
    let expected_in_order = [
        "grace> /help",
        "/deploy ENV REF [--dry-run]",
        "grace> /deploy dev feature/login",
        "🚀 Deploying `feature/login` to dev",
        "✅ [#1 dev] checkout",
        "✅ Deploy #1 of `feature/login` to dev succeeded",
        "grace> /status",
        "dev is claimed by Grace for `feature/login`",
        "grace> /deploy dev feature/search",
        "🚀 Deploying `feature/search` to dev",
        "grace> /release dev",
        "🚀 Releasing: redeploying `dev` to dev",
        "✅ Deploy #3 of `dev` to dev succeeded",
        "grace> /status dev",
        "hold: free",
        "grace> /history",
        "#3 dev `dev`",
    ];
    let mut at = 0;
    for fragment in expected_in_order {
        let found = out[at..].find(fragment).unwrap_or_else(|| panic!("`{fragment}` missing after byte {at}:\n{out}"));
        at += found + fragment.len();
    }
    // A second run reuses the playground and its state.
    let (ok, out, _) = run_with_stdin(&["playground", "--dir", pg_s, "--as", "linus"], "/history dev 1\n");
    assert!(ok);
    assert!(out.contains("#3 dev `dev`"), "{out}");
}

/// Reads the child's stdout until a line contains `needle`.
fn wait_for(lines: &mut impl Iterator<Item = std::io::Result<String>>, needle: &str, seen: &mut String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {needle}:\n{seen}");
    }
    panic!("output ended before {needle}:\n{seen}");
}

#[bounded::test]
fn what_the_bot_answered_survives_kill_9_and_an_interrupted_deploy_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pg = dir.path().join("pg");
    let config = shipday::playground::prepare(&pg).unwrap();
    // Make dev's restart wait at a gate that stays shut, so a deploy is mid-step when the bot dies.
    let reload = wait::Gate::new(dir.path(), "reload");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        r#"{ name = "reload web", run = "echo \"$(date -u +%FT%TZ) {{env}} web reloaded\" >> ../restarts.log" },"#,
        &format!(r#"{{ name = "reload web", run = "{}" }},"#, reload.shell()),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let config_s = config.to_str().unwrap();

    let mut child = shipday()
        .args(["console", "--config", config_s, "--as", "ada"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    writeln!(stdin, "/lock staging QA run").unwrap();
    wait_for(&mut lines, "staging is locked by Ada", &mut seen);
    writeln!(stdin, "/deploy dev feature/login").unwrap();
    wait_for(&mut lines, "⏳ [#1 dev] reload web", &mut seen);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (ok, out, err) = run_with_stdin(&["console", "--config", config_s, "--as", "ada"], "/status\n");
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "Shipday stopped while deploy #1 of `feature/login` to dev (by Ada) was running during step \"reload web\""
        ),
        "{out}"
    );
    assert!(out.contains("staging is locked by Ada") && out.contains("QA run"), "{out}");
    assert!(out.contains("was interrupted"), "{out}");
    // Reported once: the next start has nothing new to say.
    let (_, out, _) = run_with_stdin(&["console", "--config", config_s, "--as", "ada"], "");
    assert!(!out.contains("Shipday stopped while"), "{out}");
}

#[bounded::test]
fn check_config_names_the_bad_key_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipday::playground::prepare(&dir.path().join("pg")).unwrap();
    let config_s = config.to_str().unwrap();
    let out = shipday().args(["check-config", "--config", config_s]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("dev: branch dev, local"));
    assert!(!dir.path().join("pg/state").exists(), "check-config must not open the store");

    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace("claim_ttl = \"8h\"", "claim_tll = \"8h\"");
    std::fs::write(&bad, text).unwrap();
    let out = shipday().args(["check-config", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("claim_tll") && err.contains("bad.toml"), "{err}");

    std::fs::write(&bad, "this is = = not toml").unwrap();
    let out = shipday().args(["check-config", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let out = shipday().args(["check-config", "--config", "/nonexistent/shipday.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[bounded::test]
fn an_unknown_log_format_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipday::playground::prepare(&dir.path().join("pg")).unwrap();
    let out = shipday()
        .args(["check-config", "--config", config.to_str().unwrap()])
        .env("SHIPDAY_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SHIPDAY_LOG_FORMAT=\"xml\"") && err.contains("`json`"), "{err}");
    assert!(out.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&out.stdout));
}

#[bounded::test]
fn manifests_are_printed_from_the_specs() {
    let out = shipday().args(["manifest", "slack"]).output().unwrap();
    let slack: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let commands: Vec<&str> = slack["features"]["slash_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    assert!(commands.contains(&"/deploy") && commands.contains(&"/promote") && commands.contains(&"/ship-status"));
    assert!(!commands.contains(&"/status"), "Slack keeps /status for itself");
    assert!(commands.contains(&"/shipday"));
    let out = shipday().args(["manifest", "discord"]).output().unwrap();
    let discord: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(discord.as_array().unwrap().len(), commands.len());
}

/// Runs `shipday check-config --config shipday.toml` in `dir`, as an operator in the config's
/// folder does, with `envs` set (secrets come from the environment). Returns (ok, stdout with
/// `dir` written as `[DIR]`, stderr).
fn check_config_in(dir: &std::path::Path, envs: &[(&str, &str)]) -> (bool, String, String) {
    let out = shipday()
        .args(["check-config", "--config", "shipday.toml"])
        .current_dir(dir)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for path in [dir.canonicalize().unwrap(), dir.to_path_buf()] {
        stdout = stdout.replace(path.to_str().unwrap(), "[DIR]");
    }
    (out.status.success(), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

const GITHUB_TOKEN: &str = "github_pat_11AAAAAAA0cli0test0secret";

#[bounded::test]
fn check_config_shows_github_without_its_secrets_and_where_the_state_will_live() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
state_dir = "state"

[[people]]
id = "ada"
name = "Ada"
roles = ["lead"]

[[environments]]
name = "dev"
branch = "dev"
personal_branches = true
transport = { kind = "local", dir = "envs/dev" }

[github]
owner = "acme"
repo = "shop"
token = { env = "SHIPDAY_TEST_GITHUB_TOKEN" }
webhook_secret = { file = "github-webhook.secret" }

[server]
listen = "127.0.0.1:3001"
"#;
    std::fs::write(dir.path().join("shipday.toml"), config).unwrap();
    std::fs::write(dir.path().join("github-webhook.secret"), "webhook-secret-0cli0test\n").unwrap();

    let (ok, out, err) = check_config_in(dir.path(), &[("SHIPDAY_TEST_GITHUB_TOKEN", GITHUB_TOKEN)]);
    assert!(ok, "{err}");
    assert!(out.contains("  state: [DIR]/state\n"), "the store's folder, resolved:\n{out}");
    assert!(!out.contains(GITHUB_TOKEN) && !out.contains("webhook-secret-0cli0test"), "{out}");
    insta::assert_snapshot!("check_config_with_github", out);
    assert!(!dir.path().join("state").exists(), "check-config must not open the store");

    // What `serve` would refuse, check-config refuses too, naming the key.
    let (ok, _, err) = check_config_in(dir.path(), &[]);
    assert!(!ok);
    assert!(err.contains("github.token") && err.contains("SHIPDAY_TEST_GITHUB_TOKEN"), "{err}");
    std::fs::write(dir.path().join("shipday.toml"), config.replace("webhook_secret = ", "# webhook_secret = "))
        .unwrap();
    // Without a webhook secret there is simply no webhook route: never an unsigned one.
    let (ok, out, err) = check_config_in(dir.path(), &[("SHIPDAY_TEST_GITHUB_TOKEN", GITHUB_TOKEN)]);
    assert!(ok, "{err}");
    assert!(out.contains("no webhook route (no github.webhook_secret)"), "{out}");
}

/// A host key to pin for the example's droplets (any valid public key: nothing connects).
const DROPLET_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJwyB6tzKlpv31RCssc7i653zLom+yhuLvY6qPq0LF0i";

#[bounded::test]
fn the_example_production_config_passes_check_config() {
    // The operator's /etc/shipday, in a temp dir: the example, with its host keys pinned.
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shipday.toml")).unwrap();
    let etc = format!("{}/", dir.path().display());
    std::fs::write(dir.path().join("shipday.toml"), example.replace("/etc/shipday/", &etc)).unwrap();
    let pins: String = ["shop-dev.example.com", "shop-staging.example.com", "shop.example.com"]
        .map(|host| format!("{host} {DROPLET_KEY}\n"))
        .concat();
    std::fs::write(dir.path().join("known_hosts"), pins).unwrap();
    let secrets = [
        ("SLACK_BOT_TOKEN", "xoxb-0example0"),
        ("SLACK_APP_TOKEN", "xapp-0example0"),
        ("DISCORD_BOT_TOKEN", "discord-example-token"),
        ("GITHUB_TOKEN", GITHUB_TOKEN),
        ("GITHUB_WEBHOOK_SECRET", "webhook-example-secret"),
        ("JIRA_API_TOKEN", "jira-example-token"),
    ];

    let (ok, out, err) = check_config_in(dir.path(), &secrets);
    assert!(ok, "{err}");
    for (_, secret) in secrets {
        assert!(!out.contains(secret), "{out}");
    }
    insta::assert_snapshot!("check_config_of_the_example", out);

    // Without its secrets it does not pass, and says which one is missing.
    let (ok, _, err) = check_config_in(dir.path(), &secrets[1..]);
    assert!(!ok);
    assert!(err.contains("slack.bot_token") && err.contains("SLACK_BOT_TOKEN"), "{err}");
}

/// `manifest slack --config` uses the workspace's names, and refuses one Slack would reject,
/// saying why and which key to change, printing nothing.
#[bounded::test]
fn the_slack_manifest_uses_configured_names_and_refuses_reserved_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipday::playground::prepare(&dir.path().join("pg")).unwrap();
    std::fs::write(dir.path().join("pg/bot"), "xoxb-1").unwrap();
    std::fs::write(dir.path().join("pg/app"), "xapp-1").unwrap();
    let with = |commands: &str| {
        let path = dir.path().join("pg/slack.toml");
        let slack = format!(
            "\n[slack]\nteam_id = \"T0001\"\nchannel = \"C0001\"\nbot_token = {{ file = \"bot\" }}\n\
             app_token = {{ file = \"app\" }}\ncommands = {commands}\n"
        );
        std::fs::write(&path, std::fs::read_to_string(&config).unwrap() + &slack).unwrap();
        shipday().args(["manifest", "slack", "--config", path.to_str().unwrap()]).output().unwrap()
    };
    let out = with("{ status = \"whats-live\" }");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let commands = manifest["features"]["slash_commands"].to_string();
    assert!(commands.contains("\"/whats-live\"") && !commands.contains("\"/ship-status\""), "{commands}");

    let out = with("{ status = \"status\" }");
    assert!(!out.status.success() && out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`/status` is one of Slack's built-in commands") && err.contains("slack.commands.status"),
        "{err}"
    );
}

/// The manifest the README's Slack set-up shows is the one `shipday manifest slack` prints.
#[bounded::test]
fn the_readme_shows_the_real_default_slack_manifest() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let shown = readme.split("<summary>manifest.json</summary>").nth(1).expect("the manifest in the README");
    let shown = shown.split("```json").nth(1).unwrap().split("```").next().unwrap();
    let shown: serde_json::Value = serde_json::from_str(shown).expect("the README's manifest is JSON");
    let out = shipday().args(["manifest", "slack"]).output().unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown, printed, "update the README's manifest from `shipday manifest slack`");
}
