//! The Jira client against a stateful fake Jira over HTTP: moving tickets between the team's
//! columns, comments, search paging, and Jira being busy, conflicting, broken or slow.

use testkit as common;

use common::fake_jira::{EMAIL, FakeJira, Fault, TOKEN, fast_retry};
use serde_json::json;
use shipday::clients::jira::{Assignee, JiraError, MoveOutcome, RetryPolicy, is_transient};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ISSUE: &str = "/rest/api/3/issue/SHOP-1";
const TRANSITIONS: &str = "/rest/api/3/issue/SHOP-1/transitions";

/// A fake with SHOP-1, Grace's ticket, waiting in Pull Request.
async fn jira_with_graces_ticket() -> FakeJira {
    let jira = FakeJira::start().await;
    jira.add_issue("SHOP-1", "Login page", "Pull Request", Some(("acc-grace", "Grace Hopper")));
    jira
}

fn statuses(requests: &[common::fake_jira::Logged]) -> Vec<Option<u16>> {
    requests.iter().map(|r| r.status).collect()
}

fn logs() -> Arc<Mutex<Vec<u8>>> {
    common::captured_logs()
}

#[bounded::test]
async fn a_merged_ticket_moves_from_pull_request_to_dev_testing_by_its_destination() {
    let jira = jira_with_graces_ticket().await;
    let client = jira.client();

    let issue = client.issue("SHOP-1").await.unwrap();
    assert_eq!((issue.summary.as_str(), issue.status.as_str()), ("Login page", "Pull Request"));
    assert_eq!(issue.status_category, "indeterminate");
    let grace = Assignee { account_id: "acc-grace".into(), display_name: "Grace Hopper".into() };
    assert_eq!(issue.assignee, Some(grace));

    let outcome = client.move_to("SHOP-1", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Pull Request".into() });
    assert_eq!(jira.status("SHOP-1"), "Dev Testing");

    // Read the status, read the transitions, POST the one leading to Dev Testing (id 21 in
    // this workflow, found by destination, not by a hard-coded id).
    let posts = jira.requests_to("POST", TRANSITIONS);
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body, json!({ "transition": { "id": "21" } }));
    assert_eq!(posts[0].status, Some(204));
    let reads = jira.requests_to("GET", ISSUE);
    assert!(reads.iter().all(|r| r.query.as_deref() == Some("fields=summary%2Cstatus%2Cassignee")), "{reads:?}");
    assert!(jira.requests().iter().all(|r| r.authorised));

    // Column names match whatever their case in the config.
    let outcome = client.move_to("SHOP-1", "staging").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Dev Testing".into() });
    assert_eq!(jira.status("SHOP-1"), "Staging");
}

#[bounded::test]
async fn a_ticket_already_in_the_column_is_a_no_op_and_nothing_is_posted() {
    let jira = jira_with_graces_ticket().await;
    jira.set_status("SHOP-1", "Dev Testing");
    let outcome = jira.client().move_to("SHOP-1", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::AlreadyThere);
    assert!(jira.requests_to("POST", TRANSITIONS).is_empty());
    assert!(jira.requests_to("GET", TRANSITIONS).is_empty(), "no need to even read the transitions");
    assert_eq!(jira.status("SHOP-1"), "Dev Testing");
}

#[bounded::test]
async fn a_dev_deploy_never_drags_a_ticket_back_from_staging() {
    let jira = jira_with_graces_ticket().await;
    jira.set_status("SHOP-1", "Staging");
    let client = jira.client();
    let outcome = client.move_if_in("SHOP-1", "Pull Request", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::LeftAlone { status: "Staging".into() });
    assert_eq!(jira.status("SHOP-1"), "Staging");
    assert!(jira.requests_to("POST", TRANSITIONS).is_empty());

    jira.set_status("SHOP-1", "Pull Request");
    let outcome = client.move_if_in("SHOP-1", "pull request", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Pull Request".into() });
}

#[bounded::test]
async fn a_transition_missing_from_the_workflow_is_reported_with_what_is_available() {
    let jira = jira_with_graces_ticket().await;
    let error = jira.client().move_to("SHOP-1", "Done").await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<JiraError>(),
        Some(&JiraError::TransitionMissing {
            key: "SHOP-1".into(),
            from: "Pull Request".into(),
            to: "Done".into(),
            available: vec!["Dev Testing".into()],
        })
    );
    assert_eq!(
        format!("{error:#}"),
        "cannot move SHOP-1 to `Done`: SHOP-1 cannot move from `Pull Request` to `Done`: \
         the workflow offers only `Dev Testing`"
    );
    assert!(!is_transient(&error), "a person must fix the board or the config");
    // The transitions were read again before giving up, and nothing was posted.
    assert_eq!(jira.requests_to("GET", TRANSITIONS).len(), 2);
    assert!(jira.requests_to("POST", TRANSITIONS).is_empty());
    assert_eq!(jira.status("SHOP-1"), "Pull Request");
}

#[bounded::test]
async fn a_newly_published_transition_is_used_once_the_workflow_has_it() {
    let jira = jira_with_graces_ticket().await;
    jira.add_transition("61", "Hotfix straight to done", "Pull Request", "Done");
    let outcome = jira.client().move_to("SHOP-1", "done").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Pull Request".into() });
    assert_eq!(jira.requests_to("POST", TRANSITIONS)[0].body, json!({ "transition": { "id": "61" } }));
}

#[bounded::test]
async fn rate_limited_move_waits_for_retry_after_and_posts_once_successfully() {
    let jira = jira_with_graces_ticket().await;
    jira.fail("POST", TRANSITIONS, Fault::RateLimited { retry_after_secs: 1 }, 1);
    let started = Instant::now();
    let outcome = jira.client().move_to("SHOP-1", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Pull Request".into() });
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not honoured");

    let posts = jira.requests_to("POST", TRANSITIONS);
    assert_eq!(statuses(&posts), [Some(429), Some(204)], "one refused, one successful POST");
    // The backoff base is 5 ms: only Retry-After explains the second's wait.
    let gap = posts[1].at - posts[0].at;
    assert!(gap >= Duration::from_secs(1) && gap < Duration::from_secs(3), "{gap:?}");
    assert_eq!(jira.status("SHOP-1"), "Dev Testing");
}

#[bounded::test]
async fn a_retry_after_longer_than_the_cap_gives_up_at_once_for_a_later_try() {
    let jira = jira_with_graces_ticket().await;
    jira.fail("GET", ISSUE, Fault::RateLimited { retry_after_secs: 600 }, 1);
    let started = Instant::now();
    let error = jira.client().move_to("SHOP-1", "Dev Testing").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(is_transient(&error), "{error:#}");
    assert!(format!("{error:#}").contains("Jira asks to wait 600s"), "{error:#}");
    assert_eq!(jira.requests().len(), 1);
}

#[bounded::test]
async fn a_conflicting_update_is_read_again_and_retried() {
    let jira = jira_with_graces_ticket().await;
    jira.fail("POST", TRANSITIONS, Fault::Conflict, 1);
    let outcome = jira.client().move_to("SHOP-1", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Pull Request".into() });
    assert_eq!(statuses(&jira.requests_to("POST", TRANSITIONS)), [Some(409), Some(204)]);
    assert_eq!(jira.requests_to("GET", ISSUE).len(), 2, "the status is read again after the 409");
    assert_eq!(jira.status("SHOP-1"), "Dev Testing");
}

#[bounded::test]
async fn conflicts_that_never_end_are_reported_as_jira_being_unavailable() {
    let jira = jira_with_graces_ticket().await;
    jira.fail("POST", TRANSITIONS, Fault::Conflict, 100);
    let error = jira.client().move_to("SHOP-1", "Dev Testing").await.unwrap_err();
    assert!(is_transient(&error), "{error:#}");
    assert!(format!("{error:#}").contains("409"), "{error:#}");
    assert_eq!(jira.requests_to("POST", TRANSITIONS).len(), fast_retry().max_attempts as usize);
}

#[bounded::test]
async fn server_errors_then_success() {
    let jira = jira_with_graces_ticket().await;
    jira.fail("GET", ISSUE, Fault::ServerError, 2);
    jira.fail("POST", TRANSITIONS, Fault::ServerError, 1);
    let outcome = jira.client().move_to("SHOP-1", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Pull Request".into() });
    assert_eq!(statuses(&jira.requests_to("GET", ISSUE)), [Some(500), Some(500), Some(200)]);
    assert_eq!(statuses(&jira.requests_to("POST", TRANSITIONS)), [Some(500), Some(204)]);
}

#[bounded::test]
async fn jira_down_for_good_gives_up_after_the_bounded_attempts_as_transient() {
    let jira = jira_with_graces_ticket().await;
    jira.fail("GET", ISSUE, Fault::ServerError, 100);
    let error = jira.client().issue("SHOP-1").await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<JiraError>(),
        Some(&JiraError::Unavailable {
            what: "read SHOP-1".into(),
            attempts: 4,
            last: "answered 500 Internal Server Error".into()
        })
    );
    assert!(is_transient(&error));
    assert_eq!(jira.requests().len(), 4);
}

#[bounded::test]
async fn a_request_that_hangs_times_out_and_is_retried() {
    let jira = jira_with_graces_ticket().await;
    jira.fail("GET", TRANSITIONS, Fault::Hang, 1);
    let started = Instant::now();
    let outcome = jira.client().move_to("SHOP-1", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Pull Request".into() });
    let waited = started.elapsed();
    assert!(waited >= fast_retry().timeout && waited < Duration::from_secs(4), "{waited:?}");
    assert_eq!(statuses(&jira.requests_to("GET", TRANSITIONS)), [None, Some(200)], "the first never answered");
}

#[bounded::test]
async fn a_move_whose_answer_was_lost_is_not_made_twice_and_counts_as_moved() {
    let jira = jira_with_graces_ticket().await;
    jira.fail("POST", TRANSITIONS, Fault::LoseAnswer, 1);
    let outcome = jira.client().move_to("SHOP-1", "Dev Testing").await.unwrap();
    assert_eq!(outcome, MoveOutcome::Moved { from: "Pull Request".into() });
    // The repeat is refused (the issue already left Pull Request); a fresh read settles it.
    assert_eq!(statuses(&jira.requests_to("POST", TRANSITIONS)), [None, Some(400)]);
    assert_eq!(jira.status("SHOP-1"), "Dev Testing");
}

#[bounded::test]
async fn a_bad_token_gets_a_clear_error_that_does_not_show_the_token() {
    let logs = logs();
    let jira = jira_with_graces_ticket().await;
    let client = jira.client_with("not-the-token-9f8e", fast_retry());
    let error = client.move_to("SHOP-1", "Dev Testing").await.unwrap_err();
    assert_eq!(error.downcast_ref::<JiraError>(), Some(&JiraError::Unauthorized { email: EMAIL.into() }));
    let text = format!("{error:#} {error:?} {client:?}");
    assert!(text.contains("401") && text.contains("jira.token"), "{text}");
    assert!(!text.contains("not-the-token-9f8e"), "{text}");
    assert!(!is_transient(&error));
    let requests = jira.requests();
    assert_eq!(requests.len(), 1, "a 401 is not retried");
    assert!(!requests[0].authorised);

    // Retried requests with the right token leave no token in the logs either.
    jira.fail("GET", ISSUE, Fault::ServerError, 1);
    jira.client().issue("SHOP-1").await.unwrap();
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logged.contains("Jira request will be retried"), "{logged}");
    for secret in [TOKEN, "not-the-token-9f8e"] {
        assert!(!logged.contains(secret), "the token reached the logs");
    }
}

#[bounded::test]
async fn an_unknown_ticket_is_reported_as_not_found() {
    let jira = FakeJira::start().await;
    let error = jira.client().move_to("SHOP-404", "Dev Testing").await.unwrap_err();
    assert!(matches!(error.downcast_ref::<JiraError>(), Some(JiraError::NotFound { .. })), "{error:#}");
    assert!(format!("{error:#}").contains("SHOP-404"), "{error:#}");
}

#[bounded::test]
async fn search_pages_through_every_page_with_explicit_fields() {
    let jira = FakeJira::start().await;
    for n in 1..=5 {
        let assignee = (n % 2 == 1).then_some(("acc-grace", "Grace Hopper"));
        jira.add_issue(&format!("SHOP-{n}"), &format!("Story {n}"), "Dev Testing", assignee);
    }
    jira.add_issue("SHOP-10", "Story 10", "Dev Testing", None);
    jira.add_issue("SHOP-6", "Still in review", "Pull Request", None);
    jira.add_issue("OPS-1", "Another project", "Dev Testing", None);
    jira.set_page_size(2);

    let jql = r#"project = SHOP AND status = "Dev Testing" ORDER BY key ASC"#;
    let issues = jira.client().search(jql, &["statuscategorychangedate"]).await.unwrap();
    let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["SHOP-1", "SHOP-2", "SHOP-3", "SHOP-4", "SHOP-5", "SHOP-10"]);
    assert!(issues.iter().all(|i| i.status == "Dev Testing" && i.extra.contains_key("statuscategorychangedate")));
    assert_eq!(issues[0].assignee.as_ref().map(|a| a.display_name.as_str()), Some("Grace Hopper"));
    assert_eq!(issues[1].assignee, None);

    let pages = jira.requests_to("POST", "/rest/api/3/search/jql");
    assert_eq!(pages.len(), 3);
    let fields = json!(["summary", "status", "assignee", "statuscategorychangedate"]);
    assert!(pages.iter().all(|p| p.body["fields"] == fields && p.body["jql"] == jql), "{pages:?}");
    assert!(pages[0].body.get("nextPageToken").is_none());
    assert!(pages[1].body["nextPageToken"].is_string() && pages[2].body["nextPageToken"].is_string());
    assert_ne!(pages[1].body["nextPageToken"], pages[2].body["nextPageToken"]);
    assert!(jira.requests().iter().all(|r| r.path != "/rest/api/3/search"), "the removed endpoint is never used");
}

#[bounded::test]
async fn the_removed_search_endpoint_is_gone_and_bad_jql_is_a_clear_refusal() {
    let jira = FakeJira::start().await;
    let removed = reqwest::Client::new()
        .post(format!("{}/rest/api/3/search", jira.url))
        .basic_auth(EMAIL, Some(TOKEN))
        .json(&json!({ "jql": "project = SHOP" }))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 410);
    let body: serde_json::Value = removed.json().await.unwrap();
    assert!(body["errorMessages"][0].as_str().unwrap().contains("/rest/api/3/search/jql"), "{body}");

    let error = jira.client().search("summary ~ login", &[]).await.unwrap_err();
    let Some(JiraError::Rejected { status: 400, message, .. }) = error.downcast_ref::<JiraError>() else {
        panic!("{error:#}")
    };
    assert!(message.contains("summary"), "{message}");
}

#[bounded::test]
async fn a_comment_is_posted_as_atlassian_document_format() {
    let jira = jira_with_graces_ticket().await;
    let id = jira.client().comment("SHOP-1", "Failed on dev, by Grace:\nthe login button does nothing.").await.unwrap();
    assert!(!id.is_empty());
    assert_eq!(
        jira.comments("SHOP-1"),
        [json!({ "type": "doc", "version": 1, "content": [{ "type": "paragraph", "content": [
            { "type": "text", "text": "Failed on dev, by Grace:" },
            { "type": "hardBreak" },
            { "type": "text", "text": "the login button does nothing." }
        ]}]})]
    );
    let post = &jira.requests_to("POST", "/rest/api/3/issue/SHOP-1/comment")[0];
    assert_eq!(post.status, Some(201));
}

#[bounded::test]
async fn a_comment_is_retried_after_a_rate_limit_but_never_doubled_after_a_server_error() {
    let jira = jira_with_graces_ticket().await;
    let path = "/rest/api/3/issue/SHOP-1/comment";
    let client = jira.client_with(TOKEN, RetryPolicy { retry_after_cap: Duration::from_secs(1), ..fast_retry() });
    jira.fail("POST", path, Fault::RateLimited { retry_after_secs: 0 }, 1);
    client.comment("SHOP-1", "first").await.unwrap();
    assert_eq!(statuses(&jira.requests_to("POST", path)), [Some(429), Some(201)]);

    // A 500 may come after the comment was stored: sending it again could post it twice, so
    // the caller gets a transient error to retry later, on its own terms.
    jira.fail("POST", path, Fault::ServerError, 1);
    let error = client.comment("SHOP-1", "second").await.unwrap_err();
    assert!(is_transient(&error), "{error:#}");
    assert_eq!(jira.requests_to("POST", path).len(), 3);
    assert_eq!(jira.comments("SHOP-1").len(), 1);
}
