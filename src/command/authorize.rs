//! Who may run a command: a command's least role comes from its spec; permissions deny by
//! default (a person who is not configured may only read); production needs a lead. Pure: the
//! release rules it applies live in [`crate::release::policy`].

use crate::command::{Command, CommandSpec, MinRole};
use crate::release::Refusal;
use crate::release::environment::Environment;
use crate::release::people::{Person, Role};
use crate::release::policy::previous_environment;

/// Who is asking, as the platform told us.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The configured person, if the platform id maps to one.
    pub person: Option<&'a Person>,
    /// Platform name for messages (`slack`, `discord`, `console`).
    pub platform: &'a str,
    /// The platform's user id.
    pub user_id: &'a str,
}

/// Decides whether `actor` may run `command`, whose spec is `spec`.
pub fn authorize(
    environments: &[Environment],
    spec: &CommandSpec,
    actor: Actor<'_>,
    command: &Command,
) -> Result<(), Refusal> {
    if spec.who == MinRole::Anyone {
        return Ok(());
    }
    let Some(person) = actor.person else {
        return Err(Refusal::new(format!(
            "Shipday does not know you yet, so you can only use /status, /history and /help. \
             Ask an operator to add your {} id `{}` to the people list in the config.",
            actor.platform, actor.user_id
        )));
    };
    let needed = match spec.who {
        MinRole::Lead => Role::Lead,
        _ => Role::Developer,
    };
    if !person.has(needed) {
        let role = if needed == Role::Lead { "a lead" } else { "a developer or lead" };
        return Err(Refusal::new(format!(
            "Only {role} can use /{}. Ask a lead to run it for you, or to give you the role in the config.",
            spec.name
        )));
    }
    if let Command::Rollback { env, .. } = command
        && environments.iter().find(|e| e.name == *env).is_some_and(|e| e.requires_approval)
        && !person.has(Role::Lead)
    {
        return Err(Refusal::new(format!("Rolling back {env} needs a lead. Ask a lead to run `/rollback {env}`.")));
    }
    if let Command::Deploy { env, git_ref, .. } = command {
        let Some(environment) = environments.iter().find(|e| e.name == *env) else {
            return Err(Refusal::new(format!("There is no environment `{env}`.")));
        };
        if *git_ref != environment.branch && !environment.personal_branches {
            let previous = previous_environment(environments, env);
            let promote =
                previous.map(|p| format!(" To ship what is on {p}, use `/promote {p} {env}`.")).unwrap_or_default();
            return Err(Refusal::new(format!(
                "{env} only takes its own branch `{}`, not personal branches.{promote}",
                environment.branch
            )));
        }
        if environment.requires_approval && !person.has(Role::Lead) {
            let promote = previous_environment(environments, env)
                .map(|p| format!(", or request approval with `/promote {p} {env}`"))
                .unwrap_or_default();
            return Err(Refusal::new(format!("Deploying to {env} needs a lead. Ask a lead to deploy{promote}.")));
        }
    }
    Ok(())
}
