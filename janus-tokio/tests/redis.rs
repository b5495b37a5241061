//! The Redis route tables and push subscriber against a real `redis-server` (spec §4.1, §5.2),
//! including an outage: Redis killed and restarted on the same port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/redis_server.rs"]
mod redis_server;

use janus_core::route::route_key;
use std::time::{Duration, Instant};

use janus_proto::broadcaster::service::push::v1::{PushBody, PushMessage};
use janus_tokio::cluster::redis::{
    BROADCAST_CHANNEL, RedisConfig, RedisError, RedisTables, run_subscriber,
};
use redis_server::RedisServer;
use tokio::sync::{mpsc, oneshot, watch};

const IO_TIMEOUT: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(10);

fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig {
        addr: server.addr(),
        password: String::new(),
        dial_timeout: Duration::from_millis(500),
        io_timeout: IO_TIMEOUT,
        ..RedisConfig::default()
    }
}

/// A plain connection for checks the API does not offer (PTTL, raw PUBLISH, SCRIPT FLUSH).
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{}/", server.addr()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

fn message(uid: i64, data: &[u8]) -> PushMessage {
    PushMessage {
        bodies: vec![PushBody {
            data: data.to_vec().into(),
            data_version: 3,
            obj: uid,
            r#mod: 2,
            seq: 7,
        }],
        uids: vec![uid],
        broadcast: false,
        color: "local".to_owned(),
        sid: 1,
    }
}

async fn wait_state(state: &mut watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(WAIT, state.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("subscriber state never became {want}"))
        .unwrap();
}

async fn recv(rx: &mut mpsc::Receiver<(String, PushMessage)>) -> (String, PushMessage) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no message from the subscriber")
        .expect("subscriber stopped")
}

#[test]
fn key_format_matches_spec_example() {
    assert_eq!(
        route_key("janus.gate.interface", "local", 10001),
        "r_janus.gate.interface_{local}_{10001}"
    );
    assert_eq!(
        route_key("roma.player.service", "blue", -5),
        "r_roma.player.service_{blue}_{-5}"
    );
}

#[tokio::test]
async fn connect_fails_fast_when_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = RedisConfig {
        addr: format!("127.0.0.1:{port}"),
        ..RedisConfig::default()
    };
    let started = Instant::now();
    let err = RedisTables::connect(&cfg).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        started.elapsed() < cfg.dial_timeout,
        "{:?}",
        started.elapsed()
    );
    let bad = RedisConfig {
        addr: "no-port".to_owned(),
        ..RedisConfig::default()
    };
    assert!(matches!(
        RedisTables::connect(&bad).await,
        Err(RedisError::InvalidAddr { .. })
    ));
}

#[tokio::test]
async fn set_nx_ex_wins_once_and_applies_ttl() {
    let server = RedisServer::start();
    let tables = RedisTables::connect(&config(&server)).await.unwrap();
    let mut conn = raw(&server).await;
    let key = route_key("roma.player.service", "local", 42);
    let ttl = Duration::from_secs(600);

    assert_eq!(tables.get(&key).await.unwrap(), None);
    assert!(tables.set_nx_ex(&key, "10.0.0.1:9000", ttl).await.unwrap());
    assert!(!tables.set_nx_ex(&key, "10.0.0.2:9000", ttl).await.unwrap());
    assert_eq!(
        tables.get(&key).await.unwrap().as_deref(),
        Some("10.0.0.1:9000")
    );
    let left = pttl(&mut conn, &key).await;
    assert!(left > 599_000 && left <= 600_000, "PTTL {left}");
}

#[tokio::test]
async fn set_ex_get_returns_previous_value() {
    let server = RedisServer::start();
    let tables = RedisTables::connect(&config(&server)).await.unwrap();
    let mut conn = raw(&server).await;
    let key = route_key("janus.gate.interface", "local", 10001);

    let ttl = Duration::from_secs(30);
    assert_eq!(
        tables.set_ex_get(&key, "gate-a:9100", ttl).await.unwrap(),
        None
    );
    assert_eq!(
        tables
            .set_ex_get(&key, "gate-b:9100", Duration::from_secs(600))
            .await
            .unwrap()
            .as_deref(),
        Some("gate-a:9100")
    );
    assert_eq!(
        tables.get(&key).await.unwrap().as_deref(),
        Some("gate-b:9100")
    );
    let left = pttl(&mut conn, &key).await;
    assert!(left > 30_000, "TTL not replaced: PTTL {left}");
}

#[tokio::test]
async fn expire_and_delete_only_act_on_the_same_value() {
    let server = RedisServer::start();
    let tables = RedisTables::connect(&config(&server)).await.unwrap();
    let mut conn = raw(&server).await;
    let key = route_key("janus.gate.interface", "local", 7);
    let short = Duration::from_secs(10);
    let long = Duration::from_secs(600);

    assert!(
        !tables.expire_if_same(&key, "gate-a", long).await.unwrap(),
        "missing key"
    );
    assert!(
        !tables.delete_if_same(&key, "gate-a").await.unwrap(),
        "missing key"
    );

    tables.set_ex_get(&key, "gate-a", short).await.unwrap();
    assert!(!tables.expire_if_same(&key, "gate-b", long).await.unwrap());
    assert!(
        pttl(&mut conn, &key).await <= 10_000,
        "other gate renewed the key"
    );
    assert!(tables.expire_if_same(&key, "gate-a", long).await.unwrap());
    assert!(
        pttl(&mut conn, &key).await > 10_000,
        "own renewal not applied"
    );

    assert!(!tables.delete_if_same(&key, "gate-b").await.unwrap());
    assert_eq!(tables.get(&key).await.unwrap().as_deref(), Some("gate-a"));
    assert!(tables.delete_if_same(&key, "gate-a").await.unwrap());
    assert_eq!(tables.get(&key).await.unwrap(), None);
}

#[tokio::test]
async fn expire_many_if_same_renews_a_thousand_entries_in_one_call() {
    let server = RedisServer::start();
    let tables = RedisTables::connect(&config(&server)).await.unwrap();
    let mut conn = raw(&server).await;
    let short = Duration::from_secs(10);
    let long = Duration::from_secs(600);

    // uid % 3: 0 → ours, 1 → taken by another gate, 2 → missing.
    let mut entries = Vec::new();
    for uid in 0..1000_i64 {
        let key = route_key("janus.gate.interface", "local", uid);
        match uid % 3 {
            0 => tables.set_nx_ex(&key, "gate-a", short).await.unwrap(),
            1 => tables.set_nx_ex(&key, "gate-b", short).await.unwrap(),
            _ => false,
        };
        entries.push((key, "gate-a".to_owned()));
    }
    // An empty script cache (as after a Redis restart) must not make the batch fail.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();

    let started = Instant::now();
    let renewed = tables.expire_many_if_same(&entries, long).await.unwrap();
    let took = started.elapsed();
    eprintln!("expire_many_if_same: 1000 entries in {took:?}");

    assert_eq!(renewed.len(), 1000);
    for (uid, ok) in renewed.iter().enumerate() {
        assert_eq!(*ok, uid % 3 == 0, "uid {uid}");
    }
    assert!(pttl(&mut conn, &entries[0].0).await > 10_000);
    assert!(pttl(&mut conn, &entries[1].0).await <= 10_000);
    assert_eq!(pttl(&mut conn, &entries[2].0).await, -2);
    assert!(
        tables
            .expire_many_if_same(&[], long)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_delivers_endpoint_and_broadcast_messages() {
    let server = RedisServer::start();
    let cfg = config(&server);
    let tables = RedisTables::connect(&cfg).await.unwrap();
    let endpoint = "10.0.1.31:9100".to_owned();
    let (tx, mut rx) = mpsc::channel(16);
    let (state_tx, mut state) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let sub = tokio::spawn(run_subscriber(
        cfg,
        vec![endpoint.clone(), BROADCAST_CHANNEL.to_owned()],
        tx,
        state_tx,
        async move {
            let _ = stop_rx.await;
        },
    ));
    wait_state(&mut state, true).await;

    let push = message(10001, b"hello");
    tables.publish(&endpoint, &push).await.unwrap();
    assert_eq!(recv(&mut rx).await, (endpoint.clone(), push));

    // Garbage on a channel is skipped, not fatal.
    let mut conn = raw(&server).await;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&endpoint)
        .arg(&[0xff_u8, 0xff, 0xff][..])
        .query_async(&mut conn)
        .await
        .unwrap();

    let broadcast = PushMessage {
        broadcast: true,
        uids: Vec::new(),
        ..message(0, b"to everyone")
    };
    tables.publish(BROADCAST_CHANNEL, &broadcast).await.unwrap();
    assert_eq!(
        recv(&mut rx).await,
        (BROADCAST_CHANNEL.to_owned(), broadcast)
    );
    // Another gate's channel is not ours.
    tables
        .publish("10.0.1.32:9100", &message(1, b"x"))
        .await
        .unwrap();

    stop_tx.send(()).unwrap();
    tokio::time::timeout(WAIT, sub).await.unwrap().unwrap();
    assert!(!*state.borrow(), "state after shutdown");
    assert!(rx.try_recv().is_err(), "message for another gate delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_restart() {
    let mut server = RedisServer::start();
    let cfg = config(&server);
    let tables = RedisTables::connect(&cfg).await.unwrap();
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
    wait_state(&mut state, true).await;
    let key = route_key("janus.gate.interface", "local", 10001);
    tables
        .set_ex_get(&key, &endpoint, Duration::from_secs(600))
        .await
        .unwrap();

    server.stop();
    let down = Instant::now();
    // Every call fails, and none outlives io_timeout (plus scheduling slack).
    for _ in 0..5 {
        let started = Instant::now();
        let err = tables.get(&key).await.unwrap_err();
        let took = started.elapsed();
        eprintln!("call while down: {took:?}: {err}");
        assert!(err.is_unavailable(), "{err}");
        assert!(
            took < IO_TIMEOUT + Duration::from_millis(200),
            "hung for {took:?}"
        );
    }
    let started = Instant::now();
    assert!(
        tables
            .publish(&endpoint, &message(1, b"lost"))
            .await
            .is_err()
    );
    assert!(started.elapsed() < IO_TIMEOUT + Duration::from_millis(200));
    wait_state(&mut state, false).await;
    eprintln!("subscriber reported down after {:?}", down.elapsed());

    server.restart();
    let up = Instant::now();
    // The same RedisTables recovers by itself (the first call may still see the old failure).
    let mut failed = 0;
    loop {
        match tables
            .set_ex_get(&key, &endpoint, Duration::from_secs(600))
            .await
        {
            Ok(previous) => {
                // The restarted server is empty (no persistence).
                assert_eq!(previous, None);
                break;
            }
            Err(e) => {
                failed += 1;
                assert!(up.elapsed() < WAIT, "tables never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!(
        "tables recovered {:?} after restart ({failed} failed calls first)",
        up.elapsed()
    );
    assert!(failed <= 1, "{failed} calls failed after Redis came back");

    wait_state(&mut state, true).await;
    eprintln!("subscriber re-subscribed {:?} after restart", up.elapsed());
    let push = message(10001, b"after restart");
    tables.publish(&endpoint, &push).await.unwrap();
    assert_eq!(recv(&mut rx).await, (endpoint.clone(), push));
    let broadcast = PushMessage {
        broadcast: true,
        ..message(0, b"broadcast after restart")
    };
    tables.publish(BROADCAST_CHANNEL, &broadcast).await.unwrap();
    assert_eq!(
        recv(&mut rx).await,
        (BROADCAST_CHANNEL.to_owned(), broadcast)
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(WAIT, sub).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out_instead_of_hanging() {
    let server = RedisServer::start();
    let tables = RedisTables::connect(&config(&server)).await.unwrap();
    let key = route_key("roma.player.service", "local", 1);
    assert!(
        tables
            .set_nx_ex(&key, "a:1", Duration::from_secs(60))
            .await
            .unwrap()
    );

    server.pause();
    for _ in 0..3 {
        let started = Instant::now();
        let err = tables.get(&key).await.unwrap_err();
        let took = started.elapsed();
        eprintln!("call to a frozen redis: {took:?}: {err}");
        assert!(err.is_unavailable(), "{err}");
        assert!(
            took < IO_TIMEOUT + Duration::from_millis(200),
            "hung for {took:?}"
        );
    }
    let started = Instant::now();
    let entries = vec![(key.clone(), "a:1".to_owned())];
    assert!(
        tables
            .expire_many_if_same(&entries, Duration::from_secs(60))
            .await
            .is_err()
    );
    assert!(started.elapsed() < IO_TIMEOUT + Duration::from_millis(200));

    server.resume();
    let up = Instant::now();
    loop {
        match tables.get(&key).await {
            Ok(v) => {
                assert_eq!(v.as_deref(), Some("a:1"));
                break;
            }
            Err(e) => {
                assert!(up.elapsed() < WAIT, "never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!("recovered {:?} after resume", up.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_sent_on_every_connection() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let wrong = RedisConfig {
        password: "nope".to_owned(),
        ..config(&server)
    };
    let err = RedisTables::connect(&wrong).await.unwrap_err();
    assert!(
        !err.is_unavailable(),
        "auth failure is not an outage: {err}"
    );

    let cfg = RedisConfig {
        password: "s3cret".to_owned(),
        ..config(&server)
    };
    assert!(!format!("{cfg:?}").contains("s3cret"), "password in Debug");
    let tables = RedisTables::connect(&cfg).await.unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    let (state_tx, mut state) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let sub = tokio::spawn(run_subscriber(
        cfg,
        vec!["gate-a:9100".to_owned()],
        tx,
        state_tx,
        async move {
            let _ = stop_rx.await;
        },
    ));
    wait_state(&mut state, true).await;
    let push = message(5, b"authenticated");
    tables.publish("gate-a:9100", &push).await.unwrap();
    assert_eq!(recv(&mut rx).await, ("gate-a:9100".to_owned(), push));
    stop_tx.send(()).unwrap();
    tokio::time::timeout(WAIT, sub).await.unwrap().unwrap();
}
