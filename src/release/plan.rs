//! Deploy plans: the exact shell text each step runs. Only validated values (a [`Sha`], a
//! [`GitRef`], configured names) are substituted, and each is shell-quoted.

use super::gitref::{GitRef, Sha};
use super::migrations::{BranchMigrations, MigrationConfig, MigrationDebt};
use crate::release::environment::Environment;
use crate::release::parse_duration;
use std::time::Duration;

/// Seconds the host's `timeout` waits after TERM before it sends KILL.
pub const KILL_AFTER_SECS: u64 = 5;

/// Everything a deploy will run, fixed before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployPlan {
    /// Target environment.
    pub env: String,
    /// Requested ref.
    pub git_ref: GitRef,
    /// The resolved commit.
    pub sha: Sha,
    /// The steps, in order.
    pub steps: Vec<PlannedStep>,
    /// The script that prints HEAD after the steps, to prove the commit is live.
    pub verify: String,
    /// The health URL to check last, with how long it may take.
    pub health: Option<(String, Duration)>,
    /// What the migration guard found on a personal branch.
    pub migrations: Option<BranchMigrations>,
    /// For a dry run: why the real deploy would be refused now (someone holds the
    /// environment, a deploy runs, it is outside the slot). A dry run changes nothing, so it
    /// runs anyway and says so.
    pub would_refuse: Option<String>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    /// Name shown to people.
    pub name: String,
    /// The step as configured, with values substituted (for dry runs).
    pub command: String,
    /// The full script sent to the host: `cd`, host-side `timeout`, the command.
    pub script: String,
    /// The bot-side time limit (the host's is the same; the bot waits a little longer).
    pub timeout: Duration,
}

/// Quotes one value for POSIX sh.
pub fn quote(value: &str) -> String {
    shlex::try_quote(value).map(|q| q.into_owned()).unwrap_or_else(|_| "''".to_owned())
}

/// Replaces `{{placeholders}}` with shell-quoted values. Templates were checked at start-up,
/// so an unknown placeholder cannot occur; it would be left as it is.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some((before, after)) = rest.split_once("{{") {
        out.push_str(before);
        let Some((inside, next)) = after.split_once("}}") else {
            out.push_str("{{");
            out.push_str(after);
            return out;
        };
        let name = inside.trim();
        match values.iter().find(|(key, _)| *key == name) {
            Some((_, value)) => out.push_str(&quote(value)),
            None => out.push_str(&format!("{{{{{inside}}}}}")),
        }
        rest = next;
    }
    out.push_str(rest);
    out
}

/// Wraps a command so it runs in the environment's directory under the host's `timeout`,
/// which kills the whole process group even if the connection to the bot is gone.
pub fn host_script(env: &Environment, command: &str, timeout: Duration) -> String {
    wrapped(env, "", command, timeout)
}

/// `command` in the environment's directory under the host's `timeout`, behind `prefix`.
fn wrapped(env: &Environment, prefix: &str, command: &str, timeout: Duration) -> String {
    format!(
        "cd {} && exec {prefix}timeout --kill-after={KILL_AFTER_SECS}s {}s sh -c {}",
        quote(&env.work_dir()),
        timeout.as_secs().max(1),
        quote(command)
    )
}

/// The host-side deploy lock, in the checkout's git directory (never tracked, never cleaned).
/// Every step that can change the host runs while holding it, and so does resolving a ref, so
/// a new deploy cannot start while a step of an older one (say, one a crash left running)
/// still runs.
pub const HOST_LOCK: &str = ".git/shipday.lock";

/// How long a step (or resolving) waits for the host's deploy lock before it gives up.
pub const LOCK_WAIT_SECS: u64 = 10;

/// The exit code of a step that could not take the host's deploy lock in time.
pub const LOCK_BUSY_EXIT: i32 = 75;

/// [`host_script`], holding the host's deploy lock ([`HOST_LOCK`]) while the command runs.
/// `flock` holds it (and waits at most [`LOCK_WAIT_SECS`] for it); `-o` keeps it out of
/// what the command leaves running (a daemonized server), so only the step itself holds it.
/// The lock outlives the connection to the bot: a step a crash left running keeps it.
///
/// Before `timeout` starts, the step's process id goes to [`STEP_PID`]: `timeout` makes
/// itself the leader of a new process group, so that id is the step's process group, which
/// `/cancel` stops ([`cancel_script`]).
pub fn locked_host_script(env: &Environment, command: &str, timeout: Duration) -> String {
    wrapped(
        env,
        &format!(
            "flock -o -w {LOCK_WAIT_SECS} -E {LOCK_BUSY_EXIT} {HOST_LOCK} sh -c 'echo $$ > {STEP_PID} && exec \"$@\"' shipday-step "
        ),
        command,
        timeout,
    )
}

/// Where the step that holds the host's deploy lock writes its process id (which `timeout`
/// turns into its process group id), in the checkout's git directory.
pub const STEP_PID: &str = ".git/shipday-step.pid";

/// Seconds `/cancel` waits after TERM for the step's process group to end before it sends KILL.
pub const CANCEL_GRACE_SECS: u64 = 5;

/// What [`cancel_script`] prints last: the step was stopped by TERM, had to be killed, or no
/// step ran.
pub const CANCEL_STOPPED: &str = "shipday-cancel: stopped";
/// See [`CANCEL_STOPPED`].
pub const CANCEL_KILLED: &str = "shipday-cancel: killed";
/// See [`CANCEL_STOPPED`].
pub const CANCEL_NONE: &str = "shipday-cancel: no step runs";

/// The script `/cancel` runs on a second connection: it reads [`STEP_PID`], checks that it
/// names a live process group led by `timeout` (a step of a deploy, not a reused id), sends
/// the whole group TERM, and KILL if it is still there after [`CANCEL_GRACE_SECS`]. It does not
/// take the host's deploy lock (the step holds it), and nothing in it comes from chat.
pub fn cancel_script(env: &Environment) -> String {
    let tries = CANCEL_GRACE_SECS * 10;
    let command = format!(
        "p=$(cat {STEP_PID} 2>/dev/null); \
         case \"$p\" in ''|*[!0-9]*) echo '{CANCEL_NONE}'; exit 0;; esac; \
         alive() {{ [ \"$(ps -o pgid= -p \"$p\" 2>/dev/null | tr -d ' ')\" = \"$p\" ] && [ \"$(ps -o comm= -p \"$p\" 2>/dev/null)\" = timeout ]; }}; \
         gone() {{ ! kill -0 \"-$p\" 2>/dev/null; }}; \
         alive || {{ echo '{CANCEL_NONE}'; exit 0; }}; \
         kill -TERM \"-$p\" 2>/dev/null; \
         i=0; while [ $i -lt {tries} ]; do gone && {{ echo '{CANCEL_STOPPED}'; exit 0; }}; sleep 0.1; i=$((i+1)); done; \
         kill -KILL \"-$p\" 2>/dev/null; \
         i=0; while [ $i -lt 50 ]; do gone && {{ echo '{CANCEL_KILLED}'; exit 0; }}; sleep 0.1; i=$((i+1)); done; \
         echo 'shipday-cancel: still running'; exit 1"
    );
    host_script(env, &command, Duration::from_secs(CANCEL_GRACE_SECS + 15))
}

/// The script that resolves `git_ref` to a commit on the host, before anything changes.
/// Branches win over tags; a full SHA is checked to exist after a fetch.
pub fn resolve_script(env: &Environment, git_ref: &GitRef) -> String {
    let command = match git_ref.as_sha() {
        Some(sha) => {
            format!("git fetch --all --quiet && git rev-parse --verify --quiet {}", quote(&format!("{sha}^{{commit}}")))
        }
        None => format!(
            "git ls-remote --exit-code origin {} {}",
            quote(&format!("refs/heads/{git_ref}")),
            quote(&format!("refs/tags/{git_ref}"))
        ),
    };
    // Taking the host's deploy lock here is how a new deploy makes sure that no step of an
    // older one still runs before it runs anything.
    locked_host_script(env, &command, env.step_timeout)
}

/// Reads the resolved SHA from the output of [`resolve_script`].
pub fn parse_resolution(git_ref: &GitRef, output: &str) -> Option<Sha> {
    if let Some(sha) = git_ref.as_sha() {
        return Sha::parse(output.trim()).ok().filter(|s| *s == sha);
    }
    let find = |wanted: String| {
        output.lines().find_map(|line| {
            let (sha, name) = line.split_once('\t')?;
            (name.trim() == wanted).then(|| Sha::parse(sha.trim()).ok()).flatten()
        })
    };
    find(format!("refs/heads/{git_ref}"))
        .or_else(|| find(format!("refs/tags/{git_ref}^{{}}")))
        .or_else(|| find(format!("refs/tags/{git_ref}")))
}

/// Builds the plan for deploying `sha` (resolved from `git_ref`) to `env`.
pub fn build_plan(env: &Environment, git_ref: &GitRef, sha: &Sha) -> DeployPlan {
    let values =
        [("sha", sha.as_str()), ("ref", git_ref.as_str()), ("branch", env.branch.as_str()), ("env", env.name.as_str())];
    let steps = env
        .steps
        .iter()
        .map(|step| {
            let timeout = step.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(env.step_timeout);
            let command = render_template(&step.run, &values);
            PlannedStep {
                name: step.name.clone(),
                script: locked_host_script(env, &command, timeout),
                command,
                timeout,
            }
        })
        .collect();
    DeployPlan {
        env: env.name.clone(),
        git_ref: git_ref.clone(),
        sha: sha.clone(),
        steps,
        verify: head_script(env),
        health: env.health_url.clone().map(|url| (url, env.health_timeout)),
        migrations: None,
        would_refuse: None,
    }
}

/// Steps that undo a personal branch's migrations, run first, while its code is checked out.
pub fn undo_steps(env: &Environment, config: &MigrationConfig, debt: &MigrationDebt) -> Vec<PlannedStep> {
    config
        .undo_commands(debt, quote)
        .into_iter()
        .map(|(name, command)| PlannedStep {
            name,
            script: locked_host_script(env, &command, env.step_timeout),
            command,
            timeout: env.step_timeout,
        })
        .collect()
}

/// The script that prints the checkout's HEAD.
pub fn head_script(env: &Environment) -> String {
    host_script(env, "git rev-parse HEAD", Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StepTemplate, TransportConfig, default_steps};

    fn env() -> Environment {
        Environment {
            name: "dev".into(),
            aliases: Vec::new(),
            url: None,
            branch: GitRef::parse("dev").unwrap(),
            transport: TransportConfig::Local { dir: "/srv/my app".into() },
            steps: default_steps(),
            health_url: None,
            health_timeout: Duration::from_secs(30),
            migrations: None,
            approvals: 0,
            promote: crate::config::PromoteMode::Merge,
            personal_branches: true,
            requires_approval: false,
            claim_ttl: Duration::from_secs(3600),
            step_timeout: Duration::from_secs(60),
            ci: None,
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn steps_get_quoted_values_and_host_timeouts() {
        let mut env = env();
        env.steps.push(StepTemplate {
            name: "note".into(),
            run: "echo deployed {{ref}} at {{sha}} > /tmp/x".into(),
            timeout: Some("5s".into()),
        });
        let plan = build_plan(&env, &GitRef::parse("feature/a").unwrap(), &Sha::parse(SHA).unwrap());
        assert_eq!(plan.steps[1].command, format!("git checkout --quiet --detach {SHA}"));
        assert_eq!(plan.steps[4].command, format!("echo deployed feature/a at {SHA} > /tmp/x"));
        assert_eq!(plan.steps[4].timeout, Duration::from_secs(5));
        assert!(plan.steps[4].script.starts_with(
            "cd '/srv/my app' && exec flock -o -w 10 -E 75 .git/shipday.lock sh -c 'echo $$ > .git/shipday-step.pid && exec \"$@\"' shipday-step timeout --kill-after=5s 5s sh -c "
        ));
    }

    /// The real scripts, on this machine: a step run as a deploy runs it writes its pid file,
    /// and the cancel script stops its whole process group (a background grandchild too), then
    /// finds nothing to stop once the step is gone.
    #[bounded::test]
    fn the_cancel_script_stops_the_whole_process_group_of_the_running_step() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let mut env = env();
        env.transport = TransportConfig::Local { dir: dir.path().to_path_buf() };
        let script = locked_host_script(&env, "sleep 5017 & sleep 5016", Duration::from_secs(600));
        let mut step = std::process::Command::new("sh").arg("-c").arg(&script).spawn().unwrap();
        let pgrep = |pattern: &str| {
            let out = std::process::Command::new("pgrep").args(["-f", pattern]).output().unwrap();
            !out.stdout.is_empty()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !(pgrep("sleep 5017") && pgrep("sleep 5016")) {
            assert!(std::time::Instant::now() < deadline, "the step never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let cancel = |script: &str| {
            let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let said = cancel(&cancel_script(&env));
        assert!(said.contains(CANCEL_STOPPED), "{said}");
        let status = step.wait().unwrap();
        assert!(!status.success(), "{status:?}");
        assert!(!pgrep("sleep 5017") && !pgrep("sleep 5016"), "nothing of the step is left");
        let said = cancel(&cancel_script(&env));
        assert!(said.contains(CANCEL_NONE), "a finished step's pid is not signalled: {said}");
    }

    #[test]
    fn resolution_parses_ls_remote_output() {
        let git_ref = GitRef::parse("feature/a").unwrap();
        let out = format!("{SHA}\trefs/heads/feature/a\n");
        assert_eq!(parse_resolution(&git_ref, &out).unwrap().as_str(), SHA);
        assert!(parse_resolution(&git_ref, "").is_none());
        let other = format!("{SHA}\trefs/heads/feature/a-other\n");
        assert!(parse_resolution(&git_ref, &other).is_none());
    }

    #[test]
    fn quoting_survives_anything() {
        assert_eq!(quote("a b"), "'a b'");
        let rendered = render_template("printf %s {{env}} {{nope}}", &[("env", "d'ev $(id)")]);
        assert!(rendered.ends_with(" {{nope}}"), "{rendered}");
        let out =
            std::process::Command::new("sh").arg("-c").arg(rendered.trim_end_matches(" {{nope}}")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "d'ev $(id)");
    }
}
