//! Cluster mode with a real Redis: two gateways sharing route tables and pub/sub. Duplicate login
//! across gateways, pushes published for a uid, broadcasts reaching both, sticky placement across
//! a restart, and a Redis outage under traffic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;

use janus_core::route::Backend;
use janus_core::route::route_key;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Answer, TestClient};
use janus_proto::{
    broadcaster::service::push::v1::{PushBody, PushMessage},
    message::sc_server_logout::Code as LogoutCode,
};
use janus_tokio::{
    cluster::redis::{BROADCAST_CHANNEL, RedisConfig, RedisTables},
    demo::{DemoBackend, DemoConfig, DemoHandle},
    gateway::Gateway,
};
use redis_server::RedisServer;

fn redis_config(server: &RedisServer) -> RedisConfig {
    RedisConfig {
        addr: server.addr(),
        password: String::new(),
        dial_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    }
}

async fn gateway(redis: &RedisServer, backends: &[&DemoHandle]) -> Gateway {
    let specs: Vec<Backend> = backends
        .iter()
        .map(|d| Backend {
            addr: d.addr().to_string(),
            weight: 1,
            color: None,
        })
        .collect();
    let mut s = common::settings(backends[0].addr());
    s.backends.insert("player".into(), specs.clone());
    s.backends.insert("room".into(), specs);
    s.redis = Some(redis_config(redis));
    s.gate_ttl = Duration::from_secs(4);
    Gateway::start(s).await.unwrap()
}

fn body(text: &'static str) -> PushBody {
    PushBody {
        data: Bytes::from_static(text.as_bytes()),
        r#mod: 3,
        seq: 2,
        ..Default::default()
    }
}

async fn gate_entry(tables: &RedisTables, uid: i64) -> Option<String> {
    tables
        .get(&route_key("janus.gate.interface", "local", uid))
        .await
        .unwrap()
}

async fn wait_for<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_another_gateway_kicks_the_first_promptly() {
    let redis = RedisServer::start();
    let demo = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let a = gateway(&redis, &[&demo]).await;
    let b = gateway(&redis, &[&demo]).await;
    let tables = RedisTables::connect(&redis_config(&redis)).await.unwrap();

    let mut first = TestClient::tcp(a.addrs().tcp.unwrap(), 30_001).await;
    wait_for(|| async { gate_entry(&tables, 30_001).await.as_deref() == Some(a.endpoint()) }).await;

    let started = Instant::now();
    let _second = TestClient::tcp(b.addrs().tcp.unwrap(), 30_001).await;
    let (closed, logout, _) = first.closed_after().await;
    let took = started.elapsed();
    assert!(closed, "the first session is closed");
    assert_eq!(logout, Some(LogoutCode::ConflictingLogin), "SCServerLogout");
    assert!(took < Duration::from_secs(1), "kicked in {took:?}");
    assert_eq!(
        gate_entry(&tables, 30_001).await.as_deref(),
        Some(b.endpoint())
    );

    // Closing on the first gateway must not delete the second gateway's entry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gate_entry(&tables, 30_001).await.as_deref(),
        Some(b.endpoint())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_the_uid_wherever_it_is_and_broadcasts_reach_both() {
    let redis = RedisServer::start();
    let demo = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let a = gateway(&redis, &[&demo]).await;
    let b = gateway(&redis, &[&demo]).await;
    let tables = RedisTables::connect(&redis_config(&redis)).await.unwrap();
    let mut on_a = TestClient::tcp(a.addrs().tcp.unwrap(), 31_001).await;
    let mut on_b = TestClient::tcp(b.addrs().tcp.unwrap(), 31_002).await;
    wait_for(|| async {
        gate_entry(&tables, 31_002).await.is_some() && gate_entry(&tables, 31_001).await.is_some()
    })
    .await;
    // the subscribers may still be subscribing
    tokio::time::sleep(Duration::from_millis(300)).await;

    // As the Go broadcaster does: look the uid up in the gate table, publish on that channel.
    let channel = gate_entry(&tables, 31_002).await.unwrap();
    assert_eq!(channel, b.endpoint());
    tables
        .publish(
            &channel,
            &PushMessage {
                bodies: vec![body("for b")],
                uids: vec![31_002],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p = on_b.next_packet().await.unwrap();
    assert_eq!((&p.data[..], p.index), (&b"for b"[..], 0));

    // A broadcast as roma sends it: no uids, and the broadcast flag unset.
    let broadcast = PushMessage {
        bodies: vec![body("everyone")],
        color: "local".into(),
        sid: 1,
        ..Default::default()
    };
    tables.publish(BROADCAST_CHANNEL, &broadcast).await.unwrap();
    assert_eq!(&on_a.next_packet().await.unwrap().data[..], b"everyone");
    assert_eq!(&on_b.next_packet().await.unwrap().data[..], b"everyone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_placement_survives_a_gateway_restart() {
    let redis = RedisServer::start();
    let one = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let two = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let mut first_backend = std::collections::BTreeMap::new();
    for round in 0..2 {
        let gw = gateway(&redis, &[&one, &two]).await;
        for room in 1..=6i64 {
            let uid = 32_000 + round * 100 + room;
            let mut c = TestClient::tcp(gw.addrs().tcp.unwrap(), uid).await;
            let index = c
                .send_out(janus_core::client::Outgoing {
                    module: 6,
                    seq: 1,
                    obj: room,
                    data: Bytes::from_static(b"r"),
                    ..Default::default()
                })
                .await;
            c.answer(index).await;
        }
        for (handle, name) in [(&one, "one"), (&two, "two")] {
            for o in handle.backend().observed().opened {
                if o.kind == janus_tokio::demo::TunnelKind::Room {
                    let entry = first_backend.entry(o.oid).or_insert(name);
                    assert_eq!(
                        *entry, name,
                        "room {} moved backends across the restart",
                        o.oid
                    );
                }
            }
        }
        gw.shutdown().await;
    }
    assert_eq!(first_backend.len(), 6);
    assert!(
        first_backend.values().any(|n| *n == "one") && first_backend.values().any(|n| *n == "two"),
        "placements spread over both"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_loses_no_connection_and_the_gate_table_is_reasserted() {
    let mut redis = RedisServer::start();
    let demo = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let gw = gateway(&redis, &[&demo]).await;
    let mut c = TestClient::tcp(gw.addrs().tcp.unwrap(), 33_001).await;
    let index = c.send(3, 1, 0, b"before").await;
    assert_eq!(&c.reply(index).await.data[..], b"before");

    redis.stop();
    // The session and its open tunnel keep working while Redis is down.
    for _ in 0..5 {
        let index = c.send(3, 1, 0, b"during").await;
        assert_eq!(&c.reply(index).await.data[..], b"during");
    }
    // A new login while Redis is down is served (fail open).
    let mut late = TestClient::tcp(gw.addrs().tcp.unwrap(), 33_002).await;
    let index = late.send(3, 1, 0, b"hello").await;
    // its player tunnel needs the (unreachable) route table: an error answer, not a hang
    let answer = late.answer(index).await;
    assert!(
        answer.data() == Some(b"hello") || matches!(answer, Answer::Failed { .. }),
        "{answer:?}"
    );

    // The outage shows on /metrics: the subscription is down and the failed writes counted.
    wait_for(|| async { gw.metrics().render().contains("janus_redis_up 0") }).await;
    let text = gw.metrics().render();
    assert!(
        text.contains("janus_redis_errors_total{op=\"gate_login\"} 1")
            || text.contains("janus_redis_errors_total{op=\"subscribe\"} 1"),
        "{text}"
    );

    redis.restart(); // empty: a fresh Redis lost every entry
    let tables = RedisTables::connect(&redis_config(&redis)).await.unwrap();
    wait_for(|| async { gate_entry(&tables, 33_001).await.as_deref() == Some(gw.endpoint()) })
        .await;
    wait_for(|| async { gate_entry(&tables, 33_002).await.as_deref() == Some(gw.endpoint()) })
        .await;
    wait_for(|| async { gw.metrics().render().contains("janus_redis_up 1") }).await;
    let index = c.send(3, 1, 0, b"after").await;
    assert_eq!(&c.reply(index).await.data[..], b"after");
    assert_eq!(
        gw.metrics()
            .closed_count(janus_core::CloseReason::ServerError),
        0
    );
}
