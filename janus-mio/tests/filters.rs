//! The filter chain through the edge: the edge's sessions are core sessions, so the built-in
//! filters configured for the edge decide exactly as on the gateway; and a ban the hub learns
//! (its reload's recheck) reaches players connected through an edge.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../janus-tokio/tests/common.rs"]
mod common;
mod support;

use std::sync::Arc;

use janus_config::{Config, CustomFilters};
use janus_core::{
    client::{ClientError, ClientEvent},
    filter::{FilterChain, builtin::Ban},
    handshake::ClientHandshakeError,
    testing::test_server_config,
};
use janus_proto::message::sc_server_logout::Code as LogoutCode;
use support::{Answer, EDGE_SEED, TestClient, WAIT, edge, edge_settings, hub};
use tokio::net::TcpStream;

const FILTERS: &str = "filters: {ban: {uids: [666]}, access: {deny: [6]}}";

/// The edge's /metrics body.
async fn edge_metrics(http: std::net::SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_runs_the_configured_filters_like_the_gateway() {
    let demo = janus_tokio::demo::DemoBackend::new(Default::default())
        .spawn_local()
        .await
        .unwrap();
    let hub = hub(demo.addr(), "127.0.0.1:0".parse().unwrap()).await;
    let mut settings = edge_settings(&[hub.addrs().relay.unwrap()], EDGE_SEED);
    let mut core = test_server_config(true);
    core.filters = Config::from_yaml(FILTERS, &|_| None)
        .unwrap()
        .filter_chain(&CustomFilters::new())
        .unwrap();
    settings.core = Arc::new(core);
    let edge = edge(settings, 1).await;
    let tcp = edge.addrs().tcp.unwrap();

    // A banned uid is refused at the edge's handshake.
    let stream = TcpStream::connect(tcp).await.unwrap();
    let mut banned = TestClient::handshake_sent(
        stream,
        666,
        common::quiet_config(common::token(666, "local")),
    )
    .await;
    assert!(matches!(
        banned.next_event().await,
        Some(ClientEvent::Closed(ClientError::Handshake(
            ClientHandshakeError::Refused(LogoutCode::Banned)
        )))
    ));
    // A denied module gets the error reply; the session goes on.
    let mut c = TestClient::tcp(tcp, 40_201).await;
    let i = c.send(6, 1, 0, b"room").await;
    assert!(matches!(
        c.answer(i).await,
        Answer::Failed { message, .. } if message == "module not allowed"
    ));
    let i = c.send(3, 1, 0, b"echo").await;
    assert_eq!(&c.reply(i).await.data[..], b"echo");

    let body = edge_metrics(edge.addrs().http.unwrap()).await;
    for line in [
        "janus_filter_decisions_total{filter=\"ban\",hook=\"handshake\",decision=\"refuse\"} 1",
        "janus_filter_decisions_total{filter=\"access\",hook=\"packet\",decision=\"reject\"} 1",
        "janus_filter_decisions_total{filter=\"access\",hook=\"packet\",decision=\"pass\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line}:\n{body}");
    }
    tokio::task::spawn_blocking(move || edge.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_the_hub_reaches_a_player_connected_through_an_edge() {
    let demo = janus_tokio::demo::DemoBackend::new(Default::default())
        .spawn_local()
        .await
        .unwrap();
    // The hub's chain bans 40_301; the edge has no filters, so the session opens.
    let hub = {
        let mut s = common::settings(demo.addr());
        s.relay = Some(support::relay("127.0.0.1:0".parse().unwrap()));
        let mut core = test_server_config(true);
        let mut chain = FilterChain::new();
        chain.push(Ban::new([40_301], Vec::new(), None)).unwrap();
        core.filters = chain;
        s.core = Arc::new(core);
        janus_tokio::gateway::Gateway::start(s).await.unwrap()
    };
    let edge = edge(edge_settings(&[hub.addrs().relay.unwrap()], EDGE_SEED), 1).await;
    let tcp = edge.addrs().tcp.unwrap();
    let mut banned = TestClient::tcp(tcp, 40_301).await;
    let mut other = TestClient::tcp(tcp, 40_302).await;
    let i = banned.send(3, 1, 0, b"echo").await;
    banned.reply(i).await;

    // What a hub's reload of filters does: every live session is asked the new chain.
    assert_eq!(hub.recheck_sessions(), 2);
    let (closed, logout, _) = tokio::time::timeout(WAIT, banned.closed_after())
        .await
        .unwrap();
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::Banned));
    let i = other.send(3, 1, 0, b"echo").await;
    assert_eq!(&other.reply(i).await.data[..], b"echo");
    tokio::task::spawn_blocking(move || edge.shutdown())
        .await
        .unwrap();
}
