//! Prometheus metrics, served as `GET /metrics` on the shared listener.
//!
//! One process-wide registry of counters and histograms that every layer records into with one
//! call (`metrics::deploy_finished(…)`), so instrumenting a code path never means threading a
//! handle through it. Label values are bounded: environment and step names come from the
//! config, command names from the command book (anything else is `unknown`), and outcomes and
//! reasons are fixed words. Chat text never becomes a label.
//!
//! The delivery figures (DORA's four keys) are not counters: they are computed from the store
//! at each scrape (see [`render`] and `release::delivery`).

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

type Labels<const N: usize> = [(&'static str, String); N];
type Histograms<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// Deploys and steps: from a second to an hour.
fn long_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 14))
}

/// Acks and flushes: from a tenth of a millisecond to several seconds.
fn short_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

struct Metrics {
    registry: Registry,
    deploys: Family<Labels<2>, Counter>,
    deploy_seconds: Histograms<1>,
    step_seconds: Histograms<2>,
    commands: Family<Labels<2>, Counter>,
    ack_seconds: Histograms<1>,
    webhook_deliveries: Family<Labels<1>, Counter>,
    jira_outbox_depth: Gauge,
    jira_give_ups: Counter,
    reminders: Counter,
    approvals: Family<Labels<1>, Counter>,
    ssh_failures: Family<Labels<1>, Counter>,
    ssh_login_seconds: Histogram,
    ssh_command_seconds: Histogram,
    store_flush_seconds: Histogram,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("shipday");
    let deploys = Family::default();
    registry.register("deploys", "Deploys that ended, by environment and outcome", Clone::clone(&deploys));
    let deploy_seconds: Histograms<1> = Family::new_with_constructor(long_buckets);
    registry.register("deploy_duration_seconds", "How long deploys took, by environment", deploy_seconds.clone());
    let step_seconds: Histograms<2> = Family::new_with_constructor(long_buckets);
    registry.register(
        "step_duration_seconds",
        "How long deploy steps took, by environment and step",
        step_seconds.clone(),
    );
    let commands = Family::default();
    registry.register("commands", "Commands answered, by command and outcome", Clone::clone(&commands));
    let ack_seconds: Histograms<1> = Family::new_with_constructor(short_buckets);
    registry.register(
        "ack_latency_seconds",
        "From a command's arrival to its acknowledgement, by platform",
        ack_seconds.clone(),
    );
    let webhook_deliveries = Family::default();
    registry.register("webhook_deliveries", "GitHub webhook deliveries, by result", Clone::clone(&webhook_deliveries));
    let jira_outbox_depth = Gauge::default();
    registry.register("jira_outbox_depth", "Ticket moves waiting to be delivered to Jira", jira_outbox_depth.clone());
    let jira_give_ups = Counter::default();
    registry.register("jira_give_ups", "Ticket moves Shipday gave up delivering to Jira", jira_give_ups.clone());
    let reminders = Counter::default();
    registry.register("reminders_sent", "Calendar reminders sent to the team", reminders.clone());
    let approvals = Family::default();
    registry.register("approvals", "Production promotion requests decided, by outcome", Clone::clone(&approvals));
    let ssh_failures = Family::default();
    registry.register("ssh_connection_failures", "SSH connections that failed, by reason", Clone::clone(&ssh_failures));
    let ssh_login_seconds = short_buckets();
    registry.register(
        "ssh_login_seconds",
        "How long connecting to a host and logging in took (successful logins)",
        ssh_login_seconds.clone(),
    );
    let ssh_command_seconds = short_buckets();
    registry.register(
        "ssh_command_seconds",
        "How long each command on a host took over SSH, from opening its channel to its exit",
        ssh_command_seconds.clone(),
    );
    let store_flush_seconds = short_buckets();
    registry.register("store_flush_seconds", "How long making the store durable took", store_flush_seconds.clone());
    Metrics {
        registry,
        deploys,
        deploy_seconds,
        step_seconds,
        commands,
        ack_seconds,
        webhook_deliveries,
        jira_outbox_depth,
        jira_give_ups,
        reminders,
        approvals,
        ssh_failures,
        ssh_login_seconds,
        ssh_command_seconds,
        store_flush_seconds,
    }
});

/// A deploy ended: `outcome` is `succeeded`, `failed`, `interrupted` or `cancelled`.
pub fn deploy_finished(env: &str, outcome: &'static str, took: Duration) {
    let m = &*METRICS;
    // The duration first: a scrape that sees the deploy counted sees its duration too.
    m.deploy_seconds.get_or_create(&[("env", env.to_owned())]).observe(took.as_secs_f64());
    m.deploys.get_or_create(&[("env", env.to_owned()), ("outcome", outcome.to_owned())]).inc();
}

/// A deploy step ended.
pub fn step_finished(env: &str, step: &str, took: Duration) {
    METRICS
        .step_seconds
        .get_or_create(&[("env", env.to_owned()), ("step", step.to_owned())])
        .observe(took.as_secs_f64());
}

/// A command was answered: `command` is a name from the command book or `unknown`; `outcome`
/// is `accepted`, `refused` or `failed`.
pub fn command_answered(command: &str, outcome: &'static str) {
    METRICS.commands.get_or_create(&[("command", command.to_owned()), ("outcome", outcome.to_owned())]).inc();
}

/// A platform's command was acknowledged `took` after it arrived.
pub fn acknowledged(platform: &'static str, took: Duration) {
    METRICS.ack_seconds.get_or_create(&[("platform", platform.to_owned())]).observe(took.as_secs_f64());
}

/// A GitHub webhook delivery was answered: `accepted`, `duplicate`, `ignored`, `rejected`
/// (bad signature, stale or malformed) or `failed` (Shipday could not record it).
pub fn webhook_delivery(result: &'static str) {
    METRICS.webhook_deliveries.get_or_create(&[("result", result.to_owned())]).inc();
}

/// How many ticket moves wait for Jira now.
pub fn jira_outbox_depth(depth: usize) {
    METRICS.jira_outbox_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
}

/// Shipday gave up delivering a ticket move to Jira.
pub fn jira_gave_up() {
    METRICS.jira_give_ups.inc();
}

/// A calendar reminder went to the team.
pub fn reminder_sent() {
    METRICS.reminders.inc();
}

/// A promotion request was decided: `approved`, `rejected`, `expired`, `cancelled` or `void`.
pub fn approval(outcome: &'static str) {
    METRICS.approvals.get_or_create(&[("outcome", outcome.to_owned())]).inc();
}

/// An SSH connection failed: `unreachable`, `timeout`, `host_key`, `auth` or `other`.
pub fn ssh_failure(reason: &'static str) {
    METRICS.ssh_failures.get_or_create(&[("reason", reason.to_owned())]).inc();
}

/// An SSH connection was made and logged in, in `took`.
pub fn ssh_logged_in(took: Duration) {
    METRICS.ssh_login_seconds.observe(took.as_secs_f64());
}

/// A command ran on a host over SSH (its channel opened, it ran, it exited), in `took`.
pub fn ssh_command_ran(took: Duration) {
    METRICS.ssh_command_seconds.observe(took.as_secs_f64());
}

/// The store was flushed in `took`.
pub fn store_flushed(took: Duration) {
    METRICS.store_flush_seconds.observe(took.as_secs_f64());
}

/// When the scheduler last ticked without error (for `/readyz`).
static SCHEDULER_TICKED: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);

/// The scheduler ticked (it does at least every 30 s).
pub fn scheduler_ticked() {
    if let Ok(mut last) = SCHEDULER_TICKED.lock() {
        *last = Some(std::time::Instant::now());
    }
}

/// How long ago the scheduler last ticked; `None` before its first tick.
pub fn since_scheduler_ticked() -> Option<Duration> {
    SCHEDULER_TICKED.lock().ok().and_then(|last| last.map(|at| at.elapsed()))
}

/// A figure computed at scrape time, labelled by environment (or by nothing).
pub struct Figure {
    /// The metric's name after `shipday_`.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// `(env, value)`; `env` empty for a figure of the whole pipeline.
    pub values: Vec<(String, f64)>,
}

/// The exposition, in the OpenMetrics text format: every counter and histogram, then
/// `figures` (computed by the caller at this scrape).
pub fn render(figures: &[Figure]) -> String {
    let mut out = String::new();
    let mut scraped = Registry::with_prefix("shipday");
    for figure in figures {
        if let [(env, value)] = figure.values.as_slice()
            && env.is_empty()
        {
            // A figure of the whole pipeline: no labels at all.
            let gauge = Gauge::<f64, AtomicU64>::default();
            gauge.set(*value);
            scraped.register(figure.name, figure.help, gauge);
            continue;
        }
        let family = Family::<Labels<1>, Gauge<f64, AtomicU64>>::default();
        for (env, value) in figure.values.iter().filter(|(env, _)| !env.is_empty()) {
            family.get_or_create(&[("env", env.clone())]).set(*value);
        }
        scraped.register(figure.name, figure.help, family);
    }
    // Writing into a String cannot fail.
    let _ = encode_registry(&mut out, &METRICS.registry);
    let _ = encode_registry(&mut out, &scraped);
    let _ = encode_eof(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_is_counted_by_environment_and_outcome_with_its_duration() {
        deploy_finished("metrics-test-env", "succeeded", Duration::from_secs(3));
        let text = render(&[
            Figure {
                name: "test_figure",
                help: "A figure for the test",
                values: vec![("metrics-test-env".into(), 0.5)],
            },
            Figure { name: "test_total_figure", help: "A figure of the pipeline", values: vec![(String::new(), 2.0)] },
        ]);
        assert!(text.contains(r#"shipday_deploys_total{env="metrics-test-env",outcome="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"shipday_deploy_duration_seconds_count{env="metrics-test-env"} 1"#), "{text}");
        assert!(text.contains(r#"shipday_test_figure{env="metrics-test-env"} 0.5"#), "{text}");
        assert!(text.contains("shipday_test_total_figure 2.0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
