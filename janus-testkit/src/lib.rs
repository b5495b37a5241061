//! Test rig for the client SDKs (`janus-client`, `janus-ffi`, `janus-wasm`): a real gateway
//! (`janus_tokio::gateway::Gateway`, TCP and WebSocket listeners on free ports) in front of the
//! demo backend over real gRPC, fresh single-use tokens, the test-vector keys as raw bytes, and
//! the conformance scenario every binding runs ([`conformance`]).
//!
//! The SDK crates' own integration tests live here too (`tests/`), so that the SDK crates carry
//! no dev-dependency on the gateway (the blocking client's dependency tree stays free of tokio).

pub mod conformance;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use janus_core::{
    crypto::SigningKey,
    testing::{TEST_CLIENT_CERT_SEED, TEST_SERVER_CERT_SEED, TEST_TOKEN_KEY, test_server_config},
    token::TokenKey,
};
use janus_proto::gate::intra::v1::AuthToken;
use janus_tokio::{
    demo::{DemoBackend, DemoConfig, DemoHandle},
    gateway::{Gateway, GatewaySettings},
};

/// The WebSocket path the rig's gateway serves.
pub const WS_PATH: &str = "/ws";

/// The client certificate's Ed25519 seed of the test vectors (V3): what a game build embeds.
pub fn client_cert_seed() -> [u8; 32] {
    TEST_CLIENT_CERT_SEED
}

/// The server certificate's Ed25519 public key of the test vectors (V3).
pub fn server_cert_key() -> [u8; 32] {
    SigningKey::from_seed(&TEST_SERVER_CERT_SEED)
        .verifying_key()
        .to_bytes()
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A fresh token for `uid` (colour `local`), valid for ten minutes, as the account service
/// issues it: the gateway takes each token once.
pub fn token(uid: i64) -> String {
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let t = AuthToken {
        rand: format!("s{serial:07}"),
        color: "local".into(),
        account_id: uid,
        server_id: 1,
        timeout: janus_tokio::clock::now().unix_secs() + 600,
        status: 1,
        ..Default::default()
    };
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&serial.to_le_bytes());
    nonce[8..].copy_from_slice(&(uid as u32).to_le_bytes());
    match TokenKey::new(TEST_TOKEN_KEY) {
        Ok(key) => key.seal(&t, nonce),
        Err(_) => unreachable!("the test key is 32 bytes"),
    }
}

fn settings(
    backend: SocketAddr,
    tcp: SocketAddr,
    ws: SocketAddr,
    resume_window: Option<Duration>,
) -> GatewaySettings {
    let mut core = test_server_config(true);
    if let Some(window) = resume_window {
        core.resume_key = Some(janus_core::resume::ResumeKey::new(&[0x33; 32]));
        core.session.resume.window = window;
    }
    let mut s = GatewaySettings::local(Arc::new(core), &backend.to_string());
    s.tcp = Some(tcp);
    if let Some(w) = &mut s.ws {
        w.addr = ws;
        w.path = WS_PATH.into();
    }
    s.http = None;
    s.connect_timeout = Duration::from_secs(1);
    s
}

/// A demo backend and a gateway in front of it, on 127.0.0.1.
#[derive(Debug)]
pub struct Rig {
    pub demo: DemoHandle,
    gateway: Option<Gateway>,
    tcp: SocketAddr,
    ws: SocketAddr,
    resume_window: Option<Duration>,
}

impl Rig {
    /// Starts both on free ports.
    pub async fn start() -> anyhow::Result<Rig> {
        Self::start_with(None).await
    }

    /// [`start`](Self::start) with session resume granted, sessions kept for `window`.
    pub async fn start_resumable(window: Duration) -> anyhow::Result<Rig> {
        Self::start_with(Some(window)).await
    }

    async fn start_with(resume_window: Option<Duration>) -> anyhow::Result<Rig> {
        let demo = DemoBackend::new(DemoConfig::default())
            .spawn_local()
            .await?;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let gateway = Gateway::start(settings(demo.addr(), any, any, resume_window)).await?;
        let addrs = gateway.addrs();
        let (Some(tcp), Some(ws)) = (addrs.tcp, addrs.ws) else {
            anyhow::bail!("the gateway bound no client listener");
        };
        Ok(Rig {
            demo,
            gateway: Some(gateway),
            tcp,
            ws,
            resume_window,
        })
    }

    /// The TCP listener.
    pub fn tcp(&self) -> SocketAddr {
        self.tcp
    }

    /// The WebSocket listener's URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{WS_PATH}", self.ws)
    }

    /// Sessions authenticated and open at the gateway.
    pub fn sessions(&self) -> usize {
        self.gateway.as_ref().map_or(0, Gateway::sessions)
    }

    /// Shuts the gateway down (every client gets `SCServerLogout{Server}` and is closed), waits
    /// `down`, then starts a new one on the same ports.
    pub async fn restart_gateway(&mut self, down: Duration) -> anyhow::Result<()> {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        tokio::time::sleep(down).await;
        let settings = settings(self.demo.addr(), self.tcp, self.ws, self.resume_window);
        self.gateway = Some(Gateway::start(settings).await?);
        Ok(())
    }

    /// Shuts both down.
    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
    }
}

/// A [`Rig`] on its own tokio runtime, for tests that are not async themselves (the blocking
/// client, the C program, the browser).
#[derive(Debug)]
pub struct BackgroundRig {
    runtime: tokio::runtime::Runtime,
    rig: Option<Rig>,
}

impl BackgroundRig {
    /// Starts the rig on a two-thread runtime.
    pub fn start() -> anyhow::Result<BackgroundRig> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let rig = runtime.block_on(Rig::start())?;
        Ok(BackgroundRig {
            runtime,
            rig: Some(rig),
        })
    }

    /// The rig.
    pub fn rig(&self) -> &Rig {
        match &self.rig {
            Some(rig) => rig,
            None => unreachable!("the rig lives until drop"),
        }
    }

    /// See [`Rig::restart_gateway`].
    pub fn restart_gateway(&mut self, down: Duration) -> anyhow::Result<()> {
        match &mut self.rig {
            Some(rig) => self.runtime.block_on(rig.restart_gateway(down)),
            None => Ok(()),
        }
    }

    /// Runs `f` on the rig's runtime (e.g. spawning a helper server).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

impl Drop for BackgroundRig {
    fn drop(&mut self) {
        if let Some(rig) = self.rig.take() {
            self.runtime.block_on(rig.stop());
        }
    }
}

/// A TCP proxy in front of an address whose connections can be cut at once, as a phone's
/// network change cuts them: no logout, no close handshake, just a dead socket.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<CutProxy> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                    // Both sockets drop here: the client sees its connection end.
                });
            }
        });
        Ok(CutProxy { addr, cut, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection open now; later ones are forwarded again.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
