//! The Redis route tables, gate table and pub/sub against a real 3-master Redis Cluster and a
//! real Sentinel-managed primary/replica set (spec §4.1, §5.2), both started here from
//! `redis-server` processes: per-key atomicity of compare-and-expire and compare-and-delete on
//! the cluster, pushes published on any node, two gateways on one cluster, and a Sentinel
//! failover under traffic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/redis_topology.rs"]
mod redis_topology;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::TestClient;
use janus_core::route::route_key;
use janus_proto::{
    broadcaster::service::push::v1::{PushBody, PushMessage},
    message::sc_server_logout::Code as LogoutCode,
};
use janus_tokio::{
    cluster::redis::{BROADCAST_CHANNEL, RedisConfig, RedisTables, RedisTopology, run_subscriber},
    demo::{DemoBackend, DemoConfig, DemoHandle},
    gateway::Gateway,
};
use prost::Message as _;
use redis_topology::{MASTER_NAME, RedisCluster, SentinelSet};
use tokio::sync::{mpsc, oneshot, watch};

const WAIT: Duration = Duration::from_secs(10);

fn cluster_config(cluster: &RedisCluster) -> RedisConfig {
    let addrs = cluster.addrs();
    RedisConfig {
        addr: addrs[0].clone(),
        topology: RedisTopology::Cluster {
            seeds: addrs[1..].to_vec(),
        },
        dial_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    }
}

fn sentinel_config(set: &SentinelSet) -> RedisConfig {
    RedisConfig {
        // Unused with Sentinel: a wrong address proves it.
        addr: "127.0.0.1:1".into(),
        topology: RedisTopology::Sentinel {
            master_name: MASTER_NAME.into(),
            sentinels: set.sentinel_addrs(),
            password: String::new(),
        },
        dial_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    }
}

fn gate_key(uid: i64, color: &str) -> String {
    route_key("janus.gate.interface", color, uid)
}

fn pttl(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(conn).unwrap()
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not reached in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn body(text: &'static str) -> PushBody {
    PushBody {
        data: Bytes::from_static(text.as_bytes()),
        r#mod: 3,
        seq: 2,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Redis Cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_tables_stay_atomic_per_key_across_three_masters() {
    let cluster = RedisCluster::start();
    let tables = RedisTables::connect(&cluster_config(&cluster))
        .await
        .unwrap();
    let ttl = Duration::from_secs(600);
    let short = Duration::from_secs(10);

    // Colours hash to different slots, so their keys live on different masters.
    let colours: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    let nodes: std::collections::BTreeSet<usize> = colours
        .iter()
        .map(|c| cluster.node_of(&gate_key(1, c)))
        .collect();
    assert_eq!(nodes.len(), 3, "the test colours must cover every master");

    for colour in &colours {
        let key = gate_key(7, colour);
        let node = cluster.node_of(&key);
        let mut direct = cluster.node(node);
        // SETNX semantics (player/room tables).
        let placement = route_key("roma.player.service", colour, 7);
        assert!(
            tables
                .set_nx_ex(&placement, "10.0.0.1:9000", ttl)
                .await
                .unwrap()
        );
        assert!(
            !tables
                .set_nx_ex(&placement, "10.0.0.2:9000", ttl)
                .await
                .unwrap()
        );
        assert_eq!(
            tables.get(&placement).await.unwrap().as_deref(),
            Some("10.0.0.1:9000")
        );
        // The gate table: SET..GET, compare-and-expire, compare-and-delete, on the key's node.
        assert_eq!(
            tables.set_ex_get(&key, "gate-a", short).await.unwrap(),
            None
        );
        assert!(!tables.expire_if_same(&key, "gate-b", ttl).await.unwrap());
        assert!(pttl(&mut direct, &key) <= 10_000, "another gate renewed it");
        assert!(tables.expire_if_same(&key, "gate-a", ttl).await.unwrap());
        assert!(pttl(&mut direct, &key) > 10_000, "own renewal not applied");
        assert!(!tables.delete_if_same(&key, "gate-b").await.unwrap());
        let held: Option<String> = redis::cmd("GET").arg(&key).query(&mut direct).unwrap();
        assert_eq!(held.as_deref(), Some("gate-a"), "another gate deleted it");
        assert!(tables.delete_if_same(&key, "gate-a").await.unwrap());
        assert!(
            !tables.expire_if_same(&key, "gate-a", ttl).await.unwrap(),
            "gone"
        );
    }

    // A batch renewal across every slot: ours renewed, others' untouched, missing ones
    // reported, even with every node's script cache flushed.
    let mut entries = Vec::new();
    for uid in 0..1200_i64 {
        let key = gate_key(uid, &colours[uid as usize % colours.len()]);
        match uid % 3 {
            0 => assert!(tables.set_nx_ex(&key, "gate-a", short).await.unwrap()),
            1 => assert!(tables.set_nx_ex(&key, "gate-b", short).await.unwrap()),
            _ => {}
        }
        entries.push((key, "gate-a".to_owned()));
    }
    for i in 0..3 {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut cluster.node(i))
            .unwrap();
    }
    let started = Instant::now();
    let renewed = tables.expire_many_if_same(&entries, ttl).await.unwrap();
    eprintln!(
        "cluster expire_many_if_same: 1200 keys over 3 masters in {:?}",
        started.elapsed()
    );
    for (uid, ok) in renewed.iter().enumerate() {
        assert_eq!(*ok, uid % 3 == 0, "uid {uid}");
        let key = &entries[uid].0;
        let ttl_left = pttl(&mut cluster.node(cluster.node_of(key)), key);
        match uid % 3 {
            0 => assert!(ttl_left > 10_000, "uid {uid}: {ttl_left}"),
            1 => assert!(ttl_left <= 10_000, "uid {uid}: {ttl_left}"),
            _ => assert_eq!(ttl_left, -2, "uid {uid}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_pushes_published_on_any_node_reach_the_subscriber_even_after_its_node_dies() {
    let mut cluster = RedisCluster::start();
    let cfg = cluster_config(&cluster);
    let endpoint = "10.0.1.31:9100".to_owned();
    let (tx, mut rx) = mpsc::channel(16);
    let (state_tx, mut state) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let sub = tokio::spawn(run_subscriber(
        cfg.clone(),
        vec![endpoint.clone(), BROADCAST_CHANNEL.to_owned()],
        tx,
        state_tx,
        async move {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::timeout(WAIT, state.wait_for(|up| *up))
        .await
        .unwrap()
        .unwrap();

    // As the Go broadcaster's cluster client does: a plain PUBLISH on whichever node.
    let push = |uid: i64| PushMessage {
        bodies: vec![body("p")],
        uids: vec![uid],
        ..Default::default()
    };
    for node in 0..3 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&endpoint)
            .arg(push(node as i64).encode_to_vec())
            .query(&mut cluster.node(node))
            .unwrap();
        let (channel, message) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (channel.as_str(), message),
            (endpoint.as_str(), push(node as i64))
        );
    }
    // Through the gateway's own cluster client too.
    let tables = RedisTables::connect(&cfg).await.unwrap();
    tables.publish(BROADCAST_CHANNEL, &push(9)).await.unwrap();
    let (channel, _) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(channel, BROADCAST_CHANNEL);

    // The subscriber's node (the first seed) dies: it moves to another node.
    cluster.nodes[0].stop();
    tokio::time::timeout(WAIT, state.wait_for(|up| !*up))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(WAIT, state.wait_for(|up| *up))
        .await
        .expect("re-subscribed on another node")
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&endpoint)
        .arg(push(42).encode_to_vec())
        .query(&mut cluster.node(2))
        .unwrap();
    let (_, message) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message, push(42));

    stop_tx.send(()).unwrap();
    tokio::time::timeout(WAIT, sub).await.unwrap().unwrap();
}

async fn gateway(redis: RedisConfig, demo: &DemoHandle) -> Gateway {
    let mut s = common::settings(demo.addr());
    s.redis = Some(redis);
    s.gate_ttl = Duration::from_secs(4);
    Gateway::start(s).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_a_cluster_kick_push_and_broadcast_across() {
    let cluster = RedisCluster::start();
    let demo = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let a = gateway(cluster_config(&cluster), &demo).await;
    let b = gateway(cluster_config(&cluster), &demo).await;
    let tables = RedisTables::connect(&cluster_config(&cluster))
        .await
        .unwrap();
    let entry = |uid| {
        let tables = tables.clone();
        async move { tables.get(&gate_key(uid, "local")).await.unwrap() }
    };

    // A login on b kicks the same uid on a at once.
    let mut first = TestClient::tcp(a.addrs().tcp.unwrap(), 40_001).await;
    wait_for("a's gate entry", || async {
        entry(40_001).await.as_deref() == Some(a.endpoint())
    })
    .await;
    let started = Instant::now();
    let mut second = TestClient::tcp(b.addrs().tcp.unwrap(), 40_001).await;
    let (closed, logout, _) = first.closed_after().await;
    assert!(
        closed && logout == Some(LogoutCode::ConflictingLogin),
        "{logout:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(entry(40_001).await.as_deref(), Some(b.endpoint()));

    // The session on b works (its placement is in the cluster's player table).
    let index = second.send(3, 1, 0, b"on b").await;
    assert_eq!(&second.reply(index).await.data[..], b"on b");

    // A push as the Go broadcaster sends it: gate-table lookup, PUBLISH on that channel.
    let mut on_a = TestClient::tcp(a.addrs().tcp.unwrap(), 40_002).await;
    wait_for("both gate entries", || async {
        entry(40_002).await.is_some()
    })
    .await;
    let channel = entry(40_001).await.unwrap();
    tables
        .publish(
            &channel,
            &PushMessage {
                bodies: vec![body("for 40001")],
                uids: vec![40_001],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(&second.next_packet().await.unwrap().data[..], b"for 40001");
    // A broadcast (no uids, as roma sends it) reaches both gateways.
    tables
        .publish(
            BROADCAST_CHANNEL,
            &PushMessage {
                bodies: vec![body("everyone")],
                color: "local".into(),
                sid: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(&on_a.next_packet().await.unwrap().data[..], b"everyone");
    assert_eq!(&second.next_packet().await.unwrap().data[..], b"everyone");

    // Logging out deletes only the gateway's own entry.
    drop(on_a);
    wait_for("a's entry deleted on logout", || async {
        entry(40_002).await.is_none()
    })
    .await;
    assert_eq!(entry(40_001).await.as_deref(), Some(b.endpoint()));
}

// ---------------------------------------------------------------------------------------------
// Sentinel

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_traffic_loses_no_session_and_the_gate_table_is_reasserted() {
    let mut set = SentinelSet::start();
    let demo = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let gw = gateway(sentinel_config(&set), &demo).await;
    let tcp = gw.addrs().tcp.unwrap();
    let tables = RedisTables::connect(&sentinel_config(&set)).await.unwrap();

    // Traffic: clients echoing in a closed loop the whole time.
    const PLAYERS: i64 = 20;
    let stop = Arc::new(AtomicBool::new(false));
    let echoes = Arc::new(AtomicU64::new(0));
    let mut players = Vec::new();
    for uid in 50_000..50_000 + PLAYERS {
        let mut c = TestClient::tcp(tcp, uid).await;
        let (stop, echoes) = (Arc::clone(&stop), Arc::clone(&echoes));
        players.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let index = c.send(3, 1, 0, b"echo").await;
                assert_eq!(&c.reply(index).await.data[..], b"echo", "uid {uid}");
                echoes.fetch_add(1, Ordering::Relaxed);
            }
            c
        }));
    }
    let every_entry = |uids: std::ops::Range<i64>| {
        let tables = tables.clone();
        let endpoint = gw.endpoint().to_owned();
        async move {
            for uid in uids {
                match tables.get(&gate_key(uid, "local")).await {
                    Ok(Some(e)) if e == endpoint => {}
                    _ => return false,
                }
            }
            true
        }
    };
    wait_for("every gate entry on the primary", || {
        every_entry(50_000..50_000 + PLAYERS)
    })
    .await;

    // The primary dies; meanwhile more players log in (fail open: served, written later).
    let before = echoes.load(Ordering::Relaxed);
    let killer = std::thread::spawn(move || {
        let took = set.kill_primary_and_wait_failover();
        (set, took)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut late = Vec::new();
    for uid in 60_000..60_005 {
        late.push(TestClient::tcp(tcp, uid).await);
    }
    let (set, failover) = tokio::task::spawn_blocking(move || killer.join().unwrap())
        .await
        .unwrap();
    eprintln!("sentinel failover took {failover:?}");

    // The gateway follows the new primary: every entry, including the logins made during the
    // failover, is (re)written there.
    let reasserted = Instant::now();
    wait_for("gate table re-asserted on the new primary", || async {
        every_entry(50_000..50_000 + PLAYERS).await && every_entry(60_000..60_005).await
    })
    .await;
    eprintln!(
        "gate table re-asserted {:?} after the failover",
        reasserted.elapsed()
    );
    let mut direct = redis::Client::open(format!("redis://{}/", set.replica.addr()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let held: Option<String> = redis::cmd("GET")
        .arg(gate_key(60_004, "local"))
        .query_async(&mut direct)
        .await
        .unwrap();
    assert_eq!(
        held.as_deref(),
        Some(gw.endpoint()),
        "on the promoted replica"
    );

    // Pushes through the new primary reach the sessions. Pub/sub is at most once, and the
    // sentinels end every client connection of the promoted replica once it is reconfigured
    // (CLIENT KILL), so a push sent in that instant is lost: retry until one arrives.
    wait_for("subscribed again", || async {
        gw.metrics().render().contains("janus_redis_up 1")
    })
    .await;
    let mut delivered = false;
    for _ in 0..4 {
        let push = PushMessage {
            bodies: vec![body("after failover")],
            uids: vec![60_000],
            ..Default::default()
        };
        if tables.publish(gw.endpoint(), &push).await.is_err() {
            continue;
        }
        if let Some(packet) = late[0].next_packet().await {
            assert_eq!(&packet.data[..], b"after failover");
            delivered = true;
            break;
        }
    }
    assert!(delivered, "no push reached the session after the failover");

    // Traffic kept flowing, and no session was lost.
    wait_for("echoes continue", || {
        let now = echoes.load(Ordering::Relaxed);
        async move { now > before + 100 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut kept = Vec::new();
    for p in players {
        kept.push(tokio::time::timeout(WAIT, p).await.unwrap().unwrap());
    }
    let text = gw.metrics().render();
    assert!(
        text.contains(&format!("janus_sessions_open {}", PLAYERS + 5)),
        "{text}"
    );
    for reason in janus_core::CloseReason::ALL {
        assert_eq!(gw.metrics().closed_count(reason), 0, "{reason:?}");
    }
}
