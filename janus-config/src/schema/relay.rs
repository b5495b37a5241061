//! `relay` (a hub: the listener edges connect to) and `edge` (an edge node: the hubs it relays
//! to). Both use the link limits of `janus_core::relay`.

use std::time::Duration;

use janus_core::relay::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_MAX_BUFFERED, DEFAULT_MAX_FRAME_LEN, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_WINDOW,
};
use serde::{Deserialize, Serialize};

use crate::de::{duration, scalar, ser_duration, ser_secret};

/// Reconnect backoff of an edge's link to a hub: first delay (doubled per failure, jittered).
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Reconnect backoff cap: a hub that is down is retried at least this often.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Relay links a hub accepts at once (each carries many sessions): stops a flood of
/// unauthenticated links from holding sockets and handshake CPU.
pub const DEFAULT_MAX_LINKS: usize = 1024;

/// The link limits both ends use (janus-core documents each default and what it stops).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkLimits {
    /// Largest relay frame body accepted, bytes. Default 1 MiB.
    #[serde(deserialize_with = "scalar")]
    pub max_frame_len: usize,
    /// Bytes of data frames in flight per session and direction. Default 1 MiB.
    #[serde(deserialize_with = "scalar")]
    pub session_window: u32,
    /// Sessions per link. Default 262144.
    #[serde(deserialize_with = "scalar")]
    pub max_sessions: usize,
    /// Unsent bytes per link above which pushes are dropped. Default 64 MiB.
    #[serde(deserialize_with = "scalar")]
    pub max_buffered: usize,
    /// Connect to authenticated. Default `5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub handshake_timeout: Duration,
    /// Heartbeat of a silent link. Default `5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub heartbeat_interval: Duration,
    /// Silence after which the peer is dead. Default `15s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub heartbeat_timeout: Duration,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            session_window: DEFAULT_SESSION_WINDOW,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_buffered: DEFAULT_MAX_BUFFERED,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
        }
    }
}

/// `relay`: this gateway is also a hub; edges connect here. Absent (the default): no relay
/// listener.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Relay {
    /// `ip:port` of the relay listener. Default `0.0.0.0:7100`.
    pub addr: String,
    /// The hub's Ed25519 key: PKCS#8 PEM (as `janus keygen` writes keys) or base64 of the
    /// 32-byte seed.
    #[serde(serialize_with = "ser_secret")]
    pub private_key: String,
    /// The edges allowed to connect: each an Ed25519 public key as an X.509 certificate PEM, a
    /// `PUBLIC KEY` PEM, or base64 of the 32 raw bytes. Anything else is refused and counted.
    pub edge_keys: Vec<String>,
    /// Relay links at once. Default 1024.
    #[serde(deserialize_with = "scalar")]
    pub max_links: usize,
    /// Link limits.
    pub link: LinkLimits,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            addr: "0.0.0.0:7100".into(),
            private_key: String::new(),
            edge_keys: Vec::new(),
            max_links: DEFAULT_MAX_LINKS,
            link: LinkLimits::default(),
        }
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .field("private_key", &super::redacted(&self.private_key))
            .field("edge_keys", &self.edge_keys.len())
            .field("max_links", &self.max_links)
            .field("link", &self.link)
            .finish()
    }
}

/// `edge.hubs[]`: one hub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubEntry {
    /// `host:port` of the hub's relay listener.
    pub addr: String,
    /// The hub's Ed25519 public key (certificate PEM, `PUBLIC KEY` PEM, or base64 of 32 bytes).
    pub public_key: String,
}

/// `edge`: settings of `janus-edge` (the mio edge node). It also reads `server.tcp`,
/// `server.ws`, `server.http` (admin: `/metrics`, `/healthz`), `label.encrypted`, `secret`,
/// `limits.session`, `limits.admission` and `routes` like the gateway. Absent (the default):
/// `janus-edge` refuses to start.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Edge {
    /// This edge's name (hubs log it; backends see hubs, not edges). Default `edge`.
    pub id: String,
    /// Event-loop threads, each with its own listeners (`SO_REUSEPORT`) and links. Default 0:
    /// one per core.
    #[serde(deserialize_with = "scalar")]
    pub threads: usize,
    /// The edge's Ed25519 key: PKCS#8 PEM or base64 of the 32-byte seed.
    #[serde(serialize_with = "ser_secret")]
    pub private_key: String,
    /// The hubs; sessions go to the least loaded live one and move when it dies.
    pub hubs: Vec<HubEntry>,
    /// First reconnect delay after a link fails (doubling, ±50 % jitter). Default `100ms`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub reconnect_min: Duration,
    /// Longest reconnect delay. Default `5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub reconnect_max: Duration,
    /// Link limits.
    pub link: LinkLimits,
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            id: "edge".into(),
            threads: 0,
            private_key: String::new(),
            hubs: Vec::new(),
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            link: LinkLimits::default(),
        }
    }
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("id", &self.id)
            .field("threads", &self.threads)
            .field("private_key", &super::redacted(&self.private_key))
            .field("hubs", &self.hubs)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("link", &self.link)
            .finish()
    }
}
