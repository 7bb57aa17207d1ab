//! Dependencies point down: every `crate::…` path in `src/` must follow the table of allowed
//! dependencies in `ARCHITECTURE.md`, or be one of its named known exceptions.
//!
//! The table is read from `ARCHITECTURE.md` itself, so the document and this test cannot drift.
//! Test code (`#[cfg(test)]` items, and files declared under them) may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One row of the table: a module, the files it is made of, and the modules it may use.
#[derive(Debug)]
struct Module {
    name: String,
    files: Vec<String>,
    may_use: BTreeSet<String>,
}

/// An arrow found in the code.
#[derive(Debug)]
struct Arrow {
    file: String,
    line: usize,
    from: String,
    to: String,
    path: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn architecture() -> String {
    fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md at the top level")
}

/// The backticked words of a table cell: "`app`, `chat`" → ["app", "chat"].
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// The rows of the first markdown table after the heading `heading`.
fn table_after(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| l.trim() != heading);
    assert!(lines.next().is_some(), "ARCHITECTURE.md has no heading `{heading}`");
    lines
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| l.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect::<Vec<_>>())
        .filter(|cells| !cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':' || ch == ' ')))
        .skip(1) // the header row
        .collect()
}

fn modules(doc: &str) -> Vec<Module> {
    let rows = table_after(doc, "## Allowed dependencies");
    assert!(!rows.is_empty(), "the allowed-dependencies table is empty");
    rows.iter()
        .map(|cells| {
            assert_eq!(cells.len(), 3, "a dependency row is `| module | files | may use |`: {cells:?}");
            let name = ticked(&cells[0]).into_iter().next().expect("a module name in backticks");
            Module { name, files: ticked(&cells[1]), may_use: ticked(&cells[2]).into_iter().collect() }
        })
        .collect()
}

fn exceptions(doc: &str) -> BTreeSet<(String, String)> {
    table_after(doc, "## Known exceptions (to be removed)")
        .iter()
        .map(|cells| {
            assert_eq!(cells.len(), 3, "an exception row is `| from | to | why |`: {cells:?}");
            let from = ticked(&cells[0]).into_iter().next().expect("a `from` module in backticks");
            let to = ticked(&cells[1]).into_iter().next().expect("a `to` module in backticks");
            assert!(cells[2].len() > 10, "exception {from} → {to} must say why and how it goes away");
            (from, to)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/chat/slack/mod.rs` relative to the crate root, with `/` separators.
fn relative(path: &Path) -> String {
    path.strip_prefix(root()).expect("under the crate root").to_string_lossy().replace('\\', "/")
}

/// The module a file belongs to: the row whose files name it exactly or as a directory prefix.
fn module_of<'a>(modules: &'a [Module], file: &str) -> Option<&'a Module> {
    modules
        .iter()
        .find(|m| m.files.iter().any(|f| if f.ends_with('/') { file.starts_with(f.as_str()) } else { file == f }))
}

/// Where the file of `mod name;` declared in `file` lives.
fn child_files(file: &str, name: &str) -> [String; 2] {
    let path = Path::new(file);
    let parent = path.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = if ["lib", "main", "mod"].contains(&stem.as_str()) { parent } else { format!("{parent}/{stem}") };
    [format!("{dir}/{name}.rs"), format!("{dir}/{name}/mod.rs")]
}

/// The code lines of a file that are not test code, with their numbers, comments cut off;
/// and the files that `#[cfg(test)] mod name;` declares (test code too).
fn production_lines(file: &str, text: &str) -> (Vec<(usize, String)>, Vec<String>) {
    let mut lines = Vec::new();
    let mut test_files = Vec::new();
    let mut skipping = false;
    let mut depth: i64 = 0;
    let mut seen_brace = false;
    for (number, raw) in text.lines().enumerate() {
        let code = raw.split("//").next().unwrap_or("");
        let trimmed = code.trim();
        if !skipping && trimmed.starts_with("#[cfg(test)]") {
            skipping = true;
            depth = 0;
            seen_brace = false;
            continue;
        }
        if skipping {
            if trimmed.starts_with("#[") || trimmed.is_empty() && !seen_brace {
                continue;
            }
            if !seen_brace
                && let Some(name) =
                    trimmed.trim_start_matches("pub ").strip_prefix("mod ").and_then(|r| r.strip_suffix(';'))
            {
                test_files.extend(child_files(file, name.trim()));
                skipping = false;
                continue;
            }
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        seen_brace = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (seen_brace && depth <= 0) || (!seen_brace && trimmed.ends_with(';')) {
                skipping = false;
            }
            continue;
        }
        lines.push((number + 1, code.to_owned()));
    }
    (lines, test_files)
}

/// Every `crate::x…` path in the lines: (line, first segment `x`, the path as written).
fn crate_paths(lines: &[(usize, String)]) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    let mut group: Option<(usize, String)> = None; // an open `use crate::{` spanning lines
    for (number, code) in lines {
        let mut rest = code.as_str();
        if let Some((start, mut text)) = group.take() {
            text.push_str(code);
            if text.matches('{').count() <= text.matches('}').count() {
                grouped(start, &text, &mut found);
            } else {
                group = Some((start, text));
            }
            continue;
        }
        while let Some(at) = rest.find("crate::") {
            let before = rest.get(..at).and_then(|b| b.chars().last());
            rest = rest.get(at + "crate::".len()..).unwrap_or("");
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // `$crate::` or part of a longer name
            }
            if rest.starts_with('{') {
                let text = format!("crate::{rest}");
                if text.matches('{').count() <= text.matches('}').count() {
                    grouped(*number, &text, &mut found);
                } else {
                    group = Some((*number, text));
                }
                break;
            }
            let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let first = path.split("::").next().unwrap_or("").to_owned();
            if !first.is_empty() {
                found.push((*number, first, format!("crate::{path}")));
            }
        }
    }
    found
}

/// `crate::{a::B, c}` → the first segments `a` and `c`.
fn grouped(line: usize, text: &str, found: &mut Vec<(usize, String, String)>) {
    let inner = text.split_once('{').map(|(_, r)| r).unwrap_or("");
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(std::mem::take(&mut item)),
            _ => {}
        }
        if depth > 0 || c != ',' {
            item.push(c);
        }
    }
    items.push(item);
    for item in items {
        let first: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !first.is_empty() && first != "self" {
            found.push((line, first.clone(), format!("crate::{}", item.trim())));
        }
    }
}

fn arrows(modules: &[Module]) -> Vec<Arrow> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut parsed = BTreeMap::new();
    let mut test_files = BTreeSet::new();
    for path in &files {
        let file = relative(path);
        let text = fs::read_to_string(path).expect("readable source");
        let (lines, tests) = production_lines(&file, &text);
        test_files.extend(tests);
        parsed.insert(file, lines);
    }
    let by_name: BTreeSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    let mut found = Vec::new();
    for (file, lines) in &parsed {
        if test_files.contains(file) {
            continue;
        }
        let from = module_of(modules, file)
            .unwrap_or_else(|| panic!("{file} is in no row of ARCHITECTURE.md's dependency table: give it a layer"));
        for (line, first, path) in crate_paths(lines) {
            assert!(
                by_name.contains(first.as_str()),
                "{file}:{line}: `{path}` names module `{first}`, which has no row in ARCHITECTURE.md's table"
            );
            if first != from.name {
                found.push(Arrow { file: file.clone(), line, from: from.name.clone(), to: first, path });
            }
        }
    }
    found
}

#[bounded::test]
fn dependencies_follow_the_table_in_architecture_md() {
    let doc = architecture();
    let modules = modules(&doc);
    let exceptions = exceptions(&doc);
    let names: BTreeSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    for m in &modules {
        for used in &m.may_use {
            assert!(names.contains(used.as_str()), "`{}` may use `{used}`, which has no row", m.name);
        }
    }
    for (from, to) in &exceptions {
        assert!(names.contains(from.as_str()) && names.contains(to.as_str()), "exception {from} → {to} names no row");
        let allowed = modules.iter().any(|m| &m.name == from && m.may_use.contains(to));
        assert!(!allowed, "exception {from} → {to} is already allowed by the table: remove the exception");
    }

    let found = arrows(&modules);
    let forbidden: Vec<String> = found
        .iter()
        .filter(|a| {
            let module = modules.iter().find(|m| m.name == a.from);
            !module.is_some_and(|m| m.may_use.contains(&a.to)) && !exceptions.contains(&(a.from.clone(), a.to.clone()))
        })
        .map(|a| {
            format!("{}:{}: `{}` → `{}` (`{}`) is not in ARCHITECTURE.md's table", a.file, a.line, a.from, a.to, a.path)
        })
        .collect();
    assert!(forbidden.is_empty(), "dependencies that point the wrong way:\n{}", forbidden.join("\n"));

    let stale: Vec<String> = exceptions
        .iter()
        .filter(|(from, to)| !found.iter().any(|a| &a.from == from && &a.to == to))
        .map(|(from, to)| format!("{from} → {to}"))
        .collect();
    assert!(stale.is_empty(), "known exceptions no longer in the code, remove them from ARCHITECTURE.md: {stale:?}");
}

#[bounded::test]
fn the_allowed_table_has_no_cycle() {
    let modules = modules(&architecture());
    let edges: BTreeMap<&str, Vec<&str>> =
        modules.iter().map(|m| (m.name.as_str(), m.may_use.iter().map(String::as_str).collect())).collect();
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<&str> = path.get(at..).unwrap_or_default().to_vec();
            cycle.push(node);
            panic!("ARCHITECTURE.md's table allows a cycle: {}", cycle.join(" → "));
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for name in edges.keys() {
        visit(name, &edges, &mut Vec::new(), &mut done);
    }
}

#[bounded::test]
fn grouped_uses_and_inline_paths_are_both_seen() {
    let lines = vec![
        (1, "use crate::{clock::Clock, config::{Config, Person}};".to_owned()),
        (2, "    let x = crate::store::Store::open(p);".to_owned()),
        (3, "macro_rules! m { () => { $crate::engine::X } }".to_owned()),
        (4, "use crate::{".to_owned()),
        (5, "    release::deploy::Outcome,".to_owned()),
        (6, "};".to_owned()),
    ];
    let firsts: Vec<(usize, String)> = crate_paths(&lines).into_iter().map(|(l, f, _)| (l, f)).collect();
    assert_eq!(firsts, vec![(1, "clock".into()), (1, "config".into()), (2, "store".into()), (4, "release".into())]);
}

#[bounded::test]
fn test_modules_are_left_out() {
    let text = "use crate::a::X;\n#[cfg(test)]\nmod tests {\n    use crate::b::Y;\n    fn f() {}\n}\nuse crate::c::Z;\n#[cfg(test)]\nmod proptests;\n";
    let (lines, test_files) = production_lines("src/lib.rs", text);
    let firsts: Vec<String> = crate_paths(&lines).into_iter().map(|(_, f, _)| f).collect();
    assert_eq!(firsts, vec!["a".to_owned(), "c".to_owned()]);
    assert_eq!(test_files, vec!["src/proptests.rs".to_owned(), "src/proptests/mod.rs".to_owned()]);
}
