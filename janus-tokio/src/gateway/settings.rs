//! What the gateway needs to start, resolved from the configuration file.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use janus_core::{
    config::ServerConfig,
    limit::AdmissionConfig,
    route::{Backend, BreakerConfig},
};

pub use super::backends::{Balancer, PoolConfig};
use crate::cluster::redis::{RedisConfig, RedisTopology};
use crate::{
    config::{BalancerName, Config, ConfigError, DEFAULT_DRAIN_WINDOW},
    telemetry::Telemetry,
};

/// The environment variable that overrides `server.http.admin_token`.
pub const ADMIN_TOKEN_ENV: &str = "JANUS_ADMIN_TOKEN";

/// The configuration file a gateway runs on: for reloads and the admin API.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// Where it is read from (again on reload).
    pub path: std::path::PathBuf,
    /// What it said, placeholders filled.
    pub config: Config,
    /// The first 16 hex digits of the sha256 of its bytes (`sha256sum FILE` shows the same).
    pub hash: String,
}

impl ConfigSource {
    /// Reads, parses and validates `path` (placeholders from the process environment).
    pub fn load(path: &std::path::Path) -> Result<ConfigSource, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let config = Config::from_yaml(&text, &|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(ConfigSource {
            path: path.to_owned(),
            config,
            hash: content_hash(&bytes),
        })
    }
}

/// The first 16 hex digits of the sha256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Operational settings: the admin API, draining, PROXY protocol, reloads, logs.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// The file the configuration came from; `None`: no reload (`POST /admin/reload` says so).
    pub source: Option<ConfigSource>,
    /// The admin API's bearer token (`server.http.admin_token`, or `JANUS_ADMIN_TOKEN`).
    /// Empty: changing endpoints are refused.
    pub admin_token: String,
    /// `limits.drain_window`.
    pub drain_window: Duration,
    /// `server.tcp.proxy_protocol`.
    pub proxy_protocol_tcp: bool,
    /// `server.ws.proxy_protocol`.
    pub proxy_protocol_ws: bool,
    /// The installed subscriber, for `log.level` and `trace.sampler` reloads.
    pub telemetry: Option<Telemetry>,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            source: None,
            admin_token: String::new(),
            drain_window: DEFAULT_DRAIN_WINDOW,
            proxy_protocol_tcp: false,
            proxy_protocol_ws: false,
            telemetry: None,
        }
    }
}

/// The admin token: `JANUS_ADMIN_TOKEN` when set and not empty, else the configured one.
pub fn admin_token(config: &Config) -> String {
    std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| config.server.http.admin_token.clone())
}

/// The WebSocket listener's settings.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub addr: SocketAddr,
    /// The only path served, e.g. `/ws`.
    pub path: String,
    /// Allowed `Origin` values; empty (or containing `*`) allows any origin and none.
    pub allowed_origins: Vec<String>,
}

/// The relay listener (this gateway is a hub for janus-mio edges), resolved from `relay`.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub addr: SocketAddr,
    /// The link configuration; its `node` is set to the advertised endpoint at start-up.
    pub link: janus_core::relay::LinkConfig,
    /// Relay links at once (`relay.max_links`).
    pub max_links: usize,
}

/// Everything the gateway needs, resolved from the config file.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub core: Arc<ServerConfig>,
    pub tcp: Option<SocketAddr>,
    pub ws: Option<WsSettings>,
    pub http: Option<SocketAddr>,
    pub grpc: SocketAddr,
    /// The advertised gRPC `host:port` (identity); derived from `grpc` when `None`.
    pub advertise: Option<String>,
    /// Tunnel kind name → backends.
    pub backends: BTreeMap<String, Vec<Backend>>,
    /// TTL of sticky route-table entries.
    pub route_ttl: Duration,
    pub admission: AdmissionConfig,
    /// How long shutdown waits for sessions to drain.
    pub shutdown_grace: Duration,
    /// Backend connect timeout.
    pub connect_timeout: Duration,
    /// How a new tunnel's backend is chosen (`routes.balancer`).
    pub balancer: Balancer,
    /// When a failing backend is taken out of placement (`routes.breaker`).
    pub breaker: BreakerConfig,
    /// HTTP/2 connections per backend (`limits.backend_pool`).
    pub pool: PoolConfig,
    /// Longest a push-service call may take (`server.grpc.timeout`).
    pub grpc_timeout: Duration,
    /// Longest an admin HTTP request may take to arrive (`server.http.timeout`).
    pub http_timeout: Duration,
    /// Redis (`data.redis`): route tables and pushes between gateways. `None` keeps the tables
    /// in memory.
    pub redis: Option<crate::cluster::redis::RedisConfig>,
    /// `label.service`: the gate table's name.
    pub service: String,
    /// TTL of gate-table entries (`data.gateway_route_table_alive_duration`).
    pub gate_ttl: Duration,
    /// etcd registration and discovery (needs the `etcd` feature). `None` keeps the backends
    /// static.
    pub etcd: Option<EtcdSettings>,
    /// Admin API, drain, PROXY protocol, reloads.
    pub ops: OpsSettings,
    /// The relay listener for edges (`relay`); `None`: no edges.
    pub relay: Option<RelaySettings>,
}

/// etcd settings, resolved from the config.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub username: String,
    pub password: String,
    /// Tunnel kind → discovered backend service (`roma.player.service`, ...).
    pub services: BTreeMap<String, String>,
    /// What this gateway registers as: `label.service`, `label.version`, `label.profile`,
    /// `label.color` (also the colour of the backends it discovers).
    pub name: String,
    pub version: String,
    pub profile: String,
    pub color: String,
}

/// How long dialling a backend may take before the tunnel counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A listen address: `ip:port`, or `host:port` resolved once at start-up.
pub fn listen_addr(what: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("{what}: cannot resolve {addr:?}"))?
        .next()
        .with_context(|| format!("{what}: {addr:?} resolves to nothing"))
}

impl GatewaySettings {
    /// A gateway on 127.0.0.1, every listener on a free port, the admission limits of a public
    /// gateway, `backend` serving the player and room kinds: what tests, SDK tests and tools
    /// start from before changing what they need.
    pub fn local(core: Arc<ServerConfig>, backend: &str) -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let spec = vec![Backend {
            addr: backend.to_owned(),
            weight: 1,
            color: None,
        }];
        let backends = [("player", spec.clone()), ("room", spec)]
            .into_iter()
            .map(|(kind, list)| (kind.to_owned(), list))
            .collect();
        GatewaySettings {
            core,
            tcp: Some(local),
            ws: Some(WsSettings {
                addr: local,
                path: "/ws".into(),
                allowed_origins: Vec::new(),
            }),
            http: Some(local),
            grpc: local,
            advertise: None,
            backends,
            route_ttl: Duration::from_secs(600),
            admission: AdmissionConfig::default(),
            shutdown_grace: Duration::from_secs(5),
            connect_timeout: CONNECT_TIMEOUT,
            balancer: Balancer::default(),
            breaker: BreakerConfig::default(),
            pool: PoolConfig::default(),
            grpc_timeout: Duration::from_secs(5),
            http_timeout: Duration::from_secs(5),
            redis: None,
            service: "janus.gate.interface".into(),
            gate_ttl: Duration::from_secs(600),
            etcd: None,
            ops: Default::default(),
            relay: None,
        }
    }

    /// [`from_config`](Self::from_config) for a file, remembering it for reloads.
    pub fn from_source(source: ConfigSource) -> anyhow::Result<Self> {
        let mut settings = Self::from_config(&source.config)?;
        settings.ops.source = Some(source);
        Ok(settings)
    }

    /// Resolves the configuration: parses secrets and addresses, builds the core's config.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut core = config.core_config_with(&crate::filters::custom_filters())?;
        crate::filters::prepare(&mut core.filters, None);
        ensure_resume_key(&mut core, None);
        let core = Arc::new(core);
        let server = &config.server;
        let tcp = server
            .tcp
            .as_ref()
            .map(|t| listen_addr("server.tcp.addr", &t.addr))
            .transpose()?;
        let ws = match &server.ws {
            Some(w) => Some(WsSettings {
                addr: listen_addr("server.ws.addr", &w.addr)?,
                path: w.path.clone(),
                allowed_origins: w.allowed_origins.clone(),
            }),
            None => None,
        };
        let http = Some(listen_addr("server.http.addr", &server.http.addr)?);
        let grpc = listen_addr("server.grpc.addr", &server.grpc.addr)?;
        let backends = config
            .backends
            .iter()
            .map(|(kind, list)| {
                let specs = list
                    .iter()
                    .map(|b| Backend {
                        addr: b.addr.clone(),
                        weight: b.weight,
                        color: b.color.clone(),
                    })
                    .collect();
                (kind.clone(), specs)
            })
            .collect();
        Ok(GatewaySettings {
            core,
            tcp,
            ws,
            http,
            grpc,
            advertise: server.grpc.advertise.clone(),
            backends,
            route_ttl: config.data.app_route_table_alive_duration,
            admission: config.admission_config(),
            shutdown_grace: config.limits.shutdown_grace,
            redis: config.data.redis.as_ref().map(redis_config),
            service: config.label.service.clone(),
            gate_ttl: config.data.gateway_route_table_alive_duration,
            etcd: config.etcd.as_ref().map(|e| EtcdSettings {
                endpoints: e.endpoints.clone(),
                username: e.username.clone(),
                password: e.password.clone(),
                services: e.services.clone(),
                name: config.label.service.clone(),
                version: config.label.version.clone(),
                profile: config.label.profile.clone(),
                color: config.label.color.clone(),
            }),
            connect_timeout: CONNECT_TIMEOUT,
            balancer: match config.routes.balancer {
                BalancerName::Wrr => Balancer::Wrr,
                BalancerName::LeastLoaded => Balancer::LeastLoaded,
            },
            breaker: config.routes.breaker.into(),
            pool: PoolConfig {
                min_connections: config.limits.backend_pool.min_connections,
                max_connections: config.limits.backend_pool.max_connections,
            },
            grpc_timeout: server.grpc.timeout,
            http_timeout: server.http.timeout,
            ops: OpsSettings {
                source: None,
                admin_token: admin_token(config),
                drain_window: config.limits.drain_window,
                proxy_protocol_tcp: server.tcp.as_ref().is_some_and(|t| t.proxy_protocol),
                proxy_protocol_ws: server.ws.as_ref().is_some_and(|w| w.proxy_protocol),
                telemetry: None,
            },
            relay: match (&config.relay, config.hub_link_config("")?) {
                (Some(relay), Some(link)) => Some(RelaySettings {
                    addr: listen_addr("relay.addr", &relay.addr)?,
                    link,
                    max_links: relay.max_links,
                }),
                _ => None,
            },
        })
    }
}

/// `data.redis` as the client's configuration: standalone, cluster or Sentinel.
fn redis_config(r: &crate::config::Redis) -> RedisConfig {
    let topology = match (&r.sentinel, r.cluster) {
        (Some(s), _) => RedisTopology::Sentinel {
            master_name: s.master_name.clone(),
            sentinels: s.addrs.clone(),
            password: s.password.clone(),
        },
        (None, true) => RedisTopology::Cluster {
            seeds: r.cluster_seeds.clone(),
        },
        (None, false) => RedisTopology::Standalone,
    };
    RedisConfig {
        addr: r.addr.clone(),
        password: r.password.clone(),
        topology,
        dial_timeout: r.dial_timeout,
        io_timeout: r.read_timeout.max(r.write_timeout),
    }
}

/// With session resume on and no `secret.resume_key`, tickets are sealed with `previous` (the
/// running gateway's key, across a reload) or a random key of this process.
pub(crate) fn ensure_resume_key(
    core: &mut janus_core::config::ServerConfig,
    previous: Option<&janus_core::resume::ResumeKey>,
) {
    if core.session.resume.enabled() && core.resume_key.is_none() {
        core.resume_key = Some(previous.cloned().unwrap_or_else(|| {
            let mut key = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
            janus_core::resume::ResumeKey::new(&key)
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_config_resolves_with_its_timeouts_and_routing_choices() {
        let config = crate::config::Config::local().unwrap();
        let settings = GatewaySettings::from_config(&config).unwrap();
        assert_eq!(settings.grpc_timeout, Duration::from_millis(500));
        assert_eq!(settings.http_timeout, Duration::from_millis(500));
        assert_eq!(settings.balancer, Balancer::Wrr);
        assert_eq!(settings.breaker, BreakerConfig::default());
        assert!(settings.tcp.is_some() && settings.ws.is_some());
    }

    #[test]
    fn redis_cluster_and_sentinel_resolve_to_their_topologies() {
        let with = |redis: &str| {
            let yaml =
                crate::config::LOCAL_YAML.replace("data:\n", &format!("data:\n  redis:\n{redis}"));
            let config =
                crate::config::Config::from_yaml(&yaml, &|n| std::env::var(n).ok()).unwrap();
            config.validate().unwrap();
            GatewaySettings::from_config(&config)
                .unwrap()
                .redis
                .unwrap()
        };
        let cluster = with(
            "    addr: 10.0.0.1:6379\n    cluster: true\n    cluster_seeds: [\"10.0.0.2:6379\"]\n",
        );
        assert_eq!(cluster.addr, "10.0.0.1:6379");
        assert_eq!(
            cluster.topology,
            RedisTopology::Cluster {
                seeds: vec!["10.0.0.2:6379".into()]
            }
        );
        let sentinel =
            with("    sentinel: {master_name: janus, addrs: [\"10.0.0.5:26379\"], password: pw}\n");
        assert_eq!(
            sentinel.topology,
            RedisTopology::Sentinel {
                master_name: "janus".into(),
                sentinels: vec!["10.0.0.5:26379".into()],
                password: "pw".into(),
            }
        );
        assert!(!format!("{sentinel:?}").contains("pw\""), "{sentinel:?}");
        assert_eq!(
            with("    addr: r:6379\n").topology,
            RedisTopology::Standalone
        );
    }
}
