//! The migration guard with a real Django project served by gunicorn behind a real sshd:
//! personal branches on dev never leave migrations behind.

use testkit as common;

use common::django::DjangoWorld;
use common::sshd::Sshd;
use common::{Bot, refused};
use shipday::engine::{Announcement, ReplyBody};
use shipday::release::deploy::Outcome;

#[bounded::test]
async fn a_branch_with_a_migration_is_deployed_then_released_and_dev_is_exactly_as_before() {
    let world = DjangoWorld::new();
    let sshd = Sshd::start();
    let bot = Bot::start(&world.config(&sshd, &sshd.pin()));
    let before_columns = world.columns();
    assert_eq!(world.applied(), ["orders.0001_initial"]);

    let (reply, progress) = bot.say("grace", "/deploy dev feature/discount").await;
    let shown = bot.show(&reply);
    assert!(shown.contains("adds orders/0002_discount; it will be undone"), "{shown}");
    let done = &progress.last().unwrap().record;
    assert_eq!(done.outcome, Outcome::Succeeded, "{:#?}", done.steps);
    assert_eq!(world.applied(), ["orders.0001_initial", "orders.0002_discount"]);
    assert!(world.columns().contains(&"discount".to_owned()));
    assert!(world.served().contains("discount"), "{}", world.served());
    let (status, _) = bot.say("grace", "/status dev").await;
    let text = bot.show(&status);
    assert!(
        text.contains("branch-only migrations applied: orders/0002_discount (by Grace, from `feature/discount`)"),
        "{text}"
    );

    let (_, progress) = bot.say("grace", "/release dev").await;
    let done = &progress.last().unwrap().record;
    assert_eq!(done.outcome, Outcome::Succeeded, "{:#?}", done.steps);
    let names: Vec<&str> = done.steps.iter().map(|s| s.name.as_str()).collect();
    let undo = names.iter().position(|n| *n == "undo orders migrations (back to 0001_initial)").expect("undo step");
    let checkout = names.iter().position(|n| *n == "checkout").unwrap();
    assert!(undo < checkout, "undone while the branch was still checked out: {names:?}");
    assert_eq!(world.applied(), ["orders.0001_initial"]);
    assert_eq!(world.columns(), before_columns, "the schema is dev's again");
    assert_eq!(world.head(), world.tip("dev"));
    assert!(!world.served().contains("discount"), "gunicorn serves dev's code: {}", world.served());
    assert!(bot.app.store.migration_debt("dev").unwrap().is_none());
    assert!(bot.app.store.hold("dev").unwrap().is_none(), "the claim ended with the release");
}

#[bounded::test]
async fn an_irreversible_branch_is_flagged_and_its_release_stops_without_switching_code() {
    let world = DjangoWorld::new();
    let sshd = Sshd::start();
    let bot = Bot::start(&world.config(&sshd, &sshd.pin()));
    let (reply, _) = bot.say("grace", "/deploy dev feature/backfill").await;
    let text = refused(&reply);
    assert!(
        text.contains("orders/0002_backfill (RunPython without a reverse)")
            && text.contains("A lead can deploy it with --force"),
        "{text}"
    );
    assert_eq!(world.applied(), ["orders.0001_initial"], "nothing ran");

    let (reply, progress) = bot.say("ada", "/deploy dev feature/backfill --force").await;
    assert!(bot.show(&reply).contains("Cannot be undone automatically"), "{}", bot.show(&reply));
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    let branch_head = world.head();

    let mut heard = bot.app.engine.announcements();
    let (_, progress) = bot.say("ada", "/release dev").await;
    let done = &progress.last().unwrap().record;
    let Outcome::Failed { step, .. } = &done.outcome else { panic!("{:?}", done.outcome) };
    assert!(step.starts_with("undo orders migrations"), "{step}");
    assert!(done.steps.iter().all(|s| s.name != "checkout"), "no code switch");
    assert_eq!(world.head(), branch_head);
    assert_eq!(world.applied(), ["orders.0001_initial", "orders.0002_backfill"]);
    let hold = bot.app.store.hold("dev").unwrap().expect("the claim is kept");
    assert_eq!(hold.holder, "ada");
    let said = common::texts_so_far(&mut heard);
    let failure = said.iter().find(|t| t.contains("was NOT switched")).unwrap_or_else(|| panic!("{said:?}"));
    assert!(failure.contains("@{ada} still holds dev") && failure.contains("Then `/release dev`"), "{failure}");
    assert!(failure.contains("IrreversibleError") || failure.contains("exit code"), "{failure}");
    assert_undo_guidance(failure);
}

/// The guidance after a failed undo: the real ways out, `--fake` with its risk, and never the
/// command that just failed.
fn assert_undo_guidance(failure: &str) {
    assert!(failure.contains("manage.py migrate orders 0001_initial --fake`"), "{failure}");
    assert!(failure.contains("changes no table") && failure.contains("stays in the database"), "{failure}");
    assert!(failure.contains("reverse") && failure.contains("backup"), "{failure}");
    assert!(!failure.contains("0001_initial --noinput"), "not the command that just failed: {failure}");
}

/// Issue 13, point 7: after a lead's `/unlock`, nobody holds dev: the guidance neither says
/// someone still holds it nor sends anyone to `/release` it.
#[bounded::test]
async fn a_failed_undo_after_a_leads_unlock_matches_the_free_environment() {
    let world = DjangoWorld::new();
    let sshd = Sshd::start();
    let bot = Bot::start(&world.config(&sshd, &sshd.pin()));
    let (_, progress) = bot.say("ada", "/deploy dev feature/backfill --force").await;
    assert_eq!(progress.last().unwrap().record.outcome, Outcome::Succeeded);
    let (reply, _) = bot.say("ada", "/unlock dev").await;
    assert!(bot.show(&reply).contains("unlocked dev"), "{}", bot.show(&reply));

    let mut heard = bot.app.engine.announcements();
    let (_, progress) = bot.say("ada", "/deploy dev dev").await;
    assert!(
        matches!(&progress.last().unwrap().record.outcome, Outcome::Failed { step, .. } if step.starts_with("undo"))
    );
    let said = common::texts_so_far(&mut heard);
    let failure = said.iter().find(|t| t.contains("was NOT switched")).unwrap_or_else(|| panic!("{said:?}"));
    assert!(!failure.contains("still holds") && !failure.contains("/release dev"), "{failure}");
    assert!(failure.contains("Then `/deploy dev dev`"), "{failure}");
    assert_undo_guidance(failure);
}

#[bounded::test]
async fn a_branch_whose_migrations_conflict_with_devs_is_refused_without_force() {
    let world = DjangoWorld::new();
    world.add_migration_to_dev();
    let sshd = Sshd::start();
    let bot = Bot::start(&world.config(&sshd, &sshd.pin()));
    let (reply, progress) = bot.say("grace", "/deploy dev feature/discount").await;
    let text = refused(&reply);
    assert!(text.contains("both add migrations to orders (two leaf nodes)") && text.contains("--force"), "{text}");
    assert!(progress.is_empty());
    assert_eq!(world.applied(), ["orders.0001_initial"]);
    let (reply, _) = bot.say("grace", "/deploy dev feature/discount --dry-run").await;
    assert!(bot.show(&reply).contains("Conflicting migrations in orders"), "{}", bot.show(&reply));
}

#[bounded::test]
async fn an_expired_claim_is_released_the_same_safe_way() {
    let world = DjangoWorld::new();
    let sshd = Sshd::start();
    let bot = Bot::start(&world.config(&sshd, &sshd.pin()));
    bot.say("grace", "/deploy dev feature/discount").await;
    assert!(world.applied().contains(&"orders.0002_discount".to_owned()));
    let mut heard = bot.app.engine.announcements();
    bot.clock.advance(chrono::Duration::hours(9));
    bot.app.engine.tick().await;
    let record = loop {
        match heard.recv().await.unwrap() {
            Announcement::Deploy(update) if update.record.is_finished() => break update.record.clone(),
            _ => continue,
        }
    };
    assert_eq!(record.outcome, Outcome::Succeeded, "{:#?}", record.steps);
    assert!(record.steps[0].name.starts_with("undo orders"), "{:?}", record.steps[0].name);
    assert_eq!(world.applied(), ["orders.0001_initial"]);
    assert_eq!(world.head(), world.tip("dev"));
    assert!(bot.app.store.hold("dev").unwrap().is_none());
    let (status, _) = bot.say("grace", "/status dev").await;
    assert!(!bot.show(&status).contains("branch-only migrations"));
    assert!(matches!(status.body, ReplyBody::Status(_)));
}

/// The Django steps of `examples/shipday.toml`, as written there, run against the real shop
/// (its virtualenv at `.venv` in the checkout, as on a droplet): their `migrate` step applies a
/// branch's migration, and the guard undoes it on release. Only the two systemctl steps are
/// stand-ins, since the tests have no systemd.
#[bounded::test]
async fn the_example_configs_django_steps_migrate_forward_and_the_guard_undoes_on_release() {
    let world = DjangoWorld::new();
    std::os::unix::fs::symlink(&world.venv, world.app().join(".venv")).unwrap();
    let example: toml::Value =
        toml::from_str(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shipday.toml"))).unwrap();
    let dev = &example["environments"][0];
    assert_eq!(dev["name"].as_str(), Some("dev"));
    let quoted = |value: &toml::Value| value.to_string();
    let mut steps = Vec::new();
    for step in dev["steps"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        let run = match name {
            "restart gunicorn" | "reload nginx" => toml::Value::String(format!("echo {name}")),
            _ => step["run"].clone(),
        };
        steps.push(format!("  {{ name = {}, run = {} }},", quoted(&step["name"]), quoted(&run)));
    }
    let names: Vec<&str> = dev["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fetch", "checkout", "pip install", "migrate", "restart gunicorn", "reload nginx"]);
    let guard = &dev["migrations"];
    let config = format!(
        "state_dir = \"state\"\n[[people]]\nid = \"grace\"\nname = \"Grace\"\nroles = [\"developer\"]\n\n\
         [[environments]]\nname = \"dev\"\nbranch = \"dev\"\npersonal_branches = true\nstep_timeout = \"2m\"\n\
         migrations = {{ python = {}, manage = {}, settings = {} }}\ntransport = {{ kind = \"local\", dir = {} }}\nsteps = [\n{}\n]\n",
        quoted(&guard["python"]),
        quoted(&guard["manage"]),
        quoted(&guard["settings"]),
        quoted(&toml::Value::String(world.app().display().to_string())),
        steps.join("\n")
    );
    let path = world.path().join("example-dev.toml");
    std::fs::write(&path, config).unwrap();
    let bot = Bot::start(&path);

    let (_, progress) = bot.say("grace", "/deploy dev feature/discount").await;
    let done = &progress.last().unwrap().record;
    assert_eq!(done.outcome, Outcome::Succeeded, "{:#?}", done.steps);
    assert_eq!(world.applied(), ["orders.0001_initial", "orders.0002_discount"], "the migrate step applied it");

    let (_, progress) = bot.say("grace", "/release dev").await;
    let done = &progress.last().unwrap().record;
    assert_eq!(done.outcome, Outcome::Succeeded, "{:#?}", done.steps);
    assert_eq!(done.steps[0].name, "undo orders migrations (back to 0001_initial)");
    assert_eq!(world.applied(), ["orders.0001_initial"]);
    assert_eq!(world.head(), world.tip("dev"));
}
