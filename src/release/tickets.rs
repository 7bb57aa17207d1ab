//! Jira ticket keys (`SHOP-123`) found in branch names, PR titles and bodies, and commit
//! messages, so a deploy knows which tickets it shipped.
//!
//! Boundary rules, chosen so that a wrong ticket is never moved (a missed key only costs a
//! `/ticket` command, a false one moves someone else's card):
//! - the project key is one of the configured ones, in any case (`shop-12` is `SHOP-12`);
//! - before it: the start of the text or a character that is not a letter, digit or `_`
//!   (`feature/SHOP-12`, `(SHOP-12)`, but not `XSHOP-1` or `MY_SHOP-1`, which may be another
//!   project's key);
//! - then exactly one `-` and a number without a leading zero, at most nine digits;
//! - after it: the end of the text or a character that is not a letter or digit (`SHOP-12-login`,
//!   `SHOP-12_login`, `SHOP-12.`, but not `SHOP-12a`).

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most digits a ticket number may have; longer runs are not ticket numbers.
const MAX_DIGITS: usize = 9;

/// A Jira issue key, normalised to upper case: project key, `-`, issue number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TicketKey {
    project: String,
    number: u32,
}

/// The text was not a ticket key of a configured project.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` is not a ticket key{expected}")]
pub struct TicketKeyError {
    shown: String,
    expected: String,
}

impl TicketKey {
    /// Reads a whole text (such as the argument of `/ticket`) as a key of one of `projects`,
    /// in any case.
    pub fn parse(projects: &[String], text: &str) -> Result<Self, TicketKeyError> {
        let text = text.trim();
        let refuse = || TicketKeyError {
            shown: text.chars().take(40).collect(),
            expected: match projects {
                [] => String::new(),
                [one] => format!(" like {one}-123"),
                [first, ..] => format!(" of {} (like {first}-123)", projects.join(", ")),
            },
        };
        let key: TicketKey = text.parse().map_err(|_| refuse())?;
        if projects.iter().any(|p| p.eq_ignore_ascii_case(&key.project)) { Ok(key) } else { Err(refuse()) }
    }

    /// The project key (`SHOP`).
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The issue number within the project (`123`).
    pub fn number(&self) -> u32 {
        self.number
    }
}

/// Any well-formed key, whatever its project: letters first, then letters, digits or `_`, a
/// `-` and a number. Used for keys read back from the store or from Jira itself.
impl FromStr for TicketKey {
    type Err = TicketKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || TicketKeyError { shown: text.chars().take(40).collect(), expected: String::new() };
        let (project, digits) = text.rsplit_once('-').ok_or_else(refuse)?;
        let project_ok = project.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && project.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !project_ok || !valid_number(digits) {
            return Err(refuse());
        }
        Ok(Self { project: project.to_ascii_uppercase(), number: digits.parse().map_err(|_| refuse())? })
    }
}

fn valid_number(digits: &str) -> bool {
    !digits.is_empty()
        && digits.len() <= MAX_DIGITS
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Ord for TicketKey {
    /// By project, then numerically: `SHOP-2` comes before `SHOP-10`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.project, self.number).cmp(&(&other.project, other.number))
    }
}

impl PartialOrd for TicketKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.project, self.number)
    }
}

impl TryFrom<String> for TicketKey {
    type Error = TicketKeyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<TicketKey> for String {
    fn from(value: TicketKey) -> Self {
        value.to_string()
    }
}

/// Every key of `projects` mentioned in `texts` (branch names, PR titles and bodies, commit
/// messages), sorted and without duplicates. See the module doc for the boundary rules.
pub fn extract_keys<'a>(projects: &[String], texts: impl IntoIterator<Item = &'a str>) -> Vec<TicketKey> {
    if projects.is_empty() {
        return Vec::new();
    }
    // `\b` gives the left boundary (a word character is a letter, digit or `_`); the right one
    // is checked by hand because `_` is allowed there.
    let alternatives: Vec<String> = projects.iter().map(|p| regex::escape(p)).collect();
    let pattern = format!(r"(?i)\b({})-([0-9]+)", alternatives.join("|"));
    let Ok(regex) = Regex::new(&pattern) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for text in texts {
        for found in regex.captures_iter(text) {
            let (Some(project), Some(digits)) = (found.get(1), found.get(2)) else {
                continue;
            };
            let (project, digits) = (project.as_str(), digits.as_str());
            let end = found.get(0).map_or(0, |m| m.end());
            let followed_by_word =
                text.get(end..).and_then(|after| after.chars().next()).is_some_and(char::is_alphanumeric);
            if followed_by_word || !valid_number(digits) {
                continue;
            }
            let Some(project) = projects.iter().find(|p| p.eq_ignore_ascii_case(project)) else {
                continue;
            };
            if let Ok(number) = digits.parse() {
                keys.push(TicketKey { project: project.to_ascii_uppercase(), number });
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// A pull request as GitHub's merge webhook announced it: the texts where teams put ticket
/// keys besides commit messages (its head branch, `feature/SHOP-123-discount`, and its title,
/// `SHOP-123: …`), and the commit its merge put on the base branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedPull {
    /// The PR number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// The branch it came from.
    pub head_ref: String,
    /// The commit the merge made (a merge, squash or the last rebased commit), 40 hex.
    pub merge_sha: String,
    /// When Shipday heard of it (records are forgotten after a while).
    pub merged_at: chrono::DateTime<chrono::Utc>,
}

/// Every key of `projects` that a range of commits ships, sorted and each once: from the
/// commit messages, and from the head branch and title of each pull request whose merge commit
/// is one of the range's commits. `commits` are `(sha, message)` pairs.
pub fn shipped_keys(projects: &[String], commits: &[(String, String)], pulls: &[MergedPull]) -> Vec<TicketKey> {
    let in_range = |pull: &&MergedPull| commits.iter().any(|(sha, _)| sha.eq_ignore_ascii_case(&pull.merge_sha));
    let pulls: Vec<&MergedPull> = pulls.iter().filter(in_range).collect();
    let texts = commits
        .iter()
        .map(|(_, message)| message.as_str())
        .chain(pulls.iter().flat_map(|pull| [pull.head_ref.as_str(), pull.title.as_str()]));
    extract_keys(projects, texts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pull(number: u64, title: &str, head_ref: &str, merge_sha: &str) -> MergedPull {
        MergedPull {
            number,
            title: title.into(),
            head_ref: head_ref.into(),
            merge_sha: merge_sha.into(),
            merged_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_range_ships_the_keys_of_its_commits_and_of_the_pull_requests_merged_in_it() {
        let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let commits = vec![(a.clone(), "Squashed: discount codes".to_owned()), (b.clone(), "SHOP-3 tidy".to_owned())];
        let pulls = [
            pull(1, "Discount codes", "feature/SHOP-123-discount", &a),
            pull(2, "SHOP-9: Gift cards", "gift-cards", &b.to_uppercase()),
            pull(3, "SHOP-77: not in this range", "feature/SHOP-78", &c),
        ];
        let keys: Vec<String> = shipped_keys(&shop(), &commits, &pulls).iter().map(ToString::to_string).collect();
        assert_eq!(keys, ["SHOP-3", "SHOP-9", "SHOP-123"]);
        let same = [pull(4, "SHOP-3: tidy", "feature/SHOP-3-tidy", &b)];
        let keys: Vec<String> = shipped_keys(&shop(), &commits, &same).iter().map(ToString::to_string).collect();
        assert_eq!(keys, ["SHOP-3"], "one key named in the title, the branch and a commit is shipped once");
    }

    fn slug() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,8}"
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(300) })]

        /// A key in a branch name as teams write them, or at the head of a title, is found,
        /// whatever the prefix, slug and case.
        #[test]
        fn keys_in_branch_names_and_titles_are_found(
            number in 1u32..999_999_999,
            prefix in prop::sample::select(vec!["", "feature/", "bugfix/", "hotfix/", "team/ada/"]),
            slug in slug(),
            lower in any::<bool>(),
            separator in prop::sample::select(vec!["-", "_", "/"]),
            title_separator in prop::sample::select(vec![": ", " ", " - ", "] "]),
        ) {
            let key = if lower { format!("shop-{number}") } else { format!("SHOP-{number}") };
            let branch = format!("{prefix}{key}{separator}{slug}");
            let opening = if title_separator == "] " { "[" } else { "" };
            let title = format!("{opening}{key}{title_separator}{slug}");
            let expected = vec![format!("SHOP-{number}")];
            let sha = "d".repeat(40);
            let commits = vec![(sha.clone(), slug.clone())];
            let found = |p: MergedPull| -> Vec<String> {
                shipped_keys(&shop(), &commits, &[p]).iter().map(ToString::to_string).collect()
            };
            prop_assert_eq!(found(pull(1, &slug, &branch, &sha)), expected.clone());
            prop_assert_eq!(found(pull(1, &title, "work", &sha)), expected);
        }

        /// The keys shipped are exactly the union of what each source names, each once, in
        /// order: no source hides or duplicates another's key, and pulls merged elsewhere count
        /// for nothing.
        #[test]
        fn shipped_keys_are_the_deduplicated_union_of_the_three_sources(
            branch in "[a-zA-Z0-9/_-]{0,20}(SHOP-[1-9][0-9]{0,3})?[a-z_/-]{0,5}",
            title in "(SHOP-[1-9][0-9]{0,3}: )?[ a-zA-Z0-9]{0,20}",
            message in "[ a-zA-Z0-9]{0,10}(SHOP-[1-9][0-9]{0,3})?[ .a-z]{0,10}",
            merged_here in any::<bool>(),
        ) {
            let sha = "e".repeat(40);
            let merge_sha = if merged_here { sha.clone() } else { "f".repeat(40) };
            let commits = vec![(sha, message.clone())];
            let pulls = [pull(1, &title, &branch, &merge_sha)];
            let shipped = shipped_keys(&shop(), &commits, &pulls);
            let mut expected = extract_keys(&shop(), [message.as_str()]);
            if merged_here {
                expected.extend(extract_keys(&shop(), [branch.as_str()]));
                expected.extend(extract_keys(&shop(), [title.as_str()]));
            }
            expected.sort();
            expected.dedup();
            prop_assert_eq!(shipped, expected);
        }
    }

    fn shop() -> Vec<String> {
        vec!["SHOP".into()]
    }

    fn found(projects: &[String], texts: &[&str]) -> Vec<String> {
        extract_keys(projects, texts.iter().copied()).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn finds_keys_in_branch_names_titles_bodies_and_commit_messages() {
        let texts = [
            "feature/SHOP-12-login",
            "shop-7",
            "SHOP-3: fix the basket total",
            "Closes SHOP-40 and (SHOP-41).\n\nSee https://team.atlassian.net/browse/SHOP-42",
            "bugfix/SHOP-9_rounding",
            "[SHOP-5] tidy",
        ];
        assert_eq!(
            found(&shop(), &texts),
            ["SHOP-3", "SHOP-5", "SHOP-7", "SHOP-9", "SHOP-12", "SHOP-40", "SHOP-41", "SHOP-42"]
        );
    }

    #[test]
    fn no_false_positives_at_the_boundaries() {
        let texts = [
            "SHOPX-1",
            "XSHOP-1",
            "MY_SHOP-2",
            "9SHOP-3",
            "SHOP-",
            "SHOP-12a",
            "SHOP--4",
            "SHOP 5",
            "SHOP_6",
            "SHOP-07",
            "SHOP-0",
            "SHOP-1234567890",
            "ÉSHOP-8",
            "SHOP-9é",
        ];
        for text in texts {
            assert!(found(&shop(), &[text]).is_empty(), "{text} gave {:?}", found(&shop(), &[text]));
        }
    }

    #[test]
    fn keys_are_normalised_deduplicated_and_sorted_numerically() {
        let projects = vec!["SHOP".to_string(), "OPS".to_string()];
        let texts = ["shop-10 Shop-2", "SHOP-2 OPS-1", "SHOP-1 SHOP-2"];
        assert_eq!(found(&projects, &texts), ["OPS-1", "SHOP-1", "SHOP-2", "SHOP-10"]);
    }

    #[test]
    fn only_configured_projects_count() {
        assert!(found(&shop(), &["OPS-1 ABC-2"]).is_empty());
        assert!(found(&[], &["SHOP-1"]).is_empty());
    }

    #[test]
    fn parse_reads_a_whole_key_of_a_configured_project() {
        let key = TicketKey::parse(&shop(), " shop-123 ").unwrap();
        assert_eq!(key.to_string(), "SHOP-123");
        assert_eq!((key.project(), key.number()), ("SHOP", 123));
        let err = TicketKey::parse(&shop(), "OPS-1").unwrap_err();
        assert_eq!(err.to_string(), "`OPS-1` is not a ticket key like SHOP-123");
        for bad in ["SHOP-12 extra", "SHOP-", "SHOP-1a", "../SHOP-1", ""] {
            assert!(TicketKey::parse(&shop(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_round_trip_through_the_store_as_strings() {
        let key: TicketKey = "MY_PROJ-5".parse().unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"MY_PROJ-5\"");
        assert_eq!(serde_json::from_str::<TicketKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<TicketKey>("\"5-SHOP\"").is_err());
    }
}
