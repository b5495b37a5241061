//! Operating the gateway: every metric family moves with traffic, the Grafana dashboard only
//! names metrics that exist, the admin API (and its token), the spread-out drain, hot reload
//! and the PROXY protocol, over real sockets with the demo backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use common::{Rig, TestClient, WAIT, http, quiet_config, token};
use janus_core::{
    client::ClientEvent,
    limit::RateLimit,
    proxy::encode_v2,
    testing::{test_client_config, test_server_config},
};
use janus_proto::{
    broadcaster::service::push::v1::{
        PushBody, PushRequest, push_service_client::PushServiceClient,
    },
    message::sc_server_logout::Code as LogoutCode,
};
use janus_tokio::{
    demo::FAIL_STREAM,
    gateway::{
        ConfigSource, Gateway, GatewaySettings,
        metrics::{Histogram, Metrics},
    },
};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

/// Family name → its samples (`name{labels}` → value), from a Prometheus text exposition.
fn families(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut family = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap().to_owned();
            out.entry(family.clone()).or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let (key, value) = line.rsplit_once(' ').unwrap();
            out.get_mut(&family)
                .unwrap()
                .insert(key.to_owned(), value.to_owned());
        }
    }
    out
}

async fn scrape(rig: &Rig) -> String {
    let (status, body) = http(rig.gateway.addrs().http.unwrap(), "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    body
}

/// Families that describe the process rather than count events.
const CONSTANT: [&str; 5] = [
    "janus_build_info",
    "janus_config_info",
    "janus_config_restart_pending",
    "process_resident_memory_bytes",
    // Back at 0 once the session resumed: checked while it is parked.
    "janus_sessions_parked",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_family_moves_when_its_event_happens() {
    let rig = Rig::start_with(|s| {
        let mut core = test_server_config(true);
        core.session.rate_limit = Some(RateLimit {
            per_second: 1,
            burst: 20,
        });
        core.resume_key = Some(janus_core::resume::ResumeKey::new(&[9; 32]));
        s.core = Arc::new(core);
    })
    .await;
    let before = families(&scrape(&rig).await);

    // A session resumed after its connection dropped, and its ticket presented again.
    let mut config = quiet_config(token(71_005, "local"));
    config.resume = true;
    let mut resumable = TestClient::tcp_with(rig.tcp(), 71_005, config.clone()).await;
    let previous = resumable.session.take_resume().unwrap();
    drop(resumable);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(scrape(&rig).await.contains("janus_sessions_parked 1"));
    for (attempt, expected) in [(previous.clone(), true), (previous, false)] {
        let stream = TcpStream::connect(rig.tcp()).await.unwrap();
        let local = stream.local_addr().unwrap();
        config.token = String::new();
        let session =
            janus_core::client::ClientSession::resume(&config, common::now(), [3; 32], attempt);
        let mut c = TestClient::started(common::Wire::Tcp(stream), local, 71_005, session).await;
        let resumed = matches!(
            c.next_event().await,
            Some(janus_core::client::ClientEvent::Resumed { .. })
        );
        assert_eq!(resumed, expected);
    }
    let http_addr = rig.gateway.addrs().http.unwrap();

    // Sessions over both listeners, echo (latency, packets, bytes, tunnels).
    let mut tcp = TestClient::tcp(rig.tcp(), 71_001).await;
    let ws_url = format!("ws://{}/ws", rig.gateway.addrs().ws.unwrap());
    let mut ws = TestClient::ws(&ws_url, 71_002).await;
    for c in [&mut tcp, &mut ws] {
        let index = c.send(3, 1, 0, b"echo").await;
        c.reply(index).await;
    }
    // A failed tunnel stream.
    let index = tcp.send(3, 1, 0, FAIL_STREAM).await;
    let _ = tcp.answer(index).await;
    // A refused WebSocket upgrade and a malformed handshake.
    let bad = format!("ws://{}/nope", rig.gateway.addrs().ws.unwrap());
    assert!(
        tokio_tungstenite::connect_async(bad.as_str())
            .await
            .is_err()
    );
    let mut raw = TcpStream::connect(rig.tcp()).await.unwrap();
    raw.write_all(&[0, 0, 0, 0]).await.unwrap();
    // Silent connections from one address fill a handshake pool of 4: the next evicts one.
    rig.gateway
        .set_admission_for_test(janus_core::limit::AdmissionConfig {
            max_handshakes: 4,
            connection_rate: None,
            ..Default::default()
        });
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(rig.tcp()).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(silent);
    rig.gateway.set_admission_for_test(Default::default());
    // A second login of one uid (a kick) and a client over its rate limit.
    let _first = TestClient::tcp(rig.tcp(), 71_003).await;
    let _second = TestClient::tcp(rig.tcp(), 71_003).await;
    let mut flood = TestClient::tcp(rig.tcp(), 71_004).await;
    for seq in 0..30 {
        let out = janus_core::client::Outgoing {
            module: 3,
            seq,
            data: bytes::Bytes::from_static(b"x"),
            ..Default::default()
        };
        flood.session.send(common::now(), out).unwrap();
    }
    // One write: the gateway closes the connection in the middle of these.
    flood.flush().await;
    let (closed, _, _) = flood.closed_after().await;
    assert!(closed, "over the rate limit");
    // A push, refused admin calls, a reload without a file.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", rig.gateway.addrs().grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut push = PushServiceClient::new(channel);
    push.push(PushRequest {
        uid: 71_001,
        color: "local".into(),
        sid: 1,
        bodies: vec![PushBody {
            r#mod: 3,
            seq: 9,
            obj: 71_001,
            data: bytes::Bytes::from_static(b"pushed"),
            data_version: 0,
        }],
    })
    .await
    .unwrap();
    assert_eq!(http(http_addr, "POST", "/admin/drain", None).await.0, 403);
    assert!(rig.gateway.reload().await.is_err());
    // Wait for the gateway to have counted the closes, then drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.gateway.start_drain();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let text = scrape(&rig).await;
    let after = families(&text);
    let mut still = Vec::new();
    for (family, samples) in &after {
        if CONSTANT.contains(&family.as_str()) {
            continue;
        }
        if before.get(family) == Some(samples) {
            still.push(family.clone());
        }
    }
    assert!(
        still.is_empty(),
        "families that did not move: {still:?}\n{text}"
    );
    for expected in [
        "janus_handshakes_total{result=\"malformed_frame\"} 1",
        "janus_admission_refusals_total{cause=\"ws_path\"} 1",
        "janus_kicks_total{reason=\"conflicting_login\"} 1",
        "janus_drops_total{cause=\"rate_limited\"} 1",
        "janus_pushes_total{kind=\"push\",outcome=\"delivered\"} 1",
        "janus_admin_refusals_total{cause=\"no_token_configured\"} 1",
        "janus_config_reloads_total{result=\"rejected\"} 1",
        "janus_draining 1",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    let failures = &after["janus_tunnel_failures_total"];
    assert!(
        failures
            .iter()
            .any(|(k, v)| k.contains("stage=\"stream\"") && v == "1"),
        "{failures:?}"
    );
    let latency = &after["janus_backend_latency_seconds"];
    let count: u64 = latency
        .iter()
        .find(|(k, _)| k.starts_with("janus_backend_latency_seconds_count{kind=\"player\""))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    assert!(count >= 2, "{latency:?}");
}

/// Every metric name in a PromQL expression: identifiers starting with `janus_` or `process_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if (word.starts_with("janus_") || word.starts_with("process_")) && !word.ends_with('_')
            {
                out.insert(word.clone());
            }
            word.clear();
        }
    }
    out
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_names_only_exported_metrics() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/grafana/janus.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    assert!(found.len() >= 10, "{found:?}");
    // Every family /metrics can show: a gateway in cluster mode that has carried traffic.
    let metrics = Metrics::default();
    metrics
        .redis_configured
        .store(true, std::sync::atomic::Ordering::Relaxed);
    metrics
        .etcd
        .configured
        .store(true, std::sync::atomic::Ordering::Relaxed);
    metrics.backend("player", "10.0.0.1:9000").opened();
    metrics.latency("player").observe(Duration::from_millis(1));
    let _: &Histogram = &metrics.latency("player");
    let exported: BTreeSet<String> = families(&metrics.render()).into_keys().collect();
    let mut used = BTreeSet::new();
    for expr in &found {
        for name in metric_names(expr) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| exported.contains(*base))
                })
                .unwrap_or(&name)
                .to_owned();
            assert!(
                exported.contains(&family),
                "the dashboard uses {name}, which /metrics does not export ({expr})"
            );
            used.insert(family);
        }
    }
    let unused: Vec<_> = exported
        .iter()
        .filter(|f| !used.contains(*f) && f.as_str() != "janus_build_info")
        .collect();
    assert!(unused.len() <= 3, "families without a panel: {unused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_a_request_without_the_token_and_serves_one_with_it() {
    let rig = Rig::start_with(|s| s.ops.admin_token = "s3cret".into()).await;
    let admin = rig.gateway.addrs().http.unwrap();
    let mut c = TestClient::tcp(rig.tcp(), 72_001).await;
    let index = c.send(3, 1, 0, b"hello").await;
    c.reply(index).await;

    for (method, path) in [
        ("POST", "/admin/drain"),
        ("POST", "/admin/reload"),
        ("POST", "/admin/sessions/72001/kick"),
        ("GET", "/admin/sessions/72001"),
        ("GET", "/admin/backends"),
    ] {
        assert_eq!(http(admin, method, path, None).await.0, 401, "{path}");
    }
    assert_eq!(
        http(admin, "POST", "/admin/drain", Some("guess")).await.0,
        401
    );
    let (_, metrics) = http(admin, "GET", "/metrics", None).await;
    assert!(metrics.contains("janus_admin_refusals_total{cause=\"missing_token\"} 5"));
    assert!(metrics.contains("janus_admin_refusals_total{cause=\"bad_token\"} 1"));
    assert_eq!(
        http(admin, "GET", "/readyz", None).await.0,
        200,
        "not drained"
    );

    let (status, body) = http(admin, "GET", "/admin/sessions/72001", Some("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(found["location"], "here");
    assert_eq!(found["session"]["peer"], c.local.to_string());
    assert_eq!(found["session"]["listener"], "tcp");
    assert_eq!(
        found["session"]["tunnels"][0]["backend"],
        rig.demo.addr().to_string()
    );
    assert!(found["session"]["bytes_in"].as_u64().unwrap() > 0);
    let (status, _) = http(admin, "GET", "/admin/sessions/99", Some("s3cret")).await;
    assert_eq!(status, 404);
    let (status, body) = http(admin, "GET", "/admin/backends", Some("s3cret")).await;
    assert_eq!(status, 200);
    let backends: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        backends
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "player" && b["breaker"] == "closed" && b["tunnels"] == 1),
        "{body}"
    );
    assert_eq!(
        http(admin, "POST", "/admin/reload", Some("s3cret")).await.0,
        409,
        "no file to reload"
    );

    let (status, _) = http(
        admin,
        "POST",
        "/admin/sessions/72001/kick?code=banned",
        Some("s3cret"),
    )
    .await;
    assert_eq!(status, 200);
    let (closed, logout, _) = c.closed_after().await;
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::Banned));

    assert_eq!(
        http(admin, "POST", "/admin/drain", Some("s3cret")).await.0,
        202
    );
    assert_eq!(http(admin, "GET", "/readyz", None).await.0, 503);
}

/// A client that echoes until the gateway logs it out; what it saw.
struct Echoer {
    uid: i64,
    replied: BTreeSet<i32>,
    logout: Option<LogoutCode>,
    closed_after: Duration,
}

async fn echo_until_logged_out(
    mut c: TestClient,
    started: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
) -> Echoer {
    let mut replied = BTreeSet::new();
    let mut logout = None;
    let mut n = 0;
    'outer: loop {
        n += 1;
        // Every third request takes the backend a while: some are in flight when the turn comes.
        let data: &[u8] = if n % 3 == 0 { b"delay:150" } else { b"echo" };
        let Ok(index) = c.session.send(
            common::now(),
            janus_core::client::Outgoing {
                module: 3,
                seq: n,
                data: bytes::Bytes::copy_from_slice(data),
                ..Default::default()
            },
        ) else {
            // Closed: the logout came with the last reply and is still queued.
            while let Some(event) = c.session.poll_event() {
                if let ClientEvent::Logout(code) = event {
                    logout = Some(code);
                }
            }
            break;
        };
        c.flush().await;
        loop {
            match c.next_event().await {
                Some(ClientEvent::Packet(p)) if p.index == index => {
                    replied.insert(p.index);
                    break;
                }
                Some(ClientEvent::Packet(p)) if p.index != 0 => {
                    replied.insert(p.index);
                }
                Some(ClientEvent::Logout(code)) => logout = Some(code),
                Some(ClientEvent::Closed(_)) | None => break 'outer,
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = (*started.borrow()).expect("the drain started");
    Echoer {
        uid: c.uid,
        replied,
        logout,
        closed_after: start.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_under_load_delivers_every_produced_reply_and_spreads_the_closes() {
    const CLIENTS: i64 = 20;
    let window = Duration::from_secs(2);
    let rig = Rig::start_with(|s| {
        s.ops.drain_window = window;
        s.shutdown_grace = Duration::from_secs(8);
    })
    .await;
    let (started_tx, started_rx) = tokio::sync::watch::channel(None);
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let c = TestClient::tcp(rig.tcp(), 73_000 + i).await;
        tasks.push(tokio::spawn(echo_until_logged_out(c, started_rx.clone())));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Rig { gateway, demo } = rig;
    started_tx.send_replace(Some(tokio::time::Instant::now()));
    let shutdown = tokio::spawn(gateway.shutdown());
    let mut results = Vec::new();
    for task in tasks {
        results.push(
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(
        tokio::time::timeout(WAIT * 2, shutdown)
            .await
            .unwrap()
            .unwrap(),
        0,
        "every session ended before the grace period"
    );
    let observed = demo.backend().observed();
    for r in &results {
        assert_eq!(r.logout, Some(LogoutCode::Waiting), "uid {}", r.uid);
        let produced: BTreeSet<i32> = observed
            .requests
            .iter()
            .filter(|q| q.oid == r.uid)
            .map(|q| q.request.index)
            .collect();
        let lost: Vec<_> = produced.difference(&r.replied).collect();
        assert!(lost.is_empty(), "uid {}: replies lost {lost:?}", r.uid);
    }
    let mut closes: Vec<Duration> = results.iter().map(|r| r.closed_after).collect();
    closes.sort();
    let early = closes.iter().filter(|d| **d < window / 4).count();
    assert!(
        early <= CLIENTS as usize / 2,
        "closes bunched at the start: {closes:?}"
    );
    assert!(
        closes.last().unwrap() >= &(window * 3 / 4),
        "closes not spread over the window: {closes:?}"
    );
    assert!(
        closes.last().unwrap() < &(window + Duration::from_secs(2)),
        "{closes:?}"
    );
}

/// A config file for a gateway on free ports in front of `backend`, unencrypted (the test
/// clients use the test-vector token key).
fn config_text(backend: SocketAddr, max_connections: usize, extra: &str) -> String {
    let key = std::str::from_utf8(janus_core::testing::TEST_TOKEN_KEY).unwrap();
    format!(
        "label:\n  encrypted: false\nserver:\n  tcp: {{addr: 127.0.0.1:0}}\n  ws: {{addr: 127.0.0.1:0}}\n  \
         http: {{addr: 127.0.0.1:0, admin_token: t0k3n}}\n  grpc: {{addr: 127.0.0.1:0}}\n\
         secret:\n  account_aes_key: {key}\n\
         backends:\n  player: [\"{backend}\"]\n  room: [\"{backend}\"]\n\
         limits:\n  admission:\n    max_connections: {max_connections}\n    \
         max_connections_per_address: 100000\n{extra}"
    )
}

fn plain_client(uid: i64) -> janus_core::client::ClientConfig {
    let mut config = test_client_config(false, token(uid, "local"));
    config.heartbeat_interval = None;
    config
}

/// Whether a new connection is served: a handshake answered rather than a closed socket.
async fn admitted(addr: SocketAddr, uid: i64) -> bool {
    let stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let attempt = tokio::spawn(TestClient::over(
        common::Wire::Tcp(stream),
        local,
        uid,
        plain_client(uid),
    ));
    attempt.await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_a_limit_live_without_loss_and_a_bad_one_changes_nothing() {
    const CLIENTS: i64 = 100;
    let demo = janus_tokio::demo::DemoBackend::new(Default::default())
        .spawn_local()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("janus.yaml");
    std::fs::write(&path, config_text(demo.addr(), 1000, "")).unwrap();
    let source = ConfigSource::load(&path).unwrap();
    let first_hash = source.hash.clone();
    let gateway = Gateway::start(GatewaySettings::from_source(source).unwrap())
        .await
        .unwrap();
    let tcp = gateway.addrs().tcp.unwrap();
    let admin = gateway.addrs().http.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let uid = 74_000 + i;
        let stream = TcpStream::connect(tcp).await.unwrap();
        let local = stream.local_addr().unwrap();
        let mut c =
            TestClient::over(common::Wire::Tcp(stream), local, uid, plain_client(uid)).await;
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let index = c.send(3, 1, 0, b"echo").await;
                assert_eq!(&c.reply(index).await.data[..], b"echo");
                answered += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answered
        }));
    }
    assert!(admitted(tcp, 74_500).await, "room under the first limit");

    // The limit goes down to what is open: the next connection is refused, nobody is dropped.
    std::fs::write(&path, config_text(demo.addr(), 100, "")).unwrap();
    let (status, body) = http(admin, "POST", "/admin/reload", Some("t0k3n")).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        report["applied"],
        serde_json::json!(["limits.admission.max_connections"])
    );
    let new_hash = report["hash"].as_str().unwrap().to_owned();
    assert_ne!(new_hash, first_hash);
    assert!(!admitted(tcp, 74_501).await, "the new limit is in force");
    let (_, metrics) = http(admin, "GET", "/metrics", None).await;
    assert!(metrics.contains(&format!("janus_config_info{{hash=\"{new_hash}\"}} 1")));
    assert!(metrics.contains("janus_admission_refusals_total{cause=\"max_connections\"} 1"));

    // A file with two problems: rejected with both, nothing changes.
    std::fs::write(
        &path,
        config_text(demo.addr(), 0, "  session:\n    max_tunnels: 0\n"),
    )
    .unwrap();
    let (status, body) = http(admin, "POST", "/admin/reload", Some("t0k3n")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("limits.admission.max_connections"), "{body}");
    assert!(body.contains("limits.session.max_tunnels"), "{body}");
    let (_, metrics) = http(admin, "GET", "/metrics", None).await;
    assert!(metrics.contains(&format!("janus_config_info{{hash=\"{new_hash}\"}} 1")));
    assert!(metrics.contains("janus_config_reloads_total{result=\"rejected\"} 1"));
    assert!(!admitted(tcp, 74_502).await, "still the reloaded limit");
    let (_, config) = http(admin, "GET", "/admin/config", Some("t0k3n")).await;
    assert!(config.contains("max_connections: 100\n"), "{config}");
    assert!(
        config.contains("<redacted>") && !config.contains("t0k3n"),
        "{config}"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.sessions(), CLIENTS as usize, "no session dropped");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let answered = tokio::time::timeout(WAIT, client).await.unwrap().unwrap();
        assert!(answered > 3, "every client kept echoing");
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_headers_set_the_address_the_backend_sees() {
    let rig = Rig::start_with(|s| {
        s.ops.proxy_protocol_tcp = true;
        s.ops.proxy_protocol_ws = true;
    })
    .await;
    // v1 on TCP.
    let mut stream = TcpStream::connect(rig.tcp()).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream
        .write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7001\r\n")
        .await
        .unwrap();
    let mut c = TestClient::over(
        common::Wire::Tcp(stream),
        local,
        75_001,
        quiet_config(token(75_001, "local")),
    )
    .await;
    let index = c.send(3, 1, 0, b"v1").await;
    c.reply(index).await;
    // v2 (IPv6 client) in front of a WebSocket upgrade.
    let ws_addr = rig.gateway.addrs().ws.unwrap();
    let mut stream = TcpStream::connect(ws_addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let client: SocketAddr = "[2001:db8::7]:41000".parse().unwrap();
    stream
        .write_all(&encode_v2(client, "[2001:db8::1]:7002".parse().unwrap()))
        .await
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://{ws_addr}/ws"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let mut w = TestClient::over(
        common::Wire::Ws(ws),
        local,
        75_002,
        quiet_config(token(75_002, "local")),
    )
    .await;
    let index = w.send(3, 1, 0, b"v2").await;
    w.reply(index).await;

    let seen = rig.demo.backend().observed();
    let ip_of = |uid: i64| {
        seen.opened
            .iter()
            .find(|o| o.uid == uid)
            .and_then(|o| o.metadata.client_ip.clone())
    };
    assert_eq!(ip_of(75_001).as_deref(), Some("203.0.113.7:40000"));
    assert_eq!(ip_of(75_002).as_deref(), Some("[2001:db8::7]:41000"));

    // No header: closed without an answer, and counted.
    let mut bare = TcpStream::connect(rig.tcp()).await.unwrap();
    bare.write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut bare, &mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let (_, metrics) = http(rig.gateway.addrs().http.unwrap(), "GET", "/metrics", None).await;
    assert!(
        metrics.contains("janus_admission_refusals_total{cause=\"proxy_header\"} 1"),
        "{metrics}"
    );
}
