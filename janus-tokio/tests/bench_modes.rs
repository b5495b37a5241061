//! janus-bench's gateway-only modes against a real gateway (demo backend, gRPC push service):
//! encrypted broadcast deliveries and idle memory read from the gateway's process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Rig;
use janus_tokio::bench::{BenchOptions, Mode, Target, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_deliveries_reach_every_session() {
    let rig = Rig::start().await;
    let opts = BenchOptions {
        target: Target::Tcp(rig.tcp().to_string()),
        clients: 20,
        mode: Mode::Broadcast,
        payload: 64,
        ramp: Duration::from_millis(200),
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(1500),
        drain: Duration::from_millis(300),
        push_addr: Some(rig.gateway.addrs().grpc.to_string()),
        watch_pids: vec![std::process::id()],
        ..BenchOptions::default()
    };
    let report = run(opts).await.unwrap();
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.handshakes, 20, "{report}");
    let broadcast = report.broadcast.clone().unwrap();
    assert_eq!(broadcast.sessions, 20, "{report}");
    assert_eq!(broadcast.failed, 0, "{report}");
    assert!(broadcast.broadcasts > 10, "{report}");
    // Every accepted broadcast but those still in flight reached all twenty sessions.
    let window = u64::from(janus_tokio::bench::DEFAULT_PUSH_WINDOW);
    assert!(
        report.pushes >= (broadcast.broadcasts - window) * 20,
        "{report}"
    );
    assert!(report.pushes <= broadcast.broadcasts * 20, "{report}");
    assert!(report.pushes_per_sec > 0.0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_to_an_unreachable_push_service_counts_nothing() {
    let rig = Rig::start().await;
    let opts = BenchOptions {
        target: Target::Tcp(rig.tcp().to_string()),
        clients: 2,
        mode: Mode::Broadcast,
        duration: Duration::from_millis(600),
        drain: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        // A port nothing listens on (the gateway's TCP listener speaks no gRPC either way).
        push_addr: Some("127.0.0.1:1".into()),
        ..BenchOptions::default()
    };
    let report = run(opts).await.unwrap();
    let broadcast = report.broadcast.clone().unwrap();
    assert_eq!(broadcast.broadcasts, 0, "{report}");
    assert_eq!(report.pushes, 0, "{report}");
}
