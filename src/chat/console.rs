//! The console adapter: the same commands in a terminal, or from a script on stdin.
//!
//! Interactive use prints progress as it comes and lets you type on. With stdin not a
//! terminal (scripts, tests, CI), each command's long-running work finishes before the next
//! line is read, so a script reads like a session.

use super::text;
use crate::config::Config;
use crate::engine::{Announcement, EngineHandle, Invocation, MessageRef, Reaction};
use std::io::Write;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{broadcast, mpsc};

/// Runs the console until `input` ends (or `exit`), as the configured person `user`.
pub async fn run(
    engine: EngineHandle,
    config: Arc<Config>,
    user: &str,
    clock: Arc<dyn crate::clock::Clock>,
    input: impl AsyncBufRead + Unpin,
    interactive: bool,
) -> anyhow::Result<()> {
    let mut lines = input.lines();
    let mut followers = Vec::new();
    let announcer =
        tokio::spawn(print_announcements(engine.clone(), engine.announcements(), config.clone(), clock.clone()));
    loop {
        if interactive {
            print!("{user}> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if matches!(line, "exit" | "quit" | "/exit" | "/quit") {
            break;
        }
        if !interactive {
            println!("{user}> {line}");
        }
        if let Some(rest) = line.strip_prefix("!react ").or_else(|| line.strip_prefix("!unreact ")) {
            let added = line.starts_with("!react ");
            match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
                [id, emoji] if id.parse::<u64>().is_ok() => {
                    let message = promotion_message(id.parse().unwrap_or_default());
                    engine
                        .react(Reaction {
                            platform: "console".into(),
                            user_id: user.to_owned(),
                            platform_roles: Vec::new(),
                            emoji: (*emoji).to_owned(),
                            message,
                            added,
                            at: clock.now(),
                        })
                        .await;
                    // Let the announcement of the vote print before the next prompt.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                _ => println!(
                    "✋ Use `!react N ✅` (or ❌) to vote on promotion request N; `!unreact` takes a vote back."
                ),
            }
            continue;
        }
        let (progress, mut updates) = mpsc::unbounded_channel();
        let reply = engine
            .submit(Invocation {
                platform: "console".into(),
                user_id: user.to_owned(),
                text: line.to_owned(),
                progress: Some(progress),
                platform_roles: Vec::new(),
            })
            .await;
        println!("{}", text::reply(&reply, config.timezone));
        let clock = clock.clone();
        let follower = tokio::spawn(async move {
            while let Some(update) = updates.recv().await {
                if let Some(line) = text::progress(&update, clock.now()) {
                    println!("{line}");
                }
            }
        });
        if interactive {
            followers.push(follower);
        } else {
            let _ = follower.await;
        }
    }
    for follower in followers {
        let _ = follower.await;
    }
    announcer.abort();
    Ok(())
}

/// Prints what the bot announces to the team (reminders, scheduled deploys).
async fn print_announcements(
    engine: EngineHandle,
    mut announcements: broadcast::Receiver<Announcement>,
    config: Arc<Config>,
    clock: Arc<dyn crate::clock::Clock>,
) {
    loop {
        match announcements.recv().await {
            Ok(Announcement::Text(text)) => {
                println!("📣 {}", super::mentions(&text, &config, |p| Some(format!("@{}", p.name))));
            }
            Ok(Announcement::Deploy(update)) => {
                if let Some(line) = text::progress(&update, clock.now()) {
                    println!("📣 {line}");
                }
            }
            // The console has no direct messages: the engine mentions console users instead.
            Ok(Announcement::Direct(_)) => {}
            Ok(Announcement::Promotion(view)) => {
                let request = &view.request;
                if view.messages.iter().any(|(platform, _)| platform == "console") {
                    println!("📣 Promotion #{}: {}", request.id, request.tally(config.timezone));
                } else {
                    println!("📣 {}", text::promotion(request, config.timezone));
                    println!("   (in the console, vote with `!react {} ✅` or `!react {} ❌`)", request.id, request.id);
                    engine.bind_message(request.id, "console", promotion_message(request.id)).await;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The console's "message" for promotion request `id`: reactions to it vote.
fn promotion_message(id: u64) -> MessageRef {
    MessageRef { channel: "console".into(), id: format!("promotion-{id}") }
}
