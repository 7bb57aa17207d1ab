//! Core benchmark (`cargo bench --bench core`): prints
//! - median and p99 time to parse, authorize and durably record a command through the engine;
//! - the same without the store (parse + authorize only), to show what durability costs;
//! - `/status` time with 10,000 deploy records in the store.

use shipday::app;
use shipday::clock::{Clock, SystemClock};
use shipday::command::authorize::{Actor, authorize};
use shipday::command::{CommandBook, parse};
use shipday::config::Config;
use shipday::engine::{Invocation, ReplyBody};
use shipday::release::deploy::{DeployRecord, Outcome, Trigger};
use shipday::release::gitref::{GitRef, Sha};
use shipday::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn report(name: &str, samples: &mut [Duration]) {
    let median = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    println!("{name:<52} n={:<6} median {:>9.1} µs   p99 {:>9.1} µs", samples.len(), micros(median), micros(p99));
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn invocation(text: &str) -> Invocation {
    Invocation::new("console", "ada", text)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = shipday::playground::prepare(&dir.path().join("pg")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // 1. Parse + authorize only.
    let config = Config::load(&config_path).unwrap();
    let book = CommandBook::builtin();
    let envs = config.environment_names();
    let mut samples = Vec::new();
    for i in 0..20_000 {
        let line = if i % 2 == 0 { "/lock dev benchmark run" } else { "/deploy dev feature/login" };
        let start = Instant::now();
        let command = parse(&book, &envs, line).unwrap();
        let spec = book.get(command.name()).unwrap();
        let actor = Actor { person: config.person("ada"), platform: "console", user_id: "ada" };
        authorize(&config.environments, spec, actor, &command).unwrap();
        samples.push(start.elapsed());
    }
    report("parse + authorize (no I/O)", &mut samples);

    // 2. Through the engine: parse, authorize, decide, write, audit, flush (fsync), reply.
    runtime.block_on(async {
        let app = app::start(config.clone(), Arc::new(SystemClock) as Arc<dyn Clock>).unwrap();
        let mut samples = Vec::new();
        for i in 0..2_000 {
            let line = if i % 2 == 0 { "/lock dev benchmark run" } else { "/unlock dev" };
            let start = Instant::now();
            let reply = app.engine.submit(invocation(line)).await;
            samples.push(start.elapsed());
            assert!(!matches!(reply.body, ReplyBody::Refused(_)), "{reply:?}");
        }
        report("parse + authorize + record (flushed) via engine", &mut samples);
    });

    // 3. /status with 10,000 deploy records.
    let state = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(state.path()).unwrap();
        let sha = Sha::parse("0123456789abcdef0123456789abcdef01234567").unwrap();
        let now = chrono::Utc::now();
        for i in 0..10_000u64 {
            let env = ["dev", "staging", "production"][(i % 3) as usize];
            let record = DeployRecord {
                id: store.next_deploy_id().unwrap(),
                env: env.into(),
                git_ref: GitRef::parse("feature/login").unwrap(),
                sha: sha.clone(),
                requested_by: "ada".into(),
                requested_by_name: "Ada".into(),
                trigger: Trigger::Command,
                emergency: None,
                migrations: None,
                started_at: now,
                finished_at: Some(now),
                steps: Vec::new(),
                outcome: if i % 10 == 0 {
                    Outcome::Failed { step: "restart".into(), reason: "exit code 1".into(), state_unknown: false }
                } else {
                    Outcome::Succeeded
                },
                tickets: Vec::new(),
                claimed_until: None,
                links: Default::default(),
            };
            store.put_deploy(&record).unwrap();
        }
        store.flush_blocking();
    }
    let mut config = config;
    config.state_dir = state.path().to_owned();
    runtime.block_on(async {
        let app = app::start(config, Arc::new(SystemClock) as Arc<dyn Clock>).unwrap();
        assert_eq!(app.store.history(None, 10_001).unwrap().len(), 10_000);
        let mut samples = Vec::new();
        for _ in 0..1_000 {
            let start = Instant::now();
            let reply = app.engine.submit(invocation("/status")).await;
            samples.push(start.elapsed());
            assert!(matches!(reply.body, ReplyBody::Status(_)));
        }
        report("/status, 3 environments, 10,000 deploy records", &mut samples);
    });
}
