//! Configuration shared by every session of a gateway.

use core::time::Duration;

use crate::{
    compress::{DEFAULT_COMPRESS_STRONG, DEFAULT_COMPRESS_THRESHOLD, DEFAULT_MAX_INFLATED_LEN},
    crypto::{SigningKey, VerifyingKey},
    filter::FilterChain,
    frame::DEFAULT_MAX_FRAME_LEN,
    limit::RateLimit,
    replay::TokenReplayCache,
    resume::{ResumeConfig, ResumeKey},
    route::RouteTable,
    token::TokenKey,
};

/// Time allowed from connect to a valid handshake: upstream `HandshakeTimeout`. Stops a client
/// from holding a connection slot without authenticating (slowloris).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed from connect to the first complete frame (the `CSHandshake`, which honest
/// clients send in one write right after connecting). Stops a slowloris from holding a handshake
/// slot for the whole handshake timeout by trickling bytes or sending none.
pub const DEFAULT_FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed between two client packets: upstream `RequestIdleTimeout`. Frees dead peers;
/// clients heartbeat well inside it (mercury every 5 s).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Allowed distance between the client's handshake timestamp and ours: upstream
/// `HandshakeTimeLimit`. Bounds how long a captured handshake can be replayed.
pub const DEFAULT_MAX_TIMESTAMP_SKEW: Duration = Duration::from_secs(5);
/// Outbound bytes a session may have waiting for the client before it is evicted as a slow
/// consumer. Stops one client that does not read from holding unbounded memory (upstream queues
/// 1024 packets and then blocks the backend stream).
pub const DEFAULT_OUTBOUND_BUDGET: usize = 1024 * 1024;
/// Tunnels one session may hold open at once; the least recently used one is closed to open
/// another. Stops a client from opening a backend stream per room id it can think of.
pub const DEFAULT_MAX_TUNNELS: usize = 16;
/// Requests remembered per tunnel while they await a reply, so a failed backend stream can
/// answer each with an error. Beyond it the oldest is forgotten (bounded memory even when a
/// backend does not answer some requests).
pub const DEFAULT_MAX_PENDING: usize = 256;
/// How long a draining session (gateway shutdown) waits for in-flight replies before it is told
/// to log out and closed.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-session limits and behaviour. Every field has a `DEFAULT_*` constant documenting its unit
/// and the attack or failure it stops.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Largest frame body in either direction, bytes. Default [`DEFAULT_MAX_FRAME_LEN`] (16384).
    /// A reply that would exceed it is replaced by `SCServerUnexpectedErr` (upstream sends it and
    /// the client's decoder drops the connection).
    pub max_frame_len: usize,
    /// Default [`DEFAULT_HANDSHAKE_TIMEOUT`] (10 s).
    pub handshake_timeout: Duration,
    /// Default [`DEFAULT_FIRST_FRAME_TIMEOUT`] (3 s). The handshake deadline is the earlier of the
    /// two, since the first frame is the handshake.
    pub first_frame_timeout: Duration,
    /// Default [`DEFAULT_IDLE_TIMEOUT`] (60 s).
    pub idle_timeout: Duration,
    /// Default [`DEFAULT_MAX_TIMESTAMP_SKEW`] (5 s).
    pub max_timestamp_skew: Duration,
    /// Replies at least this many bytes are zlib-compressed. Default
    /// [`DEFAULT_COMPRESS_THRESHOLD`] (10 KiB, upstream `compress.weak`).
    pub compress_threshold: usize,
    /// Replies at least this many bytes use the default zlib level instead of the fastest.
    /// Default [`DEFAULT_COMPRESS_STRONG`] (upstream `compress.strong`).
    pub compress_strong: usize,
    /// Largest inflated client `data`, bytes. Default [`DEFAULT_MAX_INFLATED_LEN`] (256 KiB).
    pub max_inflated_len: usize,
    /// Default [`DEFAULT_OUTBOUND_BUDGET`] (1 MiB).
    pub outbound_budget: usize,
    /// Per-session packet rate limit. Default `None` (off, as upstream).
    pub rate_limit: Option<RateLimit>,
    /// Default [`DEFAULT_MAX_TUNNELS`] (16).
    pub max_tunnels: usize,
    /// Default [`DEFAULT_MAX_PENDING`] (256).
    pub max_pending: usize,
    /// Default [`DEFAULT_DRAIN_TIMEOUT`] (5 s).
    pub drain_timeout: Duration,
    /// Enforce the strict +1 packet index. Default `true`. Upstream skips the check in
    /// unencrypted mode; turn it off only for clients that do not count.
    pub check_index: bool,
    /// Session resume (window and buffer bounds). Default [`ResumeConfig::default`] (30 s); it
    /// only applies to clients that ask for it, on a gateway with a
    /// [`resume_key`](ServerConfig::resume_key).
    pub resume: ResumeConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            first_frame_timeout: DEFAULT_FIRST_FRAME_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_timestamp_skew: DEFAULT_MAX_TIMESTAMP_SKEW,
            compress_threshold: DEFAULT_COMPRESS_THRESHOLD,
            compress_strong: DEFAULT_COMPRESS_STRONG,
            max_inflated_len: DEFAULT_MAX_INFLATED_LEN,
            outbound_budget: DEFAULT_OUTBOUND_BUDGET,
            rate_limit: None,
            max_tunnels: DEFAULT_MAX_TUNNELS,
            max_pending: DEFAULT_MAX_PENDING,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            check_index: true,
            resume: ResumeConfig::default(),
        }
    }
}

/// The gateway's certificate material for encrypted mode.
#[derive(Debug, Clone)]
pub struct ServerCredentials {
    /// `secret.server_cert_private_key`: signs the server's ephemeral key.
    pub server_key: SigningKey,
    /// The public key of `secret.client_cert`: verifies the client's signature.
    pub client_cert: VerifyingKey,
}

/// Everything a session needs from its gateway, shared (`Arc`) by all sessions.
#[derive(Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Per-session limits.
    pub session: SessionConfig,
    /// `secret.account_aes_key`.
    pub token_key: TokenKey,
    /// `Some` in encrypted mode (`label.encrypted: true`, the default), `None` otherwise.
    pub credentials: Option<ServerCredentials>,
    /// Tokens already used.
    pub replay: TokenReplayCache,
    /// Module → tunnel kind.
    pub routes: RouteTable,
    /// The filters every session runs ([`crate::filter`]). Default: none.
    pub filters: FilterChain,
    /// Mints and opens resume tickets; `None` (the default) turns session resume off: requests
    /// for it are ignored, as a Go gateway ignores them.
    pub resume_key: Option<ResumeKey>,
}

impl ServerConfig {
    /// A configuration with default limits, routes and replay cache, and no filters.
    pub fn new(token_key: TokenKey, credentials: Option<ServerCredentials>) -> Self {
        Self {
            session: SessionConfig::default(),
            token_key,
            credentials,
            replay: TokenReplayCache::default(),
            routes: RouteTable::default(),
            filters: FilterChain::default(),
            resume_key: None,
        }
    }
}
