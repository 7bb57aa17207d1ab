//! SSH deploy benchmark (`cargo bench --bench ssh`), against a local OpenSSH sshd:
//! - a five-step deploy through Shipday (one connection; it also resolves the ref first and
//!   verifies HEAD last, so it runs seven commands);
//! - the same five steps as the team runs them today: one `ssh` invocation per step;
//! - the commands themselves run directly with `sh`, to separate their own time from
//!   Shipday's overhead.
//!
//! Medians over several rounds, interleaved so machine noise hits both alike.

use testkit as common;

use common::sshd::Sshd;
use common::{Bot, World};
use shipday::release::deploy::Outcome;
use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;
const STEPS: [(&str, &str); 5] = [
    ("fetch", "git fetch --all --prune --quiet"),
    ("checkout", "git checkout --quiet --detach {{sha}}"),
    ("migrate", "git log -1 --format=%H > /dev/null"),
    ("restart app", "echo restarted >> ../restarts.log"),
    ("reload web", "echo reloaded >> ../restarts.log"),
];

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The store's flushes so far (count, seconds), from the process's own `/metrics` text.
fn flushes() -> (f64, f64) {
    let text = shipday::metrics::render(&[]);
    let read = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    (read("shipday_store_flush_seconds_count "), read("shipday_store_flush_seconds_sum "))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let world = World::new();
    let sshd = Sshd::start();
    let known_hosts = sshd.pin();
    let steps: String =
        STEPS.iter().map(|(name, run)| format!("{{ name = \"{name}\", run = \"{run}\" }},\n")).collect();
    let config = world.ssh_config(&sshd, &known_hosts, &steps, "");
    let dir = world.path().join("envs/dev");
    let bot = runtime.block_on(async { Bot::start(&config) });
    let branches = ["feature/login", "feature/search"];

    let (mut shipday, mut manual, mut direct, mut in_steps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The production SSH transport of dev, as `serve` builds it: its connect-and-log-in alone.
    let transports = shipday::app::transports(&shipday::config::Config::load(&config).unwrap()).unwrap();
    let dev = transports.get("dev").unwrap().clone();
    let mut handshakes = Vec::new();
    let mut flushed = Vec::new();
    for round in 0..ROUNDS {
        let branch = branches[round % 2];
        // Shipday: one command in chat.
        let (count_before, secs_before) = flushes();
        let started = Instant::now();
        let (_, progress) = runtime.block_on(bot.say("ada", &format!("/deploy dev {branch}")));
        let took = started.elapsed();
        let (count_after, secs_after) = flushes();
        flushed.push((count_after - count_before, Duration::from_secs_f64(secs_after - secs_before)));
        let record = &progress.last().unwrap().record;
        assert_eq!(record.outcome, Outcome::Succeeded);
        in_steps.push(Duration::from_millis(record.steps.iter().filter_map(|s| s.duration_ms).sum()));
        runtime.block_on(bot.say("ada", "/unlock dev"));
        shipday.push(took);

        // One connection and login (TCP, key exchange, the pinned host key, public-key auth).
        let started = Instant::now();
        let session = runtime.block_on(dev.connect()).unwrap();
        handshakes.push(started.elapsed());
        runtime.block_on(session.close());

        // By hand: one ssh per step.
        let commands: Vec<String> = STEPS
            .iter()
            .map(|(_, run)| run.replace("{{sha}}", &format!("origin/{branch}")))
            .map(|run| format!("cd {} && {run}", dir.display()))
            .collect();
        let started = Instant::now();
        for command in &commands {
            let status = sshd.ssh_command(&known_hosts, command).status().unwrap();
            assert!(status.success(), "{command}");
        }
        manual.push(started.elapsed());

        // The commands alone (plus Shipday's resolve and verify), without any SSH.
        let started = Instant::now();
        let resolve =
            format!("cd {} && git ls-remote --exit-code origin refs/heads/{branch} >/dev/null", dir.display());
        let verify = format!("cd {} && git rev-parse HEAD >/dev/null", dir.display());
        for command in std::iter::once(&resolve).chain(&commands).chain(std::iter::once(&verify)) {
            assert!(Command::new("sh").arg("-c").arg(command).status().unwrap().success());
        }
        direct.push(started.elapsed());
    }
    let (shipday, manual, direct, in_steps) = (median(shipday), median(manual), median(direct), median(in_steps));
    let handshake = median(handshakes);
    let flush_count = flushed.iter().map(|(n, _)| *n).sum::<f64>() / flushed.len() as f64;
    let flush_time = median(flushed.iter().map(|(_, t)| *t).collect());
    println!("five-step deploy over SSH, median of {ROUNDS} rounds:");
    println!("  Shipday (one connection, resolve + 5 steps + verify):   {:>8.1} ms", ms(shipday));
    println!("  by hand (one ssh invocation per step, 5 steps):       {:>8.1} ms", ms(manual));
    println!(
        "  ratio Shipday / by hand:                              {:>8.2}",
        shipday.as_secs_f64() / manual.as_secs_f64()
    );
    println!("  the 7 commands alone (sh, no SSH):                    {:>8.1} ms", ms(direct));
    println!("  Shipday's own overhead (total - commands):            {:>8.1} ms", ms(shipday.saturating_sub(direct)));
    println!(
        "    of which inside the 6 step channels (exec round trips): {:>5.1} ms",
        ms(in_steps.saturating_sub(direct))
    );
    println!(
        "    of which connect, resolve, engine and store:            {:>5.1} ms",
        ms(shipday.saturating_sub(in_steps))
    );
    println!("      of which one SSH connect and login (measured alone):   {:>5.1} ms", ms(handshake));
    println!(
        "      of which making the store durable ({flush_count:.1} flushes a deploy):  {:>5.1} ms",
        ms(flush_time)
    );
    println!(
        "  Shipday's overhead beyond the commands and the one SSH login: {:>5.1} ms",
        ms(shipday.saturating_sub(direct).saturating_sub(handshake))
    );
}
