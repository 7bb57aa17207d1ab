//! Kill-loop benchmark (`cargo bench --bench kill_loop`): the deploy path of issue 13 with 200
//! SIGKILLs of the real binary (`KILL_LOOP_KILLS` to change it), against a real sshd and a real
//! Django project, deploying a branch with a migration and releasing it. Prints the counts:
//! double executions, lost migration debts and overlapping steps must all be 0.

use testkit as common;

fn main() {
    let kills = std::env::var("KILL_LOOP_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let seed = std::env::var("KILL_LOOP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let started = std::time::Instant::now();
    let counts = common::kill_loop::run(kills, seed);
    println!("kill loop, deploy path (seed {seed}, {:.0}s):", started.elapsed().as_secs_f64());
    println!("  kills                  {}", counts.kills);
    println!("  kills during a step    {}", counts.kills_during_a_step);
    println!("  steps run on the host  {}", counts.steps_run);
    println!("  double executions      {}", counts.double_steps);
    println!("  lost migration debts   {}", counts.lost_debts);
    println!("  overlapping steps      {}", counts.overlapping_steps);
    println!("  clean after release    {}", counts.clean_at_the_end);
}
