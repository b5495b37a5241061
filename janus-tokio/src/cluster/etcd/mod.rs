//! etcd registration and discovery in the kratos registry layout (spec §4.3, §4.5).
//!
//! go-pantheon services find each other through etcd: each process puts one JSON
//! [`ServiceInstance`] under `/microservices/<service name>/<instance id>`, attached to a 15 s lease
//! that it keeps alive, and the gateway watches the prefix of each backend service to learn where
//! its tunnels may go. This module speaks that layout byte for byte, so a Janus gateway and the Go
//! services can share one registry.
//!
//! Data flow:
//!
//! ```text
//!  register(cfg, instance) ──► Registration (background task: lease keep-alive, re-register)
//!        └─ deregister().await: delete key + revoke lease (first thing on shutdown)
//!
//!  etcd ── GET prefix ──► WATCH from rev+1 ──► colour filter ──► watch::Sender<Vec<Backend>>
//!          ▲                                │                          (snapshots only)
//!          └── re-list on compaction / disconnect, jittered backoff 100 ms .. 5 s
//! ```
//!
//! Both sides survive an etcd outage: the registration comes back (new lease, same key) and the
//! discovery keeps publishing its last known set until etcd answers again. Every retry builds a
//! fresh [`etcd_client::Client`], so recovery does not depend on the client's own reconnect logic.

mod discovery;
mod registry;

use std::{collections::BTreeMap, time::Duration};

use etcd_client::{Client, ConnectOptions};
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};

pub use discovery::{
    ANY_COLOR, DEFAULT_EMPTY_HOLD_DOWN, DiscoveryOptions, discover, discover_with,
};
pub use registry::{
    DEFAULT_DEREGISTER_TIMEOUT, DEFAULT_LEASE_TTL, Registration, register, register_with_ttl,
};

/// The kratos registry namespace: every key starts with it.
pub const NAMESPACE: &str = "/microservices";

/// Dial and per-request timeout when none is configured: long enough for a loaded etcd, short
/// enough that a dead one is noticed before the 15 s lease runs out.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// First retry delay after an etcd failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay: bounds how stale the view is once etcd is back.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// HTTP/2 keep-alive on the etcd connection: notices a silently dead peer (no RST) while a watch
/// or keep-alive stream is open.
const H2_KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(5));

/// Where etcd is and how to log in (`registry.yaml`, spec §6.3).
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` or `http://host:port` of each member.
    pub endpoints: Vec<String>,
    /// Empty: no authentication.
    pub username: String,
    pub password: String,
    /// Timeout for connecting and for each unary request. Default [`DEFAULT_DIAL_TIMEOUT`].
    pub dial_timeout: Duration,
    /// Where registration and discovery report etcd's state and failures (the gateway's
    /// metrics). Default: a fresh, unread one.
    pub health: std::sync::Arc<crate::gateway::metrics::EtcdHealth>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["localhost:2379".to_owned()],
            username: String::new(),
            password: String::new(),
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            health: std::sync::Arc::default(),
        }
    }
}

/// kratos `registry.ServiceInstance`, the JSON value of a registry key. Field names are kratos'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// Janus and roma put `svc`, `profile`, `ver`, `color` here.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// `scheme://host:port[...]`, e.g. `grpc://10.0.0.5:9100`.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

impl ServiceInstance {
    /// An instance with a fresh random id (see [`random_instance_id`]).
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        metadata: BTreeMap<String, String>,
        endpoints: Vec<String>,
    ) -> Self {
        Self {
            id: random_instance_id(),
            name: name.into(),
            version: version.into(),
            metadata,
            endpoints,
        }
    }

    /// The registry key: `/microservices/<name>/<id>`.
    pub fn key(&self) -> String {
        format!("{NAMESPACE}/{}/{}", self.name, self.id)
    }
}

/// A random UUID (version 4) in the usual hyphenated form. kratos uses a UUIDv1; nothing reads
/// the id's structure, only its uniqueness.
pub fn random_instance_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

/// Why an etcd operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    #[error("no etcd endpoints configured")]
    NoEndpoints,
    #[error("etcd {op}: {source}")]
    Request {
        op: &'static str,
        source: etcd_client::Error,
    },
    #[error("etcd {op}: no answer within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    #[error("service instance does not encode as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("etcd lease {lease:x} lost")]
    LeaseLost { lease: i64 },
    #[error("etcd watch canceled (compacted at revision {compact_revision}): {reason}")]
    WatchCanceled {
        compact_revision: i64,
        reason: String,
    },
    #[error("etcd watch stream ended")]
    WatchEnded,
    #[error("etcd registration task ended unexpectedly")]
    RegistrationTaskGone,
}

/// Runs one etcd request with the configured timeout.
async fn bounded<T>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(EtcdError::Request { op, source }),
        Err(_) => Err(EtcdError::Timeout { op, after }),
    }
}

/// A fresh client. No per-request timeout is set on the channel, because it would also end the
/// long-lived watch and keep-alive streams; unary calls go through [`bounded`] instead.
async fn connect(cfg: &EtcdConfig) -> Result<Client, EtcdError> {
    if cfg.endpoints.is_empty() {
        return Err(EtcdError::NoEndpoints);
    }
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(cfg.dial_timeout)
        .with_keep_alive(H2_KEEP_ALIVE.0, H2_KEEP_ALIVE.1);
    if !cfg.username.is_empty() {
        opts = opts.with_user(cfg.username.clone(), cfg.password.clone());
    }
    bounded(
        "connect",
        cfg.dial_timeout,
        Client::connect(&cfg.endpoints, Some(opts)),
    )
    .await
}

/// Exponential backoff with full jitter between [`BACKOFF_MIN`] and [`BACKOFF_MAX`], so many
/// gateways that lost the same etcd do not come back in lockstep.
#[derive(Debug)]
struct Backoff {
    ceiling: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            ceiling: BACKOFF_MIN,
        }
    }

    fn reset(&mut self) {
        self.ceiling = BACKOFF_MIN;
    }

    /// The next delay: uniform in `[MIN, ceiling]`, then the ceiling doubles up to MAX.
    fn next_delay(&mut self) -> Duration {
        let span = self.ceiling.saturating_sub(BACKOFF_MIN).as_millis() as u64;
        let jitter = if span == 0 {
            0
        } else {
            OsRng.next_u64() % (span + 1)
        };
        self.ceiling = (self.ceiling * 2).min(BACKOFF_MAX);
        BACKOFF_MIN + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_json_uses_kratos_field_names() {
        let inst = ServiceInstance {
            id: "i".into(),
            name: "janus.gate.interface".into(),
            version: String::new(),
            metadata: BTreeMap::from([("color".into(), "blue".into())]),
            endpoints: vec!["grpc://10.0.0.1:9100".into()],
        };
        let json = serde_json::to_string(&inst).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"id":"i","name":"janus.gate.interface","version":"","metadata":{"color":"blue"},"endpoints":["grpc://10.0.0.1:9100"]}"#
        );
        assert_eq!(inst.key(), "/microservices/janus.gate.interface/i");
    }

    #[test]
    fn instance_id_is_a_uuid() {
        let id = random_instance_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, random_instance_id());
    }

    #[test]
    fn backoff_stays_in_bounds_and_grows() {
        let mut b = Backoff::new();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
        for _ in 0..20 {
            let d = b.next_delay();
            assert!((BACKOFF_MIN..=BACKOFF_MAX).contains(&d));
        }
        assert_eq!(b.ceiling, BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }
}
