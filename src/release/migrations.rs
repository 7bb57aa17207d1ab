//! The migration guard's pure core (Django first). A personal branch deployed to an environment
//! may apply migrations its base branch does not have; before anything else replaces that code,
//! those migrations are undone while the branch's code (the only code that knows how to reverse
//! them) is still checked out.
//!
//! Everything here works on text the host printed (git file lists, `showmigrations --plan`,
//! migration sources) and produces plans; nothing here runs anything.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One Django migration: `orders.0002_discount`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Migration {
    /// App label (the directory that holds `migrations/`).
    pub app: String,
    /// Migration name without `.py`.
    pub name: String,
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

/// App labels are Python identifiers; anything else is refused before it could reach a shell.
pub fn valid_app(app: &str) -> bool {
    let mut chars = app.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && app.len() <= 100
}

/// Migration names are `NNNN_identifier`.
/// Works on bytes only, so any text (a host's output, a GitHub file name) is safe to give it.
pub fn valid_migration_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.get(..4), bytes.get(4), bytes.get(5..)) {
        (Some(number), Some(b'_'), Some(rest)) => {
            name.len() <= 200
                && !rest.is_empty()
                && number.iter().all(u8::is_ascii_digit)
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        _ => false,
    }
}

impl Migration {
    /// Reads `orders/migrations/0002_discount.py` (any leading directories). `None` for paths
    /// that are not migration files or whose names are not plain identifiers.
    pub fn from_path(path: &str) -> Option<Self> {
        let mut parts = path.trim().rsplit('/');
        let file = parts.next()?;
        if parts.next()? != "migrations" {
            return None;
        }
        let app = parts.next()?;
        let name = file.strip_suffix(".py")?;
        (valid_app(app) && valid_migration_name(name)).then(|| Self { app: app.into(), name: name.into() })
    }
}

/// Per app, the last applied migration in plan order, from `manage.py showmigrations --plan`
/// (lines like `[X]  orders.0001_initial`). Apps with nothing applied are absent.
pub fn applied_from_plan(output: &str) -> BTreeMap<String, String> {
    let mut applied = BTreeMap::new();
    for line in output.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("[X]") else { continue };
        let Some((app, name)) = rest.trim().split_once('.') else { continue };
        let name = name.split_whitespace().next().unwrap_or(name);
        if valid_app(app) && valid_migration_name(name) {
            applied.insert(app.to_owned(), name.to_owned());
        }
    }
    applied
}

/// Operations in a migration's source that Django cannot reverse: `RunPython` without a
/// reverse function and `RunSQL` without reverse SQL. A heuristic on the source text: it can
/// miss exotic code, which is why undo failures at release time are handled too.
pub fn irreversible_operations(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (operation, reverse_keyword) in [("RunPython", "reverse_code"), ("RunSQL", "reverse_sql")] {
        let needle = format!("{operation}(");
        let mut rest = source;
        while let Some(at) = rest.find(&needle) {
            let after = rest.get(at + needle.len()..).unwrap_or_default();
            let arguments = split_arguments(call_arguments(after));
            let keyword = |arg: &str| arg.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()));
            let positional = arguments.iter().filter(|a| keyword(a).is_none_or(|(k, _)| !is_identifier(&k))).count();
            let reverse = arguments.iter().filter_map(|a| keyword(a)).find(|(k, _)| k == reverse_keyword);
            let reversible = match reverse {
                Some((_, value)) => value != "None",
                None => positional >= 2,
            };
            if !reversible {
                found.push(format!("{operation} without a reverse"));
            }
            rest = after;
        }
    }
    found
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The text between a call's parentheses (the opening one already consumed).
fn call_arguments(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return text.get(..i).unwrap_or(text);
                }
            }
            _ => {}
        }
    }
    text
}

/// Arguments split at commas outside nested brackets; empty pieces (a trailing comma) dropped.
fn split_arguments(args: &str) -> Vec<String> {
    let (mut pieces, mut current, mut depth) = (Vec::new(), String::new(), 0);
    let mut quote: Option<char> = None;
    for c in args.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                pieces.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    pieces.push(current);
    pieces.into_iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect()
}

/// What a personal branch brings, found before it is deployed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchMigrations {
    /// Migrations the branch adds that its base branch does not have.
    pub added: Vec<Migration>,
    /// Per app the branch migrates: the migration applied before the deploy (`None`: zero).
    pub previous: BTreeMap<String, Option<String>>,
    /// Apps where the base branch also has migrations the branch lacks: two leaf nodes.
    pub conflicts: Vec<String>,
    /// Added migrations that cannot be undone automatically, and why.
    pub irreversible: Vec<(Migration, String)>,
}

impl BranchMigrations {
    /// Builds the picture from what the host printed: files the branch adds, each app's files
    /// on the base and on the branch, and the applied plan.
    pub fn assess(
        added_paths: &str,
        files_on_base: &BTreeMap<String, BTreeSet<String>>,
        files_on_branch: &BTreeMap<String, BTreeSet<String>>,
        applied: &BTreeMap<String, String>,
    ) -> Self {
        let added: Vec<Migration> = added_paths.lines().filter_map(Migration::from_path).collect();
        let apps: BTreeSet<String> = added.iter().map(|m| m.app.clone()).collect();
        let previous = apps.iter().map(|app| (app.clone(), applied.get(app).cloned())).collect();
        let conflicts = apps
            .iter()
            .filter(|app| {
                let base = files_on_base.get(*app).cloned().unwrap_or_default();
                let branch = files_on_branch.get(*app).cloned().unwrap_or_default();
                base.difference(&branch).next().is_some()
            })
            .cloned()
            .collect();
        Self { added, previous, conflicts, irreversible: Vec::new() }
    }

    /// Whether the branch migrates anything.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }

    /// One sentence for the deploy message.
    pub fn summary(&self, env: &str) -> String {
        if self.added.is_empty() {
            return "This branch adds no migrations.".into();
        }
        let names: Vec<String> = self.added.iter().map(Migration::to_string).collect();
        let mut out = format!(
            "This branch adds {}; {} will be undone before {env} gets other code (/release {env}).",
            names.join(", "),
            if names.len() == 1 { "it" } else { "they" }
        );
        if !self.irreversible.is_empty() {
            let list: Vec<String> = self.irreversible.iter().map(|(m, why)| format!("{m} ({why})")).collect();
            out.push_str(&format!(" ⚠️ Cannot be undone automatically: {}.", list.join(", ")));
        }
        out
    }
}

/// The migrations a personal branch left applied on an environment: a debt that must be paid
/// (undone) before other code replaces the branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationDebt {
    /// Who deployed the branch.
    pub owner: String,
    /// Their display name.
    pub owner_name: String,
    /// The branch.
    pub git_ref: String,
    /// What it brought and what to go back to.
    pub migrations: BranchMigrations,
}

/// How migrations are run on an environment's host (Django's `manage.py`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationConfig {
    /// The Python interpreter, relative to the app directory or absolute (`.venv/bin/python`).
    #[serde(default = "default_python")]
    pub python: String,
    /// `manage.py`, relative to the app directory.
    #[serde(default = "default_manage")]
    pub manage: String,
    /// `DJANGO_SETTINGS_MODULE`, if the project needs it set.
    pub settings: Option<String>,
    /// Where migration files live (git pathspecs).
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
}

fn default_python() -> String {
    "python3".into()
}

fn default_manage() -> String {
    "manage.py".into()
}

fn default_paths() -> Vec<String> {
    vec!["*/migrations/[0-9]*.py".into()]
}

impl MigrationConfig {
    /// The `manage.py` invocation, shell-quoted, with the settings module if configured.
    pub fn manage_command(&self, args: &[&str], quote: impl Fn(&str) -> String) -> String {
        let settings =
            self.settings.as_ref().map(|s| format!("DJANGO_SETTINGS_MODULE={} ", quote(s))).unwrap_or_default();
        let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
        format!("{settings}{} {} {}", quote(&self.python), quote(&self.manage), args.join(" "))
    }

    /// The commands that undo `debt`, one per app: `manage.py migrate APP PREVIOUS|zero`.
    pub fn undo_commands(&self, debt: &MigrationDebt, quote: impl Fn(&str) -> String + Copy) -> Vec<(String, String)> {
        debt.migrations
            .previous
            .iter()
            .map(|(app, previous)| {
                let target = previous.as_deref().unwrap_or("zero");
                let name = format!("undo {app} migrations (back to {target})");
                (name, self.manage_command(&["migrate", app, target, "--noinput"], quote))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_migration_name_with_multibyte_characters_is_refused_not_a_panic() {
        assert!(!valid_migration_name("0ää_x"));
        assert!(!valid_migration_name("ääää_x"));
        assert_eq!(Migration::from_path("orders/migrations/0ää_x.py"), None);
        assert!(applied_from_plan("[X]  orders.0ää_x\n").is_empty());
        assert!(valid_migration_name("0002_discount"));
        assert!(!valid_migration_name("0002_"));
    }

    #[test]
    fn migration_paths_are_read_and_checked() {
        let m = Migration::from_path("shop/orders/migrations/0002_discount.py").unwrap();
        assert_eq!((m.app.as_str(), m.name.as_str()), ("orders", "0002_discount"));
        assert!(Migration::from_path("orders/migrations/__init__.py").is_none());
        assert!(Migration::from_path("orders/models.py").is_none());
        assert!(Migration::from_path("or$(id)/migrations/0002_x.py").is_none());
        assert!(Migration::from_path("orders/migrations/0002_x;rm.py").is_none());
    }

    #[test]
    fn the_applied_plan_gives_each_apps_last_migration() {
        let plan = "[X]  contenttypes.0001_initial\n[X]  orders.0001_initial\n[ ]  orders.0002_discount\n[X]  auth.0001_initial\n[X]  auth.0002_alter\n";
        let applied = applied_from_plan(plan);
        assert_eq!(applied.get("orders").map(String::as_str), Some("0001_initial"));
        assert_eq!(applied.get("auth").map(String::as_str), Some("0002_alter"));
    }

    #[test]
    fn irreversible_operations_are_found() {
        let bad = "operations = [migrations.RunPython(backfill)]";
        let good = "operations = [migrations.RunPython(backfill, unbackfill)]";
        let good_kw = "operations = [migrations.RunPython(backfill, reverse_code=migrations.RunPython.noop)]";
        let sql_bad = "migrations.RunSQL(\"UPDATE x SET y = 1\")";
        let sql_good = "migrations.RunSQL(sql=\"A\", reverse_sql=\"B\")";
        let sql_commas = "migrations.RunSQL(\"UPDATE x SET a = 1, b = 2\")";
        assert_eq!(irreversible_operations(sql_commas).len(), 1);
        let elidable = "migrations.RunPython(backfill, elidable=True)";
        assert_eq!(irreversible_operations(bad).len(), 1);
        assert!(irreversible_operations(good).is_empty());
        assert!(irreversible_operations(good_kw).is_empty());
        assert_eq!(irreversible_operations(sql_bad).len(), 1);
        assert!(irreversible_operations(sql_good).is_empty());
        assert_eq!(irreversible_operations(elidable).len(), 1);
        assert!(irreversible_operations("migrations.AddField('order', 'discount', models.IntegerField())").is_empty());
    }

    #[test]
    fn a_branch_is_assessed_against_its_base() {
        let files = |names: &[&str]| -> BTreeMap<String, BTreeSet<String>> {
            let mut map = BTreeMap::new();
            map.insert("orders".to_owned(), names.iter().map(|n| n.to_string()).collect());
            map
        };
        let applied = BTreeMap::from([("orders".to_owned(), "0001_initial".to_owned())]);
        let added = "orders/migrations/0002_discount.py\n";
        let ok = BranchMigrations::assess(
            added,
            &files(&["0001_initial.py"]),
            &files(&["0001_initial.py", "0002_discount.py"]),
            &applied,
        );
        assert_eq!(ok.previous.get("orders"), Some(&Some("0001_initial".to_owned())));
        assert!(ok.conflicts.is_empty());
        assert!(ok.summary("dev").contains("orders/0002_discount; it will be undone"));
        let conflict = BranchMigrations::assess(
            added,
            &files(&["0001_initial.py", "0002_other.py"]),
            &files(&["0001_initial.py", "0002_discount.py"]),
            &applied,
        );
        assert_eq!(conflict.conflicts, ["orders"]);
    }

    #[test]
    fn undo_commands_go_back_per_app_and_are_quoted() {
        let config = MigrationConfig {
            python: ".venv/bin/python".into(),
            manage: "manage.py".into(),
            settings: Some("shop.settings".into()),
            paths: default_paths(),
        };
        let debt = MigrationDebt {
            owner: "grace".into(),
            owner_name: "Grace".into(),
            git_ref: "feature/x".into(),
            migrations: BranchMigrations {
                added: vec![],
                previous: BTreeMap::from([("orders".into(), Some("0001_initial".into())), ("shipping".into(), None)]),
                conflicts: vec![],
                irreversible: vec![],
            },
        };
        let quote = |s: &str| crate::release::plan::quote(s);
        let undo = config.undo_commands(&debt, quote);
        assert_eq!(
            undo[0].1,
            "DJANGO_SETTINGS_MODULE=shop.settings .venv/bin/python manage.py migrate orders 0001_initial --noinput"
        );
        assert_eq!(
            undo[1].1,
            "DJANGO_SETTINGS_MODULE=shop.settings .venv/bin/python manage.py migrate shipping zero --noinput"
        );
    }
}
