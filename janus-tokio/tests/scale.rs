//! Many sessions on one gateway (issue 13), bounded so it runs in the default suite: 2,000
//! authenticated sessions from four 127.x source addresses, all open at once, every one still
//! served afterwards. The 50,000-session run with memory per session, handshake rate and echo
//! latency is `scripts/scale-50k.sh` (release build, separate processes; README "Running N
//! gateways").
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use common::{TestClient, connect_from, quiet_config, token};
use janus_core::limit::AdmissionConfig;
use janus_tokio::{
    demo::{DemoBackend, DemoConfig},
    gateway::Gateway,
};

const SESSIONS: i64 = 2000;
const SOURCES: [u8; 4] = [2, 3, 4, 5];

/// Raises this process's open-file limit to its hard limit; returns the soft limit now in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack value of the right type.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sessions_from_four_addresses_stay_open_and_served() {
    // Both ends of every connection live in this process.
    assert!(
        raise_fd_limit() >= 2 * SESSIONS as u64 + 512,
        "open-file limit"
    );
    let backend = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let mut s = common::settings(backend.addr());
    // The public defaults per address (4096 connections, 32 handshakes at once), without the
    // new-connection rate a test cannot wait out.
    s.admission = AdmissionConfig {
        connection_rate: None,
        ..AdmissionConfig::default()
    };
    let gw = Gateway::start(s).await.unwrap();
    let tcp = gw.addrs().tcp.unwrap();

    let started = Instant::now();
    let mut clients = Vec::new();
    let uids: Vec<i64> = (500_000..500_000 + SESSIONS).collect();
    // Eight handshakes per address at a time: under the per-address handshake limit.
    for batch in uids.chunks(32) {
        let joined = futures_util::future::join_all(batch.iter().map(|&uid| async move {
            let source = IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                SOURCES[uid as usize % SOURCES.len()],
            ));
            let stream = connect_from(tcp, source).await.unwrap();
            TestClient::over_tcp(stream, uid, quiet_config(token(uid, "local"))).await
        }))
        .await;
        clients.extend(joined);
    }
    let took = started.elapsed();
    eprintln!(
        "{SESSIONS} sessions in {took:?}: {:.0} handshakes/s (debug build, both ends in one process)",
        SESSIONS as f64 / took.as_secs_f64()
    );
    assert_eq!(gw.sessions(), SESSIONS as usize);
    let metrics = gw.metrics().render();
    assert!(
        metrics.contains(&format!("janus_sessions_open {SESSIONS}")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "janus_handshakes_total{{result=\"ok\"}} {SESSIONS}"
        )),
        "{metrics}"
    );

    // Every session is served while all are open: one echo each, 100 at a time.
    for chunk in clients.chunks_mut(100) {
        futures_util::future::join_all(chunk.iter_mut().map(|c| async move {
            let index = c.send(3, 1, 0, b"still here").await;
            assert_eq!(&c.reply(index).await.data[..], b"still here");
        }))
        .await;
    }
    assert_eq!(gw.sessions(), SESSIONS as usize);
    for reason in janus_core::CloseReason::ALL {
        assert_eq!(gw.metrics().closed_count(reason), 0, "{reason:?}");
    }
}
