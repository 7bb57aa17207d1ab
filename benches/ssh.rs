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

/// What the process's own `/metrics` counted so far: (count, seconds) of the store's flushes,
/// of SSH logins and of commands run over SSH.
fn figures() -> [(f64, f64); 3] {
    let text = shipday::metrics::render(&[]);
    let read = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    ["store_flush", "ssh_login", "ssh_command"]
        .map(|name| (read(&format!("shipday_{name}_seconds_count ")), read(&format!("shipday_{name}_seconds_sum "))))
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

    let (mut shipday, mut manual, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    // The production SSH transport of dev, as `serve` builds it: its connect-and-log-in alone.
    let transports = shipday::app::transports(&shipday::config::Config::load(&config).unwrap()).unwrap();
    let dev = transports.get("dev").unwrap().clone();
    let environment = shipday::config::Config::load(&config).unwrap().environment("dev").unwrap().clone();
    let mut wrapped = Vec::new();
    let (mut handshakes, mut first_channels, mut channels) = (Vec::new(), Vec::new(), Vec::new());
    let (mut flushed, mut over_ssh, mut ssh_counts) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let branch = branches[round % 2];
        // Shipday: one command in chat.
        let before = figures();
        let started = Instant::now();
        let (_, progress) = runtime.block_on(bot.say("ada", &format!("/deploy dev {branch}")));
        let took = started.elapsed();
        let after = figures();
        let delta = |i: usize| (after[i].0 - before[i].0, Duration::from_secs_f64(after[i].1 - before[i].1));
        flushed.push(delta(0));
        // The deploy's own time in SSH: its login, and every command from opening its channel
        // to its exit (what runs on the host, and SSH's share of it).
        over_ssh.push(delta(1).1 + delta(2).1);
        ssh_counts.push((delta(1).0, delta(2).0));
        let record = &progress.last().unwrap().record;
        assert_eq!(record.outcome, Outcome::Succeeded);
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
    // The bot's own share, round by round: the deploy's time outside SSH (its login and its
    // commands, as the production client timed them in this very deploy).
    let in_bot = median(shipday.iter().zip(&over_ssh).map(|(total, ssh)| total.saturating_sub(*ssh)).collect());
    let over_ssh = median(over_ssh);
    let (logins, commands) = ssh_counts[ROUNDS / 2];
    let (shipday, manual, direct) = (median(shipday), median(manual), median(direct));
    let wrapped = median(wrapped);
    let (handshake, first_channel, channel) = (median(handshakes), median(first_channels), median(channels));
    let flush_count = flushed.iter().map(|(n, _)| *n).sum::<f64>() / flushed.len() as f64;
    let flush_time = median(flushed.iter().map(|(_, t)| *t).collect());
    let overhead = shipday.saturating_sub(direct);
    // SSH's own share: one login, and one exec channel for each of the 7 commands.
    let ssh_share = handshake + channel * 7;
    println!("five-step deploy over SSH, median of {ROUNDS} rounds:");
    println!("  Shipday (one connection, resolve + 5 steps + verify):    {:>7.1} ms", ms(shipday));
    println!("  by hand (one ssh invocation per step, 5 steps):          {:>7.1} ms", ms(manual));
    println!(
        "  ratio Shipday / by hand:                                 {:>7.2}",
        shipday.as_secs_f64() / manual.as_secs_f64()
    );
    println!("  the 7 commands alone (sh, no SSH):                       {:>7.1} ms", ms(direct));
    println!("  the deploy's own overhead beyond its commands:           {:>7.1} ms", ms(overhead));
    println!("  timed inside the deploy ({logins} login, {commands} commands over SSH):");
    println!("    in the bot (engine, store, job hand-offs, reporting):  {:>7.1} ms", ms(in_bot));
    println!("      of which making the store durable ({flush_count:.1} flushes):    {:>7.1} ms", ms(flush_time));
    println!(
        "    in SSH and on the host, beyond the commands:           {:>7.1} ms",
        ms(over_ssh.saturating_sub(direct))
    );
    println!("  the same costs measured alone on this sshd and host:");
    println!("    one connect and login:                                 {:>7.1} ms", ms(handshake));
    println!("    the first exec channel after a login (runs `true`):    {:>7.1} ms", ms(first_channel));
    println!("    each later exec channel (runs `true`):                 {:>7.1} ms", ms(channel));
    println!("    so one login + 7 channels:                             {:>7.1} ms", ms(ssh_share));
    println!(
        "    Shipday's host wrapper on the 7 (lock, timeout, pid):  {:>7.1} ms",
        ms(wrapped.saturating_sub(direct))
    );
}
