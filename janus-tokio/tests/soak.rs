//! Soak: the `janus` binary (a real process, so its memory and descriptors are its own) under
//! connection churn, steady echo traffic, pushes and broadcasts, with its backend process killed
//! with SIGKILL and restarted twice (a quarter and five eighths into the run). Checked at the end:
//!
//! - resident memory after the warm-up (the first three eighths) drifts by less than 5 % to the end
//!   (tokens live half the warm-up, so the replay cache, which keeps each token until it
//!   expires, is at its steady size by then);
//! - once every client has gone, open sessions and the gateway's file descriptors are back to
//!   their baseline (taken after a first client warmed the backend channel and left);
//! - every steady client kept its session throughout and received every push addressed to it and
//!   every broadcast exactly once; every request was answered (a reply, or `SCServerUnexpectedErr`
//!   while the backend was down).
//!
//! The test command runs a short version (`SOAK_SECONDS`, default 30). The documented long run:
//!
//! ```text
//! SOAK_SECONDS=600 cargo test --release -p janus-tokio --test soak -- --nocapture
//! ```
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss
)]

mod common;

use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::TestClient;
use janus_core::client::{ClientConfig, ClientEvent};
use janus_core::handshake::ClientKeys;
use janus_proto::broadcaster::service::push::v1::{
    BroadcastRequest, PushBody, PushRequest, push_service_client::PushServiceClient,
};
use janus_tokio::config::{Config, load_client_signing_key};

const JANUS: &str = env!("CARGO_BIN_EXE_janus");
const DEMO: &str = env!("CARGO_BIN_EXE_janus-demo-backend");
/// Clients connected for the whole run, each with one request in flight at a time.
const STEADY: i64 = 100;
/// Tasks that connect, echo once and disconnect, in a loop.
const CHURNERS: usize = 16;
/// Distinct players each churn task cycles through.
const CHURN_PLAYERS: i64 = 500;
const PUSH_EVERY: Duration = Duration::from_millis(10);
const BROADCAST_EVERY: Duration = Duration::from_millis(500);
const PUSH_DATA: &[u8] = b"soak-push";
const BROADCAST_DATA: &[u8] = b"soak-broadcast";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_backend(addr: SocketAddr) -> Running {
    Running(
        Command::new(DEMO)
            .args(["--addr", &addr.to_string(), "--name", "soak"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_for(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The gateway's ports.
struct Ports {
    tcp: SocketAddr,
    http: SocketAddr,
    grpc: SocketAddr,
}

/// configs/local.yaml on free ports, without the in-process demo backend, its backends pointing
/// at the external one.
fn write_config(dir: &Path, backend: SocketAddr) -> (PathBuf, Ports) {
    let local = std::fs::read_to_string(repo_file("configs/local.yaml")).unwrap();
    let demo = "demo:\n  addr: 127.0.0.1:17102\n  push_interval: 10s\n";
    assert!(
        local.contains(demo),
        "configs/local.yaml changed its demo block"
    );
    let mut text = local.replace(demo, "");
    let ports = Ports {
        tcp: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        http: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        grpc: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    };
    for (old, new) in [
        ("127.0.0.1:7001", ports.tcp.to_string()),
        ("127.0.0.1:7002", format!("127.0.0.1:{}", free_port())),
        ("127.0.0.1:8100", ports.http.to_string()),
        ("127.0.0.1:9100", ports.grpc.to_string()),
        ("127.0.0.1:17102", backend.to_string()),
    ] {
        text = text.replace(old, &new);
    }
    // The breaker re-probes a failed backend after 1 s (default 10 s), so service comes back
    // well inside a short run.
    text.push_str("\nroutes:\n  breaker:\n    cool_down: 1s\n");
    let path = dir.join("soak.yaml");
    std::fs::write(&path, text).unwrap();
    (path, ports)
}

/// Client configurations for the dev keys the config uses, each with a fresh token.
struct Tokens {
    keys: ClientKeys,
    /// Token lifetime: the gateway remembers each token until it expires (replay protection), so
    /// that memory reaches its steady size one lifetime into the run.
    lifetime: Duration,
    token_key: janus_core::token::TokenKey,
    serial: AtomicU64,
}

impl Tokens {
    fn config(&self, uid: i64) -> ClientConfig {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let token = janus_proto::gate::intra::v1::AuthToken {
            rand: format!("soak{serial:012}"),
            color: "local".into(),
            account_id: uid,
            server_id: 1,
            timeout: common::now().unix_secs() + self.lifetime.as_secs() as i64,
            status: 1,
            ..Default::default()
        };
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&serial.to_le_bytes());
        let mut config =
            ClientConfig::new(Some(self.keys.clone()), self.token_key.seal(&token, nonce));
        config.heartbeat_interval = None;
        config
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The gateway's TCP sockets (`ss`), for a failure message.
fn sockets(pid: u32) -> String {
    let out = Command::new("ss")
        .args(["-tanp"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn sessions_open(http: SocketAddr) -> i64 {
    let (status, body) = common::http(http, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("janus_sessions_open "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no janus_sessions_open in\n{body}"))
}

#[derive(Default)]
struct Counts {
    replies: AtomicU64,
    failed: AtomicU64,
    churn_cycles: AtomicU64,
}

/// One steady client: echo after echo until `stop`, counting the pushes and broadcasts that
/// arrive in between; then one last echo, whose reply comes after every push sent before it.
async fn steady(mut c: TestClient, stop: Arc<AtomicBool>, counts: Arc<Counts>) -> (i64, u64, u64) {
    let (mut pushes, mut broadcasts) = (0u64, 0u64);
    let mut last = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            last = true;
        }
        let index = c.send(3, 1, 0, b"soak-echo").await;
        loop {
            match c.next_event().await {
                Some(ClientEvent::Packet(p)) if p.index == index => {
                    assert_eq!(&p.data[..], b"soak-echo");
                    counts.replies.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(ClientEvent::Packet(p)) if p.data == PUSH_DATA => pushes += 1,
                Some(ClientEvent::Packet(p)) if p.data == BROADCAST_DATA => broadcasts += 1,
                Some(ClientEvent::RequestFailed { index: i, .. }) if i == index => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(ClientEvent::Packet(_) | ClientEvent::Heartbeat { .. }) => {}
                other => panic!(
                    "steady client {} lost its session or its answer: {other:?}",
                    c.uid
                ),
            }
        }
        if last {
            return (c.uid, pushes, broadcasts);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn churn(
    tcp: SocketAddr,
    tokens: Arc<Tokens>,
    first_uid: i64,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut uid = first_uid;
    while !stop.load(Ordering::Relaxed) {
        let mut c = TestClient::tcp_with(tcp, uid, tokens.config(uid)).await;
        let index = c.send(3, 1, 0, b"churn").await;
        match c.answer(index).await {
            common::Answer::Reply(p) => assert_eq!(&p.data[..], b"churn"),
            common::Answer::Failed { .. } => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        counts.churn_cycles.fetch_add(1, Ordering::Relaxed);
        drop(c);
        // The same players come back (a population of CHURN_PLAYERS per task), as in a game:
        // the route tables keep each player's placement for its TTL (10 minutes), so endless
        // new uids would grow them for 10 minutes by design.
        uid = first_uid + (uid - first_uid + 1) % CHURN_PLAYERS;
    }
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_pushes_and_a_backend_restart_leave_memory_and_descriptors_flat() {
    raise_fd_limit();
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let run = Duration::from_secs(seconds.max(16));
    // The warm-up ends a while after the first backend restart.
    let warm_up = run * 3 / 8;

    let dir = tempfile::tempdir().unwrap();
    let backend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut backend_process = start_backend(backend);
    wait_for(backend, "the demo backend");
    let (config_path, ports) = write_config(dir.path(), backend);
    let gateway = Running(
        Command::new(JANUS)
            .arg("--config")
            .arg(&config_path)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = gateway.0.id();
    wait_for(ports.tcp, "the gateway");
    wait_for(ports.http, "the gateway's admin port");

    let config = Config::load(&config_path).unwrap();
    let tokens = Arc::new(Tokens {
        keys: ClientKeys {
            client_cert: load_client_signing_key(
                &std::fs::read_to_string(repo_file("configs/dev/client.key.pem")).unwrap(),
            )
            .unwrap(),
            server_cert: Some(config.server_verifying_key().unwrap()),
        },
        token_key: config.token_key().unwrap(),
        // Half the warm-up (at least 3 s): the replay cache is at its steady size before the
        // warm-up sample. Real tokens live 10 minutes, and the cache grows (bounded by
        // `limits.replay_cache`) for that long.
        lifetime: (warm_up / 2).max(Duration::from_secs(3)),
        serial: AtomicU64::new(1),
    });

    // Baseline: after a few clients have opened the backend channels (a pool of 4 per backend)
    // and left.
    let first: Vec<_> = (1..=8)
        .map(|uid| {
            let tokens = tokens.clone();
            tokio::spawn(async move {
                let mut c = TestClient::tcp_with(ports.tcp, uid, tokens.config(uid)).await;
                let index = c.send(3, 1, 0, b"first").await;
                c.reply(index).await;
            })
        })
        .collect();
    for t in first {
        t.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions_open(ports.http).await != 0 {
        assert!(Instant::now() < deadline, "the first session did not close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_fds = open_fds(pid);
    let baseline_sockets = sockets(pid);
    let baseline_rss = rss_bytes(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut steady_tasks = Vec::new();
    for uid in 10_000..10_000 + STEADY {
        let c = TestClient::tcp_with(ports.tcp, uid, tokens.config(uid)).await;
        steady_tasks.push(tokio::spawn(steady(c, stop.clone(), counts.clone())));
    }
    let churn_tasks: Vec<_> = (0..CHURNERS)
        .map(|i| {
            tokio::spawn(churn(
                ports.tcp,
                tokens.clone(),
                1_000_000 * (i as i64 + 1),
                stop.clone(),
                counts.clone(),
            ))
        })
        .collect();

    // Pushes to one steady uid after another, and broadcasts to everyone.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", ports.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let pusher = {
        let stop = stop.clone();
        let mut grpc = PushServiceClient::new(channel);
        tokio::spawn(async move {
            let body = |data: &'static [u8]| PushBody {
                data: Bytes::from_static(data),
                r#mod: 3,
                seq: 9,
                ..Default::default()
            };
            let mut sent: HashMap<i64, u64> = HashMap::new();
            let mut broadcasts = 0u64;
            let mut next_broadcast = Instant::now();
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let uid = 10_000 + n % STEADY;
                n += 1;
                let pushed = grpc
                    .push(PushRequest {
                        bodies: vec![body(PUSH_DATA)],
                        color: "local".into(),
                        sid: 1,
                        uid,
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .pushed;
                assert!(pushed, "a push to connected uid {uid} was not delivered");
                *sent.entry(uid).or_default() += 1;
                if Instant::now() >= next_broadcast {
                    grpc.broadcast(BroadcastRequest {
                        bodies: vec![body(BROADCAST_DATA)],
                        color: "local".into(),
                        sid: 1,
                    })
                    .await
                    .unwrap();
                    broadcasts += 1;
                    next_broadcast += BROADCAST_EVERY;
                }
                tokio::time::sleep(PUSH_EVERY).await;
            }
            (sent, broadcasts)
        })
    };

    // Sample memory once a second; kill and restart the backend twice: once inside the warm-up
    // (its reconnect costs a one-off step of memory), once inside the measured window (a leak
    // per restart would show as a second step).
    let started = Instant::now();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut restarts = [run / 4, run * 5 / 8].into_iter().peekable();
    let mut replies_at_restart = 0;
    while started.elapsed() < run {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((started.elapsed(), rss_bytes(pid)));
        if restarts.next_if(|at| started.elapsed() >= *at).is_some() {
            backend_process.0.kill().unwrap();
            backend_process.0.wait().unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            backend_process = start_backend(backend);
            wait_for(backend, "the restarted demo backend");
            replies_at_restart = counts.replies.load(Ordering::Relaxed);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, broadcasts) = pusher.await.unwrap();
    for t in churn_tasks {
        t.await.unwrap();
    }
    let mut received = Vec::new();
    for t in steady_tasks {
        received.push(t.await.unwrap());
    }
    for (uid, pushes, got_broadcasts) in received {
        assert_eq!(
            pushes,
            sent.get(&uid).copied().unwrap_or(0),
            "uid {uid}: pushes received vs sent"
        );
        assert_eq!(got_broadcasts, broadcasts, "uid {uid}: broadcasts");
    }

    // Every client has gone: sessions and descriptors come back to the baseline.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut sessions, mut fds) = (sessions_open(ports.http).await, open_fds(pid));
    while (sessions != 0 || fds > baseline_fds) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sessions = sessions_open(ports.http).await;
        fds = open_fds(pid);
    }

    // Drift: the median of three samples at the end of the warm-up against the last three.
    let median3 = |s: &[(Duration, u64)]| {
        let mut v: Vec<u64> = s.iter().map(|(_, r)| *r).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let at = samples
        .iter()
        .position(|(t, _)| *t >= warm_up)
        .unwrap()
        .max(1);
    let warm = median3(&samples[at - 1..(at + 2).min(samples.len())]);
    let end = median3(&samples[samples.len() - 3..]);
    let drift = (end as f64 - warm as f64) / warm as f64;
    let replies = counts.replies.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let cycles = counts.churn_cycles.load(Ordering::Relaxed);
    let pushes: u64 = sent.values().sum();
    eprintln!(
        "soak {}s: {cycles} connect-echo-close cycles, {replies} echo replies, {failed} requests \
         answered SCServerUnexpectedErr (backend down), {pushes} pushes, {broadcasts} broadcasts \
         x {STEADY}; RSS baseline {} KiB, after warm-up {} KiB, end {} KiB (drift {:+.2} %); \
         fds {baseline_fds} -> {fds}; sessions -> {sessions}",
        run.as_secs(),
        baseline_rss / 1024,
        warm / 1024,
        end / 1024,
        drift * 100.0,
    );
    eprintln!(
        "soak RSS samples (s: KiB): {}",
        samples
            .iter()
            .map(|(t, r)| format!("{}: {}", t.as_secs(), r / 1024))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(sessions, 0, "sessions left open after every client went");
    assert!(
        fds <= baseline_fds,
        "file descriptors: {fds} after the run, {baseline_fds} before\nsockets before:\n{baseline_sockets}\nafter:\n{}",
        sockets(pid)
    );
    assert!(cycles > 0 && replies > 0);
    assert!(
        replies > replies_at_restart,
        "service came back after the backend restart"
    );
    assert!(
        drift < 0.05,
        "resident memory drifted {:+.2} % after the warm-up: {samples:?}",
        drift * 100.0
    );
}
