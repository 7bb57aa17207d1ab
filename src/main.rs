//! The `shipday` binary: a thin CLI over the library.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice, clippy::unwrap_used))]

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use shipday::chat::{console, text};
use shipday::clock::{Clock, ShiftedClock, SystemClock};
use shipday::command::CommandBook;
use shipday::config::TransportConfig;
use shipday::scheduler::Scheduler;
use shipday::settings::Settings;
use shipday::store::Store;
use shipday::{app, manifest, playground, serve};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "shipday", version, about = "A release bot: deploys, calendar windows and approvals from chat.")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Try Shipday with no accounts: a local git origin, three environments and the console.
    Playground {
        /// Where the playground lives.
        #[arg(long, default_value = "playground")]
        dir: PathBuf,
        /// Who you are (ada is a lead; grace and linus are developers).
        #[arg(long = "as", default_value = "grace")]
        user: String,
        /// Pretend the time is this (RFC 3339, e.g. 2026-11-29T16:59:00Z) to try the calendar.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Run the bot: the configured chat adapters and the release calendar.
    Serve {
        /// Config file.
        #[arg(long, env = "SHIPDAY_CONFIG", default_value = "shipday.toml")]
        config: PathBuf,
    },
    /// Talk to Shipday in this terminal (or from a script on stdin).
    Console {
        /// Config file.
        #[arg(long, env = "SHIPDAY_CONFIG", default_value = "shipday.toml")]
        config: PathBuf,
        /// Who you are: a person id from the config.
        #[arg(long = "as")]
        user: String,
        /// Pretend the time is this (RFC 3339) to try the calendar.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Validate the config and exit, starting nothing. With --online, also ask Slack, Discord,
    /// GitHub, Jira and every host whether the config works (one line per check; exit 1 if any
    /// fails).
    CheckConfig {
        /// Config file.
        #[arg(long, env = "SHIPDAY_CONFIG", default_value = "shipday.toml")]
        config: PathBuf,
        /// Also check the credentials, the channel, the repository, the Jira statuses and the hosts
        /// over the network.
        #[arg(long)]
        online: bool,
        /// With --online: the most seconds one check may take.
        #[arg(long, default_value_t = shipday::preflight::DEFAULT_TIMEOUT.as_secs(), requires = "online")]
        timeout: u64,
    },
    /// Print a platform set-up document made from the command specs.
    Manifest {
        /// Which platform.
        platform: Platform,
        /// Config file, for environment names (defaults: dev, staging, production) and the
        /// platform's command names (`[slack] commands`, `[discord] commands`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Slack over HTTPS at this base URL instead of Socket Mode.
        #[arg(long)]
        request_url: Option<String>,
    },
    /// Register the slash commands with a platform (replacing what was registered before).
    Register {
        /// Which platform.
        platform: RegisterPlatform,
        /// Config file.
        #[arg(long, env = "SHIPDAY_CONFIG", default_value = "shipday.toml")]
        config: PathBuf,
        /// Register in this server instead of the configured one.
        #[arg(long, conflicts_with = "global")]
        guild: Option<u64>,
        /// Register globally, in every server the bot is in (Discord may take a while to update).
        #[arg(long)]
        global: bool,
    },
    /// Copy the state store to FILE, for `shipday restore`. The store can be open in one process
    /// at a time: stop the bot first (it takes about a second).
    Backup {
        /// Where to write the backup (`-` for standard output). An existing file is never overwritten.
        file: PathBuf,
        /// Config file (its `state_dir` is backed up).
        #[arg(long, env = "SHIPDAY_CONFIG", default_value = "shipday.toml")]
        config: PathBuf,
    },
    /// Restore a backup made by `shipday backup` into the config's state directory, which must
    /// be empty or not exist.
    Restore {
        /// The backup (`-` for standard input).
        file: PathBuf,
        /// Config file (the backup is restored into its `state_dir`).
        #[arg(long, env = "SHIPDAY_CONFIG", default_value = "shipday.toml")]
        config: PathBuf,
    },
    /// Print the audit log: every command, who sent it and what was decided, oldest first.
    Audit {
        /// Config file (its `state_dir` holds the log).
        #[arg(long, env = "SHIPDAY_CONFIG", default_value = "shipday.toml")]
        config: PathBuf,
        /// Only entries from this time on: RFC 3339 (2026-11-29T17:00:00Z) or a date (2026-11-29,
        /// from midnight UTC).
        #[arg(long, value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only entries whose command or decision names this environment.
        #[arg(long)]
        env: Option<String>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running Shipday's `/healthz` whether it is alive: exit 0 if it answers 200, 1 if
    /// not (for Docker's HEALTHCHECK; the image has no curl).
    Healthcheck {
        /// The URL to ask. Default: `/healthz` on the config's `[server] listen` address (on
        /// loopback when it listens on every address), or http://127.0.0.1:3000/healthz.
        #[arg(long, env = "SHIPDAY_HEALTHCHECK_URL")]
        url: Option<String>,
        /// Config file, for `[server] listen` (a missing file means the default address).
        #[arg(long, env = "SHIPDAY_CONFIG", default_value = "shipday.toml")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RegisterPlatform {
    Discord,
}

#[derive(Clone, Copy, ValueEnum)]
enum Platform {
    Slack,
    Discord,
}

/// What `serve` logs when `SHIPDAY_LOG` is not set: one line per decision from Shipday itself,
/// and only warnings from its libraries.
const SERVE_LOG: &str = "shipday=info,warn";

/// What the interactive commands log by default: only what needs attention, so log lines do
/// not interleave with the conversation in the terminal.
const INTERACTIVE_LOG: &str = "warn";

/// Logs to stderr, secrets redacted: filtered by `SHIPDAY_LOG` (default `default_filter`), as
/// text, or as one JSON object per line with `SHIPDAY_LOG_FORMAT=json`.
fn init_logging(default_filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHIPDAY_LOG").unwrap_or_else(|_| default_filter.into());
    let writer = shipday::redact::LogWriter::new(std::io::stderr);
    match std::env::var("SHIPDAY_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(writer)
            .init(),
        Ok(other) => bail!("SHIPDAY_LOG_FORMAT={other:?} is not a log format; use `text` (the default) or `json`"),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Cmd::Serve { .. } => SERVE_LOG,
        _ => INTERACTIVE_LOG,
    };
    if let Err(error) = init_logging(default_filter) {
        eprintln!("shipday: {error:#}");
        return std::process::ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shipday: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Playground { dir, user, now } => {
            let config = playground::prepare(&dir)?;
            if std::io::stdin().is_terminal() {
                println!(
                    "Shipday playground in {}. You are {user}. Try `/deploy dev feature/login`, `/status`, `/release dev`, `/help`; `exit` to leave.",
                    dir.display()
                );
            }
            run_console(&config, &user, now)
        }
        Cmd::Console { config, user, now } => run_console(&config, &user, now),
        Cmd::Serve { config } => {
            let Settings { config, adapters } = Settings::load(&config)?;
            serve::validate(&config, &adapters)?;
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(async {
                let clock: Arc<dyn Clock> = Arc::new(SystemClock);
                let app = app::start(config, clock.clone())?;
                serve::run(app, &adapters, clock).await
            })
        }
        Cmd::CheckConfig { config, online, timeout } => {
            check_config(&config, online.then(|| std::time::Duration::from_secs(timeout.max(1))))
        }
        Cmd::Manifest { platform, config, request_url } => {
            let book = CommandBook::builtin();
            let settings = config.map(|path| Settings::load(&path)).transpose()?;
            let document = match platform {
                Platform::Slack => {
                    let names = match settings.as_ref().and_then(|s| s.adapters.slack.as_ref()) {
                        Some(slack) => slack.commands.clone(),
                        None => shipday::chat::slack::names::names(&book, &Default::default())?,
                    };
                    manifest::slack(&book, &names, request_url.as_deref())
                        .context("cannot print a manifest Slack would accept")?
                }
                Platform::Discord => {
                    let environments = match &settings {
                        Some(settings) => settings.config.environment_names(),
                        None => manifest::DEFAULT_ENVIRONMENTS.map(String::from).to_vec(),
                    };
                    let names = match settings.as_ref().and_then(|s| s.adapters.discord.as_ref()) {
                        Some(discord) => discord.commands.clone(),
                        None => shipday::command::CommandNames::canonical(&book),
                    };
                    manifest::discord(&book, &names, &environments)
                }
            };
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
        Cmd::Register { platform: RegisterPlatform::Discord, config, guild, global } => {
            register_discord(&config, guild, global)
        }
        Cmd::Backup { file, config } => backup(&config, &file),
        Cmd::Restore { file, config } => restore(&config, &file),
        Cmd::Audit { config, since, env, json } => audit(&config, since, env.as_deref(), json),
        Cmd::Healthcheck { url, config } => healthcheck(url, &config),
    }
}

/// Where a backup comes from: the running `shipday serve` (through its control socket, which
/// it answers with a snapshot its engine makes), or the store itself when no Shipday runs.
enum BackupSource {
    Running(Vec<u8>),
    Store(Box<Store>),
}

impl BackupSource {
    fn write(&self, out: &mut impl Write) -> Result<u64> {
        match self {
            BackupSource::Running(bytes) => {
                let records = shipday::store::backup_records(bytes)?;
                out.write_all(bytes).context("cannot write the backup")?;
                out.flush().context("cannot write the backup")?;
                Ok(records)
            }
            BackupSource::Store(store) => Ok(store.backup(out, chrono::Utc::now())?.records),
        }
    }

    fn described(&self) -> &'static str {
        match self {
            BackupSource::Running(_) => " (a snapshot from the running Shipday)",
            BackupSource::Store(_) => "",
        }
    }
}

fn backup(config: &Path, file: &Path) -> Result<()> {
    let config = shipday::config::Config::load(config)?;
    let source = match shipday::engine::control::request_backup(&config.state_dir)? {
        Some(bytes) => BackupSource::Running(bytes),
        None => BackupSource::Store(Box::new(Store::open_existing(&config.state_dir)?)),
    };
    let from = source.described();
    if file == Path::new("-") {
        let records = source.write(&mut std::io::stdout().lock())?;
        eprintln!("Backed up {records} records of {} to standard output{from}.", config.state_dir.display());
        return Ok(());
    }
    let out = std::fs::OpenOptions::new().write(true).create_new(true).open(file).with_context(|| {
        format!("cannot create the backup {} (an existing backup is never overwritten)", file.display())
    })?;
    let mut out = std::io::BufWriter::new(out);
    let copied = source.write(&mut out).and_then(|records| {
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(records)
    });
    match copied {
        Ok(records) => {
            println!(
                "Backed up {records} records of {} to {}{from} (restore with `shipday restore {}`).",
                config.state_dir.display(),
                file.display(),
                file.display()
            );
            Ok(())
        }
        Err(error) => {
            let _ = std::fs::remove_file(file);
            Err(error)
        }
    }
}

fn restore(config: &Path, file: &Path) -> Result<()> {
    let config = shipday::config::Config::load(config)?;
    let copied = if file == Path::new("-") {
        Store::restore(&config.state_dir, std::io::stdin().lock())?
    } else {
        let input = std::fs::File::open(file).with_context(|| format!("cannot read the backup {}", file.display()))?;
        Store::restore(&config.state_dir, std::io::BufReader::new(input))?
    };
    println!("Restored {} records into {}.", copied.records, config.state_dir.display());
    Ok(())
}

/// `--since`: RFC 3339, or a date meaning its midnight UTC.
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .ok_or_else(|| format!("`{text}` is neither a date (2026-11-29) nor a time (2026-11-29T17:00:00Z)"))
}

fn audit(config: &Path, since: Option<chrono::DateTime<chrono::Utc>>, env: Option<&str>, json: bool) -> Result<()> {
    let config = shipday::config::Config::load(config)?;
    if let Some(env) = env
        && config.environment(env).is_none()
    {
        anyhow::bail!("there is no environment `{env}` in the config ({})", config.environment_names().join(", "));
    }
    let store = Store::open_existing(&config.state_dir)?;
    let mut out = std::io::stdout().lock();
    for entry in store.audit_since(since)? {
        if env.is_some_and(|env| !entry.names(env)) {
            continue;
        }
        if json {
            writeln!(out, "{}", serde_json::to_string(&entry)?)?;
        } else {
            let who = match &entry.person {
                Some(person) => format!("{person} ({})", entry.user_id),
                None => entry.user_id.clone(),
            };
            writeln!(
                out,
                "{}  {}  {who}  {}  → {}",
                entry.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                entry.platform,
                entry.text,
                entry.decision
            )?;
        }
    }
    Ok(())
}

/// Where `healthcheck` asks by default: `/healthz` on the config's `[server] listen`, on loopback
/// when that is every address. Reads only that key, so a config whose secrets live elsewhere
/// (another user's files, the environment of the serving process) still gives the address.
fn healthz_url(config: &Path) -> Result<String> {
    let mut addr = match std::fs::read_to_string(config) {
        Ok(text) => {
            shipday::listener::ServerConfig::from_toml(&text)
                .with_context(|| format!("cannot read [server] listen from {} (or pass --url)", config.display()))?
                .listen
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => shipday::listener::ServerConfig::default().listen,
        Err(error) => return Err(error).with_context(|| format!("cannot read {} (or pass --url)", config.display())),
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(format!("http://{addr}/healthz"))
}

fn healthcheck(url: Option<String>, config: &Path) -> Result<()> {
    let url = match url {
        Some(url) => url,
        None => healthz_url(config)?,
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let status = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        anyhow::Ok(client.get(&url).send().await?.status())
    });
    match status {
        Ok(status) if status == reqwest::StatusCode::OK => {
            println!("ok: {url}");
            Ok(())
        }
        Ok(status) => anyhow::bail!("unhealthy: {url} answered {status}"),
        Err(error) => anyhow::bail!("unhealthy: no answer from {url}: {error:#}"),
    }
}

fn register_discord(path: &Path, guild: Option<u64>, global: bool) -> Result<()> {
    use shipday::chat::discord::register::{Scope, register};
    let Settings { config, adapters } = Settings::load(path)?;
    let settings = adapters.discord.as_ref().context("the config has no [discord] section")?;
    let scope = match (global, guild) {
        (true, _) => Scope::Global,
        (false, Some(guild)) => Scope::Guild(guild),
        (false, None) => Scope::Guild(settings.guild_id),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let names = runtime.block_on(register(settings, &config.environment_names(), scope))?;
    let place = match scope {
        Scope::Guild(guild) => format!("in server {guild}"),
        Scope::Global => "globally".to_owned(),
    };
    println!("Registered {} commands {place}: /{}", names.len(), names.join(", /"));
    Ok(())
}

fn run_console(config_path: &Path, user: &str, now: Option<chrono::DateTime<chrono::Utc>>) -> Result<()> {
    // The whole file is checked (a bad `[slack]` stops the console as it stops `serve`); the
    // console itself needs only the core.
    let config = Settings::load(config_path)?.config;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let clock: Arc<dyn Clock> = match now {
            Some(start) => Arc::new(ShiftedClock::starting_at(start)),
            None => Arc::new(SystemClock),
        };
        let app = app::start(config, clock.clone())?;
        if let Some(notice) = text::interrupted_notice(&app.interrupted) {
            println!("{notice}");
        }
        if app.config.person(user).is_none() {
            println!(
                "Note: `{user}` is not in the config's people list, so only /status, /history and /help will work."
            );
        }
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let interactive = std::io::stdin().is_terminal();
        let scheduler = Scheduler::new(app.config.calendar.clone(), app.engine.clone(), clock.clone());
        let scheduling = tokio::spawn(scheduler.run());
        let result = console::run(app.engine, app.config.clone(), user, clock, stdin, interactive).await;
        scheduling.abort();
        result
    })
}

/// Validates the config and describes it; with `online` (each check's time limit), then asks
/// every configured integration and host whether it works ([`shipday::preflight`]).
fn check_config(path: &Path, online: Option<std::time::Duration>) -> Result<()> {
    let settings = Settings::load(path)?;
    describe_config(path, &settings)?;
    let Some(timeout) = online else { return Ok(()) };
    println!();
    println!("Online checks (each at most {}s):", timeout.as_secs());
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let checks = runtime.block_on(shipday::preflight::run(&settings, timeout));
    let failed = checks.iter().filter(|check| check.verdict == shipday::preflight::Verdict::Fail).count();
    for check in &checks {
        println!("{check}");
    }
    if failed > 0 {
        bail!("{failed} of {} online checks failed: do what each FAIL line says, then run this again", checks.len());
    }
    println!("Every configured integration and host answered as the config expects.");
    Ok(())
}

fn describe_config(path: &Path, settings: &Settings) -> Result<()> {
    let Settings { config, adapters } = settings;
    serve::validate(config, adapters)?;
    let github = config.github.as_ref().map(|github| check_github(github, &config.base_dir)).transpose()?;
    // The folder `serve` will open, as an absolute path: a relative `state_dir` is relative to
    // the config file, and "state" alone says nothing about where that is.
    let state = std::path::absolute(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
    println!("Config {} is valid.", path.display());
    println!("  time zone: {}", config.timezone);
    println!("  state: {}", state.display());
    println!("  people: {}", config.people.len());
    println!(
        "  listener: {} (every inbound route; at most {} connections)",
        adapters.server.listen, adapters.server.max_connections
    );
    if let Some(slack) = &adapters.slack {
        let mode = match &slack.mode {
            shipday::chat::slack::SlackMode::Socket { .. } => "Socket Mode".to_owned(),
            shipday::chat::slack::SlackMode::Http { .. } => format!("HTTP on {}", adapters.server.listen),
        };
        println!("  slack: workspace {}, team channel {}, {mode}", slack.team_id, slack.channel);
    }
    for env in &config.environments {
        let target = match &env.transport {
            TransportConfig::Local { dir } => {
                format!("local {}", std::path::absolute(dir).as_deref().unwrap_or(dir).display())
            }
            TransportConfig::Ssh(ssh) => {
                format!("ssh {}@{}:{} {}", ssh.user, ssh.host, ssh.port, ssh.dir)
            }
        };
        println!(
            "  {}: branch {}, {target}, {} steps{}{}",
            env.name,
            env.branch,
            env.steps.len(),
            if env.personal_branches { ", personal branches" } else { "" },
            if env.requires_approval { ", needs a lead" } else { "" }
        );
    }
    if let Some(discord) = &adapters.discord {
        let lead = discord.lead_role.map(|r| format!(", lead role {r}")).unwrap_or_default();
        let endpoint = match discord.public_key {
            Some(_) => format!(", HTTP interactions on {}", adapters.server.listen),
            None => String::new(),
        };
        println!("  discord: server {}, team channel {}{lead}{endpoint}", discord.guild_id, discord.channel);
        if let Some(warning) = shipday::chat::discord::check(discord)?.warning() {
            println!("    ⚠️ {warning}");
        }
    }
    if let Some(github) = github {
        println!("  {github}");
    }
    if let Some(jira) = &config.jira {
        println!("  jira: {} as {}, projects {}", jira.base_url, jira.email, jira.projects.join(", "));
        for (env, rule) in jira.deploy_moves(&config.environment_names()) {
            let from = rule.from.map(|from| format!("from {from} ")).unwrap_or_default();
            println!("    {env} deploys move the tickets they ship {from}to {}", rule.to);
        }
    }
    Ok(())
}

/// Checks `[github]` as `serve` would (names, API root, the token, and the webhook secret when
/// the webhook route is on) and describes it without any secret.
fn check_github(github: &shipday::clients::github::GitHubConfig, base: &Path) -> Result<String> {
    // The client checks the owner, repository, API root and token; it wants a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread().build().context("cannot start the async runtime")?;
    runtime.block_on(async { shipday::clients::github::GitHubClient::new(github, base).map(drop) })?;
    // The webhook route is on where a secret is set; it is served on the one `[server]` listener.
    let webhook = match &github.webhook_secret {
        Some(secret) => {
            secret.load("github.webhook_secret", base)?;
            "webhook POST /github/webhook on the [server] listener".to_owned()
        }
        None => "no webhook route (no github.webhook_secret)".to_owned(),
    };
    Ok(format!("github: {}/{} via {}, {webhook}", github.owner, github.repo, github.api_base_url))
}
