//! Promotion kill loop benchmark (`cargo bench --bench promotion_kill [ROUNDS]`): 200 rounds
//! (or ROUNDS) of approve → merge → deploy with the real binary killed at each crash point in
//! turn and at random moments, restarted each time, then prints what the invariants counted:
//! double executions, lost (or invented) approvals, stuck promotions. The loop is the one
//! `tests/promotion_kill.rs` runs (`tests/common/promotion_kill.rs`). `SHIPDAY_BENCH_BINARY` names
//! another `shipday` binary to run instead of this tree's.

use testkit as common;

use common::promotion_kill::{Counts, Harness, Rng, plan};

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        // SHIPDAY_BENCH_BINARY runs a copy, so rebuilding the tree meanwhile changes nothing.
        let binary = std::env::var("SHIPDAY_BENCH_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_shipday").to_owned());
        let harness = Harness::new(&binary);
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let mut rng = Rng::new(seed);
        let mut counts = Counts::default();
        let mut setup_errors = 0;
        let started = std::time::Instant::now();
        for round in 0..rounds {
            let kill = plan(round, &mut rng);
            if let Err(error) = harness.round(kill, &mut counts).await {
                setup_errors += 1;
                eprintln!("round {round} ({kill:?}) could not run: {error}");
            }
            if (round + 1) % 20 == 0 {
                println!("after {} rounds: {}", round + 1, counts.line());
            }
        }
        println!(
            "promotion kill loop, {rounds} rounds (seed {seed}, {setup_errors} round(s) not run) in {:.0?}:\n{}",
            started.elapsed(),
            counts.line()
        );
    });
}
