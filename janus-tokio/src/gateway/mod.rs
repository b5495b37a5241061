//! The gateway: listeners, connections, tunnels, pushes, admin HTTP, graceful shutdown.
//!
//! ```text
//! TCP / WS listener ─► admission ─► connection task (socket + janus-core Session)
//!                                    ├─ OpenTunnel/Forward ─► tunnel task (tonic bidi stream)
//!                                    ├─ Authenticated ─► Registry (uid → connection)
//!                                    ◄─ replies, pushes, kicks, drain (ConnCmd)
//! PushService (gRPC) ─► Registry ─► connection tasks
//! admin HTTP: /metrics /healthz /readyz
//! ```
//!
//! [`Gateway::start`] binds everything and returns the bound addresses (tests bind port 0);
//! [`Gateway::shutdown`] stops accepting, drains every session (in-flight replies delivered,
//! then `SCServerLogout`), waits up to the grace period and stops the servers.

pub mod admin;
pub mod backends;
pub mod clock;
pub mod connection;
#[cfg(feature = "etcd")]
pub mod discovery;
pub mod gate;
pub mod mailbox;
pub mod metrics;
pub mod push;
pub mod registry;
pub mod settings;
pub mod tunnel;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use janus_core::{
    config::ServerConfig,
    limit::{Admission, AdmissionConfig},
};
use janus_proto::broadcaster::service::push::v1::push_service_server::PushServiceServer;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
    protocol::WebSocketConfig,
};
use tracing::{debug, info, warn};

pub use self::backends::BackendSpec;
use self::{backends::Backends, metrics::Metrics, registry::Registry};

/// How long a WebSocket upgrade may take (upstream: the HTTP server's 5 s read timeout).
const WS_UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);

/// The WebSocket listener's settings.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub addr: SocketAddr,
    /// The only path served, e.g. `/ws`.
    pub path: String,
    /// Allowed `Origin` values; empty (or containing `*`) allows any origin and none.
    pub allowed_origins: Vec<String>,
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
    pub backends: BTreeMap<String, Vec<BackendSpec>>,
    /// TTL of sticky route-table entries.
    pub route_ttl: Duration,
    pub admission: AdmissionConfig,
    /// How long shutdown waits for sessions to drain.
    pub shutdown_grace: Duration,
    /// Backend connect timeout.
    pub connect_timeout: Duration,
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

/// State shared by every task of a gateway.
#[derive(Debug)]
pub struct Shared {
    pub core: Arc<ServerConfig>,
    pub registry: Registry,
    pub backends: Backends,
    pub metrics: Metrics,
    /// The Redis gate table, in cluster mode.
    pub gate: Option<Arc<gate::GateTable>>,
    admission: Mutex<Admission>,
    /// The advertised gRPC endpoint: the gateway's identity in referers and route tables.
    pub endpoint: String,
    next_conn_id: AtomicU64,
    tcp_workers: AtomicU64,
    ws_workers: AtomicU64,
    pub draining: AtomicBool,
    /// Turns true when the gateway starts draining.
    drain: watch::Receiver<bool>,
    allowed_origins: Vec<String>,
    ws_path: String,
}

impl Shared {
    fn admission(&self) -> MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Worker ids as upstream numbers them (spec §1.5): per-listener counter << 4 | transport.
    fn next_wid(&self, ws: bool) -> u64 {
        let counter = if ws {
            &self.ws_workers
        } else {
            &self.tcp_workers
        };
        (counter.fetch_add(1, Ordering::Relaxed) + 1) << 4 | u64::from(ws)
    }
}

/// The addresses the gateway actually bound.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub tcp: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub grpc: SocketAddr,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    addrs: BoundAddrs,
    drain_tx: watch::Sender<bool>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
    #[cfg(feature = "etcd")]
    registration: Option<crate::cluster::etcd::Registration>,
}

impl Gateway {
    /// Binds every listener and starts serving.
    pub async fn start(settings: GatewaySettings) -> anyhow::Result<Gateway> {
        let grpc_listener = TcpListener::bind(settings.grpc)
            .await
            .with_context(|| format!("binding gRPC {}", settings.grpc))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let endpoint = settings
            .advertise
            .clone()
            .unwrap_or_else(|| advertised_endpoint(grpc_addr));
        // Redis, when configured, must answer at start-up (a misconfiguration should stop the
        // gateway, not degrade it silently); afterwards an outage only degrades it.
        let tables = match &settings.redis {
            Some(cfg) => Some(
                crate::cluster::redis::RedisTables::connect(cfg)
                    .await
                    .with_context(|| format!("connecting to Redis at {}", cfg.addr))?,
            ),
            None => None,
        };
        let backends = match &tables {
            Some(tables) => Backends::with_store(
                &settings.backends,
                settings.route_ttl,
                settings.connect_timeout,
                Arc::new(RedisRouteStore(tables.clone())),
                BTreeMap::new(),
            )?,
            None => Backends::new(
                &settings.backends,
                settings.route_ttl,
                settings.connect_timeout,
            )?,
        };
        let gate = tables.clone().map(|tables| {
            Arc::new(gate::GateTable {
                tables,
                service: settings.service.clone(),
                endpoint: endpoint.clone(),
                ttl: settings.gate_ttl,
            })
        });
        for kind in backends.kinds() {
            if settings.core.routes.kind_by_name(&kind).is_none() {
                warn!(
                    kind,
                    "backends configured for a tunnel kind no module routes to"
                );
            }
        }
        let (drain_tx, drain_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            core: Arc::clone(&settings.core),
            registry: Registry::default(),
            backends,
            metrics: Metrics::default(),
            gate: gate.clone(),
            admission: Mutex::new(Admission::new(settings.admission)),
            endpoint,
            next_conn_id: AtomicU64::new(1),
            tcp_workers: AtomicU64::new(0),
            ws_workers: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            drain: drain_rx.clone(),
            allowed_origins: settings
                .ws
                .as_ref()
                .map(|w| w.allowed_origins.clone())
                .unwrap_or_default(),
            ws_path: settings
                .ws
                .as_ref()
                .map(|w| w.path.clone())
                .unwrap_or_else(|| "/ws".into()),
        });

        let mut tasks = Vec::new();
        let mut addrs = BoundAddrs {
            tcp: None,
            ws: None,
            http: None,
            grpc: grpc_addr,
        };
        if let Some(addr) = settings.tcp {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding TCP {addr}"))?;
            addrs.tcp = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(accept_loop(
                Arc::clone(&shared),
                listener,
                false,
                drain_rx.clone(),
            )));
        }
        if let Some(ws) = &settings.ws {
            let listener = TcpListener::bind(ws.addr)
                .await
                .with_context(|| format!("binding WebSocket {}", ws.addr))?;
            addrs.ws = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(accept_loop(
                Arc::clone(&shared),
                listener,
                true,
                drain_rx.clone(),
            )));
        }
        if let Some(addr) = settings.http {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding admin HTTP {addr}"))?;
            addrs.http = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(admin::serve(
                Arc::clone(&shared),
                listener,
                stop_rx.clone(),
            )));
        }
        if let (Some(gate), Some(cfg)) = (&gate, &settings.redis) {
            let (push_tx, push_rx) = tokio::sync::mpsc::channel(1024);
            let (up_tx, up_rx) = watch::channel(false);
            let channels = vec![
                shared.endpoint.clone(),
                crate::cluster::redis::BROADCAST_CHANNEL.to_owned(),
            ];
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(crate::cluster::redis::run_subscriber(
                cfg.clone(),
                channels,
                push_tx,
                up_tx,
                async move {
                    until_true(&mut stop).await;
                },
            )));
            tasks.push(tokio::spawn(gate::deliver_loop(
                Arc::clone(&shared),
                push_rx,
            )));
            tasks.push(tokio::spawn(Arc::clone(gate).renew_loop(
                Arc::clone(&shared),
                up_rx,
                stop_rx.clone(),
            )));
        }
        let pusher = push::Pusher {
            shared: Arc::clone(&shared),
        };
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = TcpListenerStream::new(grpc_listener);
            let result = tonic::transport::Server::builder()
                .add_service(PushServiceServer::new(pusher))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                warn!(error = %e, "gRPC server stopped");
            }
        }));
        info!(tcp = ?addrs.tcp, ws = ?addrs.ws, http = ?addrs.http, grpc = %addrs.grpc, endpoint = %shared.endpoint, "gateway started");
        #[cfg(feature = "etcd")]
        let registration = match &settings.etcd {
            Some(etcd) => {
                let ws_path = settings.ws.as_ref().map_or("/ws", |w| w.path.as_str());
                Some(discovery::start(&shared, etcd, &addrs, ws_path, &stop_rx, &mut tasks).await?)
            }
            None => None,
        };
        #[cfg(not(feature = "etcd"))]
        if settings.etcd.is_some() {
            anyhow::bail!(
                "the configuration has an etcd section, but this janus was built without the `etcd` feature"
            );
        }
        Ok(Gateway {
            shared,
            addrs,
            drain_tx,
            stop_tx,
            tasks,
            grace: settings.shutdown_grace,
            #[cfg(feature = "etcd")]
            registration,
        })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> BoundAddrs {
        self.addrs
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The advertised gRPC endpoint (identity).
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// Sessions registered (authenticated and open).
    pub fn sessions(&self) -> usize {
        self.shared.registry.len()
    }

    /// Graceful shutdown: stop accepting, drain every session (in-flight replies reach the
    /// clients, then `SCServerLogout{Server}`), wait up to the grace period, stop the servers.
    /// Returns how many connections were still open when the grace period ran out.
    #[cfg_attr(not(feature = "etcd"), allow(unused_mut))]
    pub async fn shutdown(mut self) -> usize {
        info!("shutting down: draining sessions");
        // Out of the registry first, so no new traffic is sent here while draining.
        #[cfg(feature = "etcd")]
        if let Some(registration) = self.registration.take() {
            if let Err(e) = registration.deregister().await {
                warn!(error = %e, "deregistering from etcd failed (the lease will expire)");
            }
        }
        self.shared.draining.store(true, Ordering::Relaxed);
        let _ = self.drain_tx.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            let open = self.shared.metrics.connections_open.load(Ordering::Relaxed);
            if open <= 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = usize::try_from(self.shared.metrics.connections_open.load(Ordering::Relaxed))
            .unwrap_or(0);
        if left > 0 {
            warn!(left, "grace period over with connections still open");
        }
        let _ = self.stop_tx.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        info!("gateway stopped");
        left
    }
}

/// The sticky route table in Redis (`r_<service>_{<colour>}_{<oid>}`, spec §4.1).
#[derive(Debug)]
struct RedisRouteStore(crate::cluster::redis::RedisTables);

impl backends::RouteStore for RedisRouteStore {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<String>, backends::PickError>> {
        Box::pin(async move {
            self.0
                .get(key)
                .await
                .map_err(|e| backends::PickError::Table(e.to_string()))
        })
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, backends::PickError>> {
        Box::pin(async move {
            self.0
                .set_nx_ex(key, addr, ttl)
                .await
                .map_err(|e| backends::PickError::Table(e.to_string()))
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        addr: &'a str,
        ttl: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<(), backends::PickError>> {
        Box::pin(async move {
            self.0
                .set_ex_get(key, addr, ttl)
                .await
                .map(|_| ())
                .map_err(|e| backends::PickError::Table(e.to_string()))
        })
    }
}

/// Resolves once `flag` is true (or its sender is gone). The guard `wait_for` returns is dropped
/// here, so the future stays `Send`.
pub(crate) async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await.is_ok();
}

/// Accepts connections until the gateway drains.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    ws: bool,
    mut drain: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = until_true(&mut drain) => return,
        };
        let admitted = match shared.admission().try_admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(e) => {
                debug!(%peer, error = %e, "connection refused by admission control");
                shared.metrics.inc(&shared.metrics.connections_rejected);
                continue;
            }
        };
        let wid = shared.next_wid(ws);
        let shared = Arc::clone(&shared);
        if ws {
            shared.metrics.inc(&shared.metrics.connections_ws);
            tokio::spawn(upgrade_ws(shared, stream, peer, wid, admitted));
        } else {
            shared.metrics.inc(&shared.metrics.connections_tcp);
            tokio::spawn(connection::serve_tcp(shared, stream, peer, wid, admitted));
        }
    }
}

/// Whether a WebSocket `Origin` is allowed. Upstream admits only the literal `*` (so browsers
/// fail); here an empty list or `*` admits any origin, and a list admits exactly its entries.
fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    if allowed.is_empty() || allowed.iter().any(|a| a == "*") {
        return true;
    }
    origin.is_some_and(|o| allowed.iter().any(|a| a == o))
}

fn reject(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

async fn upgrade_ws(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    wid: u64,
    admitted: janus_core::limit::Admitted,
) {
    let _ = stream.set_nodelay(true);
    let check = {
        let shared = Arc::clone(&shared);
        #[allow(clippy::result_large_err)] // the callback type is tungstenite's
        move |req: &Request, response: Response| -> Result<Response, ErrorResponse> {
            if req.uri().path() != shared.ws_path {
                return Err(reject(StatusCode::NOT_FOUND, "no such path"));
            }
            let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
            if !origin_allowed(&shared.allowed_origins, origin) {
                return Err(reject(StatusCode::FORBIDDEN, "origin not allowed"));
            }
            Ok(response)
        }
    };
    // Small buffers: a frame is at most 16 KiB and an idle connection should hold little.
    let max = shared.core.session.max_frame_len + janus_core::frame::HEADER_LEN;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(shared.core.session.outbound_budget.saturating_mul(2))
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    match tokio::time::timeout(
        WS_UPGRADE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)),
    )
    .await
    {
        Ok(Ok(ws)) => connection::serve_ws(shared, ws, peer, wid, admitted).await,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "websocket upgrade refused");
            shared.metrics.inc(&shared.metrics.ws_upgrades_rejected);
            shared.admission().release(admitted);
        }
        Err(_) => {
            debug!(%peer, "websocket upgrade timed out");
            shared.metrics.inc(&shared.metrics.ws_upgrades_rejected);
            shared.admission().release(admitted);
        }
    }
}

/// The gRPC endpoint to advertise: the bound address, or for a wildcard bind the host's first
/// non-loopback address (from its name's resolution), or loopback as a last resort.
pub fn advertised_endpoint(bound: SocketAddr) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let ip = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), bound.port()))
        .ok()
        .and_then(|mut addrs| addrs.find(|a| !a.ip().is_loopback() && !a.ip().is_unspecified()))
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    SocketAddr::new(ip, bound.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_are_admitted_by_default() {
        assert!(origin_allowed(&[], Some("https://game.example")));
        assert!(origin_allowed(&[], None));
        assert!(origin_allowed(&["*".into()], Some("https://x")));
        let list = vec!["https://game.example".to_owned()];
        assert!(origin_allowed(&list, Some("https://game.example")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(!origin_allowed(&list, None));
    }

    #[test]
    fn wildcard_binds_advertise_a_concrete_address() {
        assert_eq!(
            advertised_endpoint("10.1.2.3:9100".parse().unwrap()),
            "10.1.2.3:9100"
        );
        let derived = advertised_endpoint("0.0.0.0:9100".parse().unwrap());
        assert!(
            derived.ends_with(":9100") && !derived.starts_with("0.0.0.0"),
            "{derived}"
        );
    }
}
