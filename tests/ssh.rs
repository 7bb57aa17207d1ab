//! Deploys over SSH to a real OpenSSH sshd on 127.0.0.1.

use testkit as common;

use common::sshd::{KeyType, Sshd};
use common::{Bot, Gate, World, refused};
use shipday::engine::ReplyBody;
use shipday::release::deploy::{Outcome, StepResult};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STEPS: &str = r#"
  { name = "fetch", run = "git fetch --all --prune --quiet" },
  { name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
  { name = "restart app", run = "echo restarted {{env}} $(git rev-parse --short HEAD) >> ../restarts.log" },"#;

fn logs() -> Arc<Mutex<Vec<u8>>> {
    common::captured_logs()
}

#[bounded::test]
async fn a_branch_is_deployed_over_ssh_at_its_exact_commit_on_one_connection() {
    let world = World::new();
    let sshd = Sshd::start();
    let known_hosts = sshd.pin();
    let steps = format!(
        r#"{STEPS}
  {{ name = "which connection 1", run = "p=$(awk '/^PPid/ {{print $2}}' /proc/$PPID/status); awk '/^PPid/ {{print $2}}' /proc/$p/status" }},
  {{ name = "which connection 2", run = "p=$(awk '/^PPid/ {{print $2}}' /proc/$PPID/status); awk '/^PPid/ {{print $2}}' /proc/$p/status" }},"#
    );
    let bot = Bot::start(&world.ssh_config(&sshd, &known_hosts, &steps, ""));
    let (reply, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let ReplyBody::Deploy(accepted) = &reply.body else { panic!("{reply:?}") };
    assert_eq!(accepted.sha.as_str(), world.tip("feature/login"));
    let done = &progress.last().unwrap().record;
    assert_eq!(done.outcome, Outcome::Succeeded, "{:#?}", done.steps);
    assert_eq!(world.head("dev"), world.tip("feature/login"), "HEAD on the host is the resolved SHA");
    assert_eq!(world.restarts(), [format!("restarted dev {}", &accepted.sha.as_str()[..7])]);
    // Both steps ran under the same sshd session process (above the host's flock and timeout):
    // one connection per deploy.
    let (a, b) = (done.steps[3].tail.trim(), done.steps[4].tail.trim());
    assert!(!a.is_empty() && a == b, "{a} vs {b}");
    let text = shipday::chat::text::progress(progress.last().unwrap(), chrono::Utc::now()).unwrap();
    assert!(text.contains(accepted.sha.short()), "{text}");
}

#[bounded::test]
async fn a_branch_that_does_not_exist_is_refused_and_nothing_runs() {
    let world = World::new();
    let sshd = Sshd::start();
    let bot = Bot::start(&world.ssh_config(&sshd, &sshd.pin(), STEPS, ""));
    let before = world.head("dev");
    let (reply, progress) = bot.say("grace", "/deploy dev feature/nope").await;
    assert!(refused(&reply).contains("`feature/nope` is not a branch or tag"), "{reply:?}");
    assert!(progress.is_empty());
    assert_eq!(world.head("dev"), before);
    assert!(world.restarts().is_empty());
    assert!(bot.app.store.hold("dev").unwrap().is_none());
}

#[bounded::test]
async fn an_unpinned_host_stops_the_bot_at_start_and_check_config_says_so() {
    let world = World::new();
    let sshd = Sshd::start();
    let empty = sshd.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let config = world.ssh_config(&sshd, &empty, STEPS, "");
    let err = format!("{:#}", Bot::try_start(&config).err().expect("must refuse to start"));
    assert!(err.contains("is not pinned") && err.contains("ssh-keyscan"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipday"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not pinned"));
}

#[bounded::test]
async fn a_rotated_host_key_refuses_the_deploy() {
    let world = World::new();
    let sshd = Sshd::start();
    let known_hosts = sshd.pin();
    let config = world.ssh_config(&sshd, &known_hosts, STEPS, "");
    let sshd = sshd.rotate_host_key();
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    let bot = Bot::start(&config);
    let before = world.head("dev");
    let (reply, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let text = refused(&reply);
    assert!(text.contains("has CHANGED") && text.contains("SHA256:"), "{text}");
    assert!(progress.is_empty());
    assert_eq!(world.head("dev"), before);
    // The bot never learns a key.
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), pinned);
    drop(sshd);
}

#[bounded::test]
async fn a_host_offering_another_key_type_than_the_pinned_one_is_refused() {
    let world = World::new();
    let sshd = Sshd::start_with(KeyType::Ecdsa);
    // Pin an ed25519 key (made for this test) for the host, which only has an ECDSA key.
    let other = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(other.path().join("k"))
        .status()
        .unwrap();
    assert!(status.success());
    let line = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let known_hosts = sshd.pin_line(line.trim());
    let bot = Bot::start(&world.ssh_config(&sshd, &known_hosts, STEPS, ""));
    let (reply, _) = bot.say("grace", "/deploy dev feature/login").await;
    let text = refused(&reply);
    assert!(text.contains("pinned") && text.contains("ssh-ed25519"), "{text}");
    assert!(world.restarts().is_empty());
}

#[bounded::test]
async fn a_failing_step_is_named_with_its_exit_code() {
    let world = World::new();
    let sshd = Sshd::start();
    let steps = format!(r#"{STEPS} {{ name = "migrate", run = "echo 'relation does not exist' >&2; exit 3" }},"#);
    let bot = Bot::start(&world.ssh_config(&sshd, &sshd.pin(), &steps, ""));
    let (_, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let done = &progress.last().unwrap().record;
    assert_eq!(
        done.outcome,
        Outcome::Failed { step: "migrate".into(), reason: "exit code 3".into(), state_unknown: false }
    );
    assert!(done.steps.last().unwrap().tail.contains("relation does not exist"));
    let line = shipday::chat::text::progress(&progress[progress.len() - 2], chrono::Utc::now()).unwrap();
    assert!(line.contains("migrate: exit code 3") && line.contains("relation does not exist"), "{line}");
}

#[bounded::test]
async fn a_hanging_step_is_killed_on_the_host_and_the_state_is_unknown() {
    let world = World::new();
    let sshd = Sshd::start();
    let marker = format!("shipday-ssh-hang-{}", std::process::id());
    let steps = format!(
        r#"{STEPS} {{ name = "hang", run = "ln -sf \"$(command -v tail)\" ../{marker} && ../{marker} -f /dev/null", timeout = "2s" }},"#
    );
    let bot = Bot::start(&world.ssh_config(&sshd, &sshd.pin(), &steps, ""));
    let (_, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let done = &progress.last().unwrap().record;
    assert!(
        matches!(&done.outcome, Outcome::Failed { step, state_unknown: true, .. } if step == "hang"),
        "{:?}",
        done.outcome
    );
    assert_eq!(done.steps.last().unwrap().result, Some(StepResult::TimedOut { limit_secs: 2 }));
    // The host's kill lands a moment after the deploy reports the timeout.
    let pgrep = || std::process::Command::new("pgrep").args(["-f", &marker]).output().unwrap().stdout;
    common::eventually(Duration::from_secs(10), "the hung step to be killed on the host", || pgrep().is_empty()).await;
    let (status, _) = bot.say("grace", "/status dev").await;
    assert!(bot.show(&status).contains("state is unknown"));
}

#[bounded::test]
async fn a_frozen_host_is_detected_by_keepalives_within_a_bounded_time() {
    let world = World::new();
    let sshd = Sshd::start();
    // The slow step waits at a gate that stays shut: the host freezes while it waits.
    let slow = Gate::new(world.path(), "slow");
    let steps = format!(r#"{STEPS} {{ name = "slow", run = "{}", timeout = "5m" }},"#, slow.shell());
    let bot = Bot::start(&world.ssh_config(&sshd, &sshd.pin(), &steps, ""));
    let (_, mut updates) = bot.send("grace", "/deploy dev feature/login").await;
    let mut last = None;
    while let Some(update) = updates.recv().await {
        let reached_slow = update.record.steps.last().is_some_and(|s| s.name == "slow" && s.result.is_none());
        last = Some(update);
        if reached_slow {
            break;
        }
    }
    assert!(last.is_some());
    slow.reached().await;
    sshd.signal_sessions("STOP");
    let frozen_at = Instant::now();
    // Under load a session process may still be starting: stop again until every one is.
    common::eventually(Duration::from_secs(10), "every session process to be stopped", || {
        sshd.signal_sessions("STOP");
        sshd.sessions_stopped()
    })
    .await;
    while let Some(update) = updates.recv().await {
        last = Some(update);
    }
    let waited = frozen_at.elapsed();
    sshd.signal_sessions("CONT");
    let done = &last.unwrap().record;
    assert!(
        matches!(&done.outcome, Outcome::Failed { step, state_unknown: true, reason } if step == "slow" && reason.contains("lost")),
        "{:?}",
        done.outcome
    );
    // keepalive_secs = 1, three missed keepalives: well under the step's 5-minute limit.
    assert!(waited < Duration::from_secs(15), "took {waited:?}");
}

#[bounded::test]
async fn ten_megabytes_of_output_keep_only_a_bounded_tail() {
    let world = World::new();
    let sshd = Sshd::start();
    let steps = format!(
        r#"{STEPS} {{ name = "noisy", run = "head -c 10000000 /dev/zero | tr '\\0' 'x'; echo; echo END-OF-OUTPUT" }},"#
    );
    let bot = Bot::start(&world.ssh_config(&sshd, &sshd.pin(), &steps, ""));
    let (_, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let done = &progress.last().unwrap().record;
    assert_eq!(done.outcome, Outcome::Succeeded);
    let noisy = done.steps.iter().find(|s| s.name == "noisy").unwrap();
    assert!(noisy.tail.trim_end().ends_with("END-OF-OUTPUT"));
    assert!(noisy.tail.len() < 5000, "tail is {} bytes", noisy.tail.len());
    assert!(noisy.tail.contains("earlier output cut"));
    assert_eq!(noisy.output_bytes, 10_000_000 + 1 + 14);
}

#[bounded::test]
async fn secrets_printed_by_a_step_are_redacted_in_the_reply_and_the_logs() {
    let logs = logs();
    let world = World::new();
    let sshd = Sshd::start();
    std::fs::write(world.path().join("db_password"), "Sup3r-S3cret-Value\n").unwrap();
    let steps = format!(
        r#"{STEPS} {{ name = "leaky", run = "echo DATABASE_URL=postgres://app:pa55word@db/app; echo password=hunter2; echo using $(cat ../../db_password)" }},"#
    );
    let config = world.ssh_config(&sshd, &sshd.pin(), &steps, "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("redact = [{{ file = \"db_password\" }}]\n{text}")).unwrap();
    let bot = Bot::start(&config);
    let (_, progress) = bot.say("grace", "/deploy dev feature/login").await;
    let done = &progress.last().unwrap().record;
    let leaky = done.steps.iter().find(|s| s.name == "leaky").unwrap();
    let shown: String = progress
        .iter()
        .filter_map(|u| shipday::chat::text::progress(u, chrono::Utc::now()))
        .collect::<Vec<_>>()
        .join("\n");
    let (history, _) = bot.say("grace", "/history dev").await;
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for secret in ["pa55word", "hunter2", "Sup3r-S3cret-Value"] {
        assert!(!leaky.tail.contains(secret), "{secret} in the tail: {}", leaky.tail);
        assert!(!shown.contains(secret) && !bot.show(&history).contains(secret));
        assert!(!logged.contains(secret), "{secret} in the logs");
    }
    assert!(leaky.tail.contains("[redacted]"));
    assert!(logged.contains("deploy finished"), "the log capture works");
}

/// A secret in the host's output on every path over real SSH: the migration guard's refusal,
/// a failing step, `/status --live` and ls-remote (logged when a ref is not found) reach no
/// reply, progress, announcement, audit entry or log line.
#[bounded::test]
async fn secrets_in_host_output_on_every_path_reach_no_chat_audit_or_log() {
    let logs = logs();
    let world = World::new();
    let sshd = Sshd::start();
    const CONFIGURED: &str = "plum-velvet-ssh-4471";
    const SHAPED: &str = "Tr0ub4dor-ssh-88";
    std::fs::write(world.path().join("db_password"), format!("{CONFIGURED}\n")).unwrap();
    let steps = format!(
        r#"  {{ name = "migrate", run = "echo 'connecting to postgres://shop:{SHAPED}@db/shop with {CONFIGURED}' >&2; exit 3" }},"#
    );
    let extra = r#"migrations = { python = "python3", manage = "manage.py" }"#;
    let config = world.ssh_config(&sshd, &sshd.pin(), &steps, extra);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("redact = [{{ file = \"db_password\" }}]\n{text}")).unwrap();
    // Every git command on the host now warns with both secrets (and still succeeds): ls-remote,
    // the guard's fetch and `git rev-parse HEAD` print them. A mirror the host cannot reach,
    // named after them, makes the guard's `git fetch --all` fail with them.
    let dev = world.path().join("envs/dev");
    common::git(&dev, &["config", "core.fsync", &format!("DATABASE_PASSWORD={SHAPED},{CONFIGURED}")]);
    common::git(&dev, &["remote", "add", "mirror", &format!("/nonexistent/DATABASE_PASSWORD={SHAPED}/{CONFIGURED}")]);
    let bot = Bot::start(&config);
    let mut heard = bot.app.engine.announcements();
    let clean = |what: &str, text: &str| {
        for secret in [CONFIGURED, SHAPED] {
            assert!(!text.contains(secret), "{secret} leaked in the {what}: {text}");
        }
    };

    // The guard: a personal branch is checked on the host, whose fetch fails.
    let (refusal, progress) = bot.say("grace", "/deploy dev feature/login").await;
    assert!(refused(&refusal).contains("Could not check"), "{refusal:?}");
    assert!(refused(&refusal).contains("[redacted]"), "the host output is shown, redacted: {refusal:?}");
    assert!(progress.is_empty());
    clean("guard's refusal", &bot.show(&refusal));

    // A step failing with the secrets in its output.
    let (reply, progress) = bot.say("grace", "/deploy dev dev").await;
    let done = &progress.last().unwrap().record;
    assert!(matches!(done.outcome, Outcome::Failed { .. }), "{:?}", done.outcome);
    assert!(done.steps[0].tail.contains("[redacted]"), "{}", done.steps[0].tail);
    clean("reply", &format!("{reply:?}"));
    for update in &progress {
        clean("progress", &format!("{update:?}"));
        clean("progress line", &shipday::chat::text::progress(update, chrono::Utc::now()).unwrap_or_default());
    }

    // `/status --live`: HEAD is read on the host, whose warning makes it unreadable.
    let (status, _) = bot.say("grace", "/status dev --live").await;
    let shown = bot.show(&status);
    assert!(shown.contains("could not be read") && shown.contains("[redacted]"), "{shown}");
    clean("status", &shown);
    clean("status reply", &format!("{status:?}"));
    let (history, _) = bot.say("grace", "/history dev").await;
    clean("history", &bot.show(&history));

    // ls-remote against an origin the host cannot reach, named after the secrets: its output
    // goes to the log only.
    let origin = format!("/nonexistent/DATABASE_PASSWORD={SHAPED}/{CONFIGURED}");
    common::git(&dev, &["remote", "set-url", "origin", &origin]);
    let (missing, _) = bot.say("grace", "/deploy dev feature/login").await;
    assert!(refused(&missing).contains("is not a branch or tag"), "{missing:?}");
    clean("ls-remote refusal", &bot.show(&missing));

    // Whatever reached the team channel meanwhile.
    while let Ok(announcement) = heard.try_recv() {
        clean("announcement", &format!("{announcement:?}"));
    }
    let audit = bot.app.store.audit_tail(100).unwrap();
    assert!(audit.iter().any(|e| e.decision.contains("Could not check")), "{audit:#?}");
    for entry in &audit {
        clean("audit log", &format!("{entry:?}"));
    }
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.lines().any(|l| l.contains("ref not resolved") && l.contains("[redacted]")),
        "ls-remote's output is logged, redacted"
    );
    clean("logs", &logged);
}

#[bounded::test]
async fn hostile_refs_never_reach_the_host() {
    let world = World::new();
    let sshd = Sshd::start();
    let canary = sshd.path().join("canary");
    let c = canary.display().to_string();
    let bot = Bot::start(&world.ssh_config(&sshd, &sshd.pin(), STEPS, ""));
    for hostile in [
        format!("a;touch {c}"),
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("\"a\ntouch {c}\""),
        format!("'a|touch {c}'"),
        "-oProxyCommand=touch".to_owned(),
        "x".repeat(300),
    ] {
        let (reply, progress) = bot.say("ada", &format!("/deploy dev {hostile}")).await;
        refused(&reply);
        assert!(progress.is_empty());
    }
    assert!(!canary.exists());
    assert!(world.restarts().is_empty());
    assert!(bot.app.store.history(None, 5).unwrap().is_empty());
}

#[bounded::test]
async fn a_dry_run_over_ssh_resolves_on_the_host_and_changes_nothing() {
    let world = World::new();
    let sshd = Sshd::start();
    let bot = Bot::start(&world.ssh_config(&sshd, &sshd.pin(), STEPS, ""));
    let before = world.head("dev");
    let (reply, _) = bot.say("grace", "/deploy dev feature/search --dry-run").await;
    let ReplyBody::DryRun(plan) = &reply.body else { panic!("{reply:?}") };
    assert_eq!(plan.sha.as_str(), world.tip("feature/search"));
    assert_eq!(world.head("dev"), before);
    assert!(world.restarts().is_empty());
}

#[bounded::test]
async fn drift_is_found_over_ssh_at_start_up_and_by_status_live() {
    let world = World::new();
    let sshd = Sshd::start();
    let config = world.ssh_config(&sshd, &sshd.pin(), STEPS, "");
    let bot = Bot::start(&config);
    bot.say("grace", "/deploy dev feature/login").await;
    let (reply, _) = bot.say("grace", "/status dev --live").await;
    assert!(bot.show(&reply).contains("as deployed"), "{}", bot.show(&reply));
    let store_dir = bot.app.config.state_dir.clone();
    drop(bot);
    let other = world.tip("dev");
    common::git(&world.path().join("envs/dev"), &["checkout", "--quiet", "--detach", &other]);
    let bot = Bot::restart(&config).await;
    // The start-up check reads HEAD over SSH by itself and records the drift.
    common::eventually(Duration::from_secs(10), &format!("a start-up drift check in {}", store_dir.display()), || {
        let observed = bot.app.store.observation("dev").unwrap();
        observed.as_ref().is_some_and(|o| o.head.as_ref().is_ok_and(|h| h.as_str() == other))
    })
    .await;
    let (reply, _) = bot.say("grace", "/status dev").await;
    assert!(bot.show(&reply).contains("⚠️ drift"), "{}", bot.show(&reply));
}
