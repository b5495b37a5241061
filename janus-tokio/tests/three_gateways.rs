#![cfg(feature = "etcd")]
//! Three gateways sharing a real etcd and a real Redis (issue 13): registered side by side,
//! backends discovered in etcd, and while one of them drains, a login elsewhere still kicks
//! across gateways, pushes still find the uid's gateway through the gate table, the draining
//! gateway leaves the registry at once, and its players, told to go with
//! SCServerLogout{Waiting}, log in again on another gateway and are reachable there.
#![allow(
    missing_debug_implementations,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[path = "support/etcd_server.rs"]
mod etcd_server;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestClient;
use etcd_client::GetOptions;
use etcd_server::EtcdServer;
use janus_core::route::route_key;
use janus_proto::{
    broadcaster::service::push::v1::{PushBody, PushMessage},
    message::sc_server_logout::Code as LogoutCode,
};
use janus_tokio::{
    cluster::{
        etcd::{EtcdConfig, ServiceInstance, register},
        redis::{BROADCAST_CHANNEL, RedisConfig, RedisTables},
    },
    demo::{DemoBackend, DemoConfig},
    gateway::{EtcdSettings, Gateway},
};
use redis_server::RedisServer;

const WAIT: Duration = Duration::from_secs(10);
const GATES: &str = "/microservices/janus.gate.interface/";

fn redis_config(server: &RedisServer) -> RedisConfig {
    RedisConfig {
        addr: server.addr(),
        dial_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    }
}

async fn gateway(redis: &RedisServer, etcd: &EtcdServer, drain_window: Duration) -> Gateway {
    let mut s = common::settings("127.0.0.1:1".parse().unwrap());
    // Backends come from etcd only.
    s.backends.clear();
    s.redis = Some(redis_config(redis));
    s.gate_ttl = Duration::from_secs(4);
    s.ops.drain_window = drain_window;
    s.shutdown_grace = drain_window + Duration::from_secs(5);
    s.etcd = Some(EtcdSettings {
        endpoints: vec![etcd.endpoint()],
        username: String::new(),
        password: String::new(),
        services: [("player".to_owned(), "roma.player.service".to_owned())]
            .into_iter()
            .collect(),
        name: "janus.gate.interface".into(),
        version: String::new(),
        profile: "dev".into(),
        color: "local".into(),
    });
    Gateway::start(s).await.unwrap()
}

fn push(text: &'static str, uids: Vec<i64>) -> PushMessage {
    PushMessage {
        bodies: vec![PushBody {
            data: Bytes::from_static(text.as_bytes()),
            r#mod: 3,
            seq: 2,
            ..Default::default()
        }],
        uids,
        color: "local".into(),
        sid: 1,
        ..Default::default()
    }
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A push as the Go broadcaster sends one to a uid: look its gateway up in the gate table and
/// PUBLISH on that gateway's channel.
async fn push_to(tables: &RedisTables, uid: i64, text: &'static str) {
    let gate = tables
        .get(&route_key("janus.gate.interface", "local", uid))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("uid {uid} has no gate entry"));
    tables.publish(&gate, &push(text, vec![uid])).await.unwrap();
}

/// Logs in and echoes once (waiting for the backend to be discovered).
async fn login(gw: &Gateway, uid: i64) -> TestClient {
    let mut c = TestClient::tcp(gw.addrs().tcp.unwrap(), uid).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let index = c.send(3, 1, 0, b"hi").await;
        if c.answer(index).await.data() == Some(&b"hi"[..]) {
            return c;
        }
        assert!(Instant::now() < deadline, "uid {uid}: no backend");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_kick_and_push_across_while_one_drains() {
    let redis = RedisServer::start();
    let etcd = EtcdServer::start().await;
    let demo = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let etcd_cfg = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        dial_timeout: Duration::from_secs(1),
        ..EtcdConfig::default()
    };
    let _roma = register(
        &etcd_cfg,
        ServiceInstance::new(
            "roma.player.service",
            "",
            [("color".to_owned(), "local".to_owned())]
                .into_iter()
                .collect(),
            vec![format!("grpc://{}", demo.addr())],
        ),
    )
    .await
    .unwrap();

    let a = gateway(&redis, &etcd, Duration::from_secs(1)).await;
    let b = gateway(&redis, &etcd, Duration::from_secs(1)).await;
    // The one that drains spreads its players' logouts over 3 s.
    let c = gateway(&redis, &etcd, Duration::from_secs(3)).await;
    let mut etcd_client = etcd.client().await;
    let registered = |client: &mut etcd_client::Client| {
        let mut client = client.clone();
        async move {
            let found = client
                .get(GATES, Some(GetOptions::new().with_prefix()))
                .await
                .unwrap();
            found
                .kvs()
                .iter()
                .map(|kv| kv.value_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let all = registered(&mut etcd_client).await;
    assert_eq!(all.len(), 3, "{all:?}");
    for gw in [&a, &b, &c] {
        assert!(
            all.iter()
                .any(|v| v.contains(&format!("grpc://{}", gw.endpoint()))),
            "{all:?}"
        );
    }
    let tables = RedisTables::connect(&redis_config(&redis)).await.unwrap();
    let gate_of = |uid: i64| {
        let tables = tables.clone();
        async move {
            tables
                .get(&route_key("janus.gate.interface", "local", uid))
                .await
                .unwrap()
        }
    };

    // Players on every gateway.
    let mut on_a = login(&a, 71_001).await;
    let mut on_b = login(&b, 71_002).await;
    let mut on_c: Vec<TestClient> = Vec::new();
    for uid in 71_010..71_014 {
        on_c.push(login(&c, uid).await);
    }
    for (uid, gw) in [(71_001, &a), (71_002, &b), (71_010, &c), (71_013, &c)] {
        until("gate entries", || async {
            gate_of(uid).await.as_deref() == Some(gw.endpoint())
        })
        .await;
    }

    // c drains.
    assert!(c.start_drain());
    until("c leaves the registry", || {
        let mut client = etcd_client.clone();
        async move { registered(&mut client).await.len() == 2 }
    })
    .await;

    // Meanwhile: a login on b kicks the same uid's session on a at once...
    let started = Instant::now();
    let mut moved = login(&b, 71_001).await;
    let (closed, logout, _) = on_a.closed_after().await;
    assert!(
        closed && logout == Some(LogoutCode::ConflictingLogin),
        "{logout:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(gate_of(71_001).await.as_deref(), Some(b.endpoint()));
    // ...pushes find each uid's gateway...
    push_to(&tables, 71_001, "to 71001").await;
    assert_eq!(&moved.next_packet().await.unwrap().data[..], b"to 71001");
    push_to(&tables, 71_002, "to 71002").await;
    assert_eq!(&on_b.next_packet().await.unwrap().data[..], b"to 71002");
    // ...and a broadcast reaches the players of the other gateways.
    tables
        .publish(BROADCAST_CHANNEL, &push("everyone", Vec::new()))
        .await
        .unwrap();
    assert_eq!(&moved.next_packet().await.unwrap().data[..], b"everyone");
    assert_eq!(&on_b.next_packet().await.unwrap().data[..], b"everyone");

    // c's players are told to go, each in its turn; they log in again on a (as a client
    // reconnecting through the load balancer would) and are reachable there.
    let mut returned = Vec::new();
    for (i, mut old) in on_c.into_iter().enumerate() {
        let uid = 71_010 + i as i64;
        let (closed, logout, _) = old.closed_after().await;
        assert!(
            closed && logout == Some(LogoutCode::Waiting),
            "uid {uid}: {logout:?}"
        );
        returned.push((uid, login(&a, uid).await));
    }
    for (uid, client) in &mut returned {
        until("the gate entry names a", || async {
            gate_of(*uid).await.as_deref() == Some(a.endpoint())
        })
        .await;
        push_to(&tables, *uid, "found you").await;
        assert_eq!(&client.next_packet().await.unwrap().data[..], b"found you");
    }
    assert_eq!(c.shutdown().await, 0, "c's sessions all left in the drain");
    assert_eq!(a.sessions(), 4);
    assert_eq!(b.sessions(), 2);
}
