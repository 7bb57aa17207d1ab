//! The deploy path's kill loop (issue 13): the real binary against a real sshd and a real
//! Django project, deploying a branch with a migration (migrate, restart) and releasing it,
//! SIGKILLed at random points and started again each time. Shared by `tests/kill_loop.rs`
//! (CI) and `benches/kill_loop.rs` (200 kills).
//!
//! After every kill it checks, on the host and in the store as the kill left it:
//! - no step ran twice: every run of steps in the host-side log is its plan's order;
//! - no migration debt was lost: a branch migration the database has is recorded in the store
//!   (as a debt, or as the intent of the deploy that may have applied it);
//! - no step overlapped another: the host-side log alternates start and end.

use super::django::DjangoWorld;
use super::real_bot::{RealBot, host_lock_free, lines, logged_step, until};
use super::sshd::Sshd;
use std::path::Path;
use std::time::Duration;

/// What a loop counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// SIGKILLs sent.
    pub kills: usize,
    /// Steps (in the host-side log) that ran where their plan would not run them: a second time.
    pub double_steps: usize,
    /// Kills after which the database had a branch migration the store did not know of.
    pub lost_debts: usize,
    /// Steps that started while another was still running.
    pub overlapping_steps: usize,
    /// Steps that ran on the host, in all.
    pub steps_run: usize,
    /// Kills that hit while a step ran on the host.
    pub kills_during_a_step: usize,
    /// Whether the final `/release` left dev exactly as before (no branch migration, dev's code).
    pub clean_at_the_end: bool,
}

const PLAN: [&str; 5] = ["undo", "fetch", "checkout", "migrate", "restart gunicorn"];
const WAIT: Duration = Duration::from_secs(90);

/// Runs the loop with `kills` SIGKILLs; `seed` picks the kill points.
pub fn run(kills: usize, seed: u64) -> Counts {
    let world = DjangoWorld::new();
    let sshd = Sshd::start();
    let python = world.venv.join("bin/python").display().to_string();
    let log = world.path().join("steps.log");
    // The guard's python: logs the undo migrations (`migrate APP TARGET`) it runs as steps.
    let guard = world.path().join("guard-python");
    std::fs::write(
        &guard,
        format!(
            "#!/bin/sh\ncase \" $* \" in\n  *\" migrate \"*) echo \"start undo\" >> {log}; {python} \"$@\"; rc=$?; echo \"end undo $rc\" >> {log}; exit $rc;;\n  *) exec {python} \"$@\";;\nesac\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&guard, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let steps = [
        logged_step("fetch", &log, "git fetch --all --prune --quiet"),
        logged_step("checkout", &log, "git checkout --quiet --detach {{sha}}"),
        logged_step("migrate", &log, &format!("{python} manage.py migrate --noinput")),
        logged_step("restart gunicorn", &log, &world.restart_command()),
    ]
    .join("\n");
    let config = world.config_with_steps(&sshd, &sshd.pin(), &steps, &guard.display().to_string());
    let bot_log = world.path().join("bot.log");
    let state = world.path().join("state");
    let checkout = world.app();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut counts = Counts::default();

    for _ in 0..kills {
        let mut bot = RealBot::start(&config, "grace", &bot_log);
        for _ in 0..4 {
            bot.say("/deploy dev feature/discount");
            bot.say("/release dev");
        }
        let before = lines(&log).len();
        match rng.usize(0..=8) {
            // While the bot resolves the ref and reads the branch's migrations.
            0 => {
                bot.wait_for("the first command", WAIT, |p| p.contains("grace> /deploy"));
            }
            k => until(&format!("{k} more host-log lines"), WAIT, || lines(&log).len() >= before + k),
        }
        let during = lines(&log).last().is_some_and(|l| l.starts_with("start"));
        bot.kill();
        counts.kills += 1;
        if during {
            counts.kills_during_a_step += 1;
        }
        // A killed deploy's step runs on to its end; the host is quiet once it lets go of the
        // deploy lock.
        until("the host's deploy lock to be free", WAIT, || host_lock_free(&checkout));
        if debt_lost(&world, &state) {
            counts.lost_debts += 1;
        }
    }

    // Settle: start once more and release until dev is dev again.
    let mut bot = RealBot::start(&config, "grace", &bot_log);
    bot.say("/release dev");
    bot.say("/deploy dev dev");
    // The console reads a line only once the one before has finished, progress and all.
    bot.say("/status dev");
    bot.wait_for("the final deploy to end", WAIT, |p| p.contains("grace> /status dev"));
    until("the host's deploy lock to be free", WAIT, || host_lock_free(&checkout));
    bot.kill();
    counts.clean_at_the_end = world.db_migrations() == ["orders.0001_initial"]
        && !world.columns().contains(&"discount".to_owned())
        && git_head(&checkout) == world.tip("dev");

    let (double, overlapping, steps) = audit_host_log(&lines(&log));
    counts.double_steps = double;
    counts.overlapping_steps = overlapping;
    counts.steps_run = steps;
    counts
}

/// Whether the database has the branch's migration while the store (as the kill left it)
/// records no debt and no intent that names it.
fn debt_lost(world: &DjangoWorld, state: &Path) -> bool {
    let applied = world.db_migrations().iter().any(|m| m == "orders.0002_discount")
        || world.columns().contains(&"discount".to_owned());
    if !applied {
        return false;
    }
    let (store, _) = shipday::store::Store::open(state).unwrap();
    let names = |debt: &shipday::release::migrations::MigrationDebt| {
        debt.migrations.added.iter().any(|m| m.app == "orders" && m.name == "0002_discount")
    };
    let recorded = store.migration_debt("dev").unwrap().is_some_and(|d| names(&d))
        || store.deploy_intent("dev").unwrap().and_then(|i| i.debt).is_some_and(|d| names(&d));
    !recorded
}

fn git_head(dir: &Path) -> String {
    super::git(dir, &["rev-parse", "HEAD"])
}

/// Reads the host-side log: (steps run where their plan would not run them, steps started while
/// another ran, steps run).
pub fn audit_host_log(log: &[String]) -> (usize, usize, usize) {
    let mut double = 0;
    let mut overlapping = 0;
    let mut steps = 0;
    let mut open: Option<String> = None;
    // The position in PLAN of the last step of the current run.
    let mut position: Option<usize> = None;
    for line in log {
        if let Some(name) = line.strip_prefix("start ") {
            steps += 1;
            if open.is_some() {
                overlapping += 1;
            }
            open = Some(name.to_owned());
            let Some(at) = PLAN.iter().position(|p| *p == name) else { continue };
            // A run of steps starts with its plan's first step (an undo, or the fetch); every
            // other step comes after the one before it in the plan, or it ran again.
            if at >= 2 && position.is_none_or(|p| p >= at) {
                double += 1;
            }
            position = Some(at);
        } else if let Some(rest) = line.strip_prefix("end ") {
            let (name, code) = rest.rsplit_once(' ').unwrap_or((rest, "0"));
            if open.as_deref() == Some(name) {
                open = None;
            }
            if code != "0" {
                // A failed step ends its run.
                position = None;
            }
        }
    }
    (double, overlapping, steps)
}
