//! Autocomplete (interaction type 4, `APPLICATION_COMMAND_AUTOCOMPLETE`): the registered
//! environment and ref options are marked `autocomplete: true`, and while someone types Discord
//! asks for suggestions; the answer is response type 8 with at most 25 choices.
//!
//! Environments: names and aliases. Refs: the origin's branches, read with `git ls-remote
//! --heads origin` in the checkout of the first environment that runs on this host (a `local`
//! transport), cached for [`BRANCH_TTL`]. Either is filtered by what was typed (prefix matches
//! first, then matches anywhere, case-insensitive). Suggestions only: the parser still checks
//! whatever is sent.

use super::{Shared, commands};
use crate::command::spec::OptionKind;
use crate::release::environment::TransportConfig;
use crate::release::gitref::GitRef;
use serde_json::{Value, json};
use serenity::all::CommandInteraction;
use std::time::{Duration, Instant};

/// Discord's most choices in one autocomplete answer.
pub const MAX_CHOICES: usize = 25;
/// How long the origin's branch list is reused.
pub const BRANCH_TTL: Duration = Duration::from_secs(30);
/// How long `git ls-remote` may take.
const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(5);

/// The branch list and when it was read.
pub(crate) type BranchCache = tokio::sync::Mutex<Option<(Instant, Vec<String>)>>;

/// The type-8 answer to an autocomplete interaction.
pub(crate) async fn answer(shared: &Shared, interaction: &CommandInteraction) -> Value {
    let choices = match interaction.data.autocomplete() {
        Some(focused) => {
            let (name, _) = commands::invoked(
                &shared.book,
                &shared.settings.commands,
                &interaction.data.name,
                &interaction.data.options,
            );
            let kind = shared
                .book
                .get(&name)
                .and_then(|spec| spec.options.iter().find(|o| o.name == focused.name))
                .map(|option| option.kind);
            match kind {
                Some(kind @ (OptionKind::Environment | OptionKind::EnvironmentOrAll)) => {
                    let names = shared
                        .config
                        .environments
                        .iter()
                        .flat_map(|e| std::iter::once(e.name.clone()).chain(e.aliases.iter().cloned()));
                    // `/freeze all` and `/unfreeze all`.
                    let all = (kind == OptionKind::EnvironmentOrAll).then(|| crate::release::freeze::ALL.to_owned());
                    matching(names.chain(all).collect(), focused.value)
                }
                Some(OptionKind::Ref) => matching(branches(shared).await, focused.value),
                _ => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    let choices: Vec<Value> = choices.into_iter().map(|c| json!({ "name": c, "value": c })).collect();
    json!({ "type": 8, "data": { "choices": choices } })
}

/// `candidates` that contain `typed` (any case): those starting with it first, each group in
/// the given order; at most [`MAX_CHOICES`].
pub fn matching(candidates: Vec<String>, typed: &str) -> Vec<String> {
    let typed = typed.trim().to_lowercase();
    let (mut first, rest): (Vec<String>, Vec<String>) = candidates
        .into_iter()
        .filter(|c| c.to_lowercase().contains(&typed))
        .partition(|c| c.to_lowercase().starts_with(&typed));
    first.extend(rest);
    first.dedup();
    first.truncate(MAX_CHOICES);
    first
}

/// The origin's branches, from the cache while it is fresh.
async fn branches(shared: &Shared) -> Vec<String> {
    let mut cache = shared.branches.lock().await;
    if let Some((at, branches)) = cache.as_ref()
        && at.elapsed() < BRANCH_TTL
    {
        return branches.clone();
    }
    let Some(dir) = shared.config.environments.iter().find_map(|e| match &e.transport {
        TransportConfig::Local { dir } => Some(dir.clone()),
        TransportConfig::Ssh(_) => None,
    }) else {
        return Vec::new();
    };
    let run = tokio::process::Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["ls-remote", "--heads", "origin"])
        .kill_on_drop(true)
        .output();
    let branches = match tokio::time::timeout(LS_REMOTE_TIMEOUT, run).await {
        Ok(Ok(output)) if output.status.success() => parse_heads(&String::from_utf8_lossy(&output.stdout)),
        Ok(Ok(output)) => {
            tracing::warn!(stderr = %String::from_utf8_lossy(&output.stderr).trim(), "git ls-remote failed; no branch suggestions");
            Vec::new()
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot run git ls-remote; no branch suggestions");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("git ls-remote took too long; no branch suggestions");
            Vec::new()
        }
    };
    *cache = Some((Instant::now(), branches.clone()));
    branches
}

/// Branch names from `git ls-remote --heads` output (`SHA<TAB>refs/heads/NAME`), only those
/// the parser takes as refs, sorted.
pub fn parse_heads(output: &str) -> Vec<String> {
    let mut names: Vec<String> = output
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter_map(|(_, name)| name.trim().strip_prefix("refs/heads/"))
        .filter(|name| GitRef::parse(name).is_ok())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_come_first_and_there_are_at_most_25() {
        let names = ["dev", "staging", "production", "prod", "feature/prod-fix"].map(String::from).to_vec();
        assert_eq!(matching(names.clone(), "PROD"), ["production", "prod", "feature/prod-fix"]);
        assert_eq!(matching(names, ""), ["dev", "staging", "production", "prod", "feature/prod-fix"]);
        let many: Vec<String> = (0..40).map(|i| format!("feature/x{i}")).collect();
        assert_eq!(matching(many, "x").len(), MAX_CHOICES);
    }

    #[test]
    fn heads_are_read_and_odd_names_dropped() {
        let sha = "a".repeat(40);
        let output = format!(
            "{sha}\trefs/heads/main\n{sha}\trefs/heads/feature/login\n{sha}\trefs/tags/v1\n{sha}\trefs/heads/a..b\ngarbage\n"
        );
        assert_eq!(parse_heads(&output), ["feature/login", "main"]);
    }
}
