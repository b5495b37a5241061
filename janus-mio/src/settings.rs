//! What the edge needs to start, resolved from the configuration file (`janus-config`, the same
//! format as the gateway's).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use janus_config::Config;
use janus_core::{config::ServerConfig, limit::AdmissionConfig, relay::LinkConfig};

/// Everything the edge needs, resolved.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// The client sessions' configuration (keys, limits, routes), as the gateway's.
    pub core: Arc<ServerConfig>,
    /// Client TCP listener.
    pub tcp: Option<SocketAddr>,
    /// Client WebSocket listener and its path.
    pub ws: Option<(SocketAddr, String)>,
    /// Allowed WebSocket `Origin`s (empty: any).
    pub allowed_origins: Vec<String>,
    /// Admin HTTP (`/metrics`, `/healthz`, `/readyz`).
    pub http: Option<SocketAddr>,
    /// The relay link configuration (this edge's key, the hubs' keys, limits).
    pub link: LinkConfig,
    /// The hubs' relay addresses (`host:port`), in the order of `link.peers`.
    pub hubs: Vec<String>,
    /// Event-loop threads (0: one per core).
    pub threads: usize,
    /// First and longest reconnect delay.
    pub reconnect: (Duration, Duration),
    /// Admission limits (shared by every thread).
    pub admission: AdmissionConfig,
    /// How long shutdown lets sessions drain.
    pub shutdown_grace: Duration,
}

fn listen(what: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    addr.parse()
        .with_context(|| format!("{what}: {addr:?} is not an ip:port address"))
}

impl EdgeSettings {
    /// Resolves a validated configuration (see `Config::validate_edge`).
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let (link, hubs) = config.edge_link_config()?;
        let edge = config
            .edge
            .as_ref()
            .context("edge: missing (janus-edge needs an edge section)")?;
        let server = &config.server;
        let mut core = config.core_config()?;
        // Session resume is not offered through the edge tier yet: its clients are refused a
        // resume (or logged in afresh with their token) and never get a ticket.
        core.resume_key = None;
        // The built-in filters run on the edge too (its sessions are core sessions).
        if !core.filters.is_empty() {
            core.filters
                .set_stopwatch(Arc::new(crate::clock::FilterStopwatch::default()));
        }
        Ok(EdgeSettings {
            core: Arc::new(core),
            tcp: server
                .tcp
                .as_ref()
                .map(|t| listen("server.tcp.addr", &t.addr))
                .transpose()?,
            ws: server
                .ws
                .as_ref()
                .map(|w| listen("server.ws.addr", &w.addr).map(|a| (a, w.path.clone())))
                .transpose()?,
            allowed_origins: server
                .ws
                .as_ref()
                .map(|w| w.allowed_origins.clone())
                .unwrap_or_default(),
            http: Some(listen("server.http.addr", &server.http.addr)?),
            link,
            hubs,
            threads: edge.threads,
            reconnect: (edge.reconnect_min, edge.reconnect_max),
            admission: config.admission_config(),
            shutdown_grace: config.limits.shutdown_grace,
        })
    }
}
