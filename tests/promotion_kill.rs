//! Issue 13, points 4, 8 and the kill loop on the promotion path: the real binary, killed at
//! each crash point and at random moments of approve → merge → deploy, restarted each time.
//! See `common/promotion_kill.rs` for the invariants; `cargo bench --bench promotion_kill` runs 200
//! rounds.

use testkit as common;

use common::promotion_kill::{Counts, Harness, Kill, Rng, RoundEnd, plan};
use std::time::Duration;

/// Point 4: killed after the deploy stage is recorded and the deploy started, before the
/// request noted the deploy's id. After the restart the request adopts that deploy (now
/// interrupted) instead of deploying again; point 8: its own message is edited to a stated end.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_once_the_deploy_started_it_is_not_deployed_again_and_its_message_says_what_to_do() {
    let harness = Harness::new(env!("CARGO_BIN_EXE_shipday"));
    let mut counts = Counts::default();
    let end = harness.round(Kill::At("promotion-deploy-started"), &mut counts).await.unwrap();
    assert!(counts.clean(), "{}", counts.line());
    assert_ne!(end, RoundEnd::Stuck, "{}", counts.line());
}

/// Killed with the deploy stage recorded but not started: the restart starts it, once.
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_deploy_started_it_resumes_and_ships_once() {
    let harness = Harness::new(env!("CARGO_BIN_EXE_shipday"));
    let mut counts = Counts::default();
    let end = harness.round(Kill::At("promotion-deploying"), &mut counts).await.unwrap();
    assert!(counts.clean(), "{}", counts.line());
    assert_eq!(end, RoundEnd::Shipped, "{}", counts.line());
}

/// At least 15 kills: each crash point in turn, and random moments (some killed twice).
#[bounded::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotions_survive_kills_at_every_crash_point_and_at_random_moments() {
    let harness = Harness::new(env!("CARGO_BIN_EXE_shipday"));
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Rng::new(seed);
    let mut counts = Counts::default();
    let mut round = 0;
    let started = std::time::Instant::now();
    while counts.kills < 15 {
        let kill = plan(round, &mut rng);
        harness.round(kill, &mut counts).await.unwrap_or_else(|e| panic!("round {round} ({kill:?}): {e}"));
        round += 1;
        assert!(started.elapsed() < Duration::from_secs(300), "too slow: {}", counts.line());
    }
    println!("promotion kill loop (seed {seed}): {}", counts.line());
    assert!(counts.clean(), "seed {seed}: {}", counts.line());
}
