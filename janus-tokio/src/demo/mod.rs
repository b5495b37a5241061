//! A Roma-compatible demo backend: the gRPC side the gateway tunnels to.
//!
//! It serves `player.intra.v1.TunnelService` and `room.intra.v1.TunnelService` (one bidirectional
//! stream per tunnel, wire-protocol §4.4) with roma's admission rule and reply conventions, and a
//! few request payloads that let tests drive the gateway's edge cases (see [`reply`] for the
//! table). It runs in three places:
//!
//! 1. inside the gateway process for `configs/local.yaml`, so a local run needs no other service;
//! 2. as the `janus-demo-backend` binary;
//! 3. in the gateway's integration tests, as the real gRPC backend over a socket, with
//!    [`DemoBackend::observed`] / [`DemoBackend::subscribe`] to check what reached the backend and
//!    [`DemoHandle::kill`] to make it die mid-stream.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use janus_tokio::demo::{DemoBackend, DemoConfig};
//! let backend = DemoBackend::new(DemoConfig::default());
//! let handle = backend.spawn_local().await?;          // 127.0.0.1:<ephemeral>
//! let endpoint = handle.endpoint();                   // "http://127.0.0.1:<port>"
//! // ... point the gateway (or a TunnelServiceClient) at `endpoint` ...
//! assert_eq!(handle.backend().open_streams(), 0);
//! handle.stop().await?;                               // graceful; dropping the handle also stops it
//! # Ok(()) }
//! ```
//!
//! Data flow: tonic accepts connections (`conn.rs`, which can also cut them) → `Tunnel` admits the
//! stream and spawns a task per stream (`stream.rs`) → each request goes through [`reply`] →
//! replies and pushes go back on the stream; everything seen is recorded (`observe.rs`).

mod conn;
mod observe;
pub mod reply;
mod stream;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use janus_proto::player::intra::v1::tunnel_service_server::TunnelServiceServer as PlayerTunnelServer;
use janus_proto::room::intra::v1::tunnel_service_server::TunnelServiceServer as RoomTunnelServer;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};
use tracing::{info, warn};

use self::conn::Connections;
use self::stream::{PlayerTunnel, RoomTunnel, ServeContext};

pub use self::observe::{
    DemoEvent, EVENT_CHANNEL_CAPACITY, HEADER_CLIENT_IP, HEADER_COLOR, HEADER_GATE_REFERER,
    HEADER_OID, HEADER_REFERER, HEADER_SID, HEADER_STATUS, HEADER_UID, Observed, RequestSeen,
    StreamClosed, StreamEnd, StreamMetadata, StreamOpened, StreamRejected, TunnelKind,
};
pub use self::reply::{
    BIG_PREFIX, DELAY_PREFIX, FAIL_STREAM, MAX_BIG_REPLY, MAX_DELAY_MS, PUSH_ME, PUSHED,
    TunnelMessage, big_payload,
};

/// Default of [`DemoConfig::observe_capacity`].
pub const DEFAULT_OBSERVE_CAPACITY: usize = 4096;

/// How the demo backend behaves.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Name in log lines, to tell several demo backends apart. Default `"demo"`.
    pub name: String,
    /// Period of the `PushSyncUser` push (mod 3, seq 2, obj = oid, index 0, data `tick <n>`) sent
    /// on every open stream, the first one a full period after the stream opens. Default `None`:
    /// no periodic pushes.
    pub push_interval: Option<Duration>,
    /// How many opened, rejected and closed streams and requests [`DemoBackend::observed`] keeps,
    /// per list, oldest dropped first; 0 keeps none. Default [`DEFAULT_OBSERVE_CAPACITY`]. Bounds
    /// the memory of a long-running demo backend.
    pub observe_capacity: usize,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised on each HTTP/2 connection (many servers
    /// and proxies say 100). Default `None`: the HTTP/2 library's own (unlimited).
    pub max_concurrent_streams: Option<u32>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            name: "demo".to_owned(),
            push_interval: None,
            observe_capacity: DEFAULT_OBSERVE_CAPACITY,
            max_concurrent_streams: None,
        }
    }
}

/// State shared by every clone of a [`DemoBackend`] and every stream it serves.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: DemoConfig,
    pub(crate) recorder: Arc<observe::Recorder>,
}

/// The demo backend. Cheap to clone: clones share the configuration, the open-stream count and
/// the record of what was seen, so a test can keep one clone and serve another.
#[derive(Clone, Debug)]
pub struct DemoBackend {
    shared: Arc<Shared>,
}

impl DemoBackend {
    /// A backend with this configuration; nothing runs until [`serve`](Self::serve) or
    /// [`spawn`](Self::spawn).
    #[must_use]
    pub fn new(config: DemoConfig) -> Self {
        let recorder = Arc::new(observe::Recorder::new(config.observe_capacity));
        Self {
            shared: Arc::new(Shared { config, recorder }),
        }
    }

    /// Serves both tunnel services on `listener` until `shutdown` resolves.
    ///
    /// On `shutdown` the backend stops accepting, pushes `SCServerLogout{Waiting}` on every open
    /// stream and ends it with OK (as roma does when its actors stop), then returns once every
    /// connection has closed.
    ///
    /// # Errors
    ///
    /// The tonic server's error, if it fails to serve.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        self.serve_tracked(listener, shutdown, Arc::default()).await
    }

    /// Spawns [`serve`](Self::serve) on `listener`; the handle stops it.
    ///
    /// # Errors
    ///
    /// When the listener's local address cannot be read.
    pub fn spawn(self, listener: TcpListener) -> std::io::Result<DemoHandle> {
        let addr = listener.local_addr()?;
        let connections = Arc::<Connections>::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = self.clone().serve_tracked(
            listener,
            async move {
                // Only an explicit stop (`stop()` or dropping the handle) is graceful; `kill()`
                // drops the sender without sending, and must not trigger the goodbye pushes.
                if stopped.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
            Arc::clone(&connections),
        );
        Ok(DemoHandle {
            addr,
            backend: self,
            stop: Some(stop),
            connections,
            task: Some(tokio::spawn(server)),
        })
    }

    /// Binds `127.0.0.1:0` and [`spawn`](Self::spawn)s the backend there: the usual test setup.
    ///
    /// # Errors
    ///
    /// When binding fails.
    pub async fn spawn_local(self) -> std::io::Result<DemoHandle> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        self.spawn(listener)
    }

    /// The configuration it runs with.
    #[must_use]
    pub fn config(&self) -> &DemoConfig {
        &self.shared.config
    }

    /// A snapshot of every stream opened, rejected and closed and every request received so far
    /// (the latest [`DemoConfig::observe_capacity`] of each).
    #[must_use]
    pub fn observed(&self) -> Observed {
        self.shared.recorder.snapshot()
    }

    /// Live events from now on; a receiver that falls more than [`EVENT_CHANNEL_CAPACITY`] events
    /// behind gets `Lagged`.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<DemoEvent> {
        self.shared.recorder.subscribe()
    }

    /// Streams open right now, over every server this backend runs.
    #[must_use]
    pub fn open_streams(&self) -> usize {
        self.shared.recorder.open_streams()
    }

    /// Waits until exactly `count` streams are open (wrap it in a timeout in tests).
    pub async fn wait_open_streams(&self, count: usize) {
        let mut open = self.shared.recorder.watch_open_streams();
        // The sender lives in `self.shared`, so the channel cannot close while we wait.
        let _ = open.wait_for(|open| *open == count).await;
    }

    async fn serve_tracked(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        connections: Arc<Connections>,
    ) -> Result<(), tonic::transport::Error> {
        let name = self.shared.config.name.clone();
        match listener.local_addr() {
            Ok(addr) => info!(backend = %name, %addr, "demo backend serving"),
            Err(error) => info!(backend = %name, %error, "demo backend serving (address unknown)"),
        }
        let (stop, stopping) = watch::channel(false);
        let context = ServeContext {
            shared: Arc::clone(&self.shared),
            stopping,
        };
        let signal = async move {
            shutdown.await;
            info!(backend = %name, "demo backend stopping");
            // Ends every open stream so tonic's graceful shutdown does not wait on them forever.
            let _ = stop.send(true);
        };
        let result = tonic::transport::Server::builder()
            .max_concurrent_streams(self.shared.config.max_concurrent_streams)
            .add_service(PlayerTunnelServer::new(PlayerTunnel(context.clone())))
            .add_service(RoomTunnelServer::new(RoomTunnel(context)))
            .serve_with_incoming_shutdown(conn::incoming(listener, connections), signal)
            .await;
        match &result {
            Ok(()) => info!(backend = %self.shared.config.name, "demo backend stopped"),
            Err(error) => warn!(backend = %self.shared.config.name, %error, "demo backend failed"),
        }
        result
    }
}

/// Why a spawned demo backend did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The tonic server failed.
    #[error("demo backend server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The server task panicked or was aborted.
    #[error("demo backend task ended abnormally: {0}")]
    Task(#[from] JoinError),
}

/// A running demo backend. Dropping it starts a graceful stop in the background.
#[derive(Debug)]
pub struct DemoHandle {
    addr: SocketAddr,
    backend: DemoBackend,
    stop: Option<oneshot::Sender<()>>,
    connections: Arc<Connections>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl DemoHandle {
    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, ready for `tonic::transport::Endpoint::from_shared`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The backend it serves (a clone shares its observations).
    #[must_use]
    pub fn backend(&self) -> &DemoBackend {
        &self.backend
    }

    /// Cuts every open connection at the socket (the gateway sees its streams fail, as when a
    /// backend crashes) but keeps accepting new ones, so the gateway can reconnect. Returns how
    /// many connections were cut.
    pub fn drop_connections(&self) -> usize {
        self.connections.reset_all()
    }

    /// HTTP/2 connections open to this backend now.
    pub fn open_connections(&self) -> usize {
        self.connections.count()
    }

    /// Stops gracefully: pushes `SCServerLogout{Waiting}` on and ends every open stream, and waits
    /// until the server has closed every connection.
    ///
    /// # Errors
    ///
    /// When the server failed or its task panicked.
    pub async fn stop(mut self) -> Result<(), DemoError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => Ok(task.await??),
            None => Ok(()),
        }
    }

    /// Dies abruptly: stops accepting and cuts every connection at the socket without ending any
    /// stream, like a backend process that crashed. The port is released.
    pub fn kill(mut self) {
        let _keep_until_aborted = self.stop.take();
        let cut = self.connections.kill();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        info!(backend = %self.backend.shared.config.name, connections = cut, "demo backend killed");
    }
}

impl Drop for DemoHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
