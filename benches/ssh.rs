//! SSH deploy benchmark (`cargo bench --bench ssh`), against a local OpenSSH sshd:
//! - a five-step deploy through Shipday (one connection; it also resolves the ref first and
//!   verifies HEAD last, so it runs seven commands);
//! - the same five steps as the team runs them today: one `ssh` invocation per step;
//! - the commands themselves run directly with `sh`, to separate their own time from
//!   Shipday's overhead;
//! - one SSH login and empty exec channels alone, to separate what SSH itself costs on this
//!   sshd from what Shipday adds.
//!
//! Medians over several rounds, interleaved so machine noise hits all alike.

use testkit as common;

use common::sshd::Sshd;
use common::{Bot, World};
use shipday::release::deploy::Outcome;
use shipday::release::gitref::{GitRef, Sha};
use shipday::release::plan::{build_plan, resolve_script};
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
    let environment = shipday::config::Config::load(&config).unwrap().environment("dev").unwrap().clone();
    let mut wrapped = Vec::new();
    let (mut handshakes, mut first_channels, mut channels) = (Vec::new(), Vec::new(), Vec::new());
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

        // One connection and login (TCP, key exchange, the pinned host key, public-key auth),
        // then exec channels that run nothing (`true`): the first one on the fresh connection,
        // and the next ones. SSH's own cost of each command Shipday runs is one such channel.
        let started = Instant::now();
        let mut session = runtime.block_on(dev.connect()).unwrap();
        handshakes.push(started.elapsed());
        for first in [true, false, false, false] {
            let started = Instant::now();
            let mut output = shipday::clients::OutputTail::default();
            let result = runtime.block_on(session.run("true", Duration::from_secs(10), &mut output)).unwrap();
            assert!(result.is_ok());
            if first { first_channels.push(started.elapsed()) } else { channels.push(started.elapsed()) }
        }
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

        // The same 7 commands as Shipday sends them (inside its host wrapper: the host's deploy
        // lock, the step timeout, the pid file `/cancel` reads), run with `sh` and without SSH.
        // (sshd starts each through the login shell, bash: that is in the channels' cost.)
        let git_ref = GitRef::parse(branch).unwrap();
        let plan = build_plan(&environment, &git_ref, &Sha::parse(&world.tip(branch)).unwrap());
        let scripts: Vec<String> = std::iter::once(resolve_script(&environment, &git_ref))
            .chain(plan.steps.iter().map(|step| step.script.clone()))
            .chain(std::iter::once(plan.verify.clone()))
            .collect();
        let started = Instant::now();
        for script in &scripts {
            let status = Command::new("sh").arg("-c").arg(script).stdout(std::process::Stdio::null()).status();
            assert!(status.unwrap().success(), "{script}");
        }
        wrapped.push(started.elapsed());
    }
    // The bot's share, round by round (each round's own figures, so noise between rounds
    // does not pile up in a difference of medians); signed, since it is small.
    let mut bot_share: Vec<f64> = (0..ROUNDS)
        .map(|r| {
            let later = channels[r * 3..r * 3 + 3].iter().map(|d| ms(*d)).sum::<f64>() / 3.0;
            ms(shipday[r]) - ms(wrapped[r]) - ms(handshakes[r]) - 7.0 * later
        })
        .collect();
    bot_share.sort_by(f64::total_cmp);
    let bot_share = bot_share[ROUNDS / 2];
    let (shipday, manual, direct, in_steps) = (median(shipday), median(manual), median(direct), median(in_steps));
    let wrapped = median(wrapped);
    let (handshake, first_channel, channel) = (median(handshakes), median(first_channels), median(channels));
    let flush_count = flushed.iter().map(|(n, _)| *n).sum::<f64>() / flushed.len() as f64;
    let flush_time = median(flushed.iter().map(|(_, t)| *t).collect());
    let overhead = shipday.saturating_sub(direct);
    // SSH's own share: one login, and one exec channel for each of the 7 commands.
    let ssh_share = handshake + channel * 7;
    println!("five-step deploy over SSH, median of {ROUNDS} rounds:");
    println!("  Shipday (one connection, resolve + 5 steps + verify):   {:>8.1} ms", ms(shipday));
    println!("  by hand (one ssh invocation per step, 5 steps):       {:>8.1} ms", ms(manual));
    println!(
        "  ratio Shipday / by hand:                              {:>8.2}",
        shipday.as_secs_f64() / manual.as_secs_f64()
    );
    println!("  the 7 commands alone (sh, no SSH):                    {:>8.1} ms", ms(direct));
    println!("  the deploy's own overhead beyond its commands:        {:>8.1} ms", ms(overhead));
    println!(
        "    of which inside the 6 step channels (exec round trips): {:>5.1} ms",
        ms(in_steps.saturating_sub(direct))
    );
    println!(
        "    of which connect, resolve, engine and store:            {:>5.1} ms",
        ms(shipday.saturating_sub(in_steps))
    );
    println!("  SSH's own cost, measured alone on the same sshd:");
    println!("    one connect and login:                                {:>5.1} ms", ms(handshake));
    println!("    the first exec channel after the login (runs `true`): {:>5.1} ms", ms(first_channel));
    println!("    each later exec channel (runs `true`):                {:>5.1} ms", ms(channel));
    println!("    so one login + 7 channels:                            {:>5.1} ms", ms(ssh_share));
    println!("  making the store durable ({flush_count:.1} flushes a deploy):        {:>5.1} ms", ms(flush_time));
    println!(
        "  Shipday's own work beyond the commands and SSH's cost:   {:>5.1} ms",
        ms(overhead.saturating_sub(ssh_share))
    );
    println!(
        "    of which on the host: its wrapper (lock, timeout, pid) {:>5.1} ms",
        ms(wrapped.saturating_sub(direct))
    );
    println!("    of which in the bot: engine, store, planning, reporting      {bot_share:>5.1} ms");
}
