//! HTTP/2 stream limits (issue 13): every tunnel is one gRPC stream, and a backend that allows
//! 100 streams per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`, as many servers and proxies
//! do) must still serve every player: the gateway's pool opens connections as the streams grow,
//! never puts more on one than advertised, and refuses a tunnel at once (SCServerUnexpectedErr,
//! counted as saturated) when the pool is at its maximum, instead of queueing it silently.
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::{Answer, TestClient};
use janus_core::limit::AdmissionConfig;
use janus_tokio::{
    demo::{DemoBackend, DemoConfig, DemoHandle},
    gateway::{Gateway, GatewaySettings, settings::PoolConfig},
};

/// What the backend allows per HTTP/2 connection.
const LIMIT: u32 = 100;

/// Raises this process's open-file limit to its hard limit; returns the soft limit now in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack value of the right type.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

async fn limited_backend() -> DemoHandle {
    DemoBackend::new(DemoConfig {
        max_concurrent_streams: Some(LIMIT),
        ..DemoConfig::default()
    })
    .spawn_local()
    .await
    .unwrap()
}

/// One gateway in front of `backend`, admitting everyone from 127.0.0.1 at once.
async fn gateway(backend: &DemoHandle, pool: PoolConfig) -> Gateway {
    let mut s: GatewaySettings = common::settings(backend.addr());
    s.pool = pool;
    s.admission = AdmissionConfig {
        max_connections: 100_000,
        max_connections_per_address: 100_000,
        max_handshakes: 4096,
        max_handshakes_per_address: 4096,
        connection_rate: None,
        ..AdmissionConfig::default()
    };
    Gateway::start(s).await.unwrap()
}

/// Logs `count` players in (uids from `first`), 50 handshakes at a time.
async fn players(gw: &Gateway, first: i64, count: i64) -> Vec<TestClient> {
    let tcp = gw.addrs().tcp.unwrap();
    let mut out = Vec::new();
    let uids: Vec<i64> = (first..first + count).collect();
    for batch in uids.chunks(50) {
        let joined =
            futures_util::future::join_all(batch.iter().map(|&uid| TestClient::tcp(tcp, uid)))
                .await;
        out.extend(joined);
    }
    out
}

/// Each player sends one echo (opening its tunnel, so its gRPC stream) and gets its answer;
/// the streams stay open while the clients live. Runs the players concurrently.
async fn echo_all(clients: Vec<TestClient>) -> Vec<(TestClient, Answer)> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let index = c.send(3, 1, 0, b"hello").await;
                let answer = c.answer(index).await;
                (c, answer)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// `GET /admin/backends` → the pool of the one backend: (connections, streams, limit).
async fn pool_status(gw: &Gateway) -> (u64, u64, Option<u64>) {
    let (status, body) =
        common::http(gw.addrs().http.unwrap(), "GET", "/admin/backends", None).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let backends = json
        .as_array()
        .or_else(|| json["backends"].as_array())
        .unwrap();
    let pool = &backends[0]["pool"];
    (
        pool["connections"].as_u64().unwrap(),
        pool["streams"].as_u64().unwrap(),
        pool["advertised_limit"].as_u64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_limited_to_100_streams_per_connection_serves_1000_players() {
    assert!(raise_fd_limit() >= 4096, "this test needs 4096 open files");
    let backend = limited_backend().await;
    let gw = gateway(&backend, PoolConfig::default()).await;

    let started = Instant::now();
    let clients = players(&gw, 100_000, 1000).await;
    let answered = echo_all(clients).await;
    eprintln!(
        "1000 players logged in and echoed in {:?}",
        started.elapsed()
    );
    let mut kept = Vec::new();
    for (c, answer) in answered {
        assert_eq!(answer.data(), Some(&b"hello"[..]), "{answer:?}");
        kept.push(c);
    }

    // Every player holds its own stream, on connections of at most 100 streams each.
    tokio::time::timeout(common::WAIT, backend.backend().wait_open_streams(1000))
        .await
        .expect("1000 open streams");
    let (connections, streams, limit) = pool_status(&gw).await;
    assert_eq!((streams, limit), (1000, Some(u64::from(LIMIT))));
    assert!(
        (10..=12).contains(&connections),
        "{connections} connections for 1000 streams of at most {LIMIT}"
    );
    assert_eq!(backend.open_connections() as u64, connections);
    let metrics = gw.metrics().render();
    assert!(
        !metrics.contains("stage=\"saturated\"} 1"),
        "no tunnel refused:\n{metrics}"
    );

    // The players leave: the overflow connections close again.
    drop(kept);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (connections, streams, _) = pool_status(&gw).await;
        if streams == 0 && connections == PoolConfig::default().min_connections as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{connections} connections, {streams} streams after everyone left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_refuses_the_tunnel_at_once_and_counts_it() {
    assert!(raise_fd_limit() >= 1024);
    let backend = limited_backend().await;
    let gw = gateway(
        &backend,
        PoolConfig {
            min_connections: 1,
            max_connections: 2,
        },
    )
    .await;

    // Two connections of 100 streams: 200 players are served.
    let served = echo_all(players(&gw, 200_000, 200).await).await;
    let mut kept = Vec::new();
    for (c, answer) in served {
        assert_eq!(answer.data(), Some(&b"hello"[..]), "{answer:?}");
        kept.push(c);
    }

    // The 201st is refused at once, not queued behind the others.
    let mut late = players(&gw, 300_000, 1).await.pop().unwrap();
    let started = Instant::now();
    let index = late.send(3, 1, 0, b"hello").await;
    let answer = late.answer(index).await;
    let took = started.elapsed();
    let Answer::Failed {
        module,
        seq,
        message,
    } = answer
    else {
        panic!("an SCServerUnexpectedErr answer, got {answer:?}");
    };
    assert_eq!((module, seq), (3, 1), "{message}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    let metrics = gw.metrics().render();
    assert!(
        metrics.contains(&format!(
            "janus_tunnel_failures_total{{kind=\"player\",backend=\"{}\",stage=\"saturated\"}} 1",
            backend.addr()
        )),
        "{metrics}"
    );
    assert_eq!(backend.backend().open_streams(), 200);

    // When a player leaves, its stream's place serves the next request of the refused one.
    let leaving = kept.pop().unwrap();
    drop(leaving);
    tokio::time::timeout(common::WAIT, backend.backend().wait_open_streams(199))
        .await
        .expect("199 open streams");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let index = late.send(3, 1, 0, b"again").await;
        match late.answer(index).await {
            Answer::Reply(p) => {
                assert_eq!(&p.data[..], b"again");
                break;
            }
            other => assert!(Instant::now() < deadline, "still refused: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
