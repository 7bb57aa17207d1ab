//! Jira's JSON, as the client reads and writes it: issues, transitions, search pages, error
//! collections, and comments in Atlassian Document Format.

use super::{Answer, Assignee, JiraIssue, Transition};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub(super) fn parse<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T> {
    serde_json::from_str(&answer.body).with_context(|| format!("{what}: Jira's answer is not what the API documents"))
}

/// Jira's `ErrorCollection` (`errorMessages` and `errors`) as one line, or the status.
pub(super) fn error_text(answer: &Answer) -> String {
    #[derive(Deserialize)]
    struct ErrorCollection {
        #[serde(default, rename = "errorMessages")]
        messages: Vec<String>,
        #[serde(default)]
        errors: Map<String, Value>,
    }
    let Ok(collection) = serde_json::from_str::<ErrorCollection>(&answer.body) else {
        return describe(answer);
    };
    let mut parts = collection.messages;
    for (field, message) in collection.errors {
        parts.push(format!("{field}: {}", message.as_str().map_or_else(|| message.to_string(), str::to_owned)));
    }
    if parts.is_empty() { describe(answer) } else { parts.join("; ") }
}

pub(super) fn describe(answer: &Answer) -> String {
    format!("answered {}", answer.status)
}

/// Plain text as an Atlassian Document Format document: blank lines separate paragraphs,
/// single line breaks stay line breaks. ADF forbids empty text nodes, so they are dropped.
pub(super) fn adf_document(text: &str) -> Result<Value> {
    let normalised = text.replace("\r\n", "\n");
    let mut paragraphs = Vec::new();
    for block in normalised.split("\n\n") {
        let mut content = Vec::new();
        for line in block.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()) {
            if !content.is_empty() {
                content.push(json!({ "type": "hardBreak" }));
            }
            content.push(json!({ "type": "text", "text": line }));
        }
        if !content.is_empty() {
            paragraphs.push(json!({ "type": "paragraph", "content": content }));
        }
    }
    if paragraphs.is_empty() {
        bail!("a Jira comment cannot be empty");
    }
    Ok(json!({ "type": "doc", "version": 1, "content": paragraphs }))
}

/// `GET /rest/api/3/myself`: a user object.
#[derive(Deserialize)]
pub(super) struct WireAccount {
    #[serde(rename = "accountId")]
    pub account_id: String,
    #[serde(rename = "displayName", default)]
    pub display_name: String,
}

/// One issue type of `GET /rest/api/3/project/{key}/statuses` (`IssueTypeWithStatus`).
#[derive(Deserialize)]
pub(super) struct WireIssueTypeStatuses {
    #[serde(default)]
    pub statuses: Vec<WireStatusName>,
}

/// A status (`StatusDetails`), by name.
#[derive(Deserialize)]
pub(super) struct WireStatusName {
    pub name: String,
}

#[derive(Deserialize)]
pub(super) struct WireIssue {
    key: String,
    #[serde(default)]
    fields: WireFields,
}

#[derive(Deserialize, Default)]
pub(super) struct WireFields {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    status: Option<WireStatus>,
    #[serde(default)]
    assignee: Option<WireUser>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct WireStatus {
    name: String,
    #[serde(rename = "statusCategory")]
    category: Option<WireCategory>,
}

#[derive(Deserialize)]
pub(super) struct WireCategory {
    key: String,
}

#[derive(Deserialize)]
pub(super) struct WireUser {
    #[serde(rename = "accountId")]
    account_id: String,
    #[serde(rename = "displayName", default)]
    display_name: String,
}

impl WireIssue {
    pub(super) fn into_issue(self) -> JiraIssue {
        let status = self.fields.status;
        JiraIssue {
            key: self.key,
            summary: self.fields.summary.unwrap_or_default(),
            status_category: status
                .as_ref()
                .and_then(|s| s.category.as_ref())
                .map(|c| c.key.clone())
                .unwrap_or_default(),
            status: status.map(|s| s.name).unwrap_or_default(),
            assignee: self
                .fields
                .assignee
                .map(|user| Assignee { account_id: user.account_id, display_name: user.display_name }),
            extra: self.fields.extra,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireTransitions {
    pub(super) transitions: Vec<WireTransition>,
}

#[derive(Deserialize)]
pub(super) struct WireTransition {
    id: String,
    name: String,
    to: WireStatus,
    /// Absent in some answers; Jira only lists transitions the account may see, so absent
    /// means available.
    #[serde(rename = "isAvailable", default = "available_by_default")]
    is_available: bool,
}

fn available_by_default() -> bool {
    true
}

impl WireTransition {
    pub(super) fn into_transition(self) -> Transition {
        Transition { id: self.id, name: self.name, to_status: self.to.name, available: self.is_available }
    }
}

#[derive(Deserialize)]
pub(super) struct WireSearchPage {
    #[serde(default)]
    pub(super) issues: Vec<WireIssue>,
    #[serde(rename = "isLast")]
    pub(super) is_last: Option<bool>,
    #[serde(rename = "nextPageToken")]
    pub(super) next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    const CONTRACTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/contracts/jira/");

    fn contract(name: &str) -> String {
        let path = format!("{CONTRACTS}{name}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("the Jira contract {path} is missing: {e}"))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::with_cases(10_000)
        })]

        /// Whatever Jira answers, reading it gives a value or an error, never a panic.
        #[test]
        fn jira_responses_never_panic(body in proptest::prelude::any::<String>(), status in 100u16..600) {
            let answer = super::super::Answer {
                status: http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK),
                body: body.clone(),
            };
            let _ = error_text(&answer);
            if let Ok(issue) = parse::<WireIssue>(&answer, "read") {
                let _ = issue.into_issue();
            }
            if let Ok(transitions) = parse::<WireTransitions>(&answer, "read") {
                let _ = transitions.transitions.into_iter().map(WireTransition::into_transition).count();
            }
            let _ = parse::<WireSearchPage>(&answer, "read");
            let shaped = format!(r#"{{"errorMessages":[{body:?}],"errors":{{"f":{body:?}}},"transitions":[{{"id":{body:?},"name":"x","to":{{"name":{body:?},"statusCategory":{{"key":"done"}}}}}}]}}"#);
            let answer = super::super::Answer { status: http::StatusCode::BAD_REQUEST, body: shaped };
            let _ = error_text(&answer);
            if let Ok(transitions) = parse::<WireTransitions>(&answer, "read") {
                let _ = transitions.transitions.into_iter().map(WireTransition::into_transition).count();
            }
        }
    }

    #[test]
    fn the_vendor_samples_parse() {
        let transitions: WireTransitions = serde_json::from_str(&contract("transitions.get.response.json")).unwrap();
        let transitions: Vec<_> = transitions.transitions.into_iter().map(WireTransition::into_transition).collect();
        assert_eq!(
            transitions,
            [
                Transition {
                    id: "2".into(),
                    name: "Close Issue".into(),
                    to_status: "In Progress".into(),
                    available: true
                },
                Transition { id: "711".into(), name: "QA Review".into(), to_status: "Closed".into(), available: true },
            ]
        );

        let page: WireSearchPage = serde_json::from_str(&contract("search-jql.response.json")).unwrap();
        assert_eq!((page.is_last, page.next_page_token.as_deref()), (Some(false), Some("EgQIlMIC")));
        let issue = page.issues.into_iter().next().unwrap().into_issue();
        assert_eq!(issue.key, "EX-1");
        assert_eq!((issue.status.as_str(), issue.status_category.as_str()), ("In Progress", "in-flight"));
        assert_eq!(issue.assignee.unwrap().display_name, "Mia Krystof");

        let last: WireSearchPage = serde_json::from_str(&contract("search-jql.response.spec-example.json")).unwrap();
        assert_eq!((last.is_last, last.next_page_token), (Some(true), None));

        let errors: Value = serde_json::from_str(&contract("error.response.json")).unwrap();
        let gone = Answer { status: StatusCode::GONE, body: errors["search_removed_410_observed"].to_string() };
        assert!(error_text(&gone).contains("/rest/api/3/search/jql"));
        let fields = Answer { status: StatusCode::BAD_REQUEST, body: errors["field_errors_400"].to_string() };
        assert_eq!(error_text(&fields), "title: 'title' is required.");
    }

    #[test]
    fn comments_become_adf_paragraphs_with_line_breaks() {
        let doc = adf_document("Failed on dev by Grace.\nLogin button dead.\n\n\nSee the log.").unwrap();
        assert_eq!(
            doc,
            json!({"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [
                    {"type": "text", "text": "Failed on dev by Grace."},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "Login button dead."}
                ]},
                {"type": "paragraph", "content": [{"type": "text", "text": "See the log."}]}
            ]})
        );
        assert!(adf_document(" \n\n ").is_err());
    }
}
