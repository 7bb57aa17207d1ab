//! GitHub webhook payloads → platform-neutral [`GitHubEvent`]s. Pure: no I/O.
//!
//! Only the fields Shipday relies on are read, so the payload may carry anything else (GitHub
//! adds fields over time, and the samples are trimmed).

pub use crate::release::forge::GitHubEvent;
use crate::release::gitref::Sha;
use serde::Deserialize;

/// What a verified delivery turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Something for the engine.
    Event(GitHubEvent),
    /// GitHub checking the hook (sent once when it is created).
    Ping,
    /// Nothing to act on, and why (shown in GitHub's delivery log).
    Ignored(String),
}

/// A payload that could not be read as its event type.
#[derive(Debug, thiserror::Error)]
#[error("unreadable `{event}` payload: {reason}")]
pub struct Unreadable {
    event: String,
    reason: String,
}

/// Reads a delivery of `event` (the `X-GitHub-Event` header) for `repository` (`owner/name`).
/// Deliveries about another repository are ignored: an organisation-wide hook with the same
/// secret must not deploy another repository's commits.
pub fn parse(event: &str, payload: &[u8], repository: &str) -> Result<Delivery, Unreadable> {
    let unreadable = |reason: String| Unreadable { event: event.to_owned(), reason };
    match event {
        "ping" => Ok(Delivery::Ping),
        "pull_request" => {
            let payload: PullRequestPayload = serde_json::from_slice(payload).map_err(|e| unreadable(e.to_string()))?;
            if let Some(other) = other_repository(&payload.repository, repository) {
                return Ok(other);
            }
            merged(payload).map_err(unreadable)
        }
        "push" => {
            let payload: PushPayload = serde_json::from_slice(payload).map_err(|e| unreadable(e.to_string()))?;
            if let Some(other) = other_repository(&payload.repository, repository) {
                return Ok(other);
            }
            pushed(payload).map_err(unreadable)
        }
        other => Ok(Delivery::Ignored(format!("`{}` events are not used", other.escape_debug()))),
    }
}

fn other_repository(found: &Repository, expected: &str) -> Option<Delivery> {
    (!found.full_name.eq_ignore_ascii_case(expected))
        .then(|| Delivery::Ignored(format!("for {}, not {expected}", found.full_name.escape_debug())))
}

fn merged(payload: PullRequestPayload) -> Result<Delivery, String> {
    let pr = payload.pull_request;
    if payload.action != "closed" {
        return Ok(Delivery::Ignored(format!("pull request {}", payload.action.escape_debug())));
    }
    if pr.merged != Some(true) {
        return Ok(Delivery::Ignored(format!("pull request #{} closed without merging", pr.number)));
    }
    let merge_sha = pr.merge_commit_sha.ok_or("a merged pull request without merge_commit_sha")?;
    let merge_sha = Sha::parse(&merge_sha).map_err(|_| format!("merge_commit_sha `{merge_sha}` is not a commit"))?;
    Ok(Delivery::Event(GitHubEvent::Merged {
        base: pr.base.name,
        merge_sha,
        number: pr.number,
        title: pr.title,
        body: pr.body.unwrap_or_default(),
        author: pr.user.login,
        head_ref: pr.head.name,
    }))
}

fn pushed(payload: PushPayload) -> Result<Delivery, String> {
    let Some(branch) = payload.git_ref.strip_prefix("refs/heads/") else {
        return Ok(Delivery::Ignored(format!("push to {}", payload.git_ref.escape_debug())));
    };
    if payload.deleted {
        return Ok(Delivery::Ignored(format!("branch {} deleted", branch.escape_debug())));
    }
    let after = Sha::parse(&payload.after).map_err(|_| format!("after `{}` is not a commit", payload.after))?;
    // A created branch has an all-zero `before`.
    let before =
        Sha::parse(&payload.before).ok().filter(|sha| !payload.created && sha.as_str().bytes().any(|b| b != b'0'));
    Ok(Delivery::Event(GitHubEvent::Pushed { branch: branch.to_owned(), after, before, forced: payload.forced }))
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: String,
    pull_request: PullRequest,
    repository: Repository,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    title: String,
    body: Option<String>,
    user: User,
    merged: Option<bool>,
    merge_commit_sha: Option<String>,
    base: BranchTip,
    head: BranchTip,
}

#[derive(Deserialize)]
struct BranchTip {
    #[serde(rename = "ref")]
    name: String,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    forced: bool,
    repository: Repository,
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOSITORY: &str = "Codertocat/Hello-World";

    fn contract(name: &str) -> serde_json::Value {
        let path = format!("{}/tests/fixtures/contracts/github/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn parse_value(event: &str, value: &serde_json::Value) -> Delivery {
        parse(event, &serde_json::to_vec(value).unwrap(), REPOSITORY).unwrap()
    }

    #[test]
    fn a_merged_pull_request_names_its_merge_commit() {
        let mut payload = contract("pull_request.closed.merged.json");
        payload["pull_request"]["base"]["ref"] = "dev".into();
        let Delivery::Event(event) = parse_value("pull_request", &payload) else { panic!() };
        assert_eq!(
            event,
            GitHubEvent::Merged {
                base: "dev".into(),
                merge_sha: Sha::parse("c4295bd74fb0f4fda03689c3df3f2803b658fd85").unwrap(),
                number: 2,
                title: "Update the README with new information.".into(),
                body: "This is a pretty simple change that we need to pull into master.".into(),
                author: "Codertocat".into(),
                head_ref: "changes".into(),
            }
        );
    }

    #[test]
    fn closed_unmerged_reopened_and_foreign_pull_requests_are_ignored() {
        let closed = contract("pull_request.closed.json");
        assert!(
            matches!(parse_value("pull_request", &closed), Delivery::Ignored(why) if why.contains("without merging"))
        );
        let mut opened = contract("pull_request.closed.merged.json");
        opened["action"] = "reopened".into();
        assert!(matches!(parse_value("pull_request", &opened), Delivery::Ignored(_)));
        let merged = contract("pull_request.closed.merged.json");
        let foreign = parse("pull_request", &serde_json::to_vec(&merged).unwrap(), "acme/shop").unwrap();
        assert!(matches!(foreign, Delivery::Ignored(why) if why.contains("Codertocat/Hello-World")));
    }

    #[test]
    fn pushes_to_branches_move_them_and_tags_and_deletions_are_ignored() {
        // The sample deletes a tag.
        let tag = contract("push.json");
        assert!(matches!(parse_value("push", &tag), Delivery::Ignored(why) if why.contains("refs/tags/simple-tag")));
        let mut push = tag.clone();
        push["ref"] = "refs/heads/dev".into();
        assert!(matches!(parse_value("push", &push), Delivery::Ignored(why) if why.contains("deleted")));
        push["deleted"] = false.into();
        push["forced"] = true.into();
        push["after"] = "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into();
        assert_eq!(
            parse_value("push", &push),
            Delivery::Event(GitHubEvent::Pushed {
                branch: "dev".into(),
                after: Sha::parse("ec26c3e57ca3a959ca5aad62de7213c562f8c821").unwrap(),
                before: Some(Sha::parse("6113728f27ae82c7b1a177c8d03f9e96e0adf246").unwrap()),
                forced: true,
            })
        );
        push["created"] = true.into();
        push["before"] = "0000000000000000000000000000000000000000".into();
        assert!(matches!(parse_value("push", &push), Delivery::Event(GitHubEvent::Pushed { before: None, .. })));
    }

    #[test]
    fn ping_other_events_and_garbage() {
        assert_eq!(parse_value("ping", &contract("ping.json")), Delivery::Ping);
        assert!(matches!(parse("issues", b"{}", REPOSITORY), Ok(Delivery::Ignored(_))));
        let err = parse("pull_request", b"{\"action\":1}", REPOSITORY).unwrap_err().to_string();
        assert!(err.contains("pull_request"), "{err}");
    }
}
