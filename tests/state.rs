//! The state commands on the real `shipday` binary: `backup`, `restore`, `audit`, and the
//! store-format check that refuses a store this Shipday cannot read.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use testkit::wait;

/// When the sessions after [`playground_with_history`] run.
const VIEW: &str = "2026-11-24T10:40:30Z";

fn shipday() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shipday"));
    command.env_remove("SHIPDAY_CONFIG").env("SHIPDAY_LOG", "warn");
    command
}

fn run(args: &[&str]) -> Output {
    shipday().args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A console session on stdin at a fixed time; returns stdout, failing on a non-zero exit.
fn console(config: &Path, user: &str, now: &str, session: &str) -> String {
    let mut child = shipday()
        .args(["console", "--config", config.to_str().unwrap(), "--as", user, "--now", now])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(session.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// A playground with some history: a deploy, then a lock ten minutes later. Every later
/// session runs at [`VIEW`], within the claim's 8 hours (nothing expires while a test looks) and
/// half a minute off any minute boundary of the ages shown.
fn playground_with_history(dir: &Path) -> PathBuf {
    let config = shipday::playground::prepare(&dir.join("pg")).unwrap();
    let out = console(&config, "ada", "2026-11-24T10:00:00Z", "/deploy dev feature/login\n");
    assert!(out.contains("Deploy #1 of `feature/login` to dev succeeded"), "{out}");
    let out = console(&config, "ada", "2026-11-24T10:10:00Z", "/lock staging QA run\n");
    assert!(out.contains("staging is locked by Ada"), "{out}");
    config
}

/// The same config with another `state_dir` (same checkouts and origin).
fn config_with_state(config: &Path, state: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("state_dir = \"state\""));
    let path = config.with_file_name(format!("{state}.toml"));
    std::fs::write(&path, text.replacen("state_dir = \"state\"", &format!("state_dir = \"{state}\""), 1)).unwrap();
    path
}

#[bounded::test]
fn a_backup_restored_into_an_empty_state_dir_answers_status_and_history_identically() {
    let dir = tempfile::tempdir().unwrap();
    let config = playground_with_history(dir.path());
    let backup = dir.path().join("shipday.backup");
    let out = run(&["backup", backup.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Backed up"), "{}", text(&out.stdout));

    // An existing backup is never overwritten.
    let again = run(&["backup", backup.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("never overwritten"), "{}", text(&again.stderr));

    let restored = config_with_state(&config, "restored");
    let out = run(&["restore", backup.to_str().unwrap(), "--config", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Restored"), "{}", text(&out.stdout));

    let views = "/status\n/history\n/history dev 5\n";
    let original = console(&config, "grace", VIEW, views);
    let copy = console(&restored, "grace", VIEW, views);
    assert!(original.contains("#1 dev `feature/login`"), "{original}");
    assert!(original.contains("staging is locked by Ada") && original.contains("QA run"), "{original}");
    assert_eq!(original, copy, "the restored store answers exactly as the original");

    // The restored store keeps counting where the original was: the next deploy is #2.
    let next = console(&restored, "ada", VIEW, "/deploy dev dev\n");
    assert!(next.contains("Deploy #2 of `dev` to dev succeeded"), "{next}");

    // A restore never goes into a state directory that holds something.
    let refused = run(&["restore", backup.to_str().unwrap(), "--config", restored.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert!(err.contains("is not empty") && err.contains("Move it aside"), "{err}");
    let after = console(&restored, "grace", VIEW, "/history dev 1\n");
    assert!(after.contains("#2 dev `dev`"), "the refused restore changed nothing: {after}");
}

#[bounded::test]
fn a_cut_or_altered_backup_is_refused_and_leaves_the_state_dir_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = playground_with_history(dir.path());
    let backup = dir.path().join("full.backup");
    let out = run(&["backup", backup.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let whole = std::fs::read_to_string(&backup).unwrap();
    let lines: Vec<&str> = whole.lines().collect();
    assert!(lines.len() > 3, "{whole}");

    let restored = config_with_state(&config, "restored");
    let state = dir.path().join("pg/restored");
    let cut = dir.path().join("cut.backup");
    std::fs::write(&cut, format!("{}\n", lines[..lines.len() - 1].join("\n"))).unwrap();
    let out = run(&["restore", cut.to_str().unwrap(), "--config", restored.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cut short"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "a failed restore leaves nothing behind");

    // One record changed (the deploy counter), the end line kept: the hash no longer matches.
    let altered = dir.path().join("altered.backup");
    let seq = lines.iter().position(|l| l.contains(&format!("\"key\":\"{}\"", hex_of("deploy_seq")))).unwrap();
    let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    // Flip the value's last hex digit, whatever the counter is.
    let last = changed[seq].rfind("\"}}").unwrap() - 1;
    let flipped = if &changed[seq][last..=last] == "9" { "8" } else { "9" };
    changed[seq].replace_range(last..=last, flipped);
    assert_ne!(changed[seq], lines[seq]);
    std::fs::write(&altered, format!("{}\n", changed.join("\n"))).unwrap();
    let out = run(&["restore", altered.to_str().unwrap(), "--config", restored.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the backup is damaged"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);

    let not_a_backup = dir.path().join("notes.txt");
    std::fs::write(&not_a_backup, "hello\n").unwrap();
    let out = run(&["restore", not_a_backup.to_str().unwrap(), "--config", restored.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("is this a Shipday backup?"), "{}", text(&out.stderr));

    // Through a pipe: backup to stdout, restore from stdin.
    let piped =
        shipday().args(["backup", "-", "--config", config.to_str().unwrap()]).stderr(Stdio::null()).output().unwrap();
    assert!(piped.status.success());
    let mut restore = shipday()
        .args(["restore", "-", "--config", restored.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    restore.stdin.take().unwrap().write_all(&piped.stdout).unwrap();
    let out = restore.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let history = console(&restored, "grace", VIEW, "/history dev 1\n");
    assert!(history.contains("#1 dev `feature/login`"), "{history}");
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[bounded::test]
fn backup_explains_why_it_cannot_copy_a_store_a_running_shipday_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config = playground_with_history(dir.path());
    let mut running = shipday()
        .args(["console", "--config", config.to_str().unwrap(), "--as", "ada", "--now", VIEW])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = running.stdin.take().unwrap();
    let mut lines = BufReader::new(running.stdout.take().unwrap()).lines();
    writeln!(stdin, "/history dev 1").unwrap();
    // Once it answers, it holds the store.
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        if line.contains("#1 dev") {
            break;
        }
    }
    assert!(seen.contains("#1 dev"), "{seen}");

    let backup = dir.path().join("while-running.backup");
    let out = run(&["backup", backup.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("another Shipday process")
            && err.contains("Stop that process first")
            && err.contains("shipday backup FILE")
            && err.contains("control.sock"),
        "{err}"
    );
    assert!(!backup.exists(), "no partial backup is left behind");
    let audit = run(&["audit", "--config", config.to_str().unwrap()]);
    assert!(text(&audit.stderr).contains("another Shipday process"), "{}", text(&audit.stderr));

    drop(stdin);
    assert!(running.wait().unwrap().success());
}

#[bounded::test]
fn audit_prints_who_did_what_and_filters_by_time_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = playground_with_history(dir.path());
    let config_s = config.to_str().unwrap();

    let out = run(&["audit", "--config", config_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = text(&out.stdout);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 2, "{all}");
    // The console's clock starts at `--now` and runs on: the seconds are whenever it decided.
    let line = regex::Regex::new(r"^2026-11-24T10:(\d\d):\d\dZ  console  ada \(ada\)  (.+)  → (.+)$").unwrap();
    let first = line.captures(lines[0]).unwrap_or_else(|| panic!("{all}"));
    assert_eq!((&first[1], &first[2]), ("00", "/deploy dev feature/login"), "{all}");
    assert!(first[3].starts_with("accepted: deploy #1 of `feature/login` to dev"), "{all}");
    let second = line.captures(lines[1]).unwrap_or_else(|| panic!("{all}"));
    assert_eq!((&second[1], &second[2]), ("10", "/lock staging QA run"), "{all}");

    let since = text(&run(&["audit", "--config", config_s, "--since", "2026-11-24T10:05:00Z"]).stdout);
    assert!(since.lines().count() == 1 && since.contains("/lock staging"), "{since}");
    let since = text(&run(&["audit", "--config", config_s, "--since", "2026-11-24"]).stdout);
    assert_eq!(since, all, "a date is its midnight UTC");
    let since = run(&["audit", "--config", config_s, "--since", "2026-11-25"]);
    assert!(since.status.success() && since.stdout.is_empty(), "{}", text(&since.stdout));

    let dev = text(&run(&["audit", "--config", config_s, "--env", "dev"]).stdout);
    assert!(dev.lines().count() == 1 && dev.contains("/deploy dev feature/login"), "{dev}");
    let production = run(&["audit", "--config", config_s, "--env", "production"]);
    assert!(production.status.success() && production.stdout.is_empty(), "{}", text(&production.stdout));

    let json = text(&run(&["audit", "--config", config_s, "--json", "--env", "staging"]).stdout);
    let entry: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(entry["text"], "/lock staging QA run");
    assert_eq!(entry["person"], "ada");

    let unknown = run(&["audit", "--config", config_s, "--env", "prod"]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("no environment `prod`"), "{}", text(&unknown.stderr));
    let bad_date = run(&["audit", "--config", config_s, "--since", "yesterday"]);
    assert!(!bad_date.status.success());
    assert!(text(&bad_date.stderr).contains("neither a date"), "{}", text(&bad_date.stderr));

    // No store yet: said so, and none is created.
    let fresh = config_with_state(&config, "nothing-here");
    let out = run(&["audit", "--config", fresh.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("there is no state store"), "{}", text(&out.stderr));
    assert!(!dir.path().join("pg/nothing-here").exists());
}

#[bounded::test]
fn a_store_from_a_newer_shipday_is_refused_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let config = playground_with_history(dir.path());
    let db = dir.path().join("pg/state/shipday.db");
    {
        let store = sled::open(&db).unwrap();
        store.insert("format", b"shipday-store-2".as_slice()).unwrap();
        store.flush().unwrap();
    }
    let config_s = config.to_str().unwrap();
    for args in [
        vec!["console", "--config", config_s, "--as", "ada"],
        vec!["serve", "--config", config_s],
        vec!["audit", "--config", config_s],
    ] {
        // sled frees this process's lock from a background thread: a refusal for the lock is
        // not the answer under test, so the command is run again.
        let out = wait::eventually_blocking(wait::PATIENCE, "the store to unlock", || {
            let out = run(&args);
            (!text(&out.stderr).contains("another Shipday process")).then_some(out)
        });
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("was written by a newer Shipday (store format 2; this Shipday reads format 1)")
                && err.contains("will not start on it, nor with an empty store in its place"),
            "{args:?}: {err}"
        );
    }
    let store = sled::open(&db).unwrap();
    assert_eq!(store.get("format").unwrap().as_deref(), Some(b"shipday-store-2".as_slice()), "left as it was");
    assert!(store.open_tree("deploys").unwrap().len() == 1, "its deploys are still there");
}

/// `shipday backup` while the real `shipday serve` runs: the running bot holds the store (sled's
/// lock), so backup asks it through its control socket (mode 0600 in the state directory) and
/// its engine writes the snapshot. The snapshot has what the running bot decided (a command it
/// answered through Slack a moment before), restores into an empty state directory, and the
/// socket is gone once the bot exited.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serve_runs_is_a_snapshot_from_the_running_bot_through_its_control_socket() {
    use std::os::unix::fs::PermissionsExt;
    use testkit::fake_slack::{self, FakeSlack, contract};
    const TEAM: &str = "T123ABC456";
    let dir = tempfile::tempdir().unwrap();
    let config = playground_with_history(dir.path());
    let fake = FakeSlack::start(TEAM).await;
    let base = config.parent().unwrap();
    std::fs::write(base.join("bot-token"), fake_slack::BOT_TOKEN).unwrap();
    std::fs::write(base.join("app-token"), fake_slack::APP_TOKEN).unwrap();
    let slack = format!(
        "\n[slack]\nteam_id = \"{TEAM}\"\nchannel = \"C0TEAM0001\"\nbot_token = {{ file = \"bot-token\" }}\nmode = \"socket\"\napp_token = {{ file = \"app-token\" }}\napi_base_url = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n",
        fake.api_url()
    );
    let serving = base.join("serve.toml");
    std::fs::write(&serving, format!("{}{slack}", std::fs::read_to_string(&config).unwrap())).unwrap();
    let mut bot = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipday"))
        .args(["serve", "--config", serving.to_str().unwrap()])
        .env_remove("SHIPDAY_CONFIG")
        .env("SHIPDAY_LOG", "warn")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    fake.wait_for("shipday serve to connect", |f| f.connections() >= 1).await;
    let mut envelope = contract("socket-mode-envelope.json")["slash_commands"].clone();
    envelope["payload"]["team_id"] = serde_json::json!(TEAM);
    envelope["payload"]["command"] = serde_json::json!("/status");
    envelope["payload"]["text"] = serde_json::json!("staging");
    let ack = fake.send_envelope(&envelope).await;
    assert!(ack.to_string().contains("staging"), "{ack}");
    let socket = base.join("state/control.sock");
    wait::eventually(wait::PATIENCE, "the control socket", || socket.exists()).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the bot's user may use it: {mode:o}");

    let backup = dir.path().join("live.backup");
    let args = ["backup", backup.to_str().unwrap(), "--config", serving.to_str().unwrap()].map(String::from);
    let out =
        tokio::task::spawn_blocking(move || shipday().args(args).stdin(Stdio::null()).output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("Backed up") && said.contains("a snapshot from the running Shipday"), "{said}");
    // The bot goes on serving after the snapshot.
    envelope["envelope_id"] = serde_json::json!("after-the-backup");
    envelope["payload"]["trigger_id"] = serde_json::json!("after-the-backup");
    let ack = fake.send_envelope(&envelope).await;
    assert!(ack.to_string().contains("staging"), "{ack}");

    let pid = bot.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait::bounded(wait::PATIENCE, "serve to exit", bot.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the control socket goes with the bot");

    let restored = config_with_state(&config, "restored");
    let out = run(&["restore", backup.to_str().unwrap(), "--config", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let audit = text(&run(&["audit", "--config", restored.to_str().unwrap()]).stdout);
    assert!(
        audit.contains("slack") && audit.contains("/status staging"),
        "the running bot's decision is in it: {audit}"
    );
    let history = console(&restored, "grace", VIEW, "/history dev 5\n");
    assert!(history.contains("#1 dev `feature/login`"), "{history}");
}
