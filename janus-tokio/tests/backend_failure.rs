//! A backend process killed under load, with real sockets and a real process: every request in
//! flight is answered, no client hangs, and service comes back when the backend does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Answer, TestClient, settings};
use janus_core::route::BreakerConfig;
use janus_tokio::gateway::Gateway;

const DEMO: &str = env!("CARGO_BIN_EXE_janus-demo-backend");
const SESSIONS: usize = 1_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the demo backend process on `addr` and waits until it accepts connections.
async fn start_backend(addr: SocketAddr) -> Child {
    let child = Command::new(DEMO)
        .args(["--addr", &addr.to_string(), "--name", "victim"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the backend did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_with_sigkill_answers_every_pending_request_and_service_returns() {
    let backend: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut process = start_backend(backend).await;
    let mut s = settings(backend);
    // Every client comes from 127.0.0.1 here: lift the per-address limits a public gateway has.
    s.admission.max_handshakes_per_address = u32::MAX;
    s.admission.connection_rate = None;
    // A short breaker cool-down keeps the test short; the default re-probes after 10 s.
    s.breaker = BreakerConfig {
        cool_down: Duration::from_millis(300),
        ..BreakerConfig::default()
    };
    let gateway = Gateway::start(s).await.unwrap();
    let tcp = gateway.addrs().tcp.unwrap();

    // 1,000 sessions with their tunnels open...
    let mut clients = Vec::with_capacity(SESSIONS);
    for chunk in 0..SESSIONS / 50 {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let uid = 200_000 + (chunk * 50 + i) as i64;
                tokio::spawn(async move {
                    let mut c = TestClient::tcp(tcp, uid).await;
                    // An echo first, so the tunnel is open before the slow request.
                    let warm = c.send(3, 1, 0, b"warm").await;
                    c.reply(warm).await;
                    c
                })
            })
            .collect();
        for task in batch {
            clients.push(task.await.unwrap());
        }
    }
    assert_eq!(gateway.sessions(), SESSIONS);
    // ...then each with a request the backend holds (a slow actor) when it dies.
    let mut pending = Vec::with_capacity(SESSIONS);
    for mut c in clients {
        let index = c.send(3, 1, 0, b"delay:60000").await;
        pending.push((c, index));
    }
    let clients = pending;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGKILL: no goodbye on any stream.
    process.kill().unwrap();
    let _ = process.wait();
    let killed = Instant::now();

    // Every pending request is answered with an error, promptly; every session stays up.
    let answers: Vec<_> = clients
        .into_iter()
        .map(|(mut c, pending)| {
            tokio::spawn(async move {
                let answer = c.answer(pending).await;
                (c, answer)
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(SESSIONS);
    for task in answers {
        let (c, answer) = task.await.unwrap();
        match answer {
            Answer::Failed { message, .. } => assert_eq!(message, "backend unavailable"),
            Answer::Reply(p) => panic!("a reply from a dead backend: {p:?}"),
        }
        clients.push(c);
    }
    let answered_in = killed.elapsed();
    assert_eq!(gateway.sessions(), SESSIONS, "no session was lost");

    // The backend comes back on the same address: every client is served again.
    let restarted = start_backend(backend).await;
    let back: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let index = c.send(3, 1, 0, b"again").await;
                    match c.answer(index).await {
                        Answer::Reply(p) if &p.data[..] == b"again" => return,
                        _ if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => panic!("not served after the restart: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for task in back {
        task.await.unwrap();
    }
    eprintln!(
        "{SESSIONS} sessions: every pending request answered within {answered_in:?} of the kill; all served again after the restart"
    );
    let mut restarted = restarted;
    let _ = restarted.kill();
    let _ = restarted.wait();
    gateway.shutdown().await;
}
