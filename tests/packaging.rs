//! The service files stay true to the code: the Dockerfile copies what Cargo needs, builds from
//! pinned bases, exposes the listener's port and checks health with the binary; the systemd
//! unit and the compose example agree on how a stop is waited for.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Instructions of a Dockerfile, with `\` continuations joined.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[bounded::test]
fn the_dockerfile_copies_every_workspace_member_builds_from_pinned_bases_and_checks_health() {
    let dockerfile = read("Dockerfile");
    let steps = instructions(&dockerfile);
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();

    // Cargo needs every workspace member's manifest, and every declared bench, to build.
    let copied: Vec<&str> = steps
        .iter()
        .filter_map(|s| s.strip_prefix("COPY "))
        .filter(|s| !s.starts_with("--from"))
        .flat_map(|s| {
            // Every word but the last (the destination) is a source.
            let words: Vec<&str> = s.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    let members = manifest["workspace"]["members"].as_array().unwrap();
    assert!(!members.is_empty());
    for member in members {
        let member = member.as_str().unwrap();
        assert!(
            copied.iter().any(|source| member == *source || member.starts_with(&format!("{source}/"))),
            "the Dockerfile does not copy the workspace member {member} (copies {copied:?})"
        );
    }
    for needed in ["Cargo.toml", "Cargo.lock", "benches", "src", "commands"] {
        assert!(copied.contains(&needed), "the Dockerfile does not copy {needed}: {copied:?}");
    }
    // The dependency layer is built before the sources are copied in.
    let first_build = steps.iter().position(|s| s.contains("cargo build")).unwrap();
    let sources = steps.iter().position(|s| s.starts_with("COPY src")).unwrap();
    assert!(first_build < sources, "no dependency layer before `COPY src`");

    // Bases pinned to exact versions: Rust x.y.z (at least the crate's rust-version), a dated Debian.
    let bases: Vec<&str> = steps.iter().filter_map(|s| s.strip_prefix("FROM ")?.split_whitespace().next()).collect();
    assert_eq!(bases.len(), 2, "{bases:?}");
    let rust = regex::Regex::new(r"^rust:(\d+)\.(\d+)\.(\d+)-slim-bookworm$").unwrap();
    let found = rust.captures(bases[0]).unwrap_or_else(|| panic!("the build base is not pinned: {}", bases[0]));
    let minimum: Vec<u32> =
        manifest["package"]["rust-version"].as_str().unwrap().split('.').map(|n| n.parse().unwrap()).collect();
    let pinned: Vec<u32> = (1..=2).map(|i| found[i].parse().unwrap()).collect();
    assert!(pinned >= minimum, "rust {pinned:?} is older than rust-version {minimum:?}");
    assert!(
        regex::Regex::new(r"^debian:bookworm-\d{8}-slim$").unwrap().is_match(bases[1]),
        "the runtime base is not a dated snapshot: {}",
        bases[1]
    );

    let port = shipday::listener::DEFAULT_LISTEN.rsplit(':').next().unwrap();
    assert!(steps.contains(&format!("EXPOSE {port}")), "no EXPOSE {port}");
    let health = steps.iter().find(|s| s.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    assert!(health.ends_with(r#"CMD ["shipday", "healthcheck"]"#), "{health}");

    let ignored = read(".dockerignore");
    assert!(ignored.lines().any(|l| l.trim() == "target"), "the build context must leave out target/");
}

#[bounded::test]
fn the_systemd_unit_and_the_compose_example_wait_the_same_grace_and_keep_state_in_one_place() {
    let unit = read("contrib/systemd/shipday.service");
    let setting = |key: &str| -> Vec<String> {
        unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_owned).collect()
    };
    assert_eq!(setting("ExecStart"), ["/usr/local/bin/shipday serve --config /etc/shipday/shipday.toml"]);
    assert_eq!(setting("StateDirectory"), ["shipday"]);
    assert_eq!(setting("WorkingDirectory"), ["/var/lib/shipday"]);
    for (key, value) in [("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes")] {
        assert_eq!(setting(key), [value], "{key}");
    }
    assert_eq!(setting("TimeoutStopSec"), ["120s"]);

    let compose = read("contrib/compose/compose.yaml");
    assert!(compose.contains("stop_grace_period: 120s"), "the compose example waits as long as the unit");
    assert!(compose.contains(r#"test: ["CMD", "shipday", "healthcheck"]"#));
    assert!(compose.contains(":/var/lib/shipday"), "state on a volume");
    assert!(compose.contains("build: ../.."), "built from the repository root");
}
