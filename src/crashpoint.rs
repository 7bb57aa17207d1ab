//! Named crash points for crash tests: with `SHIPDAY_CRASHPOINT=<name>` set, the process aborts
//! (as abruptly as a SIGKILL: no destructors, no flush) the moment it reaches the point of that
//! name. Compiled in always and inert unless the variable is set, so the tests kill the real
//! binary exactly where a crash hurts most.
//!
//! Points on the promotion path, in order: `promotion-approved` (quorum recorded),
//! `promotion-merging` (merge stage recorded, before GitHub merges), `promotion-merged` (GitHub
//! answered, before the deploy stage is recorded), `promotion-deploying` (deploy stage
//! recorded, before the deploy starts) and `promotion-deploy-started` (the deploy is recorded
//! and running, before the promotion notes its id).

use std::sync::OnceLock;

/// The variable that names the point to crash at.
pub const VARIABLE: &str = "SHIPDAY_CRASHPOINT";

/// Every named point, for tests that crash at each in turn.
pub const PROMOTION_POINTS: [&str; 5] =
    ["promotion-approved", "promotion-merging", "promotion-merged", "promotion-deploying", "promotion-deploy-started"];

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var(VARIABLE).ok().filter(|name| !name.is_empty())).as_deref()
}

/// Aborts the process if `SHIPDAY_CRASHPOINT` names this point; does nothing otherwise.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        eprintln!("shipday: crash point {name} reached; aborting as {VARIABLE} asks");
        std::process::abort();
    }
}
