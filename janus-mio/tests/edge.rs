//! The gateway's client behaviour through edge → hub → backend: real clients (janus-core's
//! client over TCP and WebSocket), a janus-mio edge, a janus-tokio hub and the demo backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../janus-tokio/tests/common.rs"]
mod common;
mod support;

use std::{sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use janus_core::{
    CloseReason,
    client::Outgoing,
    system::{HEARTBEAT_SEQ, SYSTEM_MODULE},
};
use janus_proto::{
    broadcaster::service::push::v1::{
        BroadcastRequest, MulticastRequest, PushBody, PushRequest,
        push_service_client::PushServiceClient,
    },
    message::sc_server_logout::Code as LogoutCode,
};
use janus_tokio::demo::{self, TunnelKind};
use support::{Answer, Rig, TestClient, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_websocket_clients_reach_the_backend_through_edge_and_hub() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 40_001).await;
    let hb = janus_core::system::heartbeat_body(common::now().unix_secs());
    let index = c.send(SYSTEM_MODULE, HEARTBEAT_SEQ, 0, &hb).await;
    let reply = c.reply(index).await;
    assert_eq!(
        (reply.r#mod, reply.seq, reply.obj),
        (SYSTEM_MODULE, HEARTBEAT_SEQ, 40_001)
    );
    let index = c.send(3, 7, 0, b"hello \x00\xff").await;
    assert_eq!(&c.reply(index).await.data[..], b"hello \x00\xff");

    let mut w = TestClient::ws(&rig.ws_url(), 40_002).await;
    let index = w.send(3, 1, 0, b"over websocket").await;
    assert_eq!(&w.reply(index).await.data[..], b"over websocket");

    // The backend sees the hub as the gateway, and the client's own address.
    let seen = rig.demo.backend().observed();
    let opened = seen.opened.iter().find(|o| o.uid == 40_001).unwrap();
    assert_eq!(opened.kind, TunnelKind::Player);
    let md = &opened.metadata;
    assert_eq!(md.oid.as_deref(), Some("40001"));
    assert_eq!(md.client_ip.as_deref(), Some(c.local.to_string().as_str()));
    let referer = format!("{}#16", rig.hub.endpoint());
    assert_eq!(
        md.referer.as_deref(),
        Some(referer.as_str()),
        "hub endpoint, edge worker id"
    );
    // Both sessions are registered on the hub like direct connections.
    assert_eq!(rig.hub.sessions(), 2);
    let metrics = rig.edge.metrics();
    assert_eq!(metrics.sessions_authenticated.load(Ordering::Relaxed), 2);

    // Admin HTTP on the edge.
    let http = rig.edge.addrs().http.unwrap();
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("janus_sessions_open 2"), "{body}");
    assert!(body.contains("janus_edge_links_up 1"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_compression_and_bad_input_behave_as_on_the_gateway() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 40_011).await;
    // Room routing: the room tunnel of the packet's obj.
    let index = c
        .send_out(Outgoing {
            module: 6,
            seq: 2,
            obj: 4242,
            data: Bytes::from_static(b"room"),
            ..Default::default()
        })
        .await;
    let reply = c.reply(index).await;
    assert_eq!((reply.obj, &reply.data[..]), (4242, &b"room"[..]));
    assert!(
        rig.demo
            .backend()
            .observed()
            .opened
            .iter()
            .any(|o| o.kind == TunnelKind::Room && o.oid == 4242 && o.uid == 40_011)
    );
    // Compression both ways.
    let body = vec![b'x'; 8000];
    let index = c
        .send_out(Outgoing {
            module: 3,
            seq: 1,
            data: body.clone().into(),
            compress: true,
            ..Default::default()
        })
        .await;
    assert_eq!(c.reply(index).await.data.to_vec(), body);
    let before = c.received;
    let index = c.send(3, 1, 0, b"big:60000").await;
    assert_eq!(c.reply(index).await.data, demo::big_payload(60_000));
    assert!(c.received - before < 16_384, "compressed on the wire");

    // A spoofed player obj closes the session at the edge; nothing reaches the backend.
    let mut spoof = TestClient::tcp(rig.tcp(), 40_012).await;
    spoof.send(3, 1, 77_777, b"I am someone else").await;
    let (closed, logout, _) = spoof.closed_after().await;
    assert!(closed && logout.is_none());
    assert!(
        rig.demo
            .backend()
            .observed()
            .requests
            .iter()
            .all(|r| r.request.obj != 77_777)
    );
    assert_eq!(
        rig.edge.metrics().closed_count(CloseReason::ObjectNotOwned),
        1
    );

    // A replayed packet closes the connection.
    let mut replay = TestClient::tcp(rig.tcp(), 40_013).await;
    replay
        .session
        .send(
            common::now(),
            Outgoing {
                module: 3,
                seq: 1,
                data: Bytes::from_static(b"once"),
                ..Default::default()
            },
        )
        .unwrap();
    let frame = replay.session.poll_transmit().unwrap();
    replay.write_raw(frame.clone()).await;
    replay.write_raw(frame).await;
    let (closed, _, _) = replay.closed_after().await;
    assert!(closed);
    assert_eq!(
        rig.edge.metrics().closed_count(CloseReason::IndexMismatch),
        1
    );

    // Garbage instead of a handshake.
    let mut raw = tokio::net::TcpStream::connect(rig.tcp()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        common::WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut sink),
    )
    .await;
    assert!(sink.is_empty());
    eventually("malformed frame counted", || {
        rig.edge.metrics().closed_count(CloseReason::MalformedFrame) == 1
    })
    .await;
    // The healthy session is still served.
    let index = c.send(3, 1, 0, b"still fine").await;
    assert_eq!(&c.reply(index).await.data[..], b"still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_multicasts_broadcasts_and_kicks_reach_edge_clients() {
    let rig = Rig::start().await;
    let mut a = TestClient::tcp_color(rig.tcp(), 40_021, "local").await;
    let mut b = TestClient::ws(&rig.ws_url(), 40_022).await;
    let mut blue = TestClient::tcp_color(rig.tcp(), 40_023, "blue").await;
    support::eventually("three sessions on the hub", || rig.hub.sessions() == 3).await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", rig.hub.addrs().grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut grpc = PushServiceClient::new(channel);
    let body = |s: &'static str| PushBody {
        data: Bytes::from_static(s.as_bytes()),
        data_version: 3,
        obj: 0,
        r#mod: 3,
        seq: 2,
    };
    let r = grpc
        .push(PushRequest {
            bodies: vec![body("to a")],
            color: "local".into(),
            sid: 1,
            uid: 40_021,
        })
        .await
        .unwrap();
    assert!(r.into_inner().pushed);
    let p = a.next_packet().await.unwrap();
    assert_eq!((&p.data[..], p.index, p.data_version), (&b"to a"[..], 0, 3));

    let r = grpc
        .multicast(MulticastRequest {
            bodies: vec![body("a and b")],
            uids: vec![40_021, 40_022, 99],
            color: "local".into(),
        })
        .await
        .unwrap();
    let mut pushed = r.into_inner().pushed_uids;
    pushed.sort_unstable();
    assert_eq!(pushed, vec![40_021, 40_022]);
    assert_eq!(&a.next_packet().await.unwrap().data[..], b"a and b");
    assert_eq!(&b.next_packet().await.unwrap().data[..], b"a and b");

    grpc.broadcast(BroadcastRequest {
        bodies: vec![body("everyone local")],
        color: "local".into(),
        sid: 1,
    })
    .await
    .unwrap();
    assert_eq!(&a.next_packet().await.unwrap().data[..], b"everyone local");
    assert_eq!(&b.next_packet().await.unwrap().data[..], b"everyone local");
    let index = blue.send(3, 1, 0, b"mine").await;
    let p = blue.next_packet().await.unwrap();
    assert_eq!(
        (p.index, &p.data[..]),
        (index, &b"mine"[..]),
        "blue got no broadcast"
    );

    // A second login of a's uid, directly on the hub, kicks the edge session.
    let _direct = TestClient::tcp(rig.hub.addrs().tcp.unwrap(), 40_021).await;
    let (closed, logout, _) = a.closed_after().await;
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::ConflictingLogin));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hub_moves_its_sessions_to_another_without_reconnecting() {
    let demo = demo::DemoBackend::new(demo::DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    // Hub A runs on its own runtime, so it can die at once, sockets and all.
    let backend = demo.addr();
    let (a_tx, a_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let a_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let hub = rt.block_on(support::hub(backend, "127.0.0.1:0".parse().unwrap()));
        a_tx.send(hub.addrs().relay.unwrap()).unwrap();
        kill_rx.recv().unwrap();
        drop(rt);
    });
    let a_relay = a_rx.recv().unwrap();
    let hub_b = support::hub(backend, "127.0.0.1:0".parse().unwrap()).await;
    let settings =
        support::edge_settings(&[a_relay, hub_b.addrs().relay.unwrap()], support::EDGE_SEED);
    let edge = support::edge(settings, 2).await;
    let mut c = TestClient::tcp(edge.addrs().tcp.unwrap(), 40_031).await;
    let index = c.send(3, 1, 0, b"on a").await;
    assert_eq!(&c.reply(index).await.data[..], b"on a");
    assert_eq!(hub_b.sessions(), 0, "the first session went to hub A");

    kill_tx.send(()).unwrap();
    a_thread.join().unwrap();
    support::eventually("session moved to hub B", || hub_b.sessions() == 1).await;
    // The same connection goes on; its next packet opens a tunnel through hub B.
    let index = c.send(3, 1, 0, b"on b").await;
    assert_eq!(&c.reply(index).await.data[..], b"on b");
    let m = edge.metrics();
    assert_eq!(m.sessions_rehomed.load(Ordering::Relaxed), 1);
    assert_eq!(m.tunnels_failed_by_link.load(Ordering::Relaxed), 1);
    Rig::stop_edge(edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_takes_the_sessions_back_and_pending_requests_get_errors_meanwhile() {
    let demo = demo::DemoBackend::new(demo::DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let hub = support::hub(demo.addr(), "127.0.0.1:0".parse().unwrap()).await;
    let relay = hub.addrs().relay.unwrap();
    let edge = support::edge(support::edge_settings(&[relay], support::EDGE_SEED), 1).await;
    let mut c = TestClient::tcp(edge.addrs().tcp.unwrap(), 40_041).await;
    let index = c.send(3, 1, 0, b"before").await;
    assert_eq!(&c.reply(index).await.data[..], b"before");
    // A graceful hub shutdown: the hub tells the edge to move its sessions, and ends.
    assert_eq!(
        tokio::time::timeout(common::WAIT, hub.shutdown())
            .await
            .unwrap(),
        0
    );
    support::wait_links(&edge, 0).await;
    // No hub: requests are answered with errors, not silence, and the session stays.
    let index = c.send(3, 1, 0, b"nobody home").await;
    assert!(matches!(c.answer(index).await, Answer::Failed { .. }));
    // The hub comes back on the same address.
    let hub = support::hub(demo.addr(), relay).await;
    support::wait_links(&edge, 1).await;
    support::eventually("session back on the hub", || hub.sessions() == 1).await;
    let index = c.send(3, 1, 0, b"after").await;
    assert_eq!(&c.reply(index).await.data[..], b"after");
    Rig::stop_edge(edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_restart_logs_clients_out_and_they_come_back() {
    let rig = Rig::start().await;
    let Rig { demo, hub, edge } = rig;
    let mut c = TestClient::tcp(edge.addrs().tcp.unwrap(), 40_051).await;
    let index = c.send(3, 1, 0, b"x").await;
    c.reply(index).await;
    let stopping = tokio::spawn(Rig::stop_edge(edge));
    let (closed, logout, _) = c.closed_after().await;
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::Server), "drained: SCServerLogout");
    stopping.await.unwrap();
    support::eventually("the hub forgot the session", || hub.sessions() == 0).await;
    let edge = support::edge(
        support::edge_settings(&[hub.addrs().relay.unwrap()], support::EDGE_SEED),
        1,
    )
    .await;
    let mut c = TestClient::tcp(edge.addrs().tcp.unwrap(), 40_051).await;
    let index = c.send(3, 1, 0, b"again").await;
    assert_eq!(&c.reply(index).await.data[..], b"again");
    drop(demo);
    Rig::stop_edge(edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_stalls_only_itself() {
    use tokio::io::AsyncWriteExt as _;
    let rig = Rig::start().await;
    let mut slow = TestClient::tcp(rig.tcp(), 40_061).await;
    let mut fast = TestClient::tcp(rig.tcp(), 40_062).await;
    // The slow client asks for large, incompressible replies and never reads them.
    let noise: Vec<u8> = (0..12_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut batch = Vec::new();
    for _ in 0..200 {
        slow.session
            .send(
                common::now(),
                Outgoing {
                    module: 3,
                    seq: 1,
                    data: noise.clone().into(),
                    ..Default::default()
                },
            )
            .unwrap();
        batch.extend_from_slice(&slow.session.poll_transmit().unwrap());
    }
    let common::Wire::Tcp(stream) = &mut slow.wire else {
        unreachable!()
    };
    // The edge stops reading it once its replies pile up, so this write may not finish.
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&batch)).await;
    // Meanwhile the other client on the same edge and link is served (debug builds seal and
    // open megabytes slowly, hence the generous bound).
    let started = std::time::Instant::now();
    for i in 0..20 {
        let index = fast.send(3, 1, 0, format!("fast {i}").as_bytes()).await;
        assert_eq!(
            fast.reply(index).await.data,
            format!("fast {i}").into_bytes()
        );
    }
    assert!(started.elapsed() < common::WAIT, "{:?}", started.elapsed());
    assert_eq!(rig.edge.metrics().links_up.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_a_wrong_key_is_refused_by_the_hub() {
    let demo = demo::DemoBackend::new(demo::DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let hub = support::hub(demo.addr(), "127.0.0.1:0".parse().unwrap()).await;
    let settings = support::edge_settings(&[hub.addrs().relay.unwrap()], [0x66; 32]);
    let edge = janus_mio::Edge::start(settings).unwrap();
    support::eventually("refusals counted", || {
        hub.metrics()
            .relay
            .refused(janus_core::relay::LinkCloseReason::UnknownKey)
            >= 2
    })
    .await;
    assert_eq!(edge.metrics().links_up.load(Ordering::Relaxed), 0);
    // Clients of that edge are served errors, never a hub session.
    let mut c = TestClient::tcp(edge.addrs().tcp.unwrap(), 40_071).await;
    let index = c.send(3, 1, 0, b"x").await;
    assert!(matches!(c.answer(index).await, Answer::Failed { .. }));
    assert_eq!(hub.sessions(), 0);
    Rig::stop_edge(edge).await;
}

/// A hub that authenticates and then stops reading: the edge must bound what it queues for it
/// (per-session credit), close the session that overruns it, and keep serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hub_costs_the_flooding_session_not_the_edge() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hub_stop = std::sync::Arc::clone(&stop);
    let fake_hub = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut config = support::relay(addr).link;
        config.node = "slow-hub".into();
        let mut link =
            janus_core::relay::Link::new(std::sync::Arc::new(config), common::now(), [4; 32]);
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        // Authenticate, then stop reading.
        while !link.is_established() {
            if let Some(b) = link.poll_transmit() {
                stream.write_all(&b).unwrap();
            }
            if let Ok(n) = stream.read(&mut buf) {
                link.handle_bytes(common::now(), &buf[..n]);
            }
        }
        if let Some(b) = link.poll_transmit() {
            stream.write_all(&b).unwrap();
        }
        while !hub_stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut settings = support::edge_settings(&[addr], support::EDGE_SEED);
    // A stalled hub is not a dead one: no heartbeat timeout during the test.
    settings.link.heartbeat_timeout = Duration::from_secs(30);
    let edge = support::edge(settings, 1).await;
    let mut flood = TestClient::tcp(edge.addrs().tcp.unwrap(), 40_081).await;
    let payload: Vec<u8> = (0..12_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut batch = Vec::new();
    for _ in 0..300 {
        flood
            .session
            .send(
                common::now(),
                Outgoing {
                    module: 3,
                    seq: 1,
                    data: payload.clone().into(),
                    ..Default::default()
                },
            )
            .unwrap();
        batch.extend_from_slice(&flood.session.poll_transmit().unwrap());
    }
    let common::Wire::Tcp(stream) = &mut flood.wire else {
        unreachable!()
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncWriteExt::write_all(stream, &batch),
    )
    .await;
    let (closed, logout, _) = flood.closed_after().await;
    assert!(closed);
    assert_eq!(
        logout,
        Some(LogoutCode::Server),
        "backend_backpressure logs out"
    );
    assert_eq!(
        edge.metrics()
            .closed_count(CloseReason::BackendBackpressure),
        1
    );
    // The edge still takes new clients.
    let _other = TestClient::tcp(edge.addrs().tcp.unwrap(), 40_082).await;
    stop.store(true, Ordering::Relaxed);
    fake_hub.join().unwrap();
    Rig::stop_edge(edge).await;
}

/// A full handshake pool evicts the connection that made the least progress (a silent one),
/// not the newcomer: the edge runs the same admission as the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_handshake_pool_evicts_the_least_advanced_handshake() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let demo = janus_tokio::demo::DemoBackend::new(janus_tokio::demo::DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let hub = support::hub(demo.addr(), "127.0.0.1:0".parse().unwrap()).await;
    let mut settings = support::edge_settings(&[hub.addrs().relay.unwrap()], support::EDGE_SEED);
    settings.admission.max_handshakes = 2;
    let edge = support::edge(settings, 1).await;
    let tcp = edge.addrs().tcp.unwrap();

    // Two silent connections fill the pool; one of them sends a partial frame (progress).
    let mut silent = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(tcp).await.unwrap();
    partial.write_all(&[0, 0, 0, 40, 1, 2, 3]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A real client still gets in, and the silent connection is the one closed.
    let mut c = TestClient::tcp(tcp, 40_100).await;
    let index = c.send(3, 7, 0, b"admitted").await;
    assert_eq!(&c.reply(index).await.data[..], b"admitted");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(support::WAIT, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the silent handshake was closed: {read:?}"
    );
    assert_eq!(edge.metrics().handshakes_evicted.load(Ordering::Relaxed), 1);
    let still = tokio::time::timeout(Duration::from_millis(200), partial.read(&mut buf)).await;
    assert!(still.is_err(), "the advanced handshake is still open");
    support::Rig::stop_edge(edge).await;
}

/// Session resume is not offered through the edge tier yet: a client that asks gets no ticket
/// (as from a Go gateway), and one that presents a ticket is logged in afresh with its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_grants_no_resume_and_logs_a_resuming_client_in_afresh() {
    use janus_core::{
        client::{ClientEvent, ClientSession},
        resume::ResumeRefusal,
    };
    let rig = Rig::start().await;
    let mut config = common::quiet_config(common::token(40_050, "local"));
    config.resume = true;
    let c = TestClient::tcp_with(rig.tcp(), 40_050, config.clone()).await;
    assert!(!c.session.is_resumable(), "no ticket through the edge");

    // A ticket from a gateway that grants resume, presented to the edge.
    let mut core = janus_core::testing::test_server_config(true);
    core.resume_key = Some(janus_core::resume::ResumeKey::new(&[2; 32]));
    let mut pair =
        janus_core::testing::Pair::new(std::sync::Arc::new(core), &config, common::now());
    pair.drive();
    let previous = pair
        .client
        .take_resume()
        .expect("granted by the other gateway");
    config.token = common::token(40_050, "local");
    let stream = tokio::net::TcpStream::connect(rig.tcp()).await.unwrap();
    let local = stream.local_addr().unwrap();
    let session = ClientSession::resume(&config, common::now(), [8; 32], previous);
    let mut r = TestClient::started(common::Wire::Tcp(stream), local, 40_050, session).await;
    assert_eq!(
        r.next_event().await,
        Some(ClientEvent::ResumeRefused(ResumeRefusal::Unknown))
    );
    assert!(matches!(
        r.next_event().await,
        Some(ClientEvent::Established { start_index: 1, .. })
    ));
    let index = r.send(3, 1, 0, b"afresh").await;
    assert_eq!(&r.reply(index).await.data[..], b"afresh");
}
