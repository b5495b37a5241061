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
//! admin HTTP: /metrics /healthz /readyz, /admin/* (sessions, kick, drain, config, backends,
//!             reload; see `admin`)
//! ```
//!
//! [`Gateway::start`] binds everything and returns the bound addresses (tests bind port 0);
//! [`Gateway::shutdown`] (or `POST /admin/drain`, then [`Gateway::shutdown`]) drains: readiness
//! fails, etcd deregistration, no more accepts, sessions logged out spread over the drain window
//! (`drain`), the rest closed at the grace deadline; then the servers stop. [`Gateway::reload`]
//! re-reads the configuration file (`reload`).

pub mod admin;
pub mod backends;
pub mod command;
pub mod connection;
#[cfg(feature = "etcd")]
pub mod discovery;
pub mod drain;
pub mod gate;
pub mod hub;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod proxy;
pub mod push;
pub mod registry;
pub mod reload;
pub mod settings;
pub mod tunnel;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use janus_core::{
    CloseReason,
    config::ServerConfig,
    limit::Admission,
    session::{Transport, WorkerIds},
    ws::WsConfig,
};
use janus_proto::broadcaster::service::push::v1::push_service_server::PushServiceServer;
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::watch,
    task::JoinHandle,
};
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

use self::{
    backends::Backends,
    drain::DrainPhase,
    metrics::{Listener, Metrics},
    registry::Registry,
};
pub use self::{
    listener::advertised_endpoint,
    reload::{ReloadError, ReloadReport},
    settings::{
        ConfigSource, EtcdSettings, GatewaySettings, OpsSettings, RelaySettings, WsSettings,
    },
};
use crate::cluster::redis::{BROADCAST_CHANNEL, RedisRouteStore, RedisTables, run_subscriber};

/// Settings an operator can change while the gateway runs (reload) and the drain's state.
#[derive(Debug)]
pub(crate) struct Ops {
    /// The admin API's bearer token; empty refuses the changing endpoints.
    pub admin_token: RwLock<String>,
    /// `limits.drain_window` and `limits.shutdown_grace`.
    pub drain_timing: Mutex<(Duration, Duration)>,
    /// PROXY protocol required, per listener.
    pub proxy_protocol: [AtomicBool; Listener::ALL.len()],
    /// The running configuration file, and the changed keys that wait for a restart.
    pub source: Mutex<Option<ConfigSource>>,
    /// The configuration the process started with: what restart-only keys still hold.
    pub started: Option<crate::config::Config>,
    pub restart_pending: Mutex<Vec<String>>,
    /// Reloads run one at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
    pub telemetry: Option<crate::telemetry::Telemetry>,
    /// The drain's phase: serving, draining (no accepts; sessions logged out over the window),
    /// cut (the grace period is over).
    pub phase: watch::Sender<DrainPhase>,
    /// Set when the drain has finished (every connection closed, or cut).
    pub drained: watch::Sender<bool>,
    #[cfg(feature = "etcd")]
    pub registration: tokio::sync::Mutex<Option<crate::cluster::etcd::Registration>>,
}

/// State shared by every task of a gateway.
#[derive(Debug)]
pub struct Shared {
    /// The core configuration new sessions start with (replaced by a reload; a live session
    /// keeps the one it started with).
    core: RwLock<Arc<ServerConfig>>,
    pub registry: Registry,
    pub backends: Backends,
    pub metrics: Metrics,
    /// The Redis gate table, in cluster mode.
    pub gate: Option<Arc<gate::GateTable>>,
    admission: Mutex<Admission>,
    /// Connections still handshaking, by admission id: how a full pool evicts one.
    handshakes: Mutex<HashMap<u64, command::ConnTx>>,
    /// Sessions granted resume, by resume id: where a resuming client's new connection goes.
    pub(crate) resumable: Mutex<janus_core::resume::ResumableSessions<command::ConnTx>>,
    /// PROXY headers being read at once (bounded like handshakes).
    proxy_slots: Arc<tokio::sync::Semaphore>,
    /// The advertised gRPC endpoint: the gateway's identity in referers and route tables.
    pub endpoint: Arc<str>,
    next_conn_id: AtomicU64,
    worker_ids: WorkerIds,
    /// Readiness fails from the start of the drain.
    pub draining: AtomicBool,
    /// The drain's phase, as connection tasks and accept loops watch it.
    drain: watch::Receiver<DrainPhase>,
    /// The WebSocket listener's path, origins and control-frame rate (origins reload live: new
    /// connections take the current one).
    ws: RwLock<Arc<WsConfig>>,
    /// The colour the gate table is looked up with when the admin API is not told one.
    color: String,
    pub(crate) ops: Ops,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update of plain data; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn admission(&self) -> MutexGuard<'_, Admission> {
        lock(&self.admission)
    }

    /// Connection `id` (its admission id) is handshaking and reachable through `tx`.
    fn handshake_started(&self, id: u64, tx: command::ConnTx) {
        lock(&self.handshakes).insert(id, tx);
    }

    /// Connection `id` is no longer handshaking (authenticated, closed or evicted).
    fn handshake_over(&self, id: u64) {
        lock(&self.handshakes).remove(&id);
    }

    /// The WebSocket settings new connections take.
    fn ws_config(&self) -> Arc<WsConfig> {
        Arc::clone(&self.ws.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Lets new WebSocket connections accept these origins (configuration reload).
    fn set_allowed_origins(&self, origins: Vec<String>) {
        let mut ws = self.ws.write().unwrap_or_else(|p| p.into_inner());
        let mut config = (**ws).clone();
        config.upgrade.allowed_origins = origins;
        *ws = Arc::new(config);
    }

    /// Closes handshaking connection `id`: admission gave its slot to a newcomer.
    fn evict_handshake(&self, id: u64) {
        if let Some(tx) = lock(&self.handshakes).remove(&id) {
            self.metrics.handshake_evicted();
            let _ = tx.try_send(command::ConnCmd::Close(CloseReason::HandshakeEvicted));
        }
    }

    /// A number unique per connection for the gateway's life (the registry's owner check).
    fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The core configuration for a session starting now.
    pub fn core(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.core.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// See [`Gateway::recheck_sessions`]. Each session is told through its mailbox, waiting for
    /// room (in a task: the caller does not wait), so a busy session is asked late, never
    /// skipped.
    fn recheck_sessions(&self) -> usize {
        let core = self.core();
        if core.filters.is_empty() {
            return 0;
        }
        let handles = self.registry.select(|_| true);
        let asked = handles.len();
        tokio::spawn(async move {
            for handle in handles {
                let _ = handle
                    .tx
                    .send(command::ConnCmd::Recheck(Arc::clone(&core)))
                    .await;
            }
        });
        asked
    }

    /// The resumable sessions (see `connection::resume`).
    pub(crate) fn resumable(
        &self,
    ) -> MutexGuard<'_, janus_core::resume::ResumableSessions<command::ConnTx>> {
        lock(&self.resumable)
    }

    fn set_core(&self, core: Arc<ServerConfig>) {
        *self.core.write().unwrap_or_else(|p| p.into_inner()) = core;
    }

    fn proxy_protocol(&self, listener: Listener) -> bool {
        self.ops
            .proxy_protocol
            .get(listener as usize)
            .is_some_and(|p| p.load(Ordering::Relaxed))
    }

    /// Starts the drain (idempotent): see [`drain`]. Returns whether this call started it.
    pub fn start_drain(self: &Arc<Self>) -> bool {
        if self.draining.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.metrics.set_draining();
        tokio::spawn(drain::run(Arc::clone(self)));
        true
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
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Connections the kernel may queue for `accept` (capped by `net.core.somaxconn`). A burst of
/// connects (a storm, or an attack the admission control is about to refuse) must not overflow
/// the queue and drop real clients' SYNs, which would cost them a one-second retransmission.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(|| format!("socket for {what} {addr}"))?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {what} {addr}"))?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
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
        .with_breaker(settings.breaker)
        .with_pool(settings.pool);
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
        let (phase_tx, phase_rx) = watch::channel(DrainPhase::Serving);
        let (stop_tx, stop_rx) = watch::channel(false);
        let ws = settings.ws.as_ref();
        let ops = &settings.ops;
        let color = ops
            .source
            .as_ref()
            .map_or_else(|| "local".to_owned(), |s| s.config.label.color.clone());
        let metrics = Metrics::default();
        if let Some(source) = &ops.source {
            metrics.set_config(&source.hash, 0);
            info!(hash = %source.hash, file = %source.path.display(), "configuration live");
        }
        metrics
            .redis_configured
            .store(settings.redis.is_some(), Ordering::Relaxed);
        metrics
            .etcd
            .configured
            .store(settings.etcd.is_some(), Ordering::Relaxed);
        let shared = Arc::new(Shared {
            core: RwLock::new(Arc::clone(&settings.core)),
            registry: Registry::default(),
            backends,
            metrics,
            gate: gate.clone(),
            admission: Mutex::new(Admission::new(settings.admission)),
            handshakes: Mutex::new(HashMap::new()),
            resumable: Mutex::new(Default::default()),
            proxy_slots: Arc::new(tokio::sync::Semaphore::new(
                settings.admission.max_handshakes.max(1),
            )),
            endpoint,
            next_conn_id: AtomicU64::new(1),
            worker_ids: WorkerIds::default(),
            draining: AtomicBool::new(false),
            drain: phase_rx.clone(),
            ws: RwLock::new(Arc::new(ws.map_or_else(
                || WsConfig::new("/ws"),
                |w| {
                    let mut config = WsConfig::new(w.path.clone());
                    config.upgrade.allowed_origins = w.allowed_origins.clone();
                    config
                },
            ))),
            color,
            ops: Ops {
                admin_token: RwLock::new(ops.admin_token.clone()),
                drain_timing: Mutex::new((ops.drain_window, settings.shutdown_grace)),
                proxy_protocol: [
                    AtomicBool::new(ops.proxy_protocol_tcp),
                    AtomicBool::new(ops.proxy_protocol_ws),
                    AtomicBool::new(false),
                ],
                source: Mutex::new(ops.source.clone()),
                started: ops.source.as_ref().map(|s| s.config.clone()),
                restart_pending: Mutex::new(Vec::new()),
                reload_lock: tokio::sync::Mutex::new(()),
                telemetry: ops.telemetry.clone(),
                phase: phase_tx,
                drained: watch::channel(false).0,
                #[cfg(feature = "etcd")]
                registration: tokio::sync::Mutex::new(None),
            },
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
                listener::accept_loop(Arc::clone(&shared), listener, transport, phase_rx.clone());
            tasks.push(tokio::spawn(accept));
        }
        if let Some(relay) = &settings.relay {
            let (listener, bound) = bind("relay", relay.addr).await?;
            addrs.relay = Some(bound);
            let mut link = relay.link.clone();
            // Edges know their hub by its gateway identity.
            link.node = shared.endpoint.to_string();
            let hub = Arc::new(hub::Hub {
                config: Arc::new(link),
                max_links: relay.max_links,
                links: AtomicUsize::new(0),
            });
            shared
                .metrics
                .relay
                .configured
                .store(true, Ordering::Relaxed);
            let accept = hub::accept_loop(Arc::clone(&shared), hub, listener, phase_rx.clone());
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
            tasks.push(tokio::spawn(gate::watch_subscription(
                Arc::clone(&shared),
                up_rx.clone(),
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
        if let Some(etcd) = &settings.etcd {
            let ws_path = ws.map_or("/ws", |w| w.path.as_str());
            let registration =
                discovery::start(&shared, etcd, &addrs, ws_path, &stop_rx, &mut tasks).await?;
            *shared.ops.registration.lock().await = Some(registration);
        }
        #[cfg(not(feature = "etcd"))]
        if settings.etcd.is_some() {
            anyhow::bail!(
                "the configuration has an etcd section, but this janus was built without the `etcd` feature"
            );
        }
        Ok(Gateway {
            shared,
            addrs,
            stop_tx,
            tasks,
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

    /// Replaces the admission limits (live connections keep their claims). What a reload of
    /// `limits.admission` does, for tests that have no file to reload.
    pub fn set_admission_for_test(&self, config: janus_core::limit::AdmissionConfig) {
        self.shared.admission().set_config(config);
    }

    /// Asks every live session whether the filters of the gateway's configuration still let it
    /// go on ([`Session::recheck`](janus_core::session::Session::recheck)); those refused close
    /// (a ban's `SCServerLogout{Banned}`). A reload that changes `filters` does this itself; an
    /// embedder that refreshes a `BanFeed` calls it after a change. Returns how many sessions
    /// were asked.
    pub fn recheck_sessions(&self) -> usize {
        self.shared.recheck_sessions()
    }

    /// Re-reads the configuration file and applies what can change live (see [`reload`]).
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        reload::reload(&self.shared).await
    }

    /// Starts the drain, as `SIGTERM` or `POST /admin/drain` do; [`shutdown`](Self::shutdown)
    /// waits for it. Returns whether this call started it.
    pub fn start_drain(&self) -> bool {
        self.shared.start_drain()
    }

    /// Resolves once a drain has started (from [`start_drain`](Self::start_drain) or the
    /// admin API): the binary then runs [`shutdown`](Self::shutdown).
    pub async fn drain_started(&self) {
        let mut phase = self.shared.drain.clone();
        let _ = phase.wait_for(|p| *p != DrainPhase::Serving).await.is_ok();
    }

    /// Graceful shutdown: the drain (readiness 503, etcd deregistration, no more accepts,
    /// sessions logged out with `SCServerLogout{Waiting}` spread over `limits.drain_window`
    /// after their in-flight replies, the rest closed at `limits.shutdown_grace`), then the
    /// servers stop. Returns how many connections were still open when it gave up on them.
    pub async fn shutdown(self) -> usize {
        self.shared.start_drain();
        let mut drained = self.shared.ops.drained.subscribe();
        let _ = drained.wait_for(|d| *d).await;
        let left = usize::try_from(self.shared.metrics.connections_open.load(Ordering::Relaxed))
            .unwrap_or(0);
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
