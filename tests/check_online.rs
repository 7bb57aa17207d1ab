//! `shipday check-config --online`: the real binary against the fake Slack, Discord, GitHub
//! and Jira and the test sshd. One run where everything answers, and for each integration a
//! run where one check fails, printing a line that says what failed and what to do.

use testkit as common;

use common::World;
use common::fake_discord::{APPLICATION_ID, CHANNEL_ID, FakeDiscord, GUILD_ID};
use common::fake_github::{FakeGitHub, FakeProtection, OWNER, REPO};
use common::fake_jira::{self, FakeJira};
use common::fake_slack::{self, FakeSlack};
use common::sshd::Sshd;
use std::path::{Path, PathBuf};
use std::process::Command;

const TEAM: &str = "T0SHIPDAY1";
const TEAM_CHANNEL: &str = "C0TEAM0001";
const SIGNING_SECRET: &str = "slack-signing-secret-for-check";
const DISCORD_TOKEN: &str = "discord-bot-token-for-check";

/// Every fake, the test sshd and a playground world whose `dev` is on that sshd.
struct Setup {
    world: World,
    sshd: Sshd,
    known_hosts: PathBuf,
    slack: FakeSlack,
    discord: FakeDiscord,
    github: FakeGitHub,
    jira: FakeJira,
}

/// What a config differs in from the all-green one.
#[derive(Default)]
struct Changes {
    slack_channel: Option<&'static str>,
    discord_guild: Option<&'static str>,
    github_repo: Option<&'static str>,
    jira_columns: Option<&'static str>,
    known_hosts: Option<PathBuf>,
    dev_dir: Option<PathBuf>,
}

impl Setup {
    async fn start() -> Self {
        let world = World::new();
        let sshd = Sshd::start();
        let known_hosts = sshd.pin();
        let github = FakeGitHub::start().await;
        github.protect("dev", FakeProtection { requires_pull_request: true, ..FakeProtection::default() });
        let dir = world.path();
        std::fs::write(dir.join("slack-bot-token"), fake_slack::BOT_TOKEN).unwrap();
        std::fs::write(dir.join("slack-signing-secret"), SIGNING_SECRET).unwrap();
        std::fs::write(dir.join("discord-token"), DISCORD_TOKEN).unwrap();
        std::fs::write(dir.join("github-token"), common::fake_github::TOKEN).unwrap();
        std::fs::write(dir.join("jira-token"), fake_jira::TOKEN).unwrap();
        Self {
            world,
            sshd,
            known_hosts,
            slack: FakeSlack::start(TEAM).await,
            discord: FakeDiscord::start().await,
            github,
            jira: FakeJira::start().await,
        }
    }

    /// A config file with every integration pointing at its fake and `dev` on the sshd,
    /// changed as `changes` says.
    fn config(&self, name: &str, changes: Changes) -> PathBuf {
        let dev_dir = changes.dev_dir.unwrap_or_else(|| self.world.path().join("envs/dev"));
        let known_hosts = changes.known_hosts.unwrap_or_else(|| self.known_hosts.clone());
        let base = std::fs::read_to_string(self.world.config_path()).unwrap();
        let local = "transport = { kind = \"local\", dir = \"envs/dev\" }";
        assert!(base.contains(local));
        let ssh = format!(
            "transport = {{ kind = \"ssh\", host = \"127.0.0.1\", port = {}, user = \"{}\", key_file = \"{}\", \
             known_hosts = \"{}\", dir = \"{}\" }}",
            self.sshd.port,
            self.sshd.user,
            self.sshd.client_key().display(),
            known_hosts.display(),
            dev_dir.display()
        );
        let text = format!(
            "{}\n[server]\nlisten = \"127.0.0.1:0\"\n\
             \n[slack]\nteam_id = \"{TEAM}\"\nchannel = \"{}\"\nmode = \"http\"\n\
             bot_token = {{ file = \"slack-bot-token\" }}\nsigning_secret = {{ file = \"slack-signing-secret\" }}\n\
             api_base_url = \"{}\"\n\
             \n[discord]\napplication_id = \"{APPLICATION_ID}\"\nguild_id = \"{}\"\nchannel = \"{CHANNEL_ID}\"\n\
             bot_token = {{ file = \"discord-token\" }}\napi_base_url = \"{}\"\n\
             \n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{}\"\ntoken = {{ file = \"github-token\" }}\n\
             \n[jira]\nbase_url = \"{}\"\nemail = \"{}\"\ntoken = {{ file = \"jira-token\" }}\nprojects = [\"SHOP\"]\n{}",
            base.replacen(local, &ssh, 1),
            changes.slack_channel.unwrap_or(TEAM_CHANNEL),
            self.slack.api_url(),
            changes.discord_guild.unwrap_or(GUILD_ID),
            self.discord.api_base,
            self.github.url,
            changes.github_repo.unwrap_or(REPO),
            self.jira.url,
            fake_jira::EMAIL,
            changes.jira_columns.unwrap_or(""),
        );
        let path = self.world.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Runs `shipday check-config --online` on `config` (off the runtime's threads, which serve
/// the fakes): whether it succeeded, and its stdout and stderr.
async fn check_online(config: &Path) -> (bool, String, String) {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_shipday"))
            .env_remove("SHIPDAY_CONFIG")
            .env("SHIPDAY_LOG", "warn")
            .args(["check-config", "--online", "--timeout", "20", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    })
    .await
    .unwrap()
}

/// The online lines (after the offline description).
fn online_lines(out: &str) -> Vec<&str> {
    let at = out.find("Online checks").unwrap_or_else(|| panic!("no online checks in:\n{out}"));
    out[at..].lines().skip(1).filter(|line| !line.is_empty()).collect()
}

/// The one line starting with `prefix` (`FAIL slack:`), which must be there.
fn line<'a>(lines: &[&'a str], prefix: &str) -> &'a str {
    let found: Vec<&&str> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one line starting with `{prefix}` in:\n{}", lines.join("\n"));
    found[0]
}

/// Only the lines of `subject` fail.
fn only_failing(lines: &[&str], subject: &str) {
    for line in lines {
        if line.starts_with("FAIL") {
            assert!(line.starts_with(&format!("FAIL {subject}")), "only {subject} fails, not:\n{}", lines.join("\n"));
        }
    }
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_configured_answers_and_each_check_prints_one_ok_line() {
    let setup = Setup::start().await;
    let (ok, out, err) = check_online(&setup.config("green", Changes::default())).await;
    assert!(ok, "{out}\n{err}");
    let lines = online_lines(&out);
    let expected = [
        "ok   slack: auth.test as @shipday (U222222222) in workspace T0SHIPDAY1",
        "ok   slack: @shipday is in channel #team-c0team0001 (C0TEAM0001)",
        "ok   discord: bot user user912 (80351110224678912)",
        "ok   discord: the bot is in server \"Shipday Test\" (290926798626357999)",
        "ok   github: acme/shop (private, default branch master)",
        "ok   github: `dev` (dev's branch) is protected: changes reach it only through pull requests",
        "ok   jira: signed in to",
        "ok   jira: project SHOP has every status the config names: Pull Request, Dev Testing, Staging, Done",
        "ok   ssh dev: ",
        "ok   local staging: ",
        "ok   local production: ",
    ];
    assert_eq!(lines.len(), expected.len() + 1, "{out}");
    for (line, expected) in lines.iter().zip(expected) {
        assert!(line.starts_with(expected), "`{line}` starts with `{expected}`:\n{out}");
    }
    let ssh = line(&lines, "ok   ssh dev:");
    assert!(ssh.contains("answers with the pinned host key") && ssh.contains("is a git checkout"), "{ssh}");
    assert!(out.contains("Every configured integration and host answered"), "{out}");
    // What each fake was asked, in its own wire format.
    assert_eq!(setup.slack.calls("conversations.info")[0].body["channel"], TEAM_CHANNEL);
    assert!(setup.discord.calls().iter().any(|c| c.method == "GET" && c.path == "/users/@me"));
    assert_eq!(setup.jira.requests_to("GET", "/rest/api/3/myself").len(), 1);
    // No secret is printed.
    for secret in [fake_slack::BOT_TOKEN, SIGNING_SECRET, DISCORD_TOKEN, common::fake_github::TOKEN, fake_jira::TOKEN] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} printed:\n{out}\n{err}");
    }
}

#[bounded::test]
fn without_integrations_each_is_skipped_and_the_local_checkouts_are_checked() {
    let world = World::new();
    let out = Command::new(env!("CARGO_BIN_EXE_shipday"))
        .env_remove("SHIPDAY_CONFIG")
        .env("SHIPDAY_LOG", "warn")
        .args(["check-config", "--online", "--config"])
        .arg(world.config_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines = online_lines(&stdout);
    for integration in ["slack", "discord", "github", "jira"] {
        assert_eq!(
            line(&lines, &format!("skip {integration}:")),
            format!("skip {integration}: not configured (no [{integration}] section)")
        );
    }
    assert!(line(&lines, "ok   local dev:").ends_with("envs/dev is a git checkout"), "{stdout}");

    // Without --online it checks syntax only, as before; --timeout needs --online.
    let offline = Command::new(env!("CARGO_BIN_EXE_shipday"))
        .args(["check-config", "--config"])
        .arg(world.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&offline.stdout);
    assert!(offline.status.success() && text.contains("is valid") && !text.contains("Online checks"), "{text}");
    let refused = Command::new(env!("CARGO_BIN_EXE_shipday"))
        .args(["check-config", "--timeout", "5", "--config"])
        .arg(world.config_path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--online"));
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_fails_when_the_bot_is_not_in_the_team_channel() {
    let setup = Setup::start().await;
    let changes = Changes { slack_channel: Some(fake_slack::NOT_A_MEMBER), ..Changes::default() };
    let (ok, out, err) = check_online(&setup.config("slack", changes)).await;
    assert!(!ok, "{out}");
    let lines = online_lines(&out);
    only_failing(&lines, "slack");
    assert_eq!(
        line(&lines, "FAIL slack:"),
        "FAIL slack: @shipday is not in channel #not-a-member (C0NOTMEMBER) (slack.channel): invite it there with \
         `/invite @shipday`; Slack sends the approval reactions only from channels the bot is in"
    );
    assert!(err.contains("1 of 11 online checks failed"), "{err}");

    let changes = Changes { slack_channel: Some(fake_slack::NO_SUCH_CHANNEL), ..Changes::default() };
    let (ok, out, _) = check_online(&setup.config("slack-unknown", changes)).await;
    assert!(!ok);
    let failed = line(&online_lines(&out), "FAIL slack:");
    assert!(failed.contains("channel_not_found") && failed.contains("check slack.channel"), "{failed}");
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_fails_on_a_server_discord_does_not_know() {
    let setup = Setup::start().await;
    let changes = Changes { discord_guild: Some("123456789012345678"), ..Changes::default() };
    let (ok, out, _) = check_online(&setup.config("discord", changes)).await;
    assert!(!ok, "{out}");
    let lines = online_lines(&out);
    only_failing(&lines, "discord");
    assert!(line(&lines, "ok   discord:").starts_with("ok   discord: bot user"));
    assert_eq!(
        line(&lines, "FAIL discord:"),
        "FAIL discord: GET /guilds/123456789012345678: Discord knows no server 123456789012345678 (404 Unknown \
         Guild, code 10004): check discord.guild_id (with Developer Mode on, right-click the server and Copy Server ID)"
    );
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_fails_on_an_unprotected_dev_branch_and_on_a_repository_it_cannot_see() {
    let setup = Setup::start().await;
    setup.github.unprotect("dev");
    let (ok, out, _) = check_online(&setup.config("github", Changes::default())).await;
    assert!(!ok, "{out}");
    let lines = online_lines(&out);
    only_failing(&lines, "github");
    let failed = line(&lines, "FAIL github:");
    assert!(
        failed.starts_with("FAIL github: `dev` (dev's branch) is not protected")
            && failed.contains("add a rule for `dev` that requires a pull request before merging"),
        "{failed}"
    );

    let changes = Changes { github_repo: Some("missing"), ..Changes::default() };
    let (ok, out, _) = check_online(&setup.config("github-404", changes)).await;
    assert!(!ok);
    let failed = line(&online_lines(&out), "FAIL github:");
    assert!(
        failed.starts_with("FAIL github: no access to acme/missing (404)") && failed.contains("check github.owner"),
        "{failed}"
    );
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_fails_when_a_configured_column_has_no_status_to_transition_to() {
    let setup = Setup::start().await;
    let changes = Changes { jira_columns: Some("columns = { dev_testing = \"Dev Testng\" }\n"), ..Changes::default() };
    let (ok, out, _) = check_online(&setup.config("jira", changes)).await;
    assert!(!ok, "{out}");
    let lines = online_lines(&out);
    only_failing(&lines, "jira");
    assert!(line(&lines, "ok   jira:").contains("as Shipday Bot (712020:shipday-bot)"), "{out}");
    let failed = line(&lines, "FAIL jira:");
    assert!(
        failed.starts_with(
            "FAIL jira: project SHOP has no status `Dev Testng` (jira.columns.dev_testing), so no transition leads there"
        ) && failed.contains("Dev Testing"),
        "{failed}"
    );
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_fails_on_a_changed_host_key_and_on_a_dir_that_is_not_a_git_checkout() {
    let setup = Setup::start().await;
    // A key that is not the server's, pinned for its address.
    let other = setup.world.path().join("other_host_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "other", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    let line_text = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let wrong = setup.world.path().join("wrong_known_hosts");
    std::fs::write(&wrong, format!("[127.0.0.1]:{} {}", setup.sshd.port, line_text.trim())).unwrap();
    let changes = Changes { known_hosts: Some(wrong), ..Changes::default() };
    let (ok, out, _) = check_online(&setup.config("ssh-key", changes)).await;
    assert!(!ok, "{out}");
    let lines = online_lines(&out);
    only_failing(&lines, "ssh dev");
    let failed = line(&lines, "FAIL ssh dev:");
    assert!(failed.contains("has CHANGED") && failed.contains("Check the fingerprint"), "{failed}");

    let empty = tempfile::tempdir().unwrap();
    let changes = Changes { dev_dir: Some(empty.path().to_owned()), ..Changes::default() };
    let (ok, out, _) = check_online(&setup.config("ssh-dir", changes)).await;
    assert!(!ok, "{out}");
    let lines = online_lines(&out);
    only_failing(&lines, "ssh dev");
    let failed = line(&lines, "FAIL ssh dev:");
    let dir = empty.path().display().to_string();
    assert!(
        failed.contains("answers with the pinned host key")
            && failed.contains(&format!("but {dir} is not a git checkout"))
            && failed.contains("not a git repository")
            && failed.contains(&format!("clone the app there (`git clone URL {dir}`)")),
        "{failed}"
    );
}
