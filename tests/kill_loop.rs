//! Issue 13's kill loop on the deploy path, in CI: at least 15 SIGKILLs of the real binary
//! while it deploys a branch with a migration and releases it (see `common::kill_loop`).

use testkit as common;

#[bounded::test]
fn fifteen_kills_on_the_deploy_path_lose_no_debt_and_run_no_step_twice_or_alongside_another() {
    let seed = std::env::var("KILL_LOOP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let counts = common::kill_loop::run(15, seed);
    println!("kill loop (seed {seed}): {counts:?}");
    assert_eq!(counts.kills, 15);
    assert!(counts.steps_run > 0, "{counts:?}");
    assert_eq!(counts.double_steps, 0, "seed {seed}: {counts:?}");
    assert_eq!(counts.lost_debts, 0, "seed {seed}: {counts:?}");
    assert_eq!(counts.overlapping_steps, 0, "seed {seed}: {counts:?}");
    assert!(counts.clean_at_the_end, "seed {seed}: {counts:?}");
}

#[bounded::test]
fn the_host_log_audit_counts_double_and_overlapping_steps() {
    let log = |text: &str| text.lines().map(String::from).collect::<Vec<_>>();
    let good = log(
        "start fetch\nend fetch 0\nstart checkout\nend checkout 0\nstart undo\nend undo 0\nstart fetch\nend fetch 0",
    );
    assert_eq!(common::kill_loop::audit_host_log(&good), (0, 0, 4));
    let twice = log("start fetch\nend fetch 0\nstart checkout\nend checkout 0\nstart checkout\nend checkout 0");
    assert_eq!(common::kill_loop::audit_host_log(&twice).0, 1);
    let overlap = log("start fetch\nstart fetch\nend fetch 0\nend fetch 0");
    assert_eq!(common::kill_loop::audit_host_log(&overlap).1, 1);
}
