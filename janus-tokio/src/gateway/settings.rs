//! [`GatewaySettings`] from the configuration file.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;

use super::{BackendSpec, GatewaySettings, WsSettings};
use crate::config::Config;

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
    /// Resolves the configuration: parses secrets and addresses, builds the core's config.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        if config.data.redis.as_ref().is_some_and(|r| r.cluster) {
            // A standalone client against a Redis Cluster would fail on every MOVED reply.
            anyhow::bail!(
                "data.redis.cluster: Redis Cluster is not supported yet; point data.redis.addr at a standalone Redis (or a proxy)"
            );
        }
        let core = Arc::new(config.core_config()?);
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
                    .map(|b| BackendSpec {
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
            redis: config
                .data
                .redis
                .as_ref()
                .map(|r| crate::cluster::redis::RedisConfig {
                    addr: r.addr.clone(),
                    password: r.password.clone(),
                    dial_timeout: r.dial_timeout,
                    io_timeout: r.read_timeout.max(r.write_timeout),
                }),
            service: config.label.service.clone(),
            gate_ttl: config.data.gateway_route_table_alive_duration,
            etcd: config.etcd.as_ref().map(|e| super::EtcdSettings {
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
        })
    }
}
