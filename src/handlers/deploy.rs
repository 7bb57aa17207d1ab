//! `/deploy` and `/release`: resolve the ref on the host, decide, record, run.

use crate::clients::OutputTail;
use crate::engine::{DeployRequest, Engine, Event, Handled, Pending, Reply, ReplyBody, Resolved, Visibility};
use crate::release::Refusal;
use crate::release::deploy::{DeployEvent, DeployRecord, Outcome, Trigger};
use crate::release::locks::{ActiveDeploy, HoldChange, admit_deploy, admit_release};
use crate::release::plan::{build_plan, parse_resolution, resolve_script};
use crate::release::policy::check_deploy_slot;
use chrono::{DateTime, Utc};

impl Engine {
    /// First half of a deploy: check policy and locks, then resolve the ref on the host.
    pub(crate) fn command_deploy(
        &mut self,
        request: DeployRequest,
        pending: Pending,
        now: DateTime<Utc>,
    ) -> Option<(Pending, Handled)> {
        if let Err(refusal) = self.admit(&request, &pending, now) {
            return Some((pending, Handled::refused(refusal.0)));
        }
        if request.trigger == Trigger::Command && !request.dry_run {
            let environment = self.config.environment(&request.env).expect("parser checked the environment");
            let person = pending.person.as_ref().expect("policy lets only configured people deploy");
            let checked =
                check_deploy_slot(&self.config.calendar, environment, person, request.emergency.as_deref(), now);
            if let Err(refusal) = checked {
                return Some((pending, Handled::refused(refusal.0)));
            }
        }
        self.start_resolving(request, pending, now);
        None
    }

    /// `/release ENV`: the holder gives the environment back; its own branch is redeployed.
    pub(crate) fn command_release(
        &mut self,
        env: &str,
        pending: Pending,
        now: DateTime<Utc>,
    ) -> Option<(Pending, Handled)> {
        let environment = self.config.environment(env).expect("parser checked the environment");
        let request = DeployRequest {
            env: env.to_owned(),
            git_ref: environment.branch.clone(),
            dry_run: false,
            emergency: None,
            trigger: Trigger::Release,
        };
        self.command_deploy(request, pending, now)
    }

    /// Whether this deploy may go ahead with the state as it is now.
    fn admit(&self, request: &DeployRequest, pending: &Pending, now: DateTime<Utc>) -> Result<HoldChange, Refusal> {
        let environment = self.config.environment(&request.env).expect("parser checked the environment");
        let person = pending.person.as_ref().expect("policy lets only configured people deploy");
        let store = |e: anyhow::Error| {
            tracing::error!(error = format!("{e:#}"), "cannot read the store");
            Refusal::new("Shipday cannot read its store, so it did nothing. An operator can check its logs.")
        };
        let hold = self.store.hold(&request.env).map_err(store)?;
        let active = match self.starting.get(&request.env) {
            Some(starting) => Some(starting.clone()),
            None => self.store.active(&request.env).map_err(store)?,
        };
        match request.trigger {
            Trigger::Command if request.dry_run => {
                admit_deploy(now, environment, person, &request.git_ref, hold.as_ref(), None).map(|_| HoldChange::Keep)
            }
            Trigger::Command | Trigger::Scheduled => {
                admit_deploy(now, environment, person, &request.git_ref, hold.as_ref(), active.as_ref())
            }
            Trigger::Release => {
                admit_release(now, environment, person, hold.as_ref(), active.as_ref()).map(|()| HoldChange::Clear)
            }
        }
    }

    fn start_resolving(&mut self, request: DeployRequest, pending: Pending, now: DateTime<Utc>) {
        let environment = self.config.environment(&request.env).expect("parser checked the environment").clone();
        let transport = self.transports.get(&request.env).cloned().expect("every environment has a transport");
        if !request.dry_run {
            let who_name = pending.person.as_ref().map(|p| p.name.clone()).unwrap_or_default();
            self.starting.insert(
                request.env.clone(),
                ActiveDeploy { deploy_id: 0, who_name, git_ref: request.git_ref.clone(), since: now },
            );
        }
        let Some(events) = self.events.upgrade() else { return };
        tokio::spawn(async move {
            let script = resolve_script(&environment, &request.git_ref);
            let result = async {
                let mut session = transport
                    .connect()
                    .await
                    .map_err(|e| format!("Cannot reach {}'s host ({}): {e:#}. Nothing was changed.", environment.name, transport.target()))?;
                let mut output = OutputTail::new(64 * 1024);
                let run = session.run(&script, environment.step_timeout, &mut output).await;
                let text = output.text();
                match (run, parse_resolution(&request.git_ref, &text)) {
                    (Ok(result), Some(sha)) if result.is_ok() => Ok((session, sha)),
                    (Ok(result), _) => {
                        session.close().await;
                        tracing::info!(output = %text.trim(), result = %result.describe(), "ref not resolved");
                        Err(format!(
                            "`{}` is not a branch or tag on {}'s origin. Check the name, or push it first. Nothing was changed.",
                            request.git_ref, environment.name
                        ))
                    }
                    (Err(e), _) => {
                        session.close().await;
                        Err(format!("Could not resolve `{}` on {}: {e:#}. Nothing was changed.", request.git_ref, environment.name))
                    }
                }
            }
            .await;
            let _ = events.send(Event::Resolved(Box::new(Resolved { pending, request, result })));
        });
    }

    /// Second half of a deploy: the commit is known; decide again, record, then run.
    pub(crate) async fn resolved(&mut self, resolved: Resolved) {
        let Resolved { pending, request, result } = resolved;
        if !request.dry_run {
            self.starting.remove(&request.env);
        }
        let (session, sha) = match result {
            Ok(found) => found,
            Err(reason) => return self.answer(pending, Handled::refused(reason)).await,
        };
        let now = self.clock.now();
        let environment = self.config.environment(&request.env).expect("parser checked the environment").clone();
        let plan = build_plan(&environment, &request.git_ref, &sha);
        if request.dry_run {
            session.close().await;
            let decision = format!("dry run of `{}` on {} at {sha}", request.git_ref, request.env);
            let reply = Reply { visibility: Visibility::Ephemeral, body: ReplyBody::DryRun(plan) };
            return self.answer(pending, Handled::Reply { reply, decision }).await;
        }
        let change = match self.admit(&request, &pending, now) {
            Ok(change) => change,
            Err(refusal) => {
                session.close().await;
                return self.answer(pending, Handled::refused(refusal.0)).await;
            }
        };
        let person = pending.person.clone().expect("policy lets only configured people deploy");
        let record = match self.store.next_deploy_id() {
            Ok(id) => DeployRecord {
                id,
                env: request.env.clone(),
                git_ref: request.git_ref.clone(),
                sha: sha.clone(),
                requested_by: person.id.clone(),
                requested_by_name: person.name.clone(),
                trigger: request.trigger,
                emergency: request.emergency.clone(),
                started_at: now,
                finished_at: None,
                steps: Vec::new(),
                outcome: Outcome::Running,
            },
            Err(error) => {
                session.close().await;
                tracing::error!(error = format!("{error:#}"), "cannot allocate a deploy id");
                return self
                    .answer(pending, Handled::refused("Shipday cannot write to its store, so it did nothing."))
                    .await;
            }
        };
        let written = self.store.put_deploy(&record).and_then(|()| {
            let active = ActiveDeploy {
                deploy_id: record.id,
                who_name: person.name.clone(),
                git_ref: request.git_ref.clone(),
                since: now,
            };
            self.store.set_active(&request.env, Some(&active))?;
            match &change {
                HoldChange::Keep => Ok(()),
                HoldChange::Set(hold) => self.store.set_hold(&request.env, Some(hold)),
                HoldChange::Clear => self.store.set_hold(&request.env, None),
            }
        });
        if let Err(error) = written {
            session.close().await;
            tracing::error!(error = format!("{error:#}"), "cannot record a deploy");
            return self
                .answer(pending, Handled::refused("Shipday cannot write to its store, so it did nothing."))
                .await;
        }
        let mut decision =
            format!("accepted: deploy #{} of `{}` to {} at {sha}", record.id, request.git_ref, request.env);
        if let HoldChange::Set(hold) = &change {
            decision.push_str(&format!("; {}", hold.describe(&request.env, now)));
        }
        if let Some(reason) = &request.emergency {
            decision.push_str(&format!("; EMERGENCY outside the slot: {reason}"));
            self.announce(crate::engine::Announcement::Text(format!(
                "🚨 Emergency deploy: @{{{}}} is deploying `{}` to {} outside its slot. Reason: {reason}",
                person.id, request.git_ref, request.env
            )));
        }
        let watcher = pending.invocation.progress.clone();
        let reply = Reply { visibility: Visibility::Public, body: ReplyBody::Deploy(record.clone()) };
        // The reply is sent only after the record, lock and audit entry are flushed.
        self.answer(pending, Handled::Reply { reply, decision }).await;
        if let Some(watcher) = &watcher {
            let _ =
                watcher.send(crate::engine::ProgressUpdate { event: DeployEvent::Accepted, record: record.clone() });
        }
        tracing::info!(deploy = record.id, env = %record.env, git_ref = %record.git_ref, sha = %record.sha, "deploy started");
        self.running.insert(record.id, (record.clone(), watcher));
        crate::engine::spawn_runner(self, record.id, session, plan);
    }
}
