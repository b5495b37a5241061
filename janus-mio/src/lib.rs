//! The Janus edge node on mio (binary `janus-edge`): it holds the players' sockets and does the
//! per-packet work (framing, handshake, decryption, index checks, sealing) with janus-core
//! [`Session`](janus_core::session::Session)s, and multiplexes every session over a few
//! authenticated relay links to janus-tokio hubs, which hold the tunnels, the registry, Redis
//! and etcd. There is no tokio, tonic, hyper, redis or etcd-client in this crate's tree.
//!
//! ```text
//!  clients ══ TCP / WebSocket ══ event loop × threads (mio::Poll, SO_REUSEPORT listeners)
//!                                 ├─ slab of Clients { socket, Session }   (worker::client)
//!                                 ├─ relay::drive: Session events ─► Link (one per hub)
//!                                 └─ Links ══ TCP ══ hubs                 (worker::hubs)
//!  admin thread: /metrics /healthz /readyz                                (admin)
//!  SIGTERM ─► Edge::drain: stop accepting, drain sessions, goodbye to hubs
//! ```
//!
//! When a hub's link dies (or the hub drains), the sessions on it have their tunnels failed
//! (pending requests answered with `SCServerUnexpectedErr`, as for a failed backend stream) and
//! are opened on another live hub at once, or on the first hub that comes back; the clients stay
//! connected. Links reconnect with jittered, doubling backoff.

pub mod admin;
pub mod clock;
pub mod metrics;
pub mod settings;
pub mod sink;
mod worker;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::Context as _;
use janus_core::{limit::Admission, session::WorkerIds};
use socket2::{Domain, Protocol, Socket, Type};

pub use metrics::EdgeMetrics;
pub use settings::EdgeSettings;
use worker::{Shared, Upgrade, Worker};

/// Pending connections per listener.
const LISTEN_BACKLOG: i32 = 1024;

/// The addresses an edge bound.
#[derive(Debug, Clone, Copy)]
pub struct EdgeAddrs {
    pub tcp: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

/// Tells a running edge to drain (from a signal thread, a test, ...).
#[derive(Debug, Clone)]
pub struct DrainTrigger {
    draining: Arc<AtomicBool>,
    wakers: Vec<Arc<mio::Waker>>,
}

impl DrainTrigger {
    /// Stop accepting, drain every session (in-flight replies delivered, then
    /// `SCServerLogout{Server}`), then close the links.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// A running edge.
#[derive(Debug)]
pub struct Edge {
    threads: Vec<JoinHandle<()>>,
    trigger: DrainTrigger,
    abort: Arc<AtomicBool>,
    admin_stop: Arc<AtomicBool>,
    admin: Option<JoinHandle<()>>,
    metrics: Arc<EdgeMetrics>,
    addrs: EdgeAddrs,
}

/// A listener with `SO_REUSEPORT`, so every event loop has its own and the kernel spreads
/// connections over them.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// `threads` listeners on `addr` (port 0: the first one's port for the rest).
fn bind_all(
    what: &str,
    addr: SocketAddr,
    threads: usize,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let first = bind_reuseport(addr).with_context(|| format!("binding {what} {addr}"))?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..threads {
        all.push(bind_reuseport(bound).with_context(|| format!("binding {what} {bound}"))?);
    }
    Ok(all)
}

impl Edge {
    /// Binds the listeners and starts the event loops and the admin thread.
    pub fn start(settings: EdgeSettings) -> anyhow::Result<Edge> {
        let threads = match settings.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let mut tcp: Vec<Option<std::net::TcpListener>> = match settings.tcp {
            Some(a) => bind_all("TCP", a, threads)?.into_iter().map(Some).collect(),
            None => (0..threads).map(|_| None).collect(),
        };
        let mut ws: Vec<Option<std::net::TcpListener>> = match &settings.ws {
            Some((a, _)) => bind_all("WebSocket", *a, threads)?
                .into_iter()
                .map(Some)
                .collect(),
            None => (0..threads).map(|_| None).collect(),
        };
        let addrs = EdgeAddrs {
            tcp: tcp
                .first()
                .and_then(|l: &Option<std::net::TcpListener>| l.as_ref()?.local_addr().ok()),
            ws: ws
                .first()
                .and_then(|l: &Option<std::net::TcpListener>| l.as_ref()?.local_addr().ok()),
            http: None,
        };
        let metrics = Arc::new(EdgeMetrics::default());
        let _ = metrics.filters.set(settings.core.filters.stats());
        let draining = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            core: Arc::clone(&settings.core),
            link: Arc::new(settings.link.clone()),
            hubs: settings.hubs.clone(),
            metrics: Arc::clone(&metrics),
            admission: Mutex::new(Admission::new(settings.admission)),
            worker_ids: WorkerIds::default(),
            node: settings.link.node.as_str().into(),
            upgrade: Upgrade {
                path: settings
                    .ws
                    .as_ref()
                    .map_or_else(|| "/ws".into(), |(_, p)| p.as_str().into()),
                origins: settings.allowed_origins.clone().into(),
            },
            reconnect: settings.reconnect,
            draining: Arc::clone(&draining),
            abort: Arc::clone(&abort),
            shutdown_grace: settings.shutdown_grace,
            evictions: Mutex::new(Vec::new()),
            evictions_pending: AtomicBool::new(false),
        });
        let mut handles = Vec::new();
        let mut wakers = Vec::new();
        for i in 0..threads {
            let (worker, waker) = Worker::new(
                Arc::clone(&shared),
                tcp.get_mut(i).and_then(Option::take),
                ws.get_mut(i).and_then(Option::take),
            )?;
            wakers.push(waker);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("edge-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        let admin_stop = Arc::new(AtomicBool::new(false));
        let mut edge = Edge {
            threads: handles,
            trigger: DrainTrigger { draining, wakers },
            abort,
            admin_stop: Arc::clone(&admin_stop),
            admin: None,
            metrics: Arc::clone(&metrics),
            addrs,
        };
        if let Some(http) = settings.http {
            let listener = std::net::TcpListener::bind(http)
                .with_context(|| format!("binding admin HTTP {http}"))?;
            edge.addrs.http = Some(listener.local_addr()?);
            let draining = Arc::clone(&edge.trigger.draining);
            edge.admin = Some(
                std::thread::Builder::new()
                    .name("edge-admin".into())
                    .spawn(move || admin::serve(listener, metrics, draining, admin_stop))?,
            );
        }
        tracing::info!(tcp = ?edge.addrs.tcp, ws = ?edge.addrs.ws, http = ?edge.addrs.http, threads, hubs = ?settings.hubs, "edge started");
        Ok(edge)
    }

    /// The bound addresses.
    pub fn addrs(&self) -> EdgeAddrs {
        self.addrs
    }

    /// The edge's metrics.
    pub fn metrics(&self) -> &Arc<EdgeMetrics> {
        &self.metrics
    }

    /// A handle that starts the drain (for a signal thread).
    pub fn trigger(&self) -> DrainTrigger {
        self.trigger.clone()
    }

    /// Waits for the event loops to end (after a drain), then stops the admin thread.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.admin_stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.admin.take() {
            let _ = a.join();
        }
    }

    /// Drains and waits.
    pub fn shutdown(self) {
        self.trigger.drain();
        self.wait();
    }

    /// Stops at once, as a crash would: sockets are dropped, nobody is told.
    pub fn abort(self) {
        self.abort.store(true, Ordering::Relaxed);
        self.shutdown();
    }
}
