//! The gateway: listeners, connections, tunnels, pushes, cluster state, admin HTTP, graceful
//! shutdown. Every protocol decision is janus-core's; this module does the IO around it.
//!
//! ```text
//! listener ─► admission ─► connection task (socket + janus-core Session)
//!                           ├─ OpenTunnel/Forward/CloseTunnel ─► tunnel task (tonic bidi stream)
//!                           ├─ Authenticated ─► Registry (uid → connection), gate table
//!                           ◄─ replies, pushes, kicks, drain (ConnCmd)
//! PushService (gRPC), Redis subscriber ─► push ─► Registry ─► connection tasks
//! etcd discovery ─► Backends (sets, route table, breakers, channels)
//! admin HTTP: /metrics /healthz /readyz
//! ```
//!
//! [`Gateway::start`] binds everything and returns the bound addresses (tests bind port 0);
//! [`Gateway::shutdown`] stops accepting, drains every session (in-flight replies delivered,
//! then `SCServerLogout`), waits up to the grace period and stops the servers.

pub mod admin;
pub mod backends;
pub mod command;
pub mod connection;
#[cfg(feature = "etcd")]
pub mod discovery;
pub mod gate;
pub mod hub;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod push;
pub mod registry;
pub mod settings;
pub mod tunnel;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use janus_core::{
    config::ServerConfig,
    limit::Admission,
    session::{Transport, WorkerIds},
};
use janus_proto::broadcaster::service::push::v1::push_service_server::PushServiceServer;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

use self::{backends::Backends, metrics::Metrics, registry::Registry};
pub use self::{
    listener::advertised_endpoint,
    settings::{EtcdSettings, GatewaySettings, RelaySettings, WsSettings},
};
use crate::cluster::redis::{BROADCAST_CHANNEL, RedisRouteStore, RedisTables, run_subscriber};

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
    pub endpoint: Arc<str>,
    next_conn_id: AtomicU64,
    worker_ids: WorkerIds,
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

    /// A number unique per connection for the gateway's life (the registry's owner check).
    fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// The addresses the gateway actually bound.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub tcp: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub grpc: SocketAddr,
    /// The relay listener for edges, when this gateway is a hub.
    pub relay: Option<SocketAddr>,
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

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

impl Gateway {
    /// Binds every listener and starts serving.
    pub async fn start(settings: GatewaySettings) -> anyhow::Result<Gateway> {
        let (grpc_listener, grpc_addr) = bind("gRPC", settings.grpc).await?;
        let endpoint: Arc<str> = settings
            .advertise
            .clone()
            .unwrap_or_else(|| advertised_endpoint(grpc_addr))
            .into();
        // Redis, when configured, must answer at start-up (a misconfiguration should stop the
        // gateway, not degrade it silently); afterwards an outage only degrades it.
        let tables = match &settings.redis {
            Some(cfg) => Some(
                RedisTables::connect(cfg)
                    .await
                    .with_context(|| format!("connecting to Redis at {}", cfg.addr))?,
            ),
            None => None,
        };
        let mut backends = Backends::new(
            &settings.backends,
            settings.route_ttl,
            settings.connect_timeout,
        )?
        .with_balancer(settings.balancer)
        .with_breaker(settings.breaker);
        if let Some(tables) = &tables {
            backends = backends.with_store(Arc::new(RedisRouteStore(tables.clone())));
        }
        if let Some(etcd) = &settings.etcd {
            // The route-table keys name the discovered service (`r_<service>_{…}_{…}`).
            backends = backends.with_services(etcd.services.clone());
        }
        let gate = tables.map(|tables| {
            Arc::new(gate::GateTable {
                tables,
                service: settings.service.clone(),
                endpoint: endpoint.to_string(),
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
        let ws = settings.ws.as_ref();
        let shared = Arc::new(Shared {
            core: Arc::clone(&settings.core),
            registry: Registry::default(),
            backends,
            metrics: Metrics::default(),
            gate: gate.clone(),
            admission: Mutex::new(Admission::new(settings.admission)),
            endpoint,
            next_conn_id: AtomicU64::new(1),
            worker_ids: WorkerIds::default(),
            draining: AtomicBool::new(false),
            drain: drain_rx.clone(),
            allowed_origins: ws.map(|w| w.allowed_origins.clone()).unwrap_or_default(),
            ws_path: ws.map_or_else(|| "/ws".into(), |w| w.path.clone()),
        });

        let mut tasks = Vec::new();
        let mut addrs = BoundAddrs {
            tcp: None,
            ws: None,
            http: None,
            grpc: grpc_addr,
            relay: None,
        };
        let clients = [
            (settings.tcp, Transport::Tcp),
            (ws.map(|w| w.addr), Transport::WebSocket),
        ];
        for (addr, transport) in clients {
            let Some(addr) = addr else { continue };
            let (listener, bound) = bind(&format!("{transport:?}"), addr).await?;
            match transport {
                Transport::WebSocket => addrs.ws = Some(bound),
                _ => addrs.tcp = Some(bound),
            }
            let accept =
                listener::accept_loop(Arc::clone(&shared), listener, transport, drain_rx.clone());
            tasks.push(tokio::spawn(accept));
        }
        if let Some(relay) = &settings.relay {
            let (listener, bound) = bind("relay", relay.addr).await?;
            addrs.relay = Some(bound);
            let mut link = relay.link.clone();
            link.node = shared.endpoint.to_string();
            let hub = Arc::new(hub::Hub {
                config: Arc::new(link),
                max_links: relay.max_links,
                links: std::sync::atomic::AtomicUsize::new(0),
            });
            let accept = hub::accept_loop(Arc::clone(&shared), hub, listener, drain_rx.clone());
            tasks.push(tokio::spawn(accept));
        }
        if let Some(addr) = settings.http {
            let (listener, bound) = bind("admin HTTP", addr).await?;
            addrs.http = Some(bound);
            let admin = admin::serve(
                Arc::clone(&shared),
                listener,
                settings.http_timeout,
                stop_rx.clone(),
            );
            tasks.push(tokio::spawn(admin));
        }
        if let (Some(gate), Some(cfg)) = (&gate, &settings.redis) {
            let (push_tx, push_rx) = tokio::sync::mpsc::channel(1024);
            let (up_tx, up_rx) = watch::channel(false);
            let channels = vec![shared.endpoint.to_string(), BROADCAST_CHANNEL.to_owned()];
            let mut stop = stop_rx.clone();
            let stopped = async move { until_true(&mut stop).await };
            tasks.push(tokio::spawn(run_subscriber(
                cfg.clone(),
                channels,
                push_tx,
                up_tx,
                stopped,
            )));
            tasks.push(tokio::spawn(gate::deliver_loop(
                Arc::clone(&shared),
                push_rx,
            )));
            let renew = Arc::clone(gate).renew_loop(Arc::clone(&shared), up_rx, stop_rx.clone());
            tasks.push(tokio::spawn(renew));
        }
        tasks.push(tokio::spawn(serve_push(
            Arc::clone(&shared),
            grpc_listener,
            settings.grpc_timeout,
            stop_rx.clone(),
        )));
        info!(tcp = ?addrs.tcp, ws = ?addrs.ws, relay = ?addrs.relay, http = ?addrs.http, grpc = %addrs.grpc, endpoint = %shared.endpoint, "gateway started");
        #[cfg(feature = "etcd")]
        let registration = match &settings.etcd {
            Some(etcd) => {
                let ws_path = ws.map_or("/ws", |w| w.path.as_str());
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

/// Resolves once `flag` is true (or its sender is gone). The guard `wait_for` returns is dropped
/// here, so the future stays `Send`.
pub(crate) async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await.is_ok();
}

/// The push service on the gRPC port, each call bounded by `timeout` (`server.grpc.timeout`).
async fn serve_push(
    shared: Arc<Shared>,
    listener: TcpListener,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let pusher = push::Pusher { shared };
    let incoming = TcpListenerStream::new(listener);
    let mut server = tonic::transport::Server::builder();
    if !timeout.is_zero() {
        server = server.timeout(timeout);
    }
    let result = server
        .add_service(PushServiceServer::new(pusher))
        .serve_with_incoming_shutdown(incoming, async move { until_true(&mut stop).await })
        .await;
    if let Err(e) = result {
        warn!(error = %e, "gRPC server stopped");
    }
}
