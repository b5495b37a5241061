//! `limits`: every limit of the gateway, with janus-core's defaults.

use std::time::Duration;

use janus_core::{
    compress::DEFAULT_MAX_INFLATED_LEN,
    config::{
        DEFAULT_DRAIN_TIMEOUT, DEFAULT_FIRST_FRAME_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
        DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_PENDING, DEFAULT_MAX_TIMESTAMP_SKEW, DEFAULT_MAX_TUNNELS,
        DEFAULT_OUTBOUND_BUDGET,
    },
    frame::DEFAULT_MAX_FRAME_LEN,
    limit::{
        DEFAULT_CONNECTION_RATE, DEFAULT_IPV6_PREFIX_LEN, DEFAULT_MAX_CONNECTIONS,
        DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_HANDSHAKES,
        DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
    },
    replay::DEFAULT_REPLAY_CAPACITY,
    resume::{DEFAULT_RESUME_BUFFER_BYTES, DEFAULT_RESUME_BUFFER_PACKETS, DEFAULT_RESUME_WINDOW},
};
use serde::{Deserialize, Serialize};

use crate::de::{duration, scalar, ser_duration};

/// Default `limits.drain_window`: long enough to spread a few thousand reconnects, inside the
/// default 10 s grace period with the 5 s drain timeout.
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(5);

/// `limits`: every limit of the gateway (janus-core documents each default and what it stops).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Per-connection limits.
    pub session: SessionLimits,
    /// Connection admission.
    pub admission: AdmissionLimits,
    /// How long a drain (SIGTERM, `POST /admin/drain`) may take in all, from its start: sessions
    /// still open then are closed. Default `10s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
    /// The window a drain spreads its sessions' logouts over, so their clients do not all
    /// reconnect to the other gateways at once; must be shorter than `shutdown_grace`. Each
    /// session is told `SCServerLogout{Waiting}` at its turn, once its in-flight replies are
    /// delivered. `0s` logs everyone out at once. Default `5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub drain_window: Duration,
    /// Tokens remembered to refuse a second session per token. Default 262144.
    #[serde(deserialize_with = "scalar")]
    pub replay_cache: usize,
    /// HTTP/2 connections per backend.
    pub backend_pool: BackendPool,
}

/// `limits.backend_pool`: the HTTP/2 connections to each backend. Every tunnel is one gRPC
/// stream, and a connection carries at most the streams its backend advertises
/// (`SETTINGS_MAX_CONCURRENT_STREAMS`, often 100); the pool opens connections as tunnels need
/// them, and refuses a tunnel at once when all `max_connections` are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendPool {
    /// Connections kept per backend once it is used; tunnels are spread over them. Default 4.
    #[serde(deserialize_with = "scalar")]
    pub min_connections: usize,
    /// Most connections per backend (so at most this × the advertised limit tunnels from one
    /// gateway to one backend). Default 64.
    #[serde(deserialize_with = "scalar")]
    pub max_connections: usize,
}

impl Default for BackendPool {
    fn default() -> Self {
        BackendPool {
            min_connections: 4,
            max_connections: 64,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            session: SessionLimits::default(),
            admission: AdmissionLimits::default(),
            shutdown_grace: Duration::from_secs(10),
            drain_window: DEFAULT_DRAIN_WINDOW,
            replay_cache: DEFAULT_REPLAY_CAPACITY,
            backend_pool: BackendPool::default(),
        }
    }
}

/// `limits.session`: see `janus_core::config::SessionConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionLimits {
    /// Connect to completed handshake. Default `10s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub handshake_timeout: Duration,
    /// Connect to the first complete frame (the handshake). Default `3s`.
    #[serde(deserialize_with = "duration")]
    pub first_frame_timeout: Duration,
    /// Longest silence from the client. Default `60s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// Handshake timestamp versus our clock. Default `5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub max_timestamp_skew: Duration,
    /// Largest frame body either way, bytes. Default 16384.
    #[serde(deserialize_with = "scalar")]
    pub max_frame_len: usize,
    /// Bytes waiting for a client before it is evicted as a slow consumer. Default 1 MiB.
    #[serde(deserialize_with = "scalar")]
    pub outbound_budget: usize,
    /// Largest inflated client payload, bytes. Default 256 KiB.
    #[serde(deserialize_with = "scalar")]
    pub max_inflated_len: usize,
    /// Tunnels open per session. Default 16.
    #[serde(deserialize_with = "scalar")]
    pub max_tunnels: usize,
    /// Requests awaiting a reply per tunnel. Default 256.
    #[serde(deserialize_with = "scalar")]
    pub max_pending: usize,
    /// How long a draining session waits for in-flight replies. Default `5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub drain_timeout: Duration,
    /// Enforce the +1 packet index. Default `true`.
    #[serde(deserialize_with = "scalar")]
    pub check_index: bool,
    /// Per-session packet rate. Default: none (off, as upstream).
    pub rate_limit: Option<RateLimitConfig>,
    /// Session resume (docs/resume.md). Default: off.
    pub resume: ResumeLimits,
}

/// `limits.session.resume`: Janus's opt-in session resume (docs/resume.md). Only clients that
/// ask for it in their handshake are affected; the others see upstream's bytes either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeLimits {
    /// Grant resume to clients that ask. Default `false`.
    #[serde(deserialize_with = "scalar")]
    pub enabled: bool,
    /// How long a session whose connection dropped is kept for its client. Default `30s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub window: Duration,
    /// Bytes kept per session for a client that has not acknowledged them; a parked session
    /// that needs more ends (`resume_overflow`). Default 262144.
    #[serde(deserialize_with = "scalar")]
    pub max_buffered_bytes: usize,
    /// Packets kept likewise. Default 1024.
    #[serde(deserialize_with = "scalar")]
    pub max_buffered_packets: usize,
}

impl Default for ResumeLimits {
    fn default() -> Self {
        ResumeLimits {
            enabled: false,
            window: DEFAULT_RESUME_WINDOW,
            max_buffered_bytes: DEFAULT_RESUME_BUFFER_BYTES,
            max_buffered_packets: DEFAULT_RESUME_BUFFER_PACKETS,
        }
    }
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            first_frame_timeout: DEFAULT_FIRST_FRAME_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_timestamp_skew: DEFAULT_MAX_TIMESTAMP_SKEW,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            outbound_budget: DEFAULT_OUTBOUND_BUDGET,
            max_inflated_len: DEFAULT_MAX_INFLATED_LEN,
            max_tunnels: DEFAULT_MAX_TUNNELS,
            max_pending: DEFAULT_MAX_PENDING,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            check_index: true,
            rate_limit: None,
            resume: ResumeLimits::default(),
        }
    }
}

/// `limits.session.rate_limit`: `burst` packets back to back, then `per_second` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained packets per second, ≥ 1.
    #[serde(deserialize_with = "scalar")]
    pub per_second: u32,
    /// Packets accepted back to back, ≥ 1.
    #[serde(deserialize_with = "scalar")]
    pub burst: u32,
}

impl From<RateLimitConfig> for janus_core::limit::RateLimit {
    fn from(r: RateLimitConfig) -> Self {
        janus_core::limit::RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        }
    }
}

/// `limits.admission`: see `janus_core::limit::AdmissionConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionLimits {
    /// Open connections in total. Default 100000.
    #[serde(deserialize_with = "scalar")]
    pub max_connections: usize,
    /// Open connections per IPv4 address or IPv6 prefix. Default 4096 (players behind one
    /// carrier-grade NAT share an address).
    #[serde(deserialize_with = "scalar")]
    pub max_connections_per_address: u32,
    /// Connections in the handshake at once; when full, the least advanced is evicted for a
    /// newcomer. Default 1024.
    #[serde(deserialize_with = "scalar")]
    pub max_handshakes: usize,
    /// Of those, from one address. Default 32.
    #[serde(deserialize_with = "scalar")]
    pub max_handshakes_per_address: u32,
    /// New connections per address: `{per_second, burst}`. Default `{per_second: 20, burst:
    /// 300}`; `null` turns it off.
    pub connection_rate: Option<RateLimitConfig>,
    /// IPv6 addresses sharing this prefix count as one address, bits. Default 64.
    #[serde(deserialize_with = "scalar")]
    pub ipv6_prefix_len: u8,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_address: DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
            connection_rate: Some(RateLimitConfig {
                per_second: DEFAULT_CONNECTION_RATE.per_second,
                burst: DEFAULT_CONNECTION_RATE.burst,
            }),
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
        }
    }
}
