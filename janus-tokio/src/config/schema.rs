//! The sections of the configuration file, with their defaults.
//!
//! Key names follow upstream's `conf.proto` (spec §6.2) wherever upstream has the setting, so an
//! upstream `config.yaml` section reads the same here; settings upstream lacks (backends, routes,
//! limits, demo) have their own sections. Every struct rejects unknown keys: a misspelt key is an
//! error naming it, never a silently ignored setting.

use std::{collections::BTreeMap, fmt, time::Duration};

use janus_core::{
    compress::{DEFAULT_COMPRESS_STRONG, DEFAULT_COMPRESS_THRESHOLD, DEFAULT_MAX_INFLATED_LEN},
    config::{
        DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
        DEFAULT_MAX_PENDING, DEFAULT_MAX_TIMESTAMP_SKEW, DEFAULT_MAX_TUNNELS,
        DEFAULT_OUTBOUND_BUDGET,
    },
    frame::DEFAULT_MAX_FRAME_LEN,
    limit::{
        DEFAULT_IPV6_PREFIX_LEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        DEFAULT_MAX_HANDSHAKES,
    },
    replay::DEFAULT_REPLAY_CAPACITY,
    route::{BreakerConfig, OidRule},
};
use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor, value::MapAccessDeserializer},
};

use super::de::{duration, scalar};

/// `label`: who this gateway is (upstream `Label`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Label {
    /// Service name: the etcd registration name and the gate route-table name. Default
    /// `"janus.gate.interface"`.
    pub service: String,
    /// `dev` (any case) turns on request/reply debug logs upstream. Default `"dev"`.
    pub profile: String,
    /// Deployment colour, for the node filter and etcd metadata. Sessions take their colour from
    /// the token, not from here. Default `"local"`.
    pub color: String,
    /// Default `""`.
    pub version: String,
    /// Default 0.
    #[serde(deserialize_with = "scalar")]
    pub zone: u32,
    /// Node name for logs and metadata. Default `""`.
    pub node: String,
    /// ECDH + AES-GCM for every session. Default `true`. `false` needs no certificate material.
    #[serde(deserialize_with = "scalar")]
    pub encrypted: bool,
    /// Default `"en"`.
    pub language: String,
}

impl Default for Label {
    fn default() -> Self {
        Label {
            service: "janus.gate.interface".into(),
            profile: "dev".into(),
            color: "local".into(),
            version: String::new(),
            zone: 0,
            node: String::new(),
            encrypted: true,
            language: "en".into(),
        }
    }
}

/// `server`: the listeners (upstream `Server`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// Client TCP listener; `tcp: null` turns it off. Default `0.0.0.0:7001`.
    pub tcp: Option<TcpServer>,
    /// Client WebSocket listener; `ws: null` turns it off. Default `0.0.0.0:7002`, path `/ws`.
    pub ws: Option<WsServer>,
    /// Upstream's KCP listener: accepted so upstream files load, not served (Janus has no KCP).
    pub kcp: Option<KcpServer>,
    /// Admin HTTP (metrics, health, push). Default `0.0.0.0:8100`.
    pub http: HttpServer,
    /// gRPC (push service); its address is the gateway's identity. Default `0.0.0.0:9100`.
    pub grpc: GrpcServer,
    /// Upstream's health server address: accepted, unused (the admin HTTP server serves health).
    pub health: Option<String>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            tcp: Some(TcpServer::default()),
            ws: Some(WsServer::default()),
            kcp: None,
            http: HttpServer::default(),
            grpc: GrpcServer::default(),
            health: None,
        }
    }
}

/// `server.tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpServer {
    /// `ip:port`. Default `0.0.0.0:7001`.
    pub addr: String,
}

impl Default for TcpServer {
    fn default() -> Self {
        TcpServer {
            addr: "0.0.0.0:7001".into(),
        }
    }
}

/// `server.ws`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsServer {
    /// `ip:port`. Default `0.0.0.0:7002`.
    pub addr: String,
    /// The only path upgraded. Default `/ws`.
    pub path: String,
    /// Allowed `Origin` header values (`https://game.example.com`). Empty (the default) allows any
    /// origin and requests without one, as upstream; a list allows exactly its entries; `*` in the
    /// list allows any.
    pub allowed_origins: Vec<String>,
}

impl Default for WsServer {
    fn default() -> Self {
        WsServer {
            addr: "0.0.0.0:7002".into(),
            path: "/ws".into(),
            allowed_origins: Vec::new(),
        }
    }
}

/// `server.kcp`: accepted, unused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KcpServer {
    /// Upstream's UDP address (`0.0.0.0:7003`).
    pub addr: String,
}

/// `server.http`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServer {
    /// Upstream's `network` (`tcp`): accepted, unused.
    pub network: String,
    /// `ip:port`. Default `0.0.0.0:8100`.
    pub addr: String,
    /// Request timeout. Default `0.5s`.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for HttpServer {
    fn default() -> Self {
        HttpServer {
            network: String::new(),
            addr: "0.0.0.0:8100".into(),
            timeout: Duration::from_millis(500),
        }
    }
}

/// `server.grpc`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcServer {
    /// Upstream's `network` (`tcp`): accepted, unused.
    pub network: String,
    /// `ip:port`. Default `0.0.0.0:9100`.
    pub addr: String,
    /// Request timeout. Default `0.5s`.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// The `host:port` other services reach this gateway's gRPC server at: its identity in the
    /// gate route table and in referers. Default: derived from `addr`.
    pub advertise: Option<String>,
}

impl Default for GrpcServer {
    fn default() -> Self {
        GrpcServer {
            network: String::new(),
            addr: "0.0.0.0:9100".into(),
            timeout: Duration::from_millis(500),
            advertise: None,
        }
    }
}

/// `compress`: server-to-client zlib thresholds (upstream `Compress`, spec §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compress {
    /// Replies of at least this many bytes are compressed (fastest level). Default 10240.
    #[serde(deserialize_with = "scalar")]
    pub weak: usize,
    /// Replies of at least this many bytes use the default zlib level. Default 1024000.
    #[serde(deserialize_with = "scalar")]
    pub strong: usize,
}

impl Default for Compress {
    fn default() -> Self {
        Compress {
            weak: DEFAULT_COMPRESS_THRESHOLD,
            strong: DEFAULT_COMPRESS_STRONG,
        }
    }
}

/// `data`: route tables (upstream `Data`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Data {
    /// Redis for the shared route tables and pub/sub. Default: none (in-memory tables).
    pub redis: Option<Redis>,
    /// TTL of this gateway's entries in the gate table (uid → gateway). Default `600s`.
    #[serde(deserialize_with = "duration")]
    pub gateway_route_table_alive_duration: Duration,
    /// TTL of the sticky player/room placements. Default `600s`.
    #[serde(deserialize_with = "duration")]
    pub app_route_table_alive_duration: Duration,
}

impl Default for Data {
    fn default() -> Self {
        Data {
            redis: None,
            gateway_route_table_alive_duration: Duration::from_secs(600),
            app_route_table_alive_duration: Duration::from_secs(600),
        }
    }
}

/// `data.redis`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redis {
    /// `host:port`. Default `127.0.0.1:6379`.
    pub addr: String,
    /// Default `""`.
    pub password: String,
    /// A cluster client (seeded with `addr`) instead of a standalone one. Default `false`.
    #[serde(deserialize_with = "scalar")]
    pub cluster: bool,
    /// Default `2s`.
    #[serde(deserialize_with = "duration")]
    pub dial_timeout: Duration,
    /// Default `0.5s`.
    #[serde(deserialize_with = "duration")]
    pub read_timeout: Duration,
    /// Default `0.5s`.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            addr: "127.0.0.1:6379".into(),
            password: String::new(),
            cluster: false,
            dial_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_millis(500),
        }
    }
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("addr", &self.addr)
            .field("password", &redacted(&self.password))
            .field("cluster", &self.cluster)
            .field("dial_timeout", &self.dial_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish()
    }
}

/// `secret`: key material (upstream `Secret`). Its `Debug` never shows the secret parts.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Secret {
    /// The token key shared with the account service (its `token_key`): the raw bytes of this
    /// text, 16, 24 or 32 of them.
    pub account_aes_key: String,
    /// Transmitted by upstream, unused. Default 0.
    #[serde(deserialize_with = "scalar")]
    pub server_cert_version: i32,
    /// PKCS#8 PEM Ed25519 private key that signs the server's handshake key. Needed when
    /// `label.encrypted`.
    pub server_cert_private_key: String,
    /// Transmitted by upstream, unused. Default 0.
    #[serde(deserialize_with = "scalar")]
    pub client_cert_version: i32,
    /// X.509 PEM certificate with the Ed25519 key of official client builds; checked for its
    /// validity period at start-up. Needed when `label.encrypted`.
    pub client_cert: String,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("account_aes_key", &redacted(&self.account_aes_key))
            .field("server_cert_version", &self.server_cert_version)
            .field(
                "server_cert_private_key",
                &redacted(&self.server_cert_private_key),
            )
            .field("client_cert_version", &self.client_cert_version)
            .field(
                "client_cert",
                &format_args!("<{} bytes>", self.client_cert.len()),
            )
            .finish()
    }
}

/// One backend of a tunnel kind. In YAML either `"host:port"` or
/// `{addr: "host:port", weight: 2, color: blue}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendEntry {
    /// `host:port` of its gRPC server (host names allowed).
    pub addr: String,
    /// Share of new placements. Default 1; 0 takes no new oids but keeps those stuck to it.
    pub weight: u32,
    /// The colour it serves; `None` (the default) serves every colour.
    pub color: Option<String>,
}

impl From<&BackendEntry> for janus_core::route::Backend {
    fn from(entry: &BackendEntry) -> Self {
        janus_core::route::Backend {
            addr: entry.addr.clone(),
            weight: entry.weight,
            color: entry.color.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendMap {
    addr: String,
    #[serde(default = "one", deserialize_with = "scalar")]
    weight: u32,
    #[serde(default)]
    color: Option<String>,
}

fn one() -> u32 {
    1
}

impl<'de> Deserialize<'de> for BackendEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = BackendEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a backend: \"host:port\" or {addr, weight, color}")
            }
            fn visit_str<E: serde::de::Error>(self, addr: &str) -> Result<BackendEntry, E> {
                Ok(BackendEntry {
                    addr: addr.to_owned(),
                    weight: 1,
                    color: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BackendEntry, A::Error> {
                let m = BackendMap::deserialize(MapAccessDeserializer::new(map))?;
                Ok(BackendEntry {
                    addr: m.addr,
                    weight: m.weight,
                    color: m.color,
                })
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// `routes`: which tunnel kind each module's packets go to.
///
/// Built in: kinds `player` (oid = the session uid) and `room` (oid = the packet's `obj`);
/// module 6 goes to `room`, every other module to `player` (upstream's routing, spec §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Routes {
    /// Extra tunnel kinds (`team: object`), each with its oid rule. Names: `a-z0-9_-`, ≤ 32 bytes.
    pub kinds: BTreeMap<String, OidRuleName>,
    /// Module id → kind name, overriding the built-in mapping (`7: team`, `6: player`).
    pub modules: BTreeMap<i32, String>,
    /// How a new tunnel's backend is chosen when the route table has no placement for its oid.
    /// Default `wrr`.
    pub balancer: BalancerName,
    /// When a backend stops getting new tunnels after failing to open them.
    pub breaker: BreakerSettings,
}

/// `routes.balancer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancerName {
    /// Smooth weighted round-robin over the backend weights, as upstream (nginx's algorithm).
    #[default]
    Wrr,
    /// Power of two choices: of two backends drawn at random (weight > 0), the one with fewer
    /// tunnels open from this gateway. Spreads load by what backends actually carry.
    LeastLoaded,
}

/// `routes.breaker`: see `janus_core::route::BreakerConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failed tunnel opens that take a backend out of placement. Default 5.
    #[serde(deserialize_with = "scalar")]
    pub failure_threshold: u32,
    /// How long it stays out after the first trip. Default `10s`.
    #[serde(deserialize_with = "duration")]
    pub cool_down: Duration,
    /// Longest stay out (the cool-down doubles after each failed probe). Default `300s`.
    #[serde(deserialize_with = "duration")]
    pub max_cool_down: Duration,
    /// How long a probe may go unanswered before another is allowed. Default `30s`.
    #[serde(deserialize_with = "duration")]
    pub probe_timeout: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        let d = BreakerConfig::default();
        BreakerSettings {
            failure_threshold: d.failure_threshold,
            cool_down: d.cool_down,
            max_cool_down: d.max_cool_down,
            probe_timeout: d.probe_timeout,
        }
    }
}

impl From<BreakerSettings> for BreakerConfig {
    fn from(s: BreakerSettings) -> Self {
        BreakerConfig {
            failure_threshold: s.failure_threshold,
            cool_down: s.cool_down,
            max_cool_down: s.max_cool_down,
            probe_timeout: s.probe_timeout,
        }
    }
}

/// How a tunnel kind finds its oid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OidRuleName {
    /// Like `player`: the oid is the session uid; a packet may only name its own uid.
    Player,
    /// Like `room`: the oid is the packet's `obj` (0 means the session uid, as upstream).
    Object,
}

impl From<OidRuleName> for OidRule {
    fn from(rule: OidRuleName) -> Self {
        match rule {
            OidRuleName::Player => OidRule::SessionUid,
            OidRuleName::Object => OidRule::Object,
        }
    }
}

/// `limits`: every limit of the gateway (janus-core documents each default and what it stops).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Per-connection limits.
    pub session: SessionLimits,
    /// Connection admission.
    pub admission: AdmissionLimits,
    /// How long shutdown lets sessions drain before cutting them. Default `10s`.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Tokens remembered to refuse a second session per token. Default 262144.
    #[serde(deserialize_with = "scalar")]
    pub replay_cache: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            session: SessionLimits::default(),
            admission: AdmissionLimits::default(),
            shutdown_grace: Duration::from_secs(10),
            replay_cache: DEFAULT_REPLAY_CAPACITY,
        }
    }
}

/// `limits.session`: see `janus_core::config::SessionConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionLimits {
    /// Connect to completed handshake. Default `10s`.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// Longest silence from the client. Default `60s`.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Handshake timestamp versus our clock. Default `5s`.
    #[serde(deserialize_with = "duration")]
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
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// Enforce the +1 packet index. Default `true`.
    #[serde(deserialize_with = "scalar")]
    pub check_index: bool,
    /// Per-session packet rate. Default: none (off, as upstream).
    pub rate_limit: Option<RateLimitConfig>,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
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
        }
    }
}

/// `limits.session.rate_limit`: `burst` packets back to back, then `per_second` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionLimits {
    /// Open connections in total. Default 100000.
    #[serde(deserialize_with = "scalar")]
    pub max_connections: usize,
    /// Open connections per IPv4 address or IPv6 prefix. Default 64.
    #[serde(deserialize_with = "scalar")]
    pub max_connections_per_address: u32,
    /// Connections in the handshake at once. Default 1024.
    #[serde(deserialize_with = "scalar")]
    pub max_handshakes: usize,
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
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
        }
    }
}

/// `demo`: run the demo backend inside the gateway process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Demo {
    /// Where it listens (point `backends` at it). Default `127.0.0.1:17102`.
    pub addr: String,
    /// Interval of its server pushes. Default `10s`.
    #[serde(deserialize_with = "duration")]
    pub push_interval: Duration,
}

impl Default for Demo {
    fn default() -> Self {
        Demo {
            addr: "127.0.0.1:17102".into(),
            push_interval: Duration::from_secs(10),
        }
    }
}

/// `log` (upstream `Log`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A `tracing` filter (`info`, `janus_tokio=debug,info`); `RUST_LOG` overrides it. Default
    /// `"info"`.
    pub level: String,
    /// Upstream's logger (`zap`): accepted, unused.
    pub r#type: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            r#type: "zap".into(),
        }
    }
}

/// `trace` (upstream `Trace`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trace {
    /// OTLP endpoint: accepted, not used yet.
    pub endpoint: Option<String>,
}

/// `etcd` (upstream `registry.yaml`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Etcd {
    /// `host:port` or `http(s)://host:port`. Default `["127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Default `""`.
    pub username: String,
    /// Default `""`.
    pub password: String,
    /// Tunnel kind → the backend service discovered for it under `/microservices/<service>/`.
    /// Default `player: roma.player.service`, `room: roma.room.service`. A kind listed here gets
    /// its backends from etcd (replacing any static `backends.<kind>`).
    pub services: BTreeMap<String, String>,
}

impl Default for Etcd {
    fn default() -> Self {
        Etcd {
            endpoints: vec!["127.0.0.1:2379".into()],
            username: String::new(),
            password: String::new(),
            services: [
                ("player", "roma.player.service"),
                ("room", "roma.room.service"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("services", &self.services)
            .finish()
    }
}

fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "<redacted>" }
}
