//! The durable store (sled): one typed tree per entity. Every write the bot answers about is
//! flushed to disk before the answer goes out ([`Store::flush`]).
//!
//! A store that exists but cannot be opened stops the bot: it is never replaced by an empty
//! one. A missing store is created, and that is logged loudly.

use crate::release::approvals::{PromotionRequest, RequestState};
use crate::release::deploy::{DeployRecord, Observation, Outcome};
use crate::release::freeze::{Freeze, Skip};
use crate::release::locks::{ActiveDeploy, Hold, Waiter};
use crate::release::message::MessageRef;
use crate::release::migrations::MigrationDebt;
use crate::release::ticket_flow::{TicketMove, TicketScan};
use crate::release::tickets::MergedPull;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How long a handled inbound delivery id (Slack event, Discord interaction, GitHub delivery)
/// is remembered. Platforms retry for minutes to hours, never for days.
pub const DELIVERY_TTL: chrono::Duration = chrono::Duration::days(7);

/// How long a commit handled by the merge stream is remembered. Older replays are still stopped
/// by the merge head (which never expires) and the ancestry check.
pub const MERGE_TTL: chrono::Duration = chrono::Duration::days(30);

/// How long a claimed calendar firing is remembered, counted back from the scheduler's cursor.
pub const FIRING_TTL: chrono::Duration = chrono::Duration::days(30);

/// How long a reaction on a message not (yet) bound to a promotion request is kept for that
/// binding (see [`Store::keep_early_reaction`]). A request's message is bound as soon as the
/// platform answers its post, so a reaction waiting longer was on some other message.
pub const EARLY_REACTION_TTL: chrono::Duration = chrono::Duration::hours(1);

/// How long a merged pull request's branch name and title are kept for the ticket scans of
/// the deploys and promotions that ship its commits (a release reaches production within
/// weeks).
pub const PULL_TTL: chrono::Duration = chrono::Duration::days(90);

/// The store format this Shipday reads and writes: the number in the `format` marker every
/// store records at creation. A store (or a backup) from another format is refused, never
/// replaced by an empty one.
pub const STORE_FORMAT: u32 = 1;

/// How the format marker starts; the format number follows.
const FORMAT_PREFIX: &str = "shipday-store-";

/// The marker of [`STORE_FORMAT`], checked at open.
const FORMAT: &[u8] = b"shipday-store-1";

/// The database's directory inside the state directory.
const DB_DIR: &str = "shipday.db";

/// The store and its trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    deploys: sled::Tree,
    deploys_by_env: sled::Tree,
    running: sled::Tree,
    last_ok: sled::Tree,
    last_failure: sled::Tree,
    holds: sled::Tree,
    active: sled::Tree,
    observed: sled::Tree,
    deliveries: sled::Tree,
    firings: sled::Tree,
    merges: sled::Tree,
    slot_waits: sled::Tree,
    migration_debts: sled::Tree,
    promotions: sled::Tree,
    promotion_messages: sled::Tree,
    audit: sled::Tree,
    tracked: sled::Tree,
    jira_moves: sled::Tree,
    jira_pending: sled::Tree,
    ticket_scans: sled::Tree,
    /// Reactions on messages not bound to a request yet, by message (see [`EarlyReaction`]).
    early_reactions: sled::Tree,
    /// Leads' freezes, by environment name or `all` (see [`Freeze`]).
    freezes: sled::Tree,
    /// Leads' `/skip`s of the next automatic deploy, by environment (see [`Skip`]).
    skips: sled::Tree,
    /// Who waits for each environment to be free, in order (see [`Waiter`]).
    waiters: sled::Tree,
    /// Applied to every audit entry: the audit log is one of the ways text leaves the process.
    redactor: crate::redact::Redactor,
    /// The fault seam: while set, every flush fails as a full disk would (see [`Store::fail_flushes`]).
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One line of the audit log: every command and the decision taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Platform (`slack`, `discord`, `console`, `scheduler`).
    pub platform: String,
    /// Platform user id.
    pub user_id: String,
    /// Configured person, if known.
    pub person: Option<String>,
    /// The command text as received (stored and shown, never run).
    pub text: String,
    /// What was decided.
    pub decision: String,
}

impl AuditEntry {
    /// Whether the command or the decision names `word` (an environment, a person) as a whole
    /// word: `staging` matches `/deploy staging main`, not `staging-2`.
    pub fn names(&self, word: &str) -> bool {
        let is_word = |c: char| c.is_alphanumeric() || c == '-' || c == '_' || c == '.';
        [&self.text, &self.decision].iter().any(|text| text.split(|c: char| !is_word(c)).any(|w| w == word))
    }
}

/// One of the bot's chat messages whose reactions matter, with the reactions last handed to
/// the engine. After a gap in a platform's event stream, adapters compare this with what the
/// platform shows now and hand over the difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedMessage {
    /// Channel and message id.
    pub message: MessageRef,
    /// When the bot posted (or first saw a reaction on) it; the oldest are forgotten first.
    pub since: DateTime<Utc>,
    /// `(user id, emoji)` pairs, as last recorded by the engine.
    pub reactions: BTreeSet<(String, String)>,
}

/// A vote-shaped reaction that arrived on a message no promotion request was bound to yet: an
/// adapter binds the message it posted only once the platform answered the post, and a
/// reaction can arrive first. Kept until the message is bound (then applied as a vote), or for
/// [`EARLY_REACTION_TTL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyReaction {
    /// The platform's user id of who reacted.
    pub user_id: String,
    /// Roles the platform vouched for (`developer`, `lead`).
    pub platform_roles: Vec<String>,
    /// The emoji's name.
    pub emoji: String,
    /// Added (true) or removed (false).
    pub added: bool,
    /// When the platform says it happened.
    pub at: DateTime<Utc>,
    /// When Shipday recorded it (its age, for [`EARLY_REACTION_TTL`]).
    pub recorded_at: DateTime<Utc>,
}

/// What [`Store::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An existing store.
    Existing,
    /// A new, empty store was created (first run).
    Created,
}

impl Store {
    /// Opens the store in `dir`, creating it on first run only.
    pub fn open(dir: &Path) -> Result<(Self, Opened)> {
        let path: PathBuf = dir.join(DB_DIR);
        let opened = if path.exists() { Opened::Existing } else { Opened::Created };
        if opened == Opened::Created {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        }
        let db = sled::Config::new().path(&path).open().map_err(|error| open_error(&path, error))?;
        match (opened, db.get("format")?) {
            (Opened::Created, _) => {
                db.insert("format", FORMAT)?;
                db.insert("created_at", Utc::now().to_rfc3339().as_bytes())?;
                db.flush()?;
                tracing::warn!(path = %path.display(), "created a new, empty state store");
            }
            (Opened::Existing, found) => check_format(found.as_deref(), &path)?,
        }
        let tree = |name: &str| db.open_tree(name).with_context(|| format!("cannot open store tree {name}"));
        let store = Self {
            deploys: tree("deploys")?,
            deploys_by_env: tree("deploys_by_env")?,
            running: tree("running")?,
            last_ok: tree("last_ok")?,
            last_failure: tree("last_failure")?,
            holds: tree("holds")?,
            active: tree("active")?,
            observed: tree("observed")?,
            deliveries: tree("deliveries")?,
            firings: tree("firings")?,
            merges: tree("merges")?,
            slot_waits: tree("slot_waits")?,
            migration_debts: tree("migration_debts")?,
            promotions: tree("promotions")?,
            promotion_messages: tree("promotion_messages")?,
            audit: tree("audit")?,
            tracked: tree("tracked_messages")?,
            jira_moves: tree("jira_moves")?,
            jira_pending: tree("jira_pending")?,
            ticket_scans: tree("ticket_scans")?,
            early_reactions: tree("early_reactions")?,
            freezes: tree("freezes")?,
            skips: tree("skips")?,
            waiters: tree("waiters")?,
            redactor: crate::redact::Redactor::default(),
            failing: Default::default(),
            db,
        };
        Ok((store, opened))
    }

    /// Makes everything written so far durable. Called before every reply.
    ///
    /// sled's synchronous flush runs on a blocking thread: concurrent `flush_async` calls (the
    /// engine's group commit and an adapter recording a delivery at the same moment) were seen
    /// never to complete under load.
    pub async fn flush(&self) -> Result<()> {
        self.check_fault()?;
        let db = self.db.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .context("the flush task stopped")?
            .context("cannot flush the state store")?;
        crate::metrics::store_flushed(started.elapsed());
        Ok(())
    }

    /// Whether the store takes a write and makes it durable now (for `/readyz`): one small
    /// key, overwritten each time, then a flush.
    pub async fn check_writable(&self, now: DateTime<Utc>) -> Result<()> {
        self.db.insert("readyz", now.to_rfc3339().as_bytes()).context("cannot write to the state store")?;
        self.flush().await
    }

    /// Flushes from synchronous code (tools and benchmarks).
    pub fn flush_blocking(&self) {
        if let Err(error) = self.check_fault().and_then(|()| Ok(self.db.flush()?)) {
            tracing::error!(%error, "cannot flush the state store");
        }
    }

    /// The next deploy number: 1, 2, 3… across restarts, so people can name deploys.
    pub fn next_deploy_id(&self) -> Result<u64> {
        let next = self.db.update_and_fetch("deploy_seq", |old| {
            let n = old.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        let bytes = next.expect("update_and_fetch returns the new value");
        Ok(u64::from_be_bytes(bytes.as_ref().try_into()?))
    }

    /// Writes a deploy record and keeps the indexes in step with its outcome.
    pub fn put_deploy(&self, record: &DeployRecord) -> Result<()> {
        let id = record.id.to_be_bytes();
        self.deploys.insert(id, encode(record)?)?;
        self.deploys_by_env.insert(env_key(&record.env, record.id), &[])?;
        match &record.outcome {
            Outcome::Running => {
                self.running.insert(id, &[])?;
            }
            Outcome::Succeeded => {
                self.running.remove(id)?;
                self.last_ok.insert(record.env.as_bytes(), &id)?;
            }
            Outcome::Failed { .. } | Outcome::Interrupted | Outcome::Cancelled { .. } => {
                self.running.remove(id)?;
                self.last_failure.insert(record.env.as_bytes(), &id)?;
            }
        }
        Ok(())
    }

    /// The deploy with this id.
    pub fn deploy(&self, id: u64) -> Result<Option<DeployRecord>> {
        self.deploys.get(id.to_be_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Records the tickets a deploy shipped, changing nothing else (not the indexes: a newer
    /// deploy may be live by the time an older one's commits are read).
    pub fn set_deploy_tickets(&self, id: u64, tickets: &[String]) -> Result<()> {
        if let Some(mut record) = self.deploy(id)? {
            record.tickets = tickets.to_vec();
            self.deploys.insert(id.to_be_bytes(), encode(&record)?)?;
        }
        Ok(())
    }

    /// The newest deploy of `env`, whatever its outcome.
    pub fn latest_deploy(&self, env: &str) -> Result<Option<DeployRecord>> {
        match self.deploys_by_env.scan_prefix(env_prefix(env)).next_back() {
            Some(entry) => {
                let (key, _) = entry?;
                self.deploy(id_from_env_key(&key))
            }
            None => Ok(None),
        }
    }

    /// The newest deploy of `env` that succeeded: what is believed to be live.
    pub fn last_ok(&self, env: &str) -> Result<Option<DeployRecord>> {
        self.indexed(&self.last_ok, env)
    }

    /// The newest failed or interrupted deploy of `env`.
    pub fn last_failure(&self, env: &str) -> Result<Option<DeployRecord>> {
        self.indexed(&self.last_failure, env)
    }

    fn indexed(&self, tree: &sled::Tree, env: &str) -> Result<Option<DeployRecord>> {
        match tree.get(env.as_bytes())? {
            Some(id) => self.deploy(u64::from_be_bytes(id.as_ref().try_into()?)),
            None => Ok(None),
        }
    }

    /// Newest first, `limit` at most, optionally for one environment.
    pub fn history(&self, env: Option<&str>, limit: usize) -> Result<Vec<DeployRecord>> {
        let mut out = Vec::with_capacity(limit);
        match env {
            Some(env) => {
                for entry in self.deploys_by_env.scan_prefix(env_prefix(env)).rev().take(limit) {
                    let (key, _) = entry?;
                    out.extend(self.deploy(id_from_env_key(&key))?);
                }
            }
            None => {
                for entry in self.deploys.iter().rev().take(limit) {
                    out.push(decode(&entry?.1)?);
                }
            }
        }
        Ok(out)
    }

    /// Deploys recorded as running.
    pub fn running_deploys(&self) -> Result<Vec<DeployRecord>> {
        let mut out = Vec::new();
        for entry in self.running.iter() {
            let (id, _) = entry?;
            out.extend(self.deploy(u64::from_be_bytes(id.as_ref().try_into()?))?);
        }
        Ok(out)
    }

    /// The claim or lock on `env`.
    pub fn hold(&self, env: &str) -> Result<Option<Hold>> {
        self.holds.get(env)?.map(|v| decode(&v)).transpose()
    }

    /// Sets or clears the hold on `env`.
    pub fn set_hold(&self, env: &str, hold: Option<&Hold>) -> Result<()> {
        match hold {
            Some(hold) => self.holds.insert(env, encode(hold)?)?,
            None => self.holds.remove(env)?,
        };
        Ok(())
    }

    /// Every lead's freeze, expired or not (see [`crate::release::freeze::active_freeze`]).
    pub fn freezes(&self) -> Result<Vec<Freeze>> {
        self.freezes.iter().map(|entry| decode(&entry?.1)).collect()
    }

    /// Sets or lifts the freeze of `scope` (an environment or `all`).
    pub fn set_freeze(&self, scope: &str, freeze: Option<&Freeze>) -> Result<()> {
        match freeze {
            Some(freeze) => self.freezes.insert(scope, encode(freeze)?)?,
            None => self.freezes.remove(scope)?,
        };
        Ok(())
    }

    /// Who waits for `env` to be free, first come first.
    pub fn waiters(&self, env: &str) -> Result<Vec<Waiter>> {
        Ok(self.waiters.get(env)?.map(|v| decode(&v)).transpose()?.unwrap_or_default())
    }

    /// Sets who waits for `env` (none: the list is removed).
    pub fn set_waiters(&self, env: &str, waiters: &[Waiter]) -> Result<()> {
        match waiters {
            [] => self.waiters.remove(env)?,
            some => self.waiters.insert(env, encode(&some)?)?,
        };
        Ok(())
    }

    /// The lead's `/skip` waiting for `env`'s next automatic deploy.
    pub fn skip(&self, env: &str) -> Result<Option<Skip>> {
        self.skips.get(env)?.map(|v| decode(&v)).transpose()
    }

    /// Records or clears (once used) a `/skip` of `env`.
    pub fn set_skip(&self, env: &str, skip: Option<&Skip>) -> Result<()> {
        match skip {
            Some(skip) => self.skips.insert(env, encode(skip)?)?,
            None => self.skips.remove(env)?,
        };
        Ok(())
    }

    /// The environments someone waits for.
    pub fn waited_for(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in self.waiters.iter() {
            let (key, _) = entry?;
            out.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(out)
    }

    /// The deploy running on `env` (its deploy lock).
    pub fn active(&self, env: &str) -> Result<Option<ActiveDeploy>> {
        self.active.get(env)?.map(|v| decode(&v)).transpose()
    }

    /// Sets or clears the deploy lock of `env`.
    pub fn set_active(&self, env: &str, active: Option<&ActiveDeploy>) -> Result<()> {
        match active {
            Some(active) => self.active.insert(env, encode(active)?)?,
            None => self.active.remove(env)?,
        };
        Ok(())
    }

    /// The last reading of `env`'s HEAD.
    pub fn observation(&self, env: &str) -> Result<Option<Observation>> {
        self.observed.get(env)?.map(|v| decode(&v)).transpose()
    }

    /// Records a reading of `env`'s HEAD.
    pub fn set_observation(&self, env: &str, observation: &Observation) -> Result<()> {
        self.observed.insert(env, encode(observation)?)?;
        Ok(())
    }

    /// Whether an inbound delivery (a Slack `event_id`, a Discord interaction id, a GitHub
    /// delivery id) was already handled. Adapters check this before acting.
    pub fn delivery_seen(&self, key: &str) -> Result<bool> {
        Ok(self.deliveries.contains_key(key)?)
    }

    /// Marks an inbound delivery as handled, once its effect is durably recorded, so a retry
    /// of a delivery that crashed before this point is still processed.
    pub async fn record_delivery(&self, key: &str, at: DateTime<Utc>) -> Result<()> {
        self.deliveries.insert(key, at.to_rfc3339().as_bytes())?;
        self.flush().await
    }

    /// Fault injection for tests: drops the delivery records, so every later read of them fails
    /// as an unreadable store's would (the adapters' dedupe must then fail closed).
    #[doc(hidden)]
    pub fn break_delivery_records(&self) -> Result<()> {
        self.db.drop_tree("deliveries")?;
        Ok(())
    }

    /// Whether the merge stream (merged pull requests and pushes to the first environment's
    /// branch) already handled commit `sha` for `env`, whatever delivery announced it.
    pub fn merge_seen(&self, env: &str, sha: &str) -> Result<bool> {
        Ok(self.merges.contains_key(merge_key(env, sha))?)
    }

    /// Records that the merge stream handled `sha` for `env` (made durable by the next flush).
    pub fn mark_merge(&self, env: &str, sha: &str, at: DateTime<Utc>) -> Result<()> {
        self.merges.insert(merge_key(env, sha), at.to_rfc3339().as_bytes())?;
        Ok(())
    }

    /// The newest commit the merge stream decided `env` should run. Never expires: a delivery
    /// naming an older commit is checked against it, so a replay cannot roll `env` back.
    pub fn merge_head(&self, env: &str) -> Result<Option<String>> {
        Ok(self.db.get(merge_head_key(env))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Moves the merge stream's head for `env` (made durable by the next flush).
    pub fn set_merge_head(&self, env: &str, sha: &str) -> Result<()> {
        self.db.insert(merge_head_key(env), sha.as_bytes())?;
        Ok(())
    }

    /// Remembers a merged pull request (by its merge commit) until [`PULL_TTL`], so the deploys
    /// that ship that commit read tickets from its branch name and title too (made durable by
    /// the next flush).
    pub fn put_merged_pull(&self, pull: &MergedPull) -> Result<()> {
        self.db.insert(merged_pull_key(&pull.merge_sha), encode(pull)?)?;
        Ok(())
    }

    /// Every merged pull request remembered (unreadable records are skipped and logged).
    pub fn merged_pulls(&self) -> Result<Vec<MergedPull>> {
        let mut pulls = Vec::new();
        for entry in self.db.scan_prefix(MERGED_PULL_PREFIX) {
            let (key, value) = entry?;
            match decode::<MergedPull>(&value) {
                Ok(pull) => pulls.push(pull),
                Err(error) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&key), error = format!("{error:#}"), "skipping an unreadable merged pull request")
                }
            }
        }
        Ok(pulls)
    }

    /// Forgets dedupe records older than their documented lifetimes ([`DELIVERY_TTL`],
    /// [`MERGE_TTL`], [`FIRING_TTL`]), so those trees stay bounded. Run at start and
    /// periodically; returns how many records were removed (durable at the next flush).
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut removed = 0;
        for (tree, ttl) in [(&self.deliveries, DELIVERY_TTL), (&self.merges, MERGE_TTL)] {
            let cutoff = now - ttl;
            for entry in tree.iter() {
                let (key, at) = entry?;
                let at = DateTime::parse_from_rfc3339(&String::from_utf8_lossy(&at)).map(|t| t.with_timezone(&Utc));
                // An unreadable time is not evidence of age: such a record is kept.
                if at.is_ok_and(|at| at < cutoff) {
                    tree.remove(key)?;
                    removed += 1;
                }
            }
        }
        let cutoff = now - PULL_TTL;
        for entry in self.db.scan_prefix(MERGED_PULL_PREFIX) {
            let (key, value) = entry?;
            if decode::<MergedPull>(&value).is_ok_and(|pull| pull.merged_at < cutoff) {
                self.db.remove(key)?;
                removed += 1;
            }
        }
        let cutoff = now - EARLY_REACTION_TTL;
        for entry in self.early_reactions.iter() {
            let (key, value) = entry?;
            // An unreadable record is not evidence of age: it is kept, like a delivery's.
            if decode::<EarlyReaction>(&value).is_ok_and(|early| early.recorded_at < cutoff) {
                self.early_reactions.remove(key)?;
                removed += 1;
            }
        }
        // A firing's key ends with its instant; only firings behind the scheduler's cursor are
        // ever claimed again, so older ones can go.
        let cursor = self.scheduler_cursor()?.unwrap_or(now).min(now);
        let cutoff = cursor - FIRING_TTL;
        for entry in self.firings.iter() {
            let (key, _) = entry?;
            let key_text = String::from_utf8_lossy(&key);
            let at = key_text.rsplit_once('@').map(|(_, at)| DateTime::parse_from_rfc3339(at));
            if let Some(Ok(at)) = at
                && at.with_timezone(&Utc) < cutoff
            {
                self.firings.remove(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Claims one firing of a scheduled job (compare-and-swap on `job@instant`), recording
    /// whether it was sent or reported missed. Returns false if it was already claimed, so
    /// however often the bot restarts, a firing has its effect at most once.
    pub async fn claim_firing(&self, job: &str, at: DateTime<Utc>, outcome: &str) -> Result<bool> {
        let key = format!("{job}@{}", at.to_rfc3339());
        let claimed = self.firings.compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(outcome.as_bytes()))?.is_ok();
        if claimed {
            self.flush().await?;
        }
        Ok(claimed)
    }

    /// How a firing was handled (`sent`, `missed`), if it was.
    pub fn firing(&self, job: &str, at: DateTime<Utc>) -> Result<Option<String>> {
        let key = format!("{job}@{}", at.to_rfc3339());
        Ok(self.firings.get(key.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Up to when the scheduler has looked.
    pub fn scheduler_cursor(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .db
            .get("scheduler_cursor")?
            .and_then(|v| DateTime::parse_from_rfc3339(&String::from_utf8_lossy(&v)).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    /// Moves the scheduler's cursor.
    pub async fn set_scheduler_cursor(&self, at: DateTime<Utc>) -> Result<()> {
        self.db.insert("scheduler_cursor", at.to_rfc3339().as_bytes())?;
        self.flush().await
    }

    /// Slots whose scheduled deploy waits for a claim to be released: env → slot start.
    pub fn slot_waits(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut out = Vec::new();
        for entry in self.slot_waits.iter() {
            let (env, at) = entry?;
            if let Ok(at) = DateTime::parse_from_rfc3339(&String::from_utf8_lossy(&at)) {
                out.push((String::from_utf8_lossy(&env).into_owned(), at.with_timezone(&Utc)));
            }
        }
        Ok(out)
    }

    /// Records (or clears) that `env`'s slot deploy is waiting.
    pub fn set_slot_wait(&self, env: &str, slot: Option<DateTime<Utc>>) -> Result<()> {
        match slot {
            Some(at) => self.slot_waits.insert(env, at.to_rfc3339().as_bytes())?,
            None => self.slot_waits.remove(env)?,
        };
        Ok(())
    }

    /// Migrations a personal branch left applied on `env`, to undo before other code goes there.
    pub fn migration_debt(&self, env: &str) -> Result<Option<MigrationDebt>> {
        self.migration_debts.get(env)?.map(|v| decode(&v)).transpose()
    }

    /// Records or clears `env`'s migration debt.
    pub fn set_migration_debt(&self, env: &str, debt: Option<&MigrationDebt>) -> Result<()> {
        match debt {
            Some(debt) => self.migration_debts.insert(env, encode(debt)?)?,
            None => self.migration_debts.remove(env)?,
        };
        Ok(())
    }

    /// Writes a promotion request.
    pub fn put_promotion(&self, request: &PromotionRequest) -> Result<()> {
        self.promotions.insert(request.id.to_be_bytes(), encode(request)?)?;
        Ok(())
    }

    /// The promotion request with this id.
    pub fn promotion(&self, id: u64) -> Result<Option<PromotionRequest>> {
        self.promotions.get(id.to_be_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Every promotion request that is not finished (pending, approved or executing).
    pub fn open_promotions(&self) -> Result<Vec<PromotionRequest>> {
        let mut out = Vec::new();
        for entry in self.promotions.iter().rev() {
            let request: PromotionRequest = decode(&entry?.1)?;
            if matches!(
                request.state,
                RequestState::Pending | RequestState::Approved { .. } | RequestState::Executing { .. }
            ) {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// The next promotion request number.
    pub fn next_promotion_id(&self) -> Result<u64> {
        let next = self.db.update_and_fetch("promotion_seq", |old| {
            let n = old.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        let bytes = next.expect("update_and_fetch returns the new value");
        Ok(u64::from_be_bytes(bytes.as_ref().try_into()?))
    }

    /// Binds a chat message (where a request is shown) to the request, so reactions on it vote.
    pub fn bind_promotion_message(&self, platform: &str, message: &MessageRef, id: u64) -> Result<()> {
        self.promotion_messages.insert(message_key(platform, message), &id.to_be_bytes())?;
        Ok(())
    }

    /// The request a chat message shows, if any.
    pub fn promotion_for_message(&self, platform: &str, message: &MessageRef) -> Result<Option<u64>> {
        match self.promotion_messages.get(message_key(platform, message))? {
            Some(id) => Ok(Some(u64::from_be_bytes(id.as_ref().try_into()?))),
            None => Ok(None),
        }
    }

    /// Keeps a reaction on `message` until the message is bound to a request (durable at the
    /// next flush). Reactions on one message are kept in the order they arrived.
    pub fn keep_early_reaction(&self, platform: &str, message: &MessageRef, early: &EarlyReaction) -> Result<()> {
        let mut key = early_reaction_prefix(platform, message);
        key.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.early_reactions.insert(key, encode(early)?)?;
        Ok(())
    }

    /// Takes the reactions kept for `message`, oldest first, forgetting them (durable at the
    /// next flush). Damaged records are forgotten and skipped.
    pub fn take_early_reactions(&self, platform: &str, message: &MessageRef) -> Result<Vec<EarlyReaction>> {
        let mut out = Vec::new();
        for entry in self.early_reactions.scan_prefix(early_reaction_prefix(platform, message)) {
            let (key, value) = entry?;
            self.early_reactions.remove(key)?;
            match decode(&value) {
                Ok(early) => out.push(early),
                Err(error) => tracing::warn!(error = format!("{error:#}"), "skipped a damaged early reaction"),
            }
        }
        Ok(out)
    }

    /// The messages (platform, message) that show request `id`.
    pub fn promotion_messages(&self, id: u64) -> Result<Vec<(String, MessageRef)>> {
        let mut out = Vec::new();
        for entry in self.promotion_messages.iter() {
            let (key, value) = entry?;
            if value.as_ref() == id.to_be_bytes() {
                let key = String::from_utf8_lossy(&key).into_owned();
                let mut parts = key.splitn(3, '\u{1f}');
                if let (Some(platform), Some(channel), Some(message)) = (parts.next(), parts.next(), parts.next()) {
                    out.push((platform.to_owned(), MessageRef { channel: channel.to_owned(), id: message.to_owned() }));
                }
            }
        }
        Ok(out)
    }

    /// The tracked messages of `platform`, newest first.
    pub fn tracked_messages(&self, platform: &str) -> Result<Vec<TrackedMessage>> {
        let mut out: Vec<TrackedMessage> =
            self.tracked.scan_prefix(env_prefix(platform)).map(|e| decode(&e?.1)).collect::<Result<_>>()?;
        out.sort_by_key(|m| std::cmp::Reverse(m.since));
        Ok(out)
    }

    /// One tracked message of `platform`.
    pub fn tracked_message(&self, platform: &str, message: &MessageRef) -> Result<Option<TrackedMessage>> {
        self.tracked.get(tracked_key(platform, message))?.map(|v| decode(&v)).transpose()
    }

    /// Writes a tracked message of `platform`, then forgets the oldest beyond `keep`.
    pub fn put_tracked_message(&self, platform: &str, tracked: &TrackedMessage, keep: usize) -> Result<()> {
        self.tracked.insert(tracked_key(platform, &tracked.message), encode(tracked)?)?;
        for old in self.tracked_messages(platform)?.iter().skip(keep) {
            self.forget_tracked_message(platform, &old.message)?;
        }
        Ok(())
    }

    /// Stops tracking a message (it was deleted).
    pub fn forget_tracked_message(&self, platform: &str, message: &MessageRef) -> Result<()> {
        self.tracked.remove(tracked_key(platform, message))?;
        Ok(())
    }

    /// This store, with audit entries redacted by `redactor` (the engine's, which knows the
    /// configured secret values).
    pub fn with_redactor(mut self, redactor: crate::redact::Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Appends to the audit log, with secrets redacted from the command text and the decision.
    pub fn audit(&self, entry: &AuditEntry) -> Result<()> {
        let id = self.db.generate_id()?;
        let entry = AuditEntry {
            text: self.redactor.redact(&entry.text),
            decision: self.redactor.redact(&entry.decision),
            ..entry.clone()
        };
        self.audit.insert(id.to_be_bytes(), encode(&entry)?)?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_tail(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit.iter().rev().take(limit).map(|e| decode(&e?.1)).collect()
    }

    /// The next ticket-move number (the Jira outbox delivers a ticket's moves in this order).
    pub fn next_jira_move_id(&self) -> Result<u64> {
        let next = self.db.update_and_fetch("jira_move_seq", |old| {
            let n = old.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        let bytes = next.expect("update_and_fetch returns the new value");
        Ok(u64::from_be_bytes(bytes.as_ref().try_into()?))
    }

    /// Writes a ticket move, keeping the index of pending ones in step with its state.
    pub fn put_jira_move(&self, record: &TicketMove) -> Result<()> {
        let id = record.id.to_be_bytes();
        self.jira_moves.insert(id, encode(record)?)?;
        if record.is_pending() {
            self.jira_pending.insert(id, &[])?;
        } else {
            self.jira_pending.remove(id)?;
        }
        Ok(())
    }

    /// Ticket moves still to deliver, oldest first.
    pub fn pending_jira_moves(&self) -> Result<Vec<TicketMove>> {
        let mut out = Vec::new();
        for entry in self.jira_pending.iter() {
            let (id, _) = entry?;
            if let Some(found) = self.jira_moves.get(id)? {
                out.push(decode(&found)?);
            }
        }
        Ok(out)
    }

    /// The newest `limit` ticket moves, whatever their state, newest first.
    pub fn recent_jira_moves(&self, limit: usize) -> Result<Vec<TicketMove>> {
        self.jira_moves.iter().rev().take(limit).map(|e| decode(&e?.1)).collect()
    }

    /// Every ticket move one deploy queued, oldest first, whatever their state: the outbox
    /// reports a deploy's give-ups together once none of its moves is pending.
    pub fn jira_moves_of_deploy(&self, deploy_id: u64) -> Result<Vec<TicketMove>> {
        let mut out = Vec::new();
        for entry in self.jira_moves.iter() {
            let found: TicketMove = decode(&entry?.1)?;
            if found.deploy_id == Some(deploy_id) {
                out.push(found);
            }
        }
        Ok(out)
    }

    /// Remembers that a deploy's commits are still to be read for ticket keys.
    pub fn put_ticket_scan(&self, scan: &TicketScan) -> Result<()> {
        self.ticket_scans.insert(scan.deploy_id.to_be_bytes(), encode(scan)?)?;
        Ok(())
    }

    /// Deploys whose commits are still to be read for ticket keys.
    pub fn ticket_scans(&self) -> Result<Vec<TicketScan>> {
        self.ticket_scans.iter().map(|e| decode(&e?.1)).collect()
    }

    /// A deploy's commits were read (or never will be).
    pub fn remove_ticket_scan(&self, deploy_id: u64) -> Result<()> {
        self.ticket_scans.remove(deploy_id.to_be_bytes())?;
        Ok(())
    }

    /// The tickets found in Staging when the drag window last closed, and when.
    pub fn staging_snapshot(&self) -> Result<Option<(DateTime<Utc>, Vec<String>)>> {
        self.db.get("jira_staging_snapshot")?.map(|v| decode(&v)).transpose()
    }

    /// Records the tickets found in Staging at a window's close.
    pub fn set_staging_snapshot(&self, at: DateTime<Utc>, tickets: &[String]) -> Result<()> {
        self.db.insert("jira_staging_snapshot", encode(&(at, tickets))?)?;
        Ok(())
    }

    /// After a crash: marks deploys left running as interrupted, frees their deploy locks and
    /// returns them so the adapters can say what was interrupted.
    pub fn recover_interrupted(&self, now: DateTime<Utc>) -> Result<Vec<DeployRecord>> {
        let mut interrupted = Vec::new();
        for mut record in self.running_deploys()? {
            record.outcome = Outcome::Interrupted;
            record.finished_at = Some(now);
            self.put_deploy(&record)?;
            if let Some(active) = self.active(&record.env)?.filter(|a| a.deploy_id == record.id) {
                // Not free: held as interrupted until a deploy has made sure on the host that
                // no step of this one still runs (see `set_interrupted`).
                self.set_interrupted(&record.env, Some(&active))?;
                self.set_active(&record.env, None)?;
            }
            interrupted.push(record);
        }
        self.settle_intents()?;
        self.check_fault()?;
        self.db.flush()?;
        Ok(interrupted)
    }
}

// ---- Deploy recovery (issue 13, deploy side): intents, interrupted holds, the fault seam ----

/// What a deploy may have left on its environment's host, recorded (and flushed) before its
/// first step runs: if it is interrupted, its possible effects are treated as real.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployIntent {
    /// The deploy.
    pub deploy_id: u64,
    /// The migration debt the environment has if every step of the deploy ran (and, if it
    /// pays an older one, if only some did): the branch-only migrations that may be applied,
    /// with their undo targets. `None`: the deploy can leave none behind.
    pub debt: Option<MigrationDebt>,
}

impl Store {
    /// Records what deploy `intent.deploy_id` may leave on `env` (durable at the next flush,
    /// which comes before its first step).
    pub fn set_deploy_intent(&self, env: &str, intent: Option<&DeployIntent>) -> Result<()> {
        match intent {
            Some(intent) => self.db.insert(intent_key(env), encode(intent)?)?,
            None => self.db.remove(intent_key(env))?,
        };
        Ok(())
    }

    /// The intent of the deploy running (or interrupted) on `env`.
    pub fn deploy_intent(&self, env: &str) -> Result<Option<DeployIntent>> {
        self.db.get(intent_key(env))?.map(|v| decode(&v)).transpose()
    }

    /// After a crash: every intent still recorded belongs to a deploy that never settled, so
    /// what it may have done is taken as done: its debt becomes the environment's.
    fn settle_intents(&self) -> Result<()> {
        let mut found = Vec::new();
        for entry in self.db.scan_prefix(INTENT_PREFIX) {
            let (key, value) = entry?;
            let env = String::from_utf8_lossy(key.get(INTENT_PREFIX.len()..).unwrap_or_default()).into_owned();
            found.push((env, decode::<DeployIntent>(&value)?));
        }
        for (env, intent) in found {
            if let Some(debt) = &intent.debt {
                tracing::warn!(env = %env, deploy = intent.deploy_id, git_ref = %debt.git_ref,
                    "an interrupted deploy may have applied branch-only migrations; they are recorded as to undo");
                self.set_migration_debt(&env, Some(debt))?;
            }
            self.set_deploy_intent(&env, None)?;
        }
        Ok(())
    }

    /// The deploy a crash interrupted on `env`, while Shipday has not yet made sure that none
    /// of its steps still runs on the host.
    pub fn interrupted(&self, env: &str) -> Result<Option<ActiveDeploy>> {
        self.db.get(interrupted_key(env))?.map(|v| decode(&v)).transpose()
    }

    /// Sets or clears `env`'s interrupted hold.
    pub fn set_interrupted(&self, env: &str, active: Option<&ActiveDeploy>) -> Result<()> {
        match active {
            Some(active) => self.db.insert(interrupted_key(env), encode(active)?)?,
            None => self.db.remove(interrupted_key(env))?,
        };
        Ok(())
    }

    /// Remembers a chat message that shows deploy `deploy_id` on `platform`, so a restart after
    /// a crash can edit it to say the deploy was interrupted (durable at the next flush).
    pub fn add_deploy_message(&self, deploy_id: u64, platform: &str, message: &MessageRef) -> Result<()> {
        let mut key = deploy_message_prefix(deploy_id, platform);
        key.extend_from_slice(format!("{}\u{1f}{}", message.channel, message.id).as_bytes());
        self.db.insert(key, &[])?;
        Ok(())
    }

    /// The chat messages on `platform` that show deploy `deploy_id`.
    pub fn deploy_messages(&self, deploy_id: u64, platform: &str) -> Result<Vec<MessageRef>> {
        let prefix = deploy_message_prefix(deploy_id, platform);
        let mut out = Vec::new();
        for entry in self.db.scan_prefix(&prefix) {
            let (key, _) = entry?;
            let rest = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned();
            if let Some((channel, id)) = rest.split_once('\u{1f}') {
                out.push(MessageRef { channel: channel.to_owned(), id: id.to_owned() });
            }
        }
        Ok(out)
    }

    /// The fault seam, for tests and drills: while `on`, every flush fails the way it does on
    /// a full disk (ENOSPC), so nothing written since the last good flush is durable.
    pub fn fail_flushes(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn check_fault(&self) -> Result<()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(anyhow::Error::new(std::io::Error::from_raw_os_error(28)))
                .context("cannot flush the state store");
        }
        Ok(())
    }
}

const INTENT_PREFIX: &[u8] = b"deploy_intent\0";

fn intent_key(env: &str) -> Vec<u8> {
    let mut key = INTENT_PREFIX.to_vec();
    key.extend_from_slice(env.as_bytes());
    key
}

fn deploy_message_prefix(deploy_id: u64, platform: &str) -> Vec<u8> {
    let mut key = b"deploy_message\0".to_vec();
    key.extend_from_slice(&deploy_id.to_be_bytes());
    key.extend_from_slice(platform.as_bytes());
    key.push(0x1f);
    key
}

fn interrupted_key(env: &str) -> Vec<u8> {
    let mut key = b"interrupted\0".to_vec();
    key.extend_from_slice(env.as_bytes());
    key
}

// ---- end of deploy recovery ----

fn merge_key(env: &str, sha: &str) -> Vec<u8> {
    let mut key = env_prefix(env);
    key.extend_from_slice(sha.as_bytes());
    key
}

/// Where merged pull requests live in the default tree, by merge commit.
const MERGED_PULL_PREFIX: &[u8] = b"merged_pull\0";

fn merged_pull_key(sha: &str) -> Vec<u8> {
    let mut key = MERGED_PULL_PREFIX.to_vec();
    key.extend_from_slice(sha.to_ascii_lowercase().as_bytes());
    key
}

fn merge_head_key(env: &str) -> Vec<u8> {
    let mut key = b"merge_head\0".to_vec();
    key.extend_from_slice(env.as_bytes());
    key
}

fn message_key(platform: &str, message: &MessageRef) -> Vec<u8> {
    format!("{platform}\u{1f}{}\u{1f}{}", message.channel, message.id).into_bytes()
}

fn early_reaction_prefix(platform: &str, message: &MessageRef) -> Vec<u8> {
    let mut key = message_key(platform, message);
    key.push(0x1f);
    key
}

fn tracked_key(platform: &str, message: &MessageRef) -> Vec<u8> {
    let mut key = env_prefix(platform);
    key.extend_from_slice(message.channel.as_bytes());
    key.push(0);
    key.extend_from_slice(message.id.as_bytes());
    key
}

fn env_prefix(env: &str) -> Vec<u8> {
    let mut key = env.as_bytes().to_vec();
    key.push(0);
    key
}

fn env_key(env: &str, id: u64) -> Vec<u8> {
    let mut key = env_prefix(env);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn id_from_env_key(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.last_chunk::<8>().copied().unwrap_or_default())
}

// ---- Promotions after a restart (issue 13, promotion side) ----

impl Store {
    /// The `limit` newest promotion requests, newest first, whatever their state.
    pub fn recent_promotions(&self, limit: usize) -> Result<Vec<PromotionRequest>> {
        self.promotions.iter().rev().take(limit).map(|entry| decode(&entry?.1)).collect()
    }
}

/// Why [`Store::open`] could not open the database, in words an operator can act on. sled lets
/// one process hold a store at a time; a second one gets its lock error.
fn open_error(path: &Path, error: sled::Error) -> anyhow::Error {
    if is_locked(&error) {
        return anyhow::anyhow!(
            "cannot open the state store at {}: another Shipday process (a running `shipday serve` or \
             `shipday console`) holds it, and the store can be open in one process at a time. Stop that \
             process first. (`shipday backup FILE` copies the store of a running `shipday serve` through \
             the control socket it keeps in the state directory, control.sock; none answers there, so the \
             process holding the store is a `shipday console`, or a `shipday serve` still starting)",
            path.display()
        );
    }
    anyhow::Error::new(error).context(format!(
        "cannot open the state store at {}. Shipday will not start with an empty store in its place: \
         stop any other Shipday using it, or restore it from a backup",
        path.display()
    ))
}

/// Whether sled refused because another process holds the store's lock.
fn is_locked(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// The format number in a marker (`shipday-store-N`), if it is one.
fn parse_format(marker: &[u8]) -> Option<u32> {
    std::str::from_utf8(marker).ok()?.strip_prefix(FORMAT_PREFIX)?.parse().ok()
}

/// Accepts the format marker of [`STORE_FORMAT`] and refuses anything else, saying what to do.
fn check_format(found: Option<&[u8]>, path: &Path) -> Result<()> {
    match found.map(|marker| (marker, parse_format(marker))) {
        Some((_, Some(STORE_FORMAT))) => Ok(()),
        Some((_, Some(newer))) if newer > STORE_FORMAT => bail!(
            "the state store at {} was written by a newer Shipday (store format {newer}; this Shipday \
             reads format {STORE_FORMAT}). Shipday will not start on it, nor with an empty store in its \
             place: run the newer Shipday, or restore a backup made by this version into an empty \
             state directory (`shipday restore FILE`)",
            path.display()
        ),
        Some((_, Some(other))) => bail!(
            "the state store at {} has store format {other}, which this Shipday (format {STORE_FORMAT}) \
             cannot read. Shipday will not start with an empty store in its place: restore a backup made \
             by this version (`shipday restore FILE`)",
            path.display()
        ),
        found => bail!(
            "the state store at {} is not a Shipday store or is damaged (format marker {}). \
             Shipday will not start with an empty store in its place: restore it from a backup",
            path.display(),
            if found.is_some() { "unknown" } else { "missing" }
        ),
    }
}

/// The version of the backup file layout ([`Store::backup`]), independent of sled's on-disk
/// format: a backup is the way from one sled version to the next.
pub const BACKUP_VERSION: u32 = 1;

/// One line of a backup file (JSON lines): a header, every key and value of every tree (hex),
/// then an end line that counts them and hashes every line before it, so a cut or altered
/// file is refused.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BackupLine {
    Header { shipday_backup: u32, store_format: u32, shipday_version: String, created_at: DateTime<Utc> },
    Record { tree: String, key: String, value: String },
    End { records: u64, sha256: String },
}

/// What a backup or a restore copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// sled trees (the default one included).
    pub trees: usize,
    /// Keys, over every tree.
    pub records: u64,
}

/// Writes one backup line and feeds it to the running hash.
fn write_line(out: &mut impl std::io::Write, hash: &mut sha2::Sha256, line: &BackupLine) -> Result<()> {
    use sha2::Digest;
    let mut bytes = serde_json::to_vec(line)?;
    bytes.push(b'\n');
    hash.update(&bytes);
    out.write_all(&bytes).context("cannot write the backup")
}

/// The record count a whole backup ends with; an error when its end line is missing (a
/// snapshot cut short on its way).
pub fn backup_records(backup: &[u8]) -> Result<u64> {
    let last = backup.trim_ascii_end().rsplit(|b| *b == b'\n').next().unwrap_or_default();
    match serde_json::from_slice(last) {
        Ok(BackupLine::End { records, .. }) => Ok(records),
        _ => bail!("the backup is cut short: it has no end line"),
    }
}

impl Store {
    /// Opens the store in `dir` for a tool (backup, audit): like [`Store::open`], but a missing
    /// store is an error, never created.
    pub fn open_existing(dir: &Path) -> Result<Self> {
        let path = dir.join(DB_DIR);
        if !path.exists() {
            bail!("there is no state store at {} (check `state_dir` in the config)", path.display());
        }
        Ok(Self::open(dir)?.0)
    }

    /// Writes every tree, key and value to `out` as a backup (see [`BackupLine`]), after a flush.
    /// Consistent because the store is open in this process only (sled's lock), so nothing
    /// writes while it is read.
    pub fn backup(&self, out: &mut impl std::io::Write, now: DateTime<Utc>) -> Result<Copied> {
        use sha2::Digest;
        self.db.flush().context("cannot flush the state store before the backup")?;
        let mut hash = sha2::Sha256::new();
        let header = BackupLine::Header {
            shipday_backup: BACKUP_VERSION,
            store_format: STORE_FORMAT,
            shipday_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: now,
        };
        write_line(out, &mut hash, &header)?;
        let mut copied = Copied { trees: 0, records: 0 };
        for name in self.db.tree_names() {
            let tree_name =
                String::from_utf8(name.to_vec()).map_err(|_| anyhow::anyhow!("a store tree name is not UTF-8"))?;
            let tree = self.db.open_tree(&name)?;
            copied.trees += 1;
            for entry in tree.iter() {
                let (key, value) = entry.context("cannot read the state store")?;
                let record =
                    BackupLine::Record { tree: tree_name.clone(), key: hex::encode(&key), value: hex::encode(&value) };
                write_line(out, &mut hash, &record)?;
                copied.records += 1;
            }
        }
        let end = BackupLine::End { records: copied.records, sha256: hex::encode(hash.clone().finalize()) };
        write_line(out, &mut hash, &end)?;
        out.flush().context("cannot write the backup")?;
        Ok(copied)
    }

    /// Restores a backup made by [`Store::backup`] into `dir`, which must be empty (or not exist):
    /// a restore never mixes two stores. The store is built beside its final place and moved
    /// there only once every line was read and checked, so a failed restore leaves `dir` empty.
    pub fn restore(dir: &Path, input: impl std::io::BufRead) -> Result<Copied> {
        if dir.exists() {
            let mut entries =
                std::fs::read_dir(dir).with_context(|| format!("cannot read the state directory {}", dir.display()))?;
            if entries.next().is_some() {
                bail!(
                    "the state directory {} is not empty: a restore only fills an empty one, so it never \
                     mixes two stores or overwrites one. Move it aside (`mv {0} {0}.old`) and run the restore again",
                    dir.display()
                );
            }
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        let staging = dir.join(format!("{DB_DIR}.restoring"));
        let result = restore_into(&staging, input);
        match result {
            Ok(copied) => {
                std::fs::rename(&staging, dir.join(DB_DIR)).context("cannot move the restored store into place")?;
                Ok(copied)
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(error)
            }
        }
    }

    /// The audit log from `since` on (all of it without), oldest first.
    pub fn audit_since(&self, since: Option<DateTime<Utc>>) -> Result<Vec<AuditEntry>> {
        let mut entries = Vec::new();
        for item in self.audit.iter() {
            let entry: AuditEntry = decode(&item?.1)?;
            if since.is_none_or(|since| entry.at >= since) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }
}

/// Reads a backup into a new sled database at `path`, checking the header, the count, the hash
/// and the restored format marker.
fn restore_into(path: &Path, input: impl std::io::BufRead) -> Result<Copied> {
    use sha2::Digest;
    let db = sled::Config::new().path(path).create_new(true).open().map_err(|error| open_error(path, error))?;
    let mut hash = sha2::Sha256::new();
    let mut copied = Copied { trees: 0, records: 0 };
    let mut trees: std::collections::HashMap<String, sled::Tree> = std::collections::HashMap::new();
    let mut header_seen = false;
    for (number, line) in input.lines().enumerate() {
        let number = number + 1;
        let line = line.context("cannot read the backup")?;
        let parsed: BackupLine = serde_json::from_str(&line).map_err(|_| {
            anyhow::anyhow!("line {number} of the backup is not a Shipday backup line (is this a Shipday backup?)")
        })?;
        match parsed {
            BackupLine::Header { shipday_backup, store_format, shipday_version, .. } => {
                if header_seen || number != 1 {
                    bail!("line {number} of the backup is a second header: the file is damaged");
                }
                if shipday_backup != BACKUP_VERSION {
                    bail!(
                        "the backup has layout version {shipday_backup} (made by Shipday {shipday_version}); this \
                         Shipday reads version {BACKUP_VERSION}: restore it with that Shipday"
                    );
                }
                if store_format != STORE_FORMAT {
                    bail!(
                        "the backup holds store format {store_format} (made by Shipday {shipday_version}); this \
                         Shipday reads format {STORE_FORMAT}: restore it with a Shipday of that format"
                    );
                }
                header_seen = true;
            }
            BackupLine::Record { .. } | BackupLine::End { .. } if !header_seen => {
                bail!("the backup does not start with its header: is this a Shipday backup?")
            }
            BackupLine::Record { tree, key, value } => {
                let bad = || anyhow::anyhow!("line {number} of the backup is damaged (not hex)");
                let (key, value) = (hex::decode(key).map_err(|_| bad())?, hex::decode(value).map_err(|_| bad())?);
                let tree = match trees.entry(tree) {
                    std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        let opened = db.open_tree(slot.key())?;
                        slot.insert(opened)
                    }
                };
                tree.insert(key, value)?;
                copied.records += 1;
            }
            BackupLine::End { records, sha256 } => {
                if records != copied.records || sha256 != hex::encode(hash.clone().finalize()) {
                    bail!(
                        "the backup is damaged: its end line counts {records} records and a hash the {} lines \
                         before it do not match",
                        copied.records
                    );
                }
                copied.trees = trees.len();
                check_format(db.get("format")?.as_deref(), path)?;
                db.flush().context("cannot flush the restored store")?;
                return Ok(copied);
            }
        }
        hash.update(line.as_bytes());
        hash.update(b"\n");
    }
    bail!("the backup is cut short: it has no end line (was it copied whole?)")
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).context("cannot encode a store record")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).context("a store record is damaged")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_reactions_are_taken_once_in_order_per_message_and_forgotten_after_their_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let early = |emoji: &str, added: bool, recorded_at: DateTime<Utc>| EarlyReaction {
            user_id: "UADA".into(),
            platform_roles: vec!["lead".into()],
            emoji: emoji.into(),
            added,
            at: recorded_at,
            recorded_at,
        };
        let posted = MessageRef { channel: "C1".into(), id: "1700.1".into() };
        // Same prefix, another message.
        let other = MessageRef { channel: "C1".into(), id: "1700.12".into() };
        store.keep_early_reaction("slack", &posted, &early("white_check_mark", true, now)).unwrap();
        store.keep_early_reaction("slack", &posted, &early("white_check_mark", false, now)).unwrap();
        store
            .keep_early_reaction(
                "slack",
                &other,
                &early("x", true, now - EARLY_REACTION_TTL - chrono::Duration::minutes(1)),
            )
            .unwrap();
        store.keep_early_reaction("discord", &posted, &early("x", true, now)).unwrap();
        let taken = store.take_early_reactions("slack", &posted).unwrap();
        assert_eq!(taken.iter().map(|e| e.added).collect::<Vec<_>>(), [true, false], "in the order they arrived");
        assert!(store.take_early_reactions("slack", &posted).unwrap().is_empty(), "taken once");
        assert_eq!(store.prune(now).unwrap(), 1, "only the one older than its lifetime");
        assert!(store.take_early_reactions("slack", &other).unwrap().is_empty());
        assert_eq!(store.take_early_reactions("discord", &posted).unwrap().len(), 1);
    }

    #[test]
    fn dedupe_records_are_forgotten_after_their_lifetimes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let old_delivery = now - DELIVERY_TTL - chrono::Duration::minutes(1);
        let recent = now - DELIVERY_TTL + chrono::Duration::minutes(1);
        store.deliveries.insert("slack:event:old", old_delivery.to_rfc3339().as_bytes()).unwrap();
        store.deliveries.insert("slack:event:new", recent.to_rfc3339().as_bytes()).unwrap();
        store.mark_merge("dev", "a".repeat(40).as_str(), now - MERGE_TTL - chrono::Duration::minutes(1)).unwrap();
        store.mark_merge("dev", "b".repeat(40).as_str(), now - chrono::Duration::days(8)).unwrap();
        store.set_merge_head("dev", &"a".repeat(40)).unwrap();
        let old_firing = now - FIRING_TTL - chrono::Duration::minutes(1);
        let key = format!("reminder@{}", old_firing.to_rfc3339());
        store.firings.insert(key.as_bytes(), b"sent".as_slice()).unwrap();
        let key = format!("reminder@{}", now.to_rfc3339());
        store.firings.insert(key.as_bytes(), b"sent".as_slice()).unwrap();

        assert_eq!(store.prune(now).unwrap(), 3);
        assert!(!store.delivery_seen("slack:event:old").unwrap());
        assert!(store.delivery_seen("slack:event:new").unwrap());
        assert!(!store.merge_seen("dev", &"a".repeat(40)).unwrap());
        assert!(store.merge_seen("dev", &"b".repeat(40)).unwrap());
        assert_eq!(store.merge_head("dev").unwrap(), Some("a".repeat(40)), "the merge head never expires");
        assert_eq!(store.firing("reminder", old_firing).unwrap(), None);
        assert_eq!(store.firing("reminder", now).unwrap().as_deref(), Some("sent"));
    }

    #[test]
    fn a_backup_restores_every_tree_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("a")).unwrap();
        store.next_deploy_id().unwrap();
        let entry = AuditEntry {
            at: Utc::now(),
            platform: "console".into(),
            user_id: "ada".into(),
            person: Some("ada".into()),
            text: "/lock staging QA".into(),
            decision: "locked".into(),
        };
        store.audit(&entry).unwrap();
        store.deliveries.insert(vec![0u8, 255, 10], vec![1u8, 2, 3]).unwrap();
        let mut backup = Vec::new();
        let copied = store.backup(&mut backup, Utc::now()).unwrap();
        assert!(copied.records >= 5, "{copied:?}");
        let restored_dir = dir.path().join("b");
        let restored = Store::restore(&restored_dir, backup.as_slice()).unwrap();
        assert_eq!(restored.records, copied.records);
        let (copy, opened) = Store::open(&restored_dir).unwrap();
        assert_eq!(opened, Opened::Existing);
        assert_eq!(copy.db.checksum().unwrap(), store.db.checksum().unwrap());
        assert_eq!(copy.audit_since(None).unwrap(), vec![entry.clone()]);
        assert!(copy.audit_since(Some(entry.at + chrono::Duration::seconds(1))).unwrap().is_empty());
        assert_eq!(copy.next_deploy_id().unwrap(), 2);
        assert!(entry.names("staging") && !entry.names("stag") && !entry.names("dev"));
    }

    #[test]
    fn the_format_marker_is_read_and_a_newer_or_unknown_one_refused() {
        assert_eq!(format!("{FORMAT_PREFIX}{STORE_FORMAT}").as_bytes(), FORMAT);
        assert_eq!(parse_format(FORMAT), Some(STORE_FORMAT));
        let path = Path::new("/var/lib/shipday/shipday.db");
        assert!(check_format(Some(FORMAT), path).is_ok());
        let newer = format!("{:#}", check_format(Some(b"shipday-store-7"), path).unwrap_err());
        assert!(newer.contains("newer Shipday (store format 7; this Shipday reads format 1)"), "{newer}");
        let unknown = format!("{:#}", check_format(Some(b"something else"), path).unwrap_err());
        assert!(unknown.contains("not a Shipday store or is damaged (format marker unknown)"), "{unknown}");
        let missing = format!("{:#}", check_format(None, path).unwrap_err());
        assert!(missing.contains("format marker missing"), "{missing}");
    }

    #[test]
    fn tracked_messages_keep_the_newest_per_platform() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let start = Utc::now();
        for i in 0..5 {
            let message = MessageRef { channel: "C".into(), id: i.to_string() };
            let tracked =
                TrackedMessage { message, since: start + chrono::Duration::seconds(i), reactions: BTreeSet::new() };
            store.put_tracked_message("discord", &tracked, 3).unwrap();
        }
        let other = TrackedMessage {
            message: MessageRef { channel: "C".into(), id: "9".into() },
            since: start,
            reactions: BTreeSet::new(),
        };
        store.put_tracked_message("slack", &other, 3).unwrap();
        let ids: Vec<String> = store.tracked_messages("discord").unwrap().into_iter().map(|m| m.message.id).collect();
        assert_eq!(ids, ["4", "3", "2"]);
        assert_eq!(store.tracked_messages("slack").unwrap().len(), 1);
    }
}
