//! The one HTTP listener every inbound route shares: Slack's HTTP mode, Discord's interactions
//! endpoint, GitHub's webhook (and later the operations endpoints), each on its own path with
//! its own secret, behind one address (`[server] listen`).
//!
//! Shipday is on the internet and holds SSH keys to production, so the listener is built to
//! stay up for the requests that matter while strangers try to exhaust it:
//!
//! - **Connections** are capped ([`ServerConfig::max_connections`], clamped below the process's
//!   descriptor limit, which start-up raises to its hard maximum): at the cap the listener stops
//!   accepting, so `accept` never fails for want of a descriptor.
//! - **Headers** must arrive within [`Limits::header_read_timeout`] (hyper's own timer, which
//!   plain `axum::serve` leaves off), also between requests on a kept-alive connection, so a
//!   client trickling one byte a second is closed.
//! - **Bodies** are refused with 413 from `Content-Length` alone when larger than the route's
//!   limit ([`RouteLimit`], tower-http's `RequestBodyLimitLayer`), never buffered past it when
//!   chunked, and must arrive whole within [`BODY_READ_TIMEOUT`] (408 otherwise).
//! - **Buffered bytes** are bounded per route: at most [`RouteLimit::concurrency`] bodies of a
//!   route are read at once (tower's `ConcurrencyLimitLayer`), so memory for unauthenticated
//!   bodies is at most the sum over routes of `concurrency × max_body` (about 28 MiB).
//! - **Every request** ends within [`REQUEST_TIMEOUT`] (tower-http's `TimeoutLayer`, 503),
//!   waiting, reading and handling included.
//!
//! Signatures are checked by each route's handler on the raw bytes this module hands it,
//! before anything is parsed.

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:3000";
/// The default connection cap: far above what Slack, Discord and GitHub open at once, low
/// enough that every connection's buffers fit in a few tens of MB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a client has to send a request's headers. The platforms send them in one packet
/// within milliseconds; Slack wants the whole answer within 3 s.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to send a whole body once its headers are in (GitHub's largest
/// accepted body, 1 MiB, takes well under a second on any link GitHub uses).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most any request may take, waiting for a slot, reading and handling included. The
/// routes answer within 3 s (Slack, Discord) or 5 s (GitHub's hand-off) once read.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors kept free of connections, for SSH sessions, the store, outbound calls and logs.
pub const RESERVED_DESCRIPTORS: u64 = 256;
/// hyper's per-connection read buffer cap (headers must fit in it; its minimum is 8 KiB).
const MAX_READ_BUFFER: usize = 64 * 1024;

/// `[server]` as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    listen: Option<String>,
    max_connections: Option<usize>,
}

/// The validated `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The one address every inbound route is served on.
    pub listen: SocketAddr,
    /// The most connections open at once (clamped below the descriptor limit at start-up).
    pub max_connections: usize,
    /// Whether `listen` was written in the config: then the listener runs even when no chat
    /// route needs it (Socket Mode, the gateway), for `/metrics`.
    pub explicit: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid default address"),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            explicit: false,
        }
    }
}

impl RawServer {
    /// Validates the section; errors name the key.
    pub fn validate(self) -> Result<ServerConfig> {
        let listen = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen.parse().map_err(|_| {
            anyhow::anyhow!("server.listen: `{listen}` is not an address with a port, like 0.0.0.0:3000")
        })?;
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            bail!("server.max_connections: must be at least 1 (the default is {DEFAULT_MAX_CONNECTIONS})");
        }
        Ok(ServerConfig { listen, max_connections, explicit: self.listen.is_some() })
    }
}

/// The refusal for a listening key from before the one listener, naming where it went.
pub fn moved_listen_key(key: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{key}: every route is now served on one listener; remove `{key}` and set the address once, as \
         `[server]` `listen = \"0.0.0.0:3000\"` (see the README's configuration reference)"
    )
}

/// Connection-level limits. [`Limits::default`] is what `shipday serve` uses; tests shorten
/// the header timeout to see a slow client closed quickly.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`ServerConfig::max_connections`].
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { header_read_timeout: HEADER_READ_TIMEOUT, max_connections: DEFAULT_MAX_CONNECTIONS }
    }
}

impl Limits {
    /// The production limits for `server`.
    pub fn for_server(server: &ServerConfig) -> Self {
        Self { max_connections: server.max_connections, ..Self::default() }
    }
}

/// What one route accepts. Sized to what the platform really sends; see the README's security
/// model for the reasoning behind each number.
#[derive(Debug, Clone, Copy)]
pub struct RouteLimit {
    /// The largest body accepted, in bytes.
    pub max_body: usize,
    /// How many of this route's requests are read and handled at once; more wait.
    pub concurrency: usize,
}

/// Applies a route's limits to `router` (every route in it gets its own slots): the early
/// `Content-Length` check, the streaming size cap, the body read deadline, the concurrency cap
/// and the overall request timeout.
pub fn guard<S: Clone + Send + Sync + 'static>(router: Router<S>, limit: RouteLimit) -> Router<S> {
    router
        // Innermost: the whole body, within the deadline, before the handler sees a byte.
        .layer(axum::middleware::from_fn_with_state(limit, read_body))
        .layer(DefaultBodyLimit::max(limit.max_body))
        .layer(ConcurrencyLimitLayer::new(limit.concurrency))
        // Outside the concurrency cap: an oversized `Content-Length` is refused without a slot.
        .layer(RequestBodyLimitLayer::new(limit.max_body))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT))
}

/// Reads the body whole (at most `max_body` bytes, within [`BODY_READ_TIMEOUT`]) and hands the
/// handler a request whose body is already in memory.
async fn read_body(State(limit): State<RouteLimit>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit.max_body)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(_)) => {
            tracing::warn!(path = %parts.uri.path(), max = limit.max_body, "refused a body over the limit (or cut short)");
            (StatusCode::PAYLOAD_TOO_LARGE, format!("the body must be at most {} bytes", limit.max_body))
                .into_response()
        }
        Err(_) => {
            tracing::warn!(path = %parts.uri.path(), "a body did not arrive within {BODY_READ_TIMEOUT:?}; dropped");
            (StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time").into_response()
        }
    }
}

/// A bound listening socket with its limits, ready to serve the merged routes.
pub struct Listener {
    listener: TcpListener,
    limits: Limits,
}

impl Listener {
    /// Binds `addr`. Raises the descriptor limit and clamps the connection cap below it.
    pub async fn bind(addr: SocketAddr, limits: Limits) -> Result<Self> {
        let listener =
            TcpListener::bind(addr).await.with_context(|| format!("server.listen: cannot listen on {addr}"))?;
        let mut limits = limits;
        let descriptors = raise_descriptor_limit();
        let room = usize::try_from(descriptors.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX).max(1);
        if limits.max_connections > room {
            tracing::warn!(
                configured = limits.max_connections,
                descriptors,
                cap = room,
                "server.max_connections is above what the descriptor limit allows; capping connections"
            );
            limits.max_connections = room;
        }
        Ok(Self { listener, limits })
    }

    /// The bound address (the port, when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The limits in force (after clamping to the descriptor limit).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Serves `routes` until the future is dropped; dropping it closes every connection.
    pub async fn serve(self, routes: Router) -> Result<()> {
        let Self { listener, limits } = self;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_READ_BUFFER)
            .keep_alive(true);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let service = TowerToHyperService::new(routes);
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let permit = slots.clone().acquire_owned().await.context("the connection slots closed")?;
            let (stream, _peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors despite the cap (something else used them): back off
                    // briefly instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let connection = http.serve_connection(TokioIo::new(stream), service.clone());
            connections.spawn(async move {
                let _slot = permit;
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "connection closed with an error");
                }
            });
        }
    }
}

/// Raises the soft descriptor limit to the hard one and returns the soft limit now in force.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_section_defaults_and_names_bad_values() {
        assert_eq!(RawServer::default().validate().unwrap(), ServerConfig::default());
        let raw: RawServer = toml::from_str("listen = \"127.0.0.1:8080\"\nmax_connections = 10").unwrap();
        let server = raw.validate().unwrap();
        assert_eq!((server.listen.port(), server.max_connections), (8080, 10));
        let raw: RawServer = toml::from_str("listen = \"localhost\"").unwrap();
        assert!(format!("{:#}", raw.validate().unwrap_err()).contains("server.listen: `localhost`"));
        let raw: RawServer = toml::from_str("max_connections = 0").unwrap();
        assert!(format!("{:#}", raw.validate().unwrap_err()).contains("server.max_connections"));
    }

    #[test]
    fn the_old_github_listen_key_is_refused_and_points_to_the_server_section() {
        let text = "state_dir = \"s\"\n[[environments]]\nname = \"dev\"\nbranch = \"dev\"\n\
                    transport = { kind = \"local\", dir = \"/x\" }\n[server]\nlisten = \"127.0.0.1:3000\"\n\
                    [github]\nowner = \"o\"\nrepo = \"r\"\ntoken = { env = \"T\" }\n";
        let config = crate::config::Config::from_toml(text, std::path::Path::new("/")).unwrap();
        assert_eq!(config.server.listen.port(), 3000);
        let old = format!("{text}listen = \"0.0.0.0:3001\"\n");
        let err = format!("{:#}", crate::config::Config::from_toml(&old, std::path::Path::new("/")).unwrap_err());
        assert!(err.contains("github.listen") && err.contains("[server]"), "{err}");
    }

    #[test]
    fn the_descriptor_limit_is_raised_to_the_hard_limit() {
        let soft = raise_descriptor_limit();
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: reads into a local struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!(soft, limit.rlim_cur, "the limit in force is reported");
        assert!(limit.rlim_cur == limit.rlim_max || limit.rlim_max == libc::RLIM_INFINITY);
    }
}
