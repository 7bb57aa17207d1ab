//! The CI gate end to end: the console adapter, the real sshd for dev, and the fake GitHub
//! serving commit statuses and check runs in GitHub's format. Dev requires `ci/test` (a commit
//! status) and `lint` (a check run) on the exact commit it deploys.

use testkit as common;

use common::fake_github::{FakeGitHub, OWNER, REPO};
use common::sshd::Sshd;
use common::{Bot, World, refused};
use shipday::engine::{Announcement, ReplyBody};
use shipday::release::approvals::RequestState;
use shipday::release::deploy::Outcome;
use shipday::release::gitref::Sha;
use shipday::webhook::github::GitHubEvent;

const STEPS: &str = r#"
  { name = "fetch", run = "git fetch --all --prune --quiet" },
  { name = "checkout", run = "git checkout --quiet --detach {{sha}}" },
  { name = "restart app", run = "echo restarted {{env}} $(git rev-parse --short HEAD) >> ../restarts.log" },"#;

const BUILD: &str = "https://ci.example.com/builds/7";

/// A bot whose dev runs over SSH and requires `ci/test` and `lint`, waiting up to 10 minutes.
struct Setup {
    world: World,
    _sshd: Sshd,
    github: FakeGitHub,
    bot: Bot,
}

impl Setup {
    async fn start() -> Self {
        let world = World::new();
        let sshd = Sshd::start();
        let github = FakeGitHub::start().await;
        let gate = "required_checks = [\"ci/test\", \"lint\"]\nci_wait = \"10m\"\nci_poll = \"1s\"";
        let path = world.ssh_config(&sshd, &sshd.pin(), STEPS, gate);
        std::fs::write(world.path().join("github-token"), common::fake_github::TOKEN).unwrap();
        let config = format!(
            "{}\n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"github-token\" }}\n",
            std::fs::read_to_string(&path).unwrap(),
            github.url
        );
        std::fs::write(&path, config).unwrap();
        let bot = Bot::start(&path);
        Self { world, _sshd: sshd, github, bot }
    }

    fn login(&self) -> String {
        self.world.tip("feature/login")
    }
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_refuses_the_deploy_naming_it_with_its_link_and_nothing_runs() {
    let s = Setup::start().await;
    let sha = s.login();
    s.github.set_status(&sha, "ci/test", "pending", Some(BUILD));
    s.github.set_status(&sha, "ci/test", "failure", Some(BUILD));
    s.github.add_check_run(&sha, "lint", "completed", Some("success"));
    let before = s.world.head("dev");
    let (reply, progress) = s.bot.say("grace", "/deploy dev feature/login").await;
    let text = refused(&reply);
    assert!(text.contains("`ci/test` failure") && text.contains(BUILD) && text.contains(&sha[..7]), "{text}");
    assert!(text.contains("--force \"reason\""), "says the way out: {text}");
    assert!(progress.is_empty());
    assert_eq!(s.world.head("dev"), before, "nothing ran on the host");
    assert!(s.world.restarts().is_empty());
    assert!(s.bot.app.store.hold("dev").unwrap().is_none(), "no claim was taken");
    assert!(s.github.check_reads(&sha) >= 2, "both the combined status and the check runs were read");
    // The environment is free again: a dry run, which the gate does not stop, goes through.
    let (dry, _) = s.bot.say("grace", "/deploy dev feature/login --dry-run").await;
    assert!(matches!(dry.body, ReplyBody::DryRun(_)), "{dry:?}");
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_checks_are_waited_for_and_the_deploy_starts_once_they_pass() {
    let s = Setup::start().await;
    let sha = s.login();
    s.github.set_status(&sha, "ci/test", "pending", Some(BUILD));
    let lint = s.github.add_check_run(&sha, "lint", "in_progress", None);
    let mut rx = s.bot.app.engine.announcements();
    let before = s.world.head("dev");
    let drive = async {
        let waiting =
            common::announced(&mut rx, "the deploy to wait for CI", common::text_containing("waits for CI")).await;
        assert!(waiting.contains("ci/test, lint") && waiting.contains("@{grace}"), "{waiting}");
        assert_eq!(s.world.head("dev"), before, "nothing runs while the checks run");
        // Meanwhile dev is busy: another deploy is refused rather than racing this one.
        let (other, _) = s.bot.say("ada", "/deploy dev dev").await;
        assert!(matches!(other.body, ReplyBody::Refused(_)), "{other:?}");
        s.github.complete_check_run(lint, "success");
        s.github.set_status(&sha, "ci/test", "success", Some(BUILD));
    };
    let ((reply, progress), ()) = tokio::join!(s.bot.say("grace", "/deploy dev feature/login"), drive);
    let ReplyBody::Deploy(accepted) = &reply.body else { panic!("{}", s.bot.show(&reply)) };
    assert_eq!(accepted.sha.as_str(), sha);
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    assert_eq!(s.world.head("dev"), sha, "deployed once the checks passed");
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_still_pending_past_the_limit_refuse_naming_them() {
    let s = Setup::start().await;
    let sha = s.login();
    s.github.set_status(&sha, "ci/test", "success", Some(BUILD));
    s.github.add_check_run(&sha, "lint", "queued", None);
    let mut rx = s.bot.app.engine.announcements();
    let before = s.world.head("dev");
    let drive = async {
        common::announced(&mut rx, "the deploy to wait for CI", common::text_containing("waits for CI")).await;
        // Ten minutes pass on the bot's clock with lint still queued.
        s.bot.clock.advance(chrono::Duration::minutes(11));
    };
    let ((reply, progress), ()) = tokio::join!(s.bot.say("grace", "/deploy dev feature/login"), drive);
    let text = refused(&reply);
    assert!(text.contains("still not done after 10m") && text.contains("waiting for lint"), "{text}");
    assert!(!text.contains("ci/test"), "only what is still pending is named: {text}");
    assert!(progress.is_empty());
    assert_eq!(s.world.head("dev"), before);
    assert!(s.world.restarts().is_empty());
    assert!(s.bot.app.store.hold("dev").unwrap().is_none());
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leads_force_with_a_reason_deploys_over_a_failed_check_audited_and_announced() {
    let s = Setup::start().await;
    let sha = s.login();
    s.github.set_status(&sha, "ci/test", "failure", Some(BUILD));
    let before = s.world.head("dev");
    // A developer cannot.
    let (reply, progress) = s.bot.say("grace", "/deploy dev feature/login --force \"CI is flaky\"").await;
    assert!(refused(&reply).contains("Only a lead can deploy over the CI gate"), "{reply:?}");
    assert!(progress.is_empty());
    assert_eq!(s.world.head("dev"), before);
    assert_eq!(s.github.check_reads(&sha), 0, "refused before anything was asked");
    // A lead can, with a reason.
    let mut rx = s.bot.app.engine.announcements();
    let (reply, progress) =
        s.bot.say("ada", "/deploy dev feature/login --force \"CI runner is down, tested by hand\"").await;
    let ReplyBody::Deploy(accepted) = &reply.body else { panic!("{}", s.bot.show(&reply)) };
    assert_eq!(accepted.sha.as_str(), sha);
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    assert_eq!(s.world.head("dev"), sha);
    let announced =
        common::announced(&mut rx, "the override announcement", common::text_containing("CI gate overridden")).await;
    assert!(announced.contains("@{ada}") && announced.contains("CI runner is down, tested by hand"), "{announced}");
    let audit = s.bot.app.store.audit_tail(20).unwrap();
    assert!(
        audit.iter().any(|e| e.decision.contains("--force over the CI gate: CI runner is down, tested by hand")),
        "{audit:#?}"
    );
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merge_auto_deploy_obeys_the_gate() {
    let s = Setup::start().await;
    let mut rx = s.bot.app.engine.announcements();
    let before = s.world.head("dev");
    let merged = common::real_merge(
        s.world.path(),
        &s.world.tip("dev"),
        &s.world.tip("feature/login"),
        "Merge pull request #4 from grace/feature/login",
    );
    s.github.set_status(&merged, "ci/test", "success", Some(BUILD));
    s.github.add_check_run(&merged, "lint", "completed", Some("timed_out"));
    s.bot
        .app
        .engine
        .github_event(GitHubEvent::Merged {
            base: "dev".into(),
            merge_sha: Sha::parse(&merged).unwrap(),
            number: 4,
            title: "Log in with email".into(),
            body: String::new(),
            author: "grace-gh".into(),
            head_ref: "feature/login".into(),
        })
        .await;
    let said =
        common::announced(&mut rx, "the refused auto-deploy", common::text_containing("did not auto-deploy")).await;
    assert!(said.contains("`lint` timed_out") && said.contains("/runs/"), "{said}");
    assert_eq!(s.world.head("dev"), before, "the merge was not deployed");
    assert!(s.bot.app.store.history(Some("dev"), 10).unwrap().is_empty());
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_refuses_a_promotion_and_a_leads_force_promotes_it_audited_and_announced() {
    let world = World::new();
    let github = FakeGitHub::start().await;
    common::mirror_origin(&world, &github);
    std::fs::write(world.path().join("github-token"), common::fake_github::TOKEN).unwrap();
    let config = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("name = \"staging\"\n", "name = \"staging\"\nrequired_checks = \"all\"\nci_poll = \"1s\"\n");
    let config = format!(
        "{config}\n[github]\napi_base_url = \"{}\"\nowner = \"{OWNER}\"\nrepo = \"{REPO}\"\ntoken = {{ file = \"github-token\" }}\n",
        github.url
    );
    let path = world.path().join("gated.toml");
    std::fs::write(&path, config).unwrap();
    let bot = Bot::start(&path);
    let (reply, _) = bot.say("grace", "/deploy dev dev").await;
    let ReplyBody::Deploy(live) = &reply.body else { panic!("{}", bot.show(&reply)) };
    let sha = live.sha.as_str().to_owned();
    github.set_status(&sha, "ci/test", "success", Some(BUILD));
    github.add_check_run(&sha, "e2e", "completed", Some("failure"));
    let staging_before = world.head("staging");

    let (reply, _) = bot.say("ada", "/promote dev staging").await;
    let text = refused(&reply);
    assert!(text.contains("`e2e` failure") && text.contains("/runs/") && text.contains("staging"), "{text}");
    let (reply, _) = bot.say("grace", "/promote dev staging --force \"trust me\"").await;
    assert!(refused(&reply).contains("Only a lead can promote over the CI gate"), "{reply:?}");
    assert!(bot.app.store.open_promotions().unwrap().is_empty());
    assert_eq!(world.head("staging"), staging_before, "nothing was promoted");

    let mut rx = bot.app.engine.announcements();
    let (reply, _) = bot.say("ada", "/promote dev staging --force \"e2e is broken on main, fixed next\"").await;
    assert!(!matches!(reply.body, ReplyBody::Refused(_)), "{}", bot.show(&reply));
    let announced =
        common::announced(&mut rx, "the override announcement", common::text_containing("CI gate overridden")).await;
    assert!(announced.contains("@{ada}") && announced.contains("e2e is broken on main, fixed next"), "{announced}");
    let done = common::announced(&mut rx, "the promotion to end", |a| match a {
        Announcement::Promotion(v)
            if matches!(v.request.state, RequestState::Done { .. } | RequestState::Failed { .. }) =>
        {
            Some(v.request.clone())
        }
        _ => None,
    })
    .await;
    assert!(matches!(done.state, RequestState::Done { .. }), "{:?}", done.state);
    assert_eq!(world.head("staging"), github.branch("staging").unwrap().as_str());
    let audit = bot.app.store.audit_tail(50).unwrap();
    assert!(
        audit.iter().any(|e| e.decision.contains("--force over the CI gate: e2e is broken on main, fixed next")),
        "{audit:#?}"
    );
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_deploy_obeys_the_gate() {
    let s = Setup::start().await;
    let dev = s.world.tip("dev");
    s.github.set_status(&dev, "ci/test", "error", Some(BUILD));
    s.github.add_check_run(&dev, "lint", "completed", Some("success"));
    let before = s.world.head("dev");
    let mut rx = s.bot.app.engine.announcements();
    // Sunday 29 Nov 2026, 20:00 EAT: dev's slot.
    let slot = chrono::TimeZone::with_ymd_and_hms(&chrono_tz::Africa::Nairobi, 2026, 11, 29, 20, 0, 0)
        .unwrap()
        .with_timezone(&chrono::Utc);
    s.bot.clock.set(slot - chrono::Duration::minutes(1));
    let scheduler = shipday::scheduler::Scheduler::new(
        s.bot.app.config.calendar.clone(),
        s.bot.app.engine.clone(),
        std::sync::Arc::new(s.bot.clock.clone()),
    );
    scheduler.tick().await.unwrap();
    s.bot.clock.set(slot);
    scheduler.tick().await.unwrap();
    let said =
        common::announced(&mut rx, "the refused slot deploy", common::text_containing("scheduled deploy did not run"))
            .await;
    assert!(said.contains("`ci/test` error") && said.contains(BUILD), "{said}");
    assert_eq!(s.world.head("dev"), before);
    assert!(s.world.restarts().is_empty());
}
