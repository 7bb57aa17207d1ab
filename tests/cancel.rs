//! `/cancel` and waiting for a free environment, end to end: the console adapter, the real
//! sshd, real processes on the "host" (this machine), a real Django project for the migration
//! guard.

use testkit as common;

use common::django::DjangoWorld;
use common::sshd::Sshd;
use common::wait::{PATIENCE, eventually};
use common::{Bot, World, refused};
use shipday::engine::{ProgressUpdate, ReplyBody};
use shipday::release::deploy::{DeployRecord, Outcome};
use std::path::Path;
use tokio::sync::mpsc;

/// Process ids whose command line contains `pattern`, as `pgrep -f` sees them.
fn pgrep(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep").args(["-f", pattern]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// Follows a deploy's progress to its end.
async fn last_record(mut progress: mpsc::UnboundedReceiver<ProgressUpdate>) -> DeployRecord {
    common::wait::bounded(common::SAY_TIMEOUT, "the deploy to end", async {
        let mut last = None;
        while let Some(update) = progress.recv().await {
            last = Some(update.record);
        }
        last.expect("the deploy reported progress")
    })
    .await
}

fn marker(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_running_steps_process_group_on_the_host_and_records_cancelled() {
    let world = World::new();
    let sshd = Sshd::start();
    let started = marker(world.path(), "long-started");
    let after = marker(world.path(), "after-ran");
    // The long step leaves a grandchild in the background too: the whole group must go. Its
    // limit (10 minutes) is past the test's patience: only the cancel ends it in time.
    let steps = format!(
        "  {{ name = \"checkout\", run = \"git checkout --quiet --detach {{{{sha}}}}\" }},\n  \
         {{ name = \"long\", run = \"sleep 3018 & touch '{started}'; sleep 3017\", timeout = \"10m\" }},\n  \
         {{ name = \"after\", run = \"touch '{after}'\" }},"
    );
    let config = world.ssh_config(&sshd, &sshd.pin(), &steps, "");
    let bot = Bot::start(&config);
    let before = world.head("dev");

    let (reply, progress) = bot.send("grace", "/deploy dev dev").await;
    assert!(matches!(reply.body, ReplyBody::Deploy(_)), "{}", bot.show(&reply));
    eventually(PATIENCE, "the long step to start on the host", || Path::new(&started).exists()).await;
    assert!(!pgrep("sleep 3017").is_empty() && !pgrep("sleep 3018").is_empty(), "the step runs");

    // Someone who neither asked for it nor leads cannot cancel it.
    let (reply, _) = bot.say("linus", "/cancel dev").await;
    let text = refused(&reply);
    assert!(text.contains("Only Grace (who started deploy #") && text.contains("or a lead can cancel it"), "{text}");
    assert!(!pgrep("sleep 3017").is_empty(), "a refused cancel changes nothing on the host");

    let (reply, _) = bot.say("grace", "/cancel dev").await;
    let text = bot.show(&reply);
    assert!(text.contains("Grace is cancelling deploy #") && text.contains("stopping \"long\" on the host"), "{text}");

    let done = last_record(progress).await;
    let Outcome::Cancelled { by, step, stopped_running, head } = &done.outcome else { panic!("{:?}", done.outcome) };
    assert_eq!((by.as_str(), step.as_str(), *stopped_running), ("Grace", "long", true));
    assert_eq!(head.clone(), Some(Ok(world.head("dev"))), "HEAD as read on the host at the end");
    eventually(PATIENCE, "no process of the step to be left on the host", || {
        pgrep("sleep 3017").is_empty() && pgrep("sleep 3018").is_empty()
    })
    .await;
    assert!(!Path::new(&after).exists(), "no step ran after the cancelled one");
    assert_eq!(done.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["checkout", "long"]);
    let words = shipday::chat::text::outcome_line(&done, done.finished_at.unwrap());
    assert!(
        words.contains("Grace stopped \"long\" on the host (its whole process group)")
            && words.contains("steps that ran: checkout")
            && words.contains("host HEAD now:"),
        "{words}"
    );
    let _ = before;

    // Durable, and shown where deploys are shown.
    let stored = bot.app.store.deploy(done.id).unwrap().unwrap();
    assert!(matches!(stored.outcome, Outcome::Cancelled { .. }), "{:?}", stored.outcome);
    let (history, _) = bot.say("grace", "/history dev").await;
    assert!(bot.show(&history).contains("cancelled by Grace at \"long\""), "{}", bot.show(&history));
    let (status, _) = bot.say("grace", "/status dev").await;
    assert!(bot.show(&status).contains("was cancelled"), "{}", bot.show(&status));
    assert!(bot.app.store.active("dev").unwrap().is_none(), "dev is free again");

    // Nothing runs any more: a second cancel says so.
    let (reply, _) = bot.say("ada", "/cancel dev").await;
    assert!(refused(&reply).contains("No deploy is running on dev"), "{}", refused(&reply));
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_cancels_during_a_real_migration_and_the_next_deploy_undoes_it_first() {
    let world = DjangoWorld::new();
    let sshd = Sshd::start();
    let python = common::django::venv().join("bin/python").display().to_string();
    // The branch's migrate step migrates, then stays (10 minutes, past the test's patience)
    // until cancelled; the same step of dev's own deploy only migrates.
    let migrated = marker(world.path(), "migrated");
    let steps = format!(
        "  {{ name = \"fetch\", run = \"git fetch --all --prune --quiet\" }},\n  \
         {{ name = \"checkout\", run = \"git checkout --quiet --detach {{{{sha}}}}\" }},\n  \
         {{ name = \"migrate\", run = '{python} manage.py migrate --noinput && if [ {{{{ref}}}} = feature/discount ]; then touch {migrated}; sleep 3021; fi', timeout = \"10m\" }},\n  \
         {{ name = \"restart gunicorn\", run = '{}' }},",
        world.restart_command()
    );
    let config = world.config_with_steps(&sshd, &sshd.pin(), &steps, &python);
    let bot = Bot::start(&config);
    let before_columns = world.columns();

    let (reply, progress) = bot.send("grace", "/deploy dev feature/discount").await;
    assert!(matches!(reply.body, ReplyBody::Deploy(_)), "{}", bot.show(&reply));
    eventually(PATIENCE, "the migrate step to have migrated", || Path::new(&migrated).exists()).await;
    let (reply, _) = bot.say("ada", "/cancel dev").await;
    assert!(bot.show(&reply).contains("stopping \"migrate\""), "{}", bot.show(&reply));
    let done = last_record(progress).await;
    assert!(matches!(&done.outcome, Outcome::Cancelled { step, .. } if step == "migrate"), "{:?}", done.outcome);
    eventually(PATIENCE, "the migrate step to be gone", || pgrep("sleep 3021").is_empty()).await;
    assert_eq!(world.applied(), ["orders.0001_initial", "orders.0002_discount"]);
    let debt = bot.app.store.migration_debt("dev").unwrap().expect("the branch's migration is a debt");
    assert_eq!(debt.git_ref, "feature/discount");
    assert!(done.steps.iter().all(|s| s.name != "restart gunicorn"), "no step after the cancelled one");

    // The next deploy (the claim's owner gives dev back) undoes the migration first.
    let (_, progress) = bot.say("grace", "/release dev").await;
    let released = &progress.last().unwrap().record;
    assert_eq!(released.outcome, Outcome::Succeeded, "{:#?}", released.steps);
    let names: Vec<&str> = released.steps.iter().map(|s| s.name.as_str()).collect();
    assert!(names.first().is_some_and(|n| n.starts_with("undo orders migrations")), "{names:?}");
    assert_eq!(world.applied(), ["orders.0001_initial"]);
    assert_eq!(world.columns(), before_columns);
    assert!(bot.app.store.migration_debt("dev").unwrap().is_none());
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_deploy_says_how_to_wait_and_a_waiter_is_told_once_when_dev_is_free() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let mut heard = bot.app.engine.announcements();
    let (reply, _) = bot.say("ada", "/lock dev release testing").await;
    assert!(bot.show(&reply).contains("🔒"), "{}", bot.show(&reply));

    let (reply, _) = bot.say("grace", "/deploy dev dev").await;
    let text = refused(&reply);
    assert!(text.contains("`/deploy dev dev --notify`") && text.contains("`/deploy dev dev --when-free`"), "{text}");

    let (reply, _) = bot.say("grace", "/deploy dev dev --notify").await;
    let text = bot.show(&reply);
    assert!(text.contains("I'll tell you when dev is free"), "{text}");
    let (status, _) = bot.say("linus", "/status dev").await;
    assert!(bot.show(&status).contains("waiting for dev to be free: Grace to be told"), "{}", bot.show(&status));

    // Durable: a restart keeps the wait.
    drop(bot);
    let bot = Bot::restart(&world.config_path()).await;
    let mut heard_after = bot.app.engine.announcements();
    drop(common::texts_so_far(&mut heard));
    let (reply, _) = bot.say("ada", "/unlock dev").await;
    assert!(bot.show(&reply).contains("unlocked dev"), "{}", bot.show(&reply));
    let said = common::wait::eventually_some(PATIENCE, "Grace to be told", || {
        common::texts_so_far(&mut heard_after).into_iter().find(|t| t.contains("@{grace}"))
    })
    .await;
    assert!(said.contains("dev is free now"), "{said}");
    assert!(bot.app.store.waiters("dev").unwrap().is_empty(), "told once: the wait is over");
    // Another lock and unlock tell nobody again.
    bot.say("ada", "/lock dev again").await;
    bot.say("ada", "/unlock dev").await;
    assert!(common::texts_so_far(&mut heard_after).iter().all(|t| !t.contains("@{grace}")), "told only once");
    let (status, _) = bot.say("linus", "/status dev").await;
    assert!(!bot.show(&status).contains("waiting for dev"), "{}", bot.show(&status));
}

#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_when_free_deploy_starts_once_the_lock_is_lifted_and_cancel_ends_a_wait() {
    let world = World::new();
    let bot = Bot::start(&world.config_path());
    let mut heard = bot.app.engine.announcements();
    bot.say("ada", "/lock dev hotfix in progress").await;

    let (reply, progress) = bot.say("grace", "/deploy dev feature/login --when-free").await;
    let text = bot.show(&reply);
    assert!(text.contains("I'll deploy `feature/login` to dev for you as soon as it is free"), "{text}");
    assert!(progress.is_empty(), "nothing deployed yet");
    let (reply, _) = bot.say("linus", "/deploy dev dev --when-free").await;
    assert!(bot.show(&reply).contains("(1 waiting before you)"), "{}", bot.show(&reply));
    let (status, _) = bot.say("linus", "/status dev").await;
    let shown = bot.show(&status);
    assert!(
        shown.contains("Grace deploys `feature/login` when free") && shown.contains("Linus deploys `dev`"),
        "{shown}"
    );
    // Linus changes his mind: /cancel with nothing running ends his wait.
    let (reply, _) = bot.say("linus", "/cancel dev").await;
    assert!(bot.show(&reply).contains("You no longer wait for dev"), "{}", bot.show(&reply));

    bot.say("ada", "/unlock dev").await;
    let tip = world.tip("feature/login");
    eventually(PATIENCE, "Grace's queued deploy to run", || {
        bot.app.store.last_ok("dev").unwrap().is_some_and(|d| d.sha.as_str() == tip)
    })
    .await;
    assert_eq!(world.head("dev"), tip);
    let deployed = bot.app.store.last_ok("dev").unwrap().unwrap();
    assert_eq!(deployed.requested_by, "grace", "it ran as Grace, with her permissions");
    let said = common::texts_so_far(&mut heard);
    assert!(said.iter().any(|t| t.contains("@{grace} dev is free: deploying `feature/login`")), "{said:?}");
    // On the console there is no direct message: she is told how it ended by a mention.
    let told = |t: &String| t.contains("@{grace} your `--when-free` deploy");
    let mut earlier = said.iter().filter(|t| told(t)).cloned();
    let ended = match earlier.next() {
        Some(ended) => ended,
        None => {
            common::wait::eventually_some(PATIENCE, "Grace to be told how her deploy ended", || {
                common::texts_so_far(&mut heard).into_iter().find(told)
            })
            .await
        }
    };
    assert!(ended.contains(&format!("of `feature/login` to dev succeeded: dev runs {}", &tip[..7])), "{ended}");
    assert!(bot.app.store.waiters("dev").unwrap().is_empty());
    assert_eq!(bot.app.store.hold("dev").unwrap().map(|h| h.holder), Some("grace".into()), "her claim");
}
