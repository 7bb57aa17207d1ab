//! What the code forge (GitHub) told us happened to a branch: plain data the webhook adapter
//! produces and the engine acts on (re-exported as `webhook::github::GitHubEvent`).

use crate::release::gitref::Sha;

/// Something that happened on GitHub that the engine acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitHubEvent {
    /// A PR was merged into `base` as `merge_sha`.
    Merged {
        /// The branch it was merged into (`dev`).
        base: String,
        /// The commit the merge produced on `base`: what gets deployed.
        merge_sha: Sha,
        /// The PR number.
        number: u64,
        /// Its title.
        title: String,
        /// Its description, empty when there is none.
        body: String,
        /// The PR author's GitHub login.
        author: String,
        /// The branch it came from.
        head_ref: String,
    },
    /// A branch moved (push), to `after`.
    Pushed {
        /// The branch, without `refs/heads/`.
        branch: String,
        /// Its new tip.
        after: Sha,
        /// Its previous tip; `None` when the push created the branch.
        before: Option<Sha>,
        /// Whether the push rewrote history (`git push --force`).
        forced: bool,
    },
}
