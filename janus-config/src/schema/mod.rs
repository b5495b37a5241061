//! The sections of the configuration file, with their defaults.
//!
//! Key names follow upstream's `conf.proto` (spec §6.2) wherever upstream has the setting, so an
//! upstream `config.yaml` section reads the same here; settings upstream lacks (backends, routes,
//! limits, demo) have their own sections. Every struct rejects unknown keys: a misspelt key is an
//! error naming it, never a silently ignored setting.

mod filters;
mod limits;
mod relay;
mod routes;

use std::{collections::BTreeMap, fmt, time::Duration};

use janus_core::{
    compress::{DEFAULT_COMPRESS_STRONG, DEFAULT_COMPRESS_THRESHOLD},
    route::default_service,
};
use serde::{Deserialize, Serialize};

pub use self::{
    filters::{
        AccessFilter, ActionName, BanFilter, Filters, MaxPayloadFilter, RateRuleConfig,
        RouteRuleConfig,
    },
    limits::{
        AdmissionLimits, BackendPool, DEFAULT_DRAIN_WINDOW, Limits, RateLimitConfig, SessionLimits,
    },
    relay::{
        DEFAULT_MAX_LINKS, DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN, Edge, HubEntry,
        LinkLimits, Relay,
    },
    routes::{BackendEntry, BalancerName, BreakerSettings, OidRuleName, Routes},
};
use super::de::{duration, scalar, ser_duration, ser_secret};

/// `label`: who this gateway is (upstream `Label`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpServer {
    /// `ip:port`. Default `0.0.0.0:7001`.
    pub addr: String,
    /// Every connection starts with a PROXY protocol v1 or v2 header (an L4 load balancer in
    /// front), whose source address is the client's: it is what backends see
    /// (`x-md-global-client-ip`), what per-address admission counts and what logs show. A
    /// connection without a valid header is closed. Default `false`.
    #[serde(deserialize_with = "scalar")]
    pub proxy_protocol: bool,
}

impl Default for TcpServer {
    fn default() -> Self {
        TcpServer {
            addr: "0.0.0.0:7001".into(),
            proxy_protocol: false,
        }
    }
}

/// `server.ws`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
    /// A PROXY protocol v1/v2 header precedes the HTTP upgrade; see `server.tcp.proxy_protocol`.
    /// Default `false`.
    #[serde(deserialize_with = "scalar")]
    pub proxy_protocol: bool,
}

impl Default for WsServer {
    fn default() -> Self {
        WsServer {
            addr: "0.0.0.0:7002".into(),
            path: "/ws".into(),
            allowed_origins: Vec::new(),
            proxy_protocol: false,
        }
    }
}

/// `server.kcp`: accepted, unused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KcpServer {
    /// Upstream's UDP address (`0.0.0.0:7003`).
    pub addr: String,
}

/// `server.http`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServer {
    /// Upstream's `network` (`tcp`): accepted, unused.
    pub network: String,
    /// `ip:port`. Default `0.0.0.0:8100`.
    pub addr: String,
    /// Request timeout. Default `0.5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Bearer token of the admin API (`Authorization: Bearer <token>`): required by every
    /// endpoint that changes something (kick, drain, reload) and by the `/admin/` read endpoints.
    /// The environment variable `JANUS_ADMIN_TOKEN`, when set, overrides it. Default `""`: the
    /// changing endpoints are refused and the read endpoints are open (on the admin address).
    #[serde(serialize_with = "ser_secret")]
    pub admin_token: String,
}

impl Default for HttpServer {
    fn default() -> Self {
        HttpServer {
            network: String::new(),
            addr: "0.0.0.0:8100".into(),
            timeout: Duration::from_millis(500),
            admin_token: String::new(),
        }
    }
}

/// `server.grpc`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcServer {
    /// Upstream's `network` (`tcp`): accepted, unused.
    pub network: String,
    /// `ip:port`. Default `0.0.0.0:9100`.
    pub addr: String,
    /// Request timeout. Default `0.5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Data {
    /// Redis for the shared route tables and pub/sub. Default: none (in-memory tables).
    pub redis: Option<Redis>,
    /// TTL of this gateway's entries in the gate table (uid → gateway). Default `600s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub gateway_route_table_alive_duration: Duration,
    /// TTL of the sticky player/room placements. Default `600s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
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
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redis {
    /// `host:port`. Default `127.0.0.1:6379`.
    pub addr: String,
    /// Default `""`.
    #[serde(serialize_with = "ser_secret")]
    pub password: String,
    /// A Redis Cluster client seeded with `addr` and [`cluster_seeds`](Self::cluster_seeds)
    /// instead of a standalone one. Default `false`.
    #[serde(deserialize_with = "scalar")]
    pub cluster: bool,
    /// More cluster nodes to learn the topology from (`host:port` each), tried after `addr`, so
    /// a gateway starts while one seed node is down. Only with `cluster: true`. Default `[]`.
    pub cluster_seeds: Vec<String>,
    /// Reach a primary/replica set through Redis Sentinel instead of `addr`: the gateway asks
    /// the sentinels for the current primary and follows a failover. Excludes `cluster`.
    /// Default: none.
    pub sentinel: Option<RedisSentinel>,
    /// Default `2s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub dial_timeout: Duration,
    /// Default `0.5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub read_timeout: Duration,
    /// Default `0.5s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub write_timeout: Duration,
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            addr: "127.0.0.1:6379".into(),
            password: String::new(),
            cluster: false,
            cluster_seeds: Vec::new(),
            sentinel: None,
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
            .field("cluster_seeds", &self.cluster_seeds)
            .field("sentinel", &self.sentinel)
            .field("dial_timeout", &self.dial_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish()
    }
}

/// `data.redis.sentinel`: a Sentinel-managed primary/replica set. `data.redis.password` is the
/// data nodes' password; the sentinels have their own.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSentinel {
    /// The monitored set's name (`sentinel monitor <master_name> ...`). Required.
    pub master_name: String,
    /// The sentinels, `host:port` each (usually three or more). Required.
    pub addrs: Vec<String>,
    /// The sentinels' `requirepass`. Default `""` (none).
    #[serde(serialize_with = "ser_secret")]
    pub password: String,
}

impl Default for RedisSentinel {
    fn default() -> Self {
        RedisSentinel {
            master_name: "mymaster".into(),
            addrs: Vec::new(),
            password: String::new(),
        }
    }
}

impl fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("master_name", &self.master_name)
            .field("addrs", &self.addrs)
            .field("password", &redacted(&self.password))
            .finish()
    }
}

/// `secret`: key material (upstream `Secret`). Its `Debug` never shows the secret parts.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Secret {
    /// The token key shared with the account service (its `token_key`): the raw bytes of this
    /// text, 16, 24 or 32 of them.
    #[serde(serialize_with = "ser_secret")]
    pub account_aes_key: String,
    /// Transmitted by upstream, unused. Default 0.
    #[serde(deserialize_with = "scalar")]
    pub server_cert_version: i32,
    /// PKCS#8 PEM Ed25519 private key that signs the server's handshake key. Needed when
    /// `label.encrypted`.
    #[serde(serialize_with = "ser_secret")]
    pub server_cert_private_key: String,
    /// Transmitted by upstream, unused. Default 0.
    #[serde(deserialize_with = "scalar")]
    pub client_cert_version: i32,
    /// X.509 PEM certificate with the Ed25519 key of official client builds; checked for its
    /// validity period at start-up. Needed when `label.encrypted`.
    pub client_cert: String,
    /// The key of session-resume tickets (`limits.session.resume`): any text of at least 16
    /// bytes, hashed to the AES-256 key. Give every gateway a client may resume on the same
    /// value. Empty (the default): a random key per process (tickets die with it).
    #[serde(serialize_with = "ser_secret")]
    pub resume_key: String,
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
            .field("resume_key", &redacted(&self.resume_key))
            .finish()
    }
}

/// `demo`: run the demo backend inside the gateway process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Demo {
    /// Where it listens (point `backends` at it). Default `127.0.0.1:17102`.
    pub addr: String,
    /// Interval of its server pushes. Default `10s`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A `tracing` filter (`info`, `janus_tokio=debug,info`); `RUST_LOG` overrides it. Default
    /// `"info"`.
    pub level: String,
    /// Upstream's logger (`zap`): accepted, unused.
    pub r#type: String,
    /// `text` (human-readable lines) or `json` (one object per line, with the span fields).
    /// The `--log-json` flag overrides it. Default `text`.
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            r#type: "zap".into(),
            format: LogFormat::Text,
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `trace` (upstream `Trace`): OpenTelemetry export of the connection, handshake and tunnel
/// spans (build with the `otel` feature).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trace {
    /// OTLP/gRPC collector, `http://host:4317`. Default: none (no export).
    pub endpoint: Option<String>,
    /// Fraction of new traces recorded, 0.0..=1.0 (a trace a backend started keeps its own
    /// decision). Reloadable. Default 1.0 (upstream's ratio).
    pub sampler: f64,
    /// `service.name` of the exported spans. Default: `label.service`.
    pub service_name: Option<String>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            endpoint: None,
            sampler: 1.0,
            service_name: None,
        }
    }
}

// `sampler` is checked to be a number in 0..=1 (never NaN), so equality is total.
impl Eq for Trace {}

/// `etcd` (upstream `registry.yaml`).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Etcd {
    /// `host:port` or `http(s)://host:port`. Default `["127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Default `""`.
    pub username: String,
    /// Default `""`.
    #[serde(serialize_with = "ser_secret")]
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
            services: ["player", "room"]
                .into_iter()
                .map(|kind| (kind.to_owned(), default_service(kind)))
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

pub(crate) fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "<redacted>" }
}
