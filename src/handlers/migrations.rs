//! The migration guard on the host: what a personal branch would migrate, read before it is
//! deployed, on the deploy's own session. Read-only: git and `showmigrations` only.

use crate::clients::{ExecSession, OutputTail};
use crate::config::Environment;
use crate::release::gitref::Sha;
use crate::release::migrations::{
    BranchMigrations, Migration, MigrationConfig, applied_from_plan, irreversible_operations,
};
use crate::release::plan::{host_script, quote};
use std::collections::{BTreeMap, BTreeSet};

/// Enough for a migration file's source or a long `showmigrations` plan.
const CAPTURE_BYTES: usize = 512 * 1024;

/// Runs one read-only command in the environment's directory and returns its output.
async fn capture(session: &mut dyn ExecSession, env: &Environment, command: &str) -> Result<String, String> {
    let mut output = OutputTail::new(CAPTURE_BYTES);
    let result = session
        .run(&host_script(env, command, env.step_timeout), env.step_timeout, &mut output)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if result.is_ok() {
        Ok(output.text())
    } else {
        Err(format!("`{command}` failed ({}): {}", result.describe(), output.text().trim()))
    }
}

/// Paths that are safe to name in a command (they are quoted too).
fn plain_path(path: &str) -> bool {
    !path.is_empty() && path.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c)) && !path.contains("..")
}

/// What the branch at `sha` adds over the environment's own branch, and where the database is.
pub(crate) async fn assess_branch(
    session: &mut dyn ExecSession,
    env: &Environment,
    config: &MigrationConfig,
    sha: &Sha,
) -> Result<BranchMigrations, String> {
    let base = format!("origin/{}", env.branch);
    capture(session, env, "git fetch --all --prune --quiet").await?;
    let paths: Vec<String> = config.paths.iter().map(|p| quote(p)).collect();
    let added = capture(
        session,
        env,
        &format!("git diff --name-only --diff-filter=A {} -- {}", quote(&format!("{base}...{sha}")), paths.join(" ")),
    )
    .await?;
    let added_paths: Vec<&str> = added.lines().map(str::trim).filter(|p| Migration::from_path(p).is_some()).collect();
    if added_paths.is_empty() {
        return Ok(BranchMigrations::default());
    }
    // Each app's migrations directory, as the branch names it.
    let mut dirs: BTreeMap<String, String> = BTreeMap::new();
    for path in &added_paths {
        if let (Some(migration), Some((dir, _))) = (Migration::from_path(path), path.rsplit_once('/')) {
            dirs.insert(migration.app, dir.to_owned());
        }
    }
    let mut on_base = BTreeMap::new();
    let mut on_branch = BTreeMap::new();
    for (app, dir) in &dirs {
        if !plain_path(dir) {
            return Err(format!("the migrations directory `{}` has an unexpected name", dir.escape_debug()));
        }
        for (tree, files) in [(base.as_str(), &mut on_base), (sha.as_str(), &mut on_branch)] {
            let listing =
                capture(session, env, &format!("git ls-tree --name-only {} -- {}/", quote(tree), quote(dir))).await?;
            let names: BTreeSet<String> =
                listing.lines().filter_map(Migration::from_path).map(|m| format!("{}.py", m.name)).collect();
            files.insert(app.clone(), names);
        }
    }
    let plan = capture(session, env, &config.manage_command(&["showmigrations", "--plan"], quote)).await?;
    let applied = applied_from_plan(&plan);
    let mut assessed = BranchMigrations::assess(&added_paths.join("\n"), &on_base, &on_branch, &applied);
    for path in added_paths.iter().filter(|p| plain_path(p)) {
        let source = capture(session, env, &format!("git show {}", quote(&format!("{sha}:{path}")))).await?;
        if let Some(migration) = Migration::from_path(path) {
            for why in irreversible_operations(&source) {
                assessed.irreversible.push((migration.clone(), why));
            }
        }
    }
    Ok(assessed)
}
