//! The example custom filter (janus-filter-example) compiled in with `--features filter-example`
//! and enabled from the configuration file, as a game team would: over real sockets, to the
//! demo backend. `cargo test -p janus-tokio --features filter-example --test filter_example`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::{Answer, TestClient, WAIT, http, token};
use janus_core::{client::LogoutCode, testing::test_client_config};
use janus_tokio::{
    demo::DemoBackend,
    gateway::{Gateway, GatewaySettings, settings::ConfigSource},
};
use tokio::net::TcpStream;

fn config_text(backend: SocketAddr) -> String {
    let key = std::str::from_utf8(janus_core::testing::TEST_TOKEN_KEY).unwrap();
    format!(
        "label:\n  encrypted: false\nserver:\n  tcp: {{addr: 127.0.0.1:0}}\n  ws: null\n  \
         http: {{addr: 127.0.0.1:0}}\n  grpc: {{addr: 127.0.0.1:0}}\n\
         secret:\n  account_aes_key: {key}\n\
         backends:\n  player: [\"{backend}\"]\n  room: [\"{backend}\"]\n\
         filters:\n  custom:\n    trial:\n      uids: {{from: 900000, to: 999999}}\n      \
         modules: [1, 3, 5]\n      max_requests: 3\n      shop: {{module: 5, trial_module: 15}}\n"
    )
}

async fn client(addr: SocketAddr, uid: i64) -> TestClient {
    let stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let mut config = test_client_config(false, token(uid, "local"));
    config.heartbeat_interval = None;
    TestClient::over(common::Wire::Tcp(stream), local, uid, config).await
}

#[tokio::test]
async fn the_example_filter_is_enabled_from_the_config_file() {
    assert_eq!(janus_tokio::filters::custom_filter_names(), "trial");
    let demo = DemoBackend::new(Default::default())
        .spawn_local()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("janus.yaml");
    std::fs::write(&path, config_text(demo.addr())).unwrap();
    let gateway =
        Gateway::start(GatewaySettings::from_source(ConfigSource::load(&path).unwrap()).unwrap())
            .await
            .unwrap();
    let tcp = gateway.addrs().tcp.unwrap();

    let mut trial = client(tcp, 900_123).await;
    let i = trial.send(5, 1, 0, b"buy").await;
    // The trial shop (module 15) answered; the demo echoes the module it was asked.
    assert_eq!(trial.reply(i).await.r#mod, 15);
    let i = trial.send(4, 1, 0, b"guild").await;
    assert!(matches!(
        trial.answer(i).await,
        Answer::Failed { message, .. } if message == "not available on a trial account"
    ));
    trial.send(3, 1, 0, b"a").await;
    trial.send(3, 1, 0, b"b").await;
    trial.send(3, 1, 0, b"c").await;
    let (closed, logout, _) = tokio::time::timeout(WAIT, trial.closed_after())
        .await
        .unwrap();
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::Unauthorized));

    let mut full = client(tcp, 42).await;
    let i = full.send(5, 1, 0, b"buy").await;
    assert_eq!(full.reply(i).await.r#mod, 5);

    let admin = gateway.addrs().http.unwrap();
    let metrics = http(admin, "GET", "/metrics", None).await.1;
    for line in [
        "janus_filter_decisions_total{filter=\"trial\",hook=\"packet\",decision=\"rewrite\"} 1",
        "janus_filter_decisions_total{filter=\"trial\",hook=\"packet\",decision=\"reject\"} 1",
        "janus_filter_decisions_total{filter=\"trial\",hook=\"packet\",decision=\"close\"} 1",
        "janus_sessions_closed_total{reason=\"filter_closed\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line}");
    }
}
