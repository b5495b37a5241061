//! The filter chain end to end: real clients over TCP, the gateway, the demo backend over gRPC.
//! Each built-in filter as configured in YAML, a ban added by a hot reload, and custom filters
//! that refuse a handshake, rewrite a packet and panic; the per-filter metrics they move.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use common::{Answer, Rig, TestClient, WAIT, connect_from, http, quiet_config, token};
use janus_core::{
    Time,
    client::{ClientError, ClientEvent, LogoutCode},
    filter::{
        Admit, ClientPacket, Filter, FilterChain, FilterError, Hooks, PacketVerdict, Refusal,
        SessionView,
    },
    handshake::ClientHandshakeError,
    testing::{test_client_config, test_server_config},
};
use janus_tokio::{
    config::{Config, CustomFilters},
    demo::{DemoBackend, TunnelKind},
    gateway::{Gateway, GatewaySettings, settings::ConfigSource},
};
use tokio::net::TcpStream;

/// A gateway whose chain is `chain` (and whose routes are those of `yaml`, for the route
/// filter's kinds), in front of the demo backend.
async fn rig_with(chain: FilterChain, yaml: Option<&Config>) -> Rig {
    Rig::start_with(move |s| {
        let mut core = test_server_config(true);
        core.filters = chain;
        if let Some(yaml) = yaml {
            core.routes = yaml.route_table().unwrap();
        }
        janus_tokio::filters::prepare(&mut core.filters, None);
        s.core = Arc::new(core);
    })
    .await
}

/// A gateway running the built-in filters of `filters_yaml` (the `filters:` section).
async fn rig_yaml(filters_yaml: &str) -> Rig {
    let config = Config::from_yaml(filters_yaml, &|_| None).unwrap();
    let chain = config.filter_chain(&CustomFilters::new()).unwrap();
    rig_with(chain, Some(&config)).await
}

/// How the gateway answers a handshake of `uid` from `source`: `None` when it is accepted, the
/// logout code when refused.
async fn handshake_refusal(addr: SocketAddr, source: IpAddr, uid: i64) -> Option<LogoutCode> {
    let stream = connect_from(addr, source).await.unwrap();
    let mut c = TestClient::handshake_sent(stream, uid, quiet_config(token(uid, "local"))).await;
    match c.next_event().await {
        Some(ClientEvent::Established { .. }) => None,
        Some(ClientEvent::Closed(ClientError::Handshake(ClientHandshakeError::Refused(code)))) => {
            Some(code)
        }
        other => panic!("neither accepted nor refused: {other:?}"),
    }
}

async fn metrics(rig: &Rig) -> String {
    let admin = rig.gateway.addrs().http.unwrap();
    http(admin, "GET", "/metrics", None).await.1
}

fn assert_metric(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing {line:?} in:\n{}",
        text.lines()
            .filter(|l| l.starts_with("janus_filter"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn failed_with(answer: Answer) -> String {
    match answer {
        Answer::Failed { message, .. } => message,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn backend_saw(demo: &DemoBackend, module: i32) -> usize {
    demo.observed()
        .requests
        .iter()
        .filter(|r| r.request.module == module)
        .count()
}

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn ban_refuses_banned_uids_and_networks_at_the_handshake() {
    let rig = rig_yaml("filters: {ban: {uids: [666], networks: [\"127.0.0.2/32\"]}}").await;
    let tcp = rig.tcp();
    assert_eq!(
        handshake_refusal(tcp, LOCALHOST, 666).await,
        Some(LogoutCode::Banned)
    );
    assert_eq!(
        handshake_refusal(tcp, "127.0.0.2".parse().unwrap(), 1).await,
        Some(LogoutCode::Banned)
    );
    assert_eq!(handshake_refusal(tcp, LOCALHOST, 1).await, None);
    assert_eq!(
        handshake_refusal(tcp, "127.0.0.3".parse().unwrap(), 2).await,
        None
    );
    let text = metrics(&rig).await;
    assert_metric(
        &text,
        "janus_filter_decisions_total{filter=\"ban\",hook=\"handshake\",decision=\"refuse\"} 2",
    );
    assert_metric(
        &text,
        "janus_filter_decisions_total{filter=\"ban\",hook=\"handshake\",decision=\"pass\"} 2",
    );
    assert_metric(&text, "janus_sessions_closed_total{reason=\"banned\"} 2");
}

#[tokio::test]
async fn access_answers_a_denied_module_with_an_error_and_keeps_the_session() {
    let rig = rig_yaml("filters: {access: {deny: [6]}}").await;
    let mut c = TestClient::tcp(rig.tcp(), 10).await;
    let denied = c.send(6, 1, 0, b"room").await;
    assert_eq!(failed_with(c.answer(denied).await), "module not allowed");
    let fine = c.send(3, 1, 0, b"echo").await;
    assert_eq!(&c.reply(fine).await.data[..], b"echo");
    assert_eq!(backend_saw(rig.demo.backend(), 6), 0);
    assert_metric(
        &metrics(&rig).await,
        "janus_filter_decisions_total{filter=\"access\",hook=\"packet\",decision=\"reject\"} 1",
    );
}

#[tokio::test]
async fn max_payload_drops_an_oversized_request_and_counts_it() {
    let rig = rig_yaml("filters: {max_payload: {modules: {3: 8}, action: drop}}").await;
    let mut c = TestClient::tcp(rig.tcp(), 11).await;
    let big = c.send(3, 1, 0, b"far too long").await;
    let small = c.send(3, 1, 0, b"short").await;
    // The dropped request is never answered; the next one is.
    let reply = c.reply(small).await;
    assert_eq!(&reply.data[..], b"short");
    assert_ne!(reply.index, big);
    assert_eq!(backend_saw(rig.demo.backend(), 3), 1);
    let text = metrics(&rig).await;
    assert_metric(
        &text,
        "janus_filter_drops_total{filter=\"max_payload\",reason=\"too_large\"} 1",
    );
    assert_metric(
        &text,
        "janus_filter_calls_total{filter=\"max_payload\",hook=\"packet\"} 2",
    );
}

#[tokio::test]
async fn rate_limit_refuses_requests_over_a_modules_rate_only() {
    let rig = rig_yaml("filters: {rate_limit: [{modules: [3], per_second: 1, burst: 2}]}").await;
    let mut c = TestClient::tcp(rig.tcp(), 12).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        let i = c.send(3, 1, 0, b"echo").await;
        answers.push(c.answer(i).await);
    }
    assert!(matches!(answers[0], Answer::Reply(_)));
    assert!(matches!(answers[1], Answer::Reply(_)));
    assert_eq!(failed_with(answers.remove(2)), "rate limited");
    // Module 4 is not metered.
    for _ in 0..5 {
        let i = c.send(4, 1, 0, b"echo").await;
        assert!(matches!(c.answer(i).await, Answer::Reply(_)));
    }
    // A second later the bucket has room again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let i = c.send(3, 1, 0, b"echo").await;
    assert!(matches!(c.answer(i).await, Answer::Reply(_)));
}

#[tokio::test]
async fn route_sends_a_module_to_another_tunnel_kind() {
    let rig = rig_yaml("filters: {route: [{module: 9, kind: room}]}").await;
    let mut c = TestClient::tcp(rig.tcp(), 13).await;
    let i = c.send(9, 1, 4242, b"guild chat").await;
    assert_eq!(&c.reply(i).await.data[..], b"guild chat");
    let seen = rig.demo.backend().observed();
    let request = seen
        .requests
        .iter()
        .find(|r| r.request.module == 9)
        .unwrap();
    // On a room stream of the packet's obj, not on the player's own stream.
    assert_eq!((request.kind, request.oid), (TunnelKind::Room, 4242));
}

/// A gateway from a config file (unencrypted, the test token key), for reloads.
fn config_text(backend: SocketAddr, filters: &str) -> String {
    let key = std::str::from_utf8(janus_core::testing::TEST_TOKEN_KEY).unwrap();
    format!(
        "label:\n  encrypted: false\nserver:\n  tcp: {{addr: 127.0.0.1:0}}\n  ws: null\n  \
         http: {{addr: 127.0.0.1:0, admin_token: t0k3n}}\n  grpc: {{addr: 127.0.0.1:0}}\n\
         secret:\n  account_aes_key: {key}\n\
         backends:\n  player: [\"{backend}\"]\n  room: [\"{backend}\"]\n\
         filters:\n{filters}"
    )
}

fn plain(uid: i64) -> janus_core::client::ClientConfig {
    let mut config = test_client_config(false, token(uid, "local"));
    config.heartbeat_interval = None;
    config
}

#[tokio::test]
async fn a_ban_added_by_a_reload_ends_the_live_session_and_refuses_the_next() {
    let demo = DemoBackend::new(Default::default())
        .spawn_local()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("janus.yaml");
    std::fs::write(&path, config_text(demo.addr(), "  ban: {uids: [1]}\n")).unwrap();
    let source = ConfigSource::load(&path).unwrap();
    let gateway = Gateway::start(GatewaySettings::from_source(source).unwrap())
        .await
        .unwrap();
    let tcp = gateway.addrs().tcp.unwrap();
    let stream = TcpStream::connect(tcp).await.unwrap();
    let local = stream.local_addr().unwrap();
    let mut banned = TestClient::over(common::Wire::Tcp(stream), local, 500, plain(500)).await;
    let stream = TcpStream::connect(tcp).await.unwrap();
    let local = stream.local_addr().unwrap();
    let mut other = TestClient::over(common::Wire::Tcp(stream), local, 501, plain(501)).await;
    let i = banned.send(3, 1, 0, b"echo").await;
    banned.reply(i).await;

    std::fs::write(&path, config_text(demo.addr(), "  ban: {uids: [1, 500]}\n")).unwrap();
    let report = gateway.reload().await.unwrap();
    assert_eq!(report.applied, ["filters.ban.uids"]);
    let (closed, logout, _) = tokio::time::timeout(WAIT, banned.closed_after())
        .await
        .unwrap();
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::Banned));
    // The others go on.
    let i = other.send(3, 1, 0, b"echo").await;
    assert_eq!(&other.reply(i).await.data[..], b"echo");
    // And the next login of the banned uid is refused.
    let stream = TcpStream::connect(tcp).await.unwrap();
    let mut again = TestClient::handshake_sent(stream, 500, plain(500)).await;
    assert!(matches!(
        again.next_event().await,
        Some(ClientEvent::Closed(ClientError::Handshake(
            ClientHandshakeError::Refused(LogoutCode::Banned)
        )))
    ));
    let admin = gateway.addrs().http.unwrap();
    let text = http(admin, "GET", "/metrics", None).await.1;
    // The reloaded chain counts on from the first one: the recheck and both handshakes.
    assert_metric(
        &text,
        "janus_filter_decisions_total{filter=\"ban\",hook=\"recheck\",decision=\"close\"} 1",
    );
    assert_metric(
        &text,
        "janus_filter_decisions_total{filter=\"ban\",hook=\"handshake\",decision=\"pass\"} 2",
    );
}

/// Refuses every session of an odd uid (a maintenance window for half the players, say).
#[derive(Debug)]
struct OddUidsWait;

impl Filter for OddUidsWait {
    type State = ();
    fn name(&self) -> &str {
        "odd_wait"
    }
    fn hooks(&self) -> Hooks {
        Hooks::NONE
    }
    fn on_handshake(&self, s: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
        Ok(if s.uid() % 2 == 1 {
            Admit::Refuse(Refusal::Waiting)
        } else {
            Admit::Accept(())
        })
    }
}

#[tokio::test]
async fn a_custom_filter_refuses_a_handshake_with_its_code() {
    let mut chain = FilterChain::new();
    chain.push(OddUidsWait).unwrap();
    let rig = rig_with(chain, None).await;
    assert_eq!(
        handshake_refusal(rig.tcp(), LOCALHOST, 21).await,
        Some(LogoutCode::Waiting)
    );
    assert_eq!(handshake_refusal(rig.tcp(), LOCALHOST, 22).await, None);
    // Nothing reached a backend for the refused one, and it never registered.
    assert!(rig.demo.backend().observed().opened.is_empty());
    assert_metric(
        &metrics(&rig).await,
        "janus_sessions_closed_total{reason=\"filter_refused\"} 1",
    );
}

/// Moves module 5 requests to module 3 with the payload reversed (a protocol migration).
#[derive(Debug)]
struct Migrate;

impl Filter for Migrate {
    type State = ();
    fn name(&self) -> &str {
        "migrate"
    }
    fn hooks(&self) -> Hooks {
        Hooks::PACKET
    }
    fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
        Ok(Admit::Accept(()))
    }
    fn on_packet(
        &self,
        _: &mut (),
        _: &SessionView<'_>,
        p: &mut ClientPacket,
        _: Time,
    ) -> Result<PacketVerdict, FilterError> {
        if p.module() == 5 {
            p.set_module(3);
            p.set_seq(p.seq() + 10);
            let mut data = p.data().to_vec();
            data.reverse();
            p.set_data(Bytes::from(data));
        }
        Ok(PacketVerdict::Pass)
    }
}

#[tokio::test]
async fn a_custom_filter_rewrites_what_the_backend_gets() {
    let mut chain = FilterChain::new();
    chain.push(Migrate).unwrap();
    let rig = rig_with(chain, None).await;
    let mut c = TestClient::tcp(rig.tcp(), 30).await;
    let i = c.send(5, 1, 0, b"olleh").await;
    let reply = c.reply(i).await;
    // The demo echoes what it got: the rewritten request.
    assert_eq!(
        (&reply.data[..], reply.r#mod, reply.seq),
        (&b"hello"[..], 3, 11)
    );
    let seen = rig.demo.backend().observed();
    let request = &seen
        .requests
        .iter()
        .find(|r| r.request.module == 3)
        .unwrap()
        .request;
    assert_eq!((request.seq, &request.data[..]), (11, &b"hello"[..]));
    assert_eq!(backend_saw(rig.demo.backend(), 5), 0);
    assert_metric(
        &metrics(&rig).await,
        "janus_filter_decisions_total{filter=\"migrate\",hook=\"packet\",decision=\"rewrite\"} 1",
    );
}

/// Panics on the packet whose payload is `boom`.
#[derive(Debug, Default)]
struct Fragile(Arc<AtomicU64>);

impl Filter for Fragile {
    type State = ();
    fn name(&self) -> &str {
        "fragile"
    }
    fn hooks(&self) -> Hooks {
        Hooks::PACKET
    }
    fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
        Ok(Admit::Accept(()))
    }
    fn on_packet(
        &self,
        _: &mut (),
        _: &SessionView<'_>,
        p: &mut ClientPacket,
        _: Time,
    ) -> Result<PacketVerdict, FilterError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        if &p.data()[..] == b"boom" {
            panic!("a bug in a game team's filter");
        }
        Ok(PacketVerdict::Pass)
    }
}

#[tokio::test]
async fn a_panicking_filter_closes_only_its_session_and_the_gateway_goes_on() {
    let calls = Arc::new(AtomicU64::new(0));
    let mut chain = FilterChain::new();
    chain.push(Fragile(Arc::clone(&calls))).unwrap();
    let rig = rig_with(chain, None).await;
    let mut victim = TestClient::tcp(rig.tcp(), 40).await;
    let mut bystander = TestClient::tcp(rig.tcp(), 41).await;
    victim.send(3, 1, 0, b"boom").await;
    let (closed, logout, _) = tokio::time::timeout(WAIT, victim.closed_after())
        .await
        .unwrap();
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::Server));
    let i = bystander.send(3, 1, 0, b"echo").await;
    assert_eq!(&bystander.reply(i).await.data[..], b"echo");
    // New sessions are served too.
    let mut newcomer = TestClient::tcp(rig.tcp(), 42).await;
    let i = newcomer.send(3, 1, 0, b"echo").await;
    assert_eq!(&newcomer.reply(i).await.data[..], b"echo");
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    let text = metrics(&rig).await;
    assert_metric(
        &text,
        "janus_filter_failures_total{filter=\"fragile\",kind=\"panic\"} 1",
    );
    assert_metric(
        &text,
        "janus_sessions_closed_total{reason=\"filter_failed\"} 1",
    );
    // Time spent is exported (the handshake is always timed).
    let timed = text
        .lines()
        .find(|l| l.starts_with("janus_filter_timed_calls_total{filter=\"fragile\"}"))
        .unwrap();
    assert!(!timed.ends_with(" 0"), "{timed}");
}

#[tokio::test]
async fn a_reload_with_a_bad_filter_changes_nothing() {
    let demo = DemoBackend::new(Default::default())
        .spawn_local()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("janus.yaml");
    std::fs::write(&path, config_text(demo.addr(), "  ban: {uids: [700]}\n")).unwrap();
    let source = ConfigSource::load(&path).unwrap();
    let gateway = Gateway::start(GatewaySettings::from_source(source).unwrap())
        .await
        .unwrap();
    let tcp = gateway.addrs().tcp.unwrap();

    for (filters, key) in [
        (
            "  route: [{module: 9, kind: guild}]\n",
            "filters.route[0].kind",
        ),
        ("  custom: {nope: {}}\n", "filters.custom.nope"),
    ] {
        std::fs::write(&path, config_text(demo.addr(), filters)).unwrap();
        let e = gateway.reload().await.unwrap_err().to_string();
        assert!(e.contains(key), "{e}");
        // The running chain stays: uid 700 is still banned.
        let stream = TcpStream::connect(tcp).await.unwrap();
        let mut c = TestClient::handshake_sent(stream, 700, plain(700)).await;
        assert!(matches!(
            c.next_event().await,
            Some(ClientEvent::Closed(ClientError::Handshake(
                ClientHandshakeError::Refused(LogoutCode::Banned)
            )))
        ));
    }
}
