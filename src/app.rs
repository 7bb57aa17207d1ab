//! Start-up: config → store (with crash recovery) → transports → engine.

use crate::clients::RemoteExec;
use crate::clients::github::GitHubClient;
use crate::clients::local::LocalExec;
use crate::clients::ssh::SshExec;
use crate::clock::Clock;
use crate::config::{Config, TransportConfig};
use crate::engine::{Engine, EngineHandle};
use crate::release::deploy::DeployRecord;
use crate::store::Store;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::Arc;

/// A started bot.
#[derive(Clone)]
pub struct App {
    /// The validated config.
    pub config: Arc<Config>,
    /// Where adapters send commands.
    pub engine: EngineHandle,
    /// Deploys a previous crash interrupted; adapters announce them.
    pub interrupted: Vec<DeployRecord>,
    /// The store, for read-only views.
    pub store: Store,
}

/// How each environment's steps run.
pub fn transports(config: &Config) -> Result<HashMap<String, Arc<dyn RemoteExec>>> {
    let mut out: HashMap<String, Arc<dyn RemoteExec>> = HashMap::new();
    for env in &config.environments {
        let transport: Arc<dyn RemoteExec> = match &env.transport {
            TransportConfig::Local { .. } => Arc::new(LocalExec),
            TransportConfig::Ssh(target) => {
                Arc::new(SshExec::new(target).with_context(|| format!("environment {}", env.name))?)
            }
        };
        out.insert(env.name.clone(), transport);
    }
    Ok(out)
}

/// Opens the store (refusing to start on a broken one), recovers from a crash and starts
/// the engine.
pub fn start(config: Config, clock: Arc<dyn Clock>) -> Result<App> {
    let transports = transports(&config)?;
    let (store, _) = Store::open(&config.state_dir)?;
    let interrupted = store.recover_interrupted(clock.now())?;
    match store.prune(clock.now()) {
        Ok(0) => {}
        Ok(removed) => {
            store.flush_blocking();
            tracing::info!(removed, "forgot expired dedupe records");
        }
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot prune expired dedupe records"),
    }
    for record in &interrupted {
        tracing::warn!(deploy = record.id, env = %record.env, git_ref = %record.git_ref, "deploy was interrupted by a restart");
    }
    let jira = match (&config.jira, &config.jira_token) {
        (Some(jira), Some(token)) => Some(Arc::new(jira.client_with_token(token.clone()).context("jira")?)),
        _ => None,
    };
    let config = Arc::new(config);
    let github = match &config.github {
        Some(github) => Some(Arc::new(GitHubClient::new(github, &config.base_dir).context("github")?)),
        None => None,
    };
    let engine = Engine::spawn(config.clone(), store.clone(), clock, transports, jira, github);
    engine.check_drift();
    Ok(App { config, engine, interrupted, store })
}

/// How far back the delivery figures on `/metrics` look.
pub const DELIVERY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// The most deploy records the delivery figures read (far more than a team makes in
/// [`DELIVERY_WINDOW`]).
const DELIVERY_RECORDS: usize = 10_000;

impl App {
    /// Deploy frequency, change failure rate, time to restore and lead time over
    /// [`DELIVERY_WINDOW`] ending at `now`, from the deploy records in the store.
    pub fn delivery_figures(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::release::delivery::DeliveryFigures> {
        let records = self.store.history(None, DELIVERY_RECORDS)?;
        let environments: Vec<&str> = self.config.environments.iter().map(|e| e.name.as_str()).collect();
        Ok(crate::release::delivery::figures(&records, &environments, now, DELIVERY_WINDOW))
    }
}
