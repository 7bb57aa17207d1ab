//! Issue 13, deploy side: what Shipday decided survives a SIGKILL of the real binary, and what
//! it did on a host happens once. Real sshd, real git, a real Django project.

use testkit as common;

use common::django::DjangoWorld;
use common::real_bot::{RealBot, host_lock_free, lines, logged_step, until};
use common::sshd::Sshd;
use common::{Bot, Gate, World, refused};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Point 1: SIGKILL after `migrate` ran (while the restart step waits), restart, deploy other
/// code: the branch's migration is undone first, because the debt was recorded before the
/// steps ran.
#[bounded::test]
fn a_deploy_killed_after_migrate_leaves_its_migration_debt_and_the_next_deploy_undoes_it_first() {
    let world = DjangoWorld::new();
    let sshd = Sshd::start();
    let python = world.venv.join("bin/python").display().to_string();
    let log = world.path().join("steps.log");
    let go = Gate::new(world.path(), "go");
    let restart = format!("{}; {}", go.shell(), world.restart_command());
    let steps = [
        logged_step("fetch", &log, "git fetch --all --prune --quiet"),
        logged_step("checkout", &log, "git checkout --quiet --detach {{sha}}"),
        logged_step("migrate", &log, &format!("{python} manage.py migrate --noinput")),
        logged_step("restart gunicorn", &log, &restart),
    ]
    .join("\n");
    let config = world.config_with_steps(&sshd, &sshd.pin(), &steps, &python);
    let bot_log = world.path().join("bot.log");

    let mut bot = RealBot::start(&config, "grace", &bot_log);
    bot.say("/deploy dev feature/discount");
    until("the restart step to start", WAIT, || lines(&log).iter().any(|l| l == "start restart gunicorn"));
    assert_eq!(world.applied(), ["orders.0001_initial", "orders.0002_discount"], "migrate ran");
    bot.kill();
    // The killed step finishes on its own on the host.
    go.open_blocking();
    until("the old restart step to end", WAIT, || lines(&log).iter().any(|l| l.starts_with("end restart")));

    let mut bot = RealBot::start(&config, "grace", &bot_log);
    bot.wait_for("the interrupted notice", WAIT, |p| p.contains("Shipday stopped while deploy #1"));
    bot.say("/deploy dev dev");
    let printed = bot.wait_for("the deploy of dev to end", WAIT, |p| p.contains("Deploy #2 of `dev` to dev succeeded"));
    assert_eq!(world.applied(), ["orders.0001_initial"], "the branch's migration was undone:\n{printed}");
    assert!(!world.columns().contains(&"discount".to_owned()), "the schema is dev's again");
    assert_eq!(world.head(), world.tip("dev"), "{printed}");
    let undo = printed.find("undo orders migrations (back to 0001_initial)").expect(&printed);
    let checkout = printed.rfind("checkout").expect(&printed);
    assert!(undo < checkout, "undone before the checkout:\n{printed}");
}

/// Point 2: SIGKILL during a step that waits on the host; after a restart, no step of a new
/// deploy runs while the old step lives, and `/status` says why.
#[bounded::test]
fn an_interrupted_environment_runs_nothing_new_while_the_killed_step_still_runs() {
    let world = World::new();
    let sshd = Sshd::start();
    let log = world.path().join("steps.log");
    let go = Gate::new(world.path(), "go");
    let steps = [
        logged_step("checkout", &log, "git checkout --quiet --detach {{sha}}"),
        logged_step("wait", &log, &go.shell()),
    ]
    .join("\n");
    let config = world.ssh_config(&sshd, &sshd.pin(), &steps, "");
    let bot_log = world.path().join("bot.log");

    let mut bot = RealBot::start(&config, "ada", &bot_log);
    bot.say("/deploy dev dev");
    until("the waiting step to start", WAIT, || lines(&log).iter().any(|l| l == "start wait"));
    bot.kill();

    let mut bot = RealBot::start(&config, "ada", &bot_log);
    bot.say("/status dev");
    bot.say("/deploy dev dev");
    let printed = bot.wait_for("the refusal", WAIT, |p| p.contains("still running on dev's host"));
    assert!(printed.contains("⚠️ interrupted: deploy #1 of `dev` (by Ada)"), "/status explains the hold:\n{printed}");
    bot.say("/unlock dev");
    let printed = bot.wait_for("the forced clear", WAIT, |p| p.contains("cleared dev's interrupted hold"));
    assert!(printed.contains("deploy #1 of `dev` by Ada"), "{printed}");
    assert_eq!(lines(&log).iter().filter(|l| l.starts_with("start")).count(), 2, "{:?}", lines(&log));
    assert!(!host_lock_free(&world.path().join("envs/dev")), "the old step still runs");

    go.open_blocking();
    until("the old step to end", WAIT, || lines(&log).iter().any(|l| l.starts_with("end wait")));
    bot.say("/deploy dev dev");
    bot.wait_for("the second deploy to end", WAIT, |p| p.contains("Deploy #2 of `dev` to dev succeeded"));
    until("its steps in the host log", WAIT, || lines(&log).len() == 8);
    let names: Vec<String> =
        lines(&log).iter().map(|l| l.rsplit_once(' ').map_or(l.clone(), |(a, _)| a.to_owned())).collect();
    assert_eq!(
        lines(&log).iter().map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>(),
        [
            "start checkout",
            "end checkout",
            "start wait",
            "end wait",
            "start checkout",
            "end checkout",
            "start wait",
            "end wait"
        ],
        "no step overlapped another: {names:?}"
    );
}

/// Point 3: with a store that cannot flush (a full disk), a deploy is refused with the truth
/// and nothing runs on the host; a running deploy stops at the next step boundary.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_record_starts_nothing_and_stops_a_running_deploy_at_a_step_boundary() {
    let world = World::new();
    let log = world.path().join("steps.log");
    let go = Gate::new(world.path(), "go");
    let steps = [
        logged_step("checkout", &log, "git checkout --quiet --detach {{sha}}"),
        logged_step("wait", &log, &go.shell()),
        logged_step("after", &log, "true"),
    ]
    .join("\n");
    let bot = Bot::start(&world.config_with_dev_steps(&steps));
    let head = world.head("dev");

    bot.app.store.fail_flushes(true);
    let (reply, progress) = bot.say("ada", "/deploy dev dev").await;
    let text = refused(&reply);
    assert!(text.contains("did nothing") || text.contains("did not start it"), "{text}");
    assert!(progress.is_empty());
    assert!(lines(&log).is_empty(), "nothing ran on the host: {:?}", lines(&log));
    assert_eq!(world.head("dev"), head);
    let (reply, _) = bot.say("ada", "/lock dev release prep").await;
    assert!(refused(&reply).contains("did nothing"), "{}", refused(&reply));

    bot.app.store.fail_flushes(false);
    let (reply, mut updates) = bot.send("ada", "/deploy dev dev").await;
    assert!(matches!(reply.body, shipday::engine::ReplyBody::Deploy(_)), "{reply:?}");
    until("the waiting step to start", WAIT, || lines(&log).iter().any(|l| l == "start wait"));
    bot.app.store.fail_flushes(true);
    go.open_blocking();
    let mut last = None;
    while let Some(update) = updates.recv().await {
        last = Some(update.record);
    }
    let record = last.unwrap();
    let shipday::release::deploy::Outcome::Failed { step, reason, .. } = &record.outcome else {
        panic!("{:?}", record.outcome)
    };
    assert_eq!(step, "after");
    assert!(reason.contains("can no longer write to its store"), "{reason}");
    assert!(!lines(&log).iter().any(|l| l.contains("after")), "the next step never ran: {:?}", lines(&log));
    assert!(lines(&log).iter().any(|l| l.starts_with("end wait")), "the running step ended on its own");
}

/// Point 6: after a deploy that failed at restart with its code checked out, `/status` says
/// what the host runs (read at the end of that deploy, and labelled so), apart from the last
/// successful deploy.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_after_a_deploy_that_failed_after_checkout_shows_what_the_host_runs() {
    let world = World::new();
    let broken = world.path().join("envs/broken");
    let steps = format!(
        "  {{ name = \"checkout\", run = \"git checkout --quiet --detach {{{{sha}}}}\" }},\n  {{ name = \"restart\", run = \"test ! -f {}\" }},",
        broken.display()
    );
    let bot = Bot::start(&world.config_with_dev_steps(&steps));
    let (_, progress) = bot.say("ada", "/deploy dev dev").await;
    assert!(progress.last().unwrap().record.outcome == shipday::release::deploy::Outcome::Succeeded);
    let good = world.tip("dev");
    std::fs::write(&broken, "").unwrap();
    let (_, progress) = bot.say("ada", "/deploy dev feature/login").await;
    let record = &progress.last().unwrap().record;
    assert!(matches!(&record.outcome, shipday::release::deploy::Outcome::Failed { step, .. } if step == "restart"));
    let runs = world.tip("feature/login");
    assert_eq!(world.head("dev"), runs, "the failed deploy's code is checked out");

    let (status, _) = bot.say("ada", "/status dev").await;
    let text = bot.show(&status);
    assert!(text.contains(&format!("last successful deploy: `dev` at {}", &good[..8])), "{text}");
    assert!(
        text.contains(&format!("host runs: {}", &runs[..8]))
            && text.contains("after failed deploy #2 of `feature/login`"),
        "{text}"
    );
    assert!(!text.contains("as deployed"), "{text}");
}

/// The host's deploy lock lives in the checkout's `.git`: where there is none, the deploy is
/// refused saying so, not with "not a branch".
#[bounded::test]
async fn a_dir_without_a_git_directory_is_refused_naming_the_deploy_lock() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    std::fs::rename(world.path().join("envs/dev/.git"), world.path().join("envs/dev-git")).unwrap();
    let (reply, progress) = bot.say("ada", "/deploy dev dev").await;
    let text = refused(&reply);
    assert!(text.contains("cannot take its deploy lock") && text.contains(".git/shipday.lock"), "{text}");
    assert!(progress.is_empty());
}
