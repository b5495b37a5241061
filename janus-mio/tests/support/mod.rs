//! The edge tests' rig: a demo backend, one or two hubs (janus-tokio gateways with a relay
//! listener) and an edge in front of them, all on port 0 over real sockets.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use janus_core::{
    crypto::SigningKey,
    limit::AdmissionConfig,
    relay::{LinkConfig, Role},
    testing::test_server_config,
};
use janus_mio::{Edge, EdgeSettings};
use janus_tokio::{
    demo::{DemoBackend, DemoConfig, DemoHandle},
    gateway::{Gateway, RelaySettings},
};

use crate::common;
pub use crate::common::{Answer, TestClient, WAIT};

pub const EDGE_SEED: [u8; 32] = [0xe1; 32];
pub const HUB_SEED: [u8; 32] = [0x4b; 32];

/// The hub's relay settings: key [`HUB_SEED`], trusting the edge key `edge_seed`.
pub fn relay(addr: SocketAddr) -> RelaySettings {
    RelaySettings {
        addr,
        link: LinkConfig::new(
            Role::Hub,
            String::new(),
            SigningKey::from_seed(&HUB_SEED),
            vec![SigningKey::from_seed(&EDGE_SEED).verifying_key()],
        ),
        max_links: 16,
    }
}

/// A hub gateway in front of `backend`, relay listener on `relay_addr`.
pub async fn hub(backend: SocketAddr, relay_addr: SocketAddr) -> Gateway {
    let mut s = common::settings(backend);
    s.relay = Some(relay(relay_addr));
    Gateway::start(s).await.unwrap()
}

/// Edge settings for `hubs`, signing with `seed`.
pub fn edge_settings(hubs: &[SocketAddr], seed: [u8; 32]) -> EdgeSettings {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut link = LinkConfig::new(
        Role::Edge,
        "test-edge".into(),
        SigningKey::from_seed(&seed),
        vec![SigningKey::from_seed(&HUB_SEED).verifying_key()],
    );
    link.heartbeat_interval = Duration::from_millis(500);
    link.heartbeat_timeout = Duration::from_secs(2);
    EdgeSettings {
        core: Arc::new(test_server_config(true)),
        tcp: Some(local),
        ws: Some((local, "/ws".into())),
        allowed_origins: Vec::new(),
        http: Some(local),
        link,
        hubs: hubs.iter().map(ToString::to_string).collect(),
        threads: 1,
        reconnect: (Duration::from_millis(50), Duration::from_millis(400)),
        admission: AdmissionConfig::default(),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Starts an edge and waits until `links` hub links are up.
pub async fn edge(settings: EdgeSettings, links: i64) -> Edge {
    let edge = Edge::start(settings).unwrap();
    wait_links(&edge, links).await;
    edge
}

/// Waits until the edge has `links` hub links up.
pub async fn wait_links(edge: &Edge, links: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while edge
        .metrics()
        .links_up
        .load(std::sync::atomic::Ordering::Relaxed)
        != links
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "links never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A demo backend, one hub and an edge.
pub struct Rig {
    pub demo: DemoHandle,
    pub hub: Gateway,
    pub edge: Edge,
}

impl Rig {
    pub async fn start() -> Rig {
        let demo = DemoBackend::new(DemoConfig::default())
            .spawn_local()
            .await
            .unwrap();
        let hub = hub(demo.addr(), "127.0.0.1:0".parse().unwrap()).await;
        let edge = edge(edge_settings(&[hub.addrs().relay.unwrap()], EDGE_SEED), 1).await;
        Rig { demo, hub, edge }
    }

    pub fn tcp(&self) -> SocketAddr {
        self.edge.addrs().tcp.unwrap()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.edge.addrs().ws.unwrap())
    }

    /// Drains the edge (blocking join, off the runtime's threads).
    pub async fn stop_edge(edge: Edge) {
        tokio::task::spawn_blocking(move || edge.shutdown())
            .await
            .unwrap();
    }
}

/// Waits until `f` holds (polling), or fails the test.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
