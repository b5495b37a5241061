//! The gateway end to end: real TCP and WebSocket clients, a real tonic backend (the demo
//! backend) over sockets, the push service over gRPC.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Answer, Rig, TestClient, WAIT};
use janus_core::{
    CloseReason,
    client::{ClientEvent, HeartbeatCode, Outgoing},
    system::{self, HEARTBEAT_SEQ, SYSTEM_MODULE},
};
use janus_proto::{
    broadcaster::service::push::v1::{
        BroadcastRequest, MulticastRequest, PushBody, PushRequest,
        push_service_client::PushServiceClient,
    },
    message::{ScHeartbeat, sc_heartbeat, sc_server_logout::Code as LogoutCode},
};
use janus_tokio::demo::{self, TunnelKind};
use prost::Message as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_handshake_heartbeat_and_echo() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 10_001).await;
    let hb = system::heartbeat_body(common::now().unix_secs());
    let index = c.send(SYSTEM_MODULE, HEARTBEAT_SEQ, 0, &hb).await;
    let reply = c.reply(index).await;
    assert_eq!(
        (reply.r#mod, reply.seq, reply.obj),
        (SYSTEM_MODULE, HEARTBEAT_SEQ, 10_001)
    );
    assert_eq!(
        ScHeartbeat::decode(reply.data).unwrap().code(),
        sc_heartbeat::Code::Succeeded
    );
    let index = c.send(3, 7, 0, b"hello \x00\xff").await;
    let reply = c.reply(index).await;
    assert_eq!(
        (&reply.data[..], reply.r#mod, reply.seq),
        (&b"hello \x00\xff"[..], 3, 7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_client_heartbeats_by_itself_and_hears_the_backend() {
    let rig = Rig::start().await;
    let mut config = common::quiet_config(common::token(10_013, "local"));
    config.heartbeat_interval = Some(Duration::from_millis(200));
    let mut c = TestClient::tcp_with(rig.tcp(), 10_013, config).await;
    let before = common::now().unix_secs();
    for _ in 0..2 {
        match c.next_event().await {
            Some(ClientEvent::Heartbeat { server_time, code }) => {
                assert_eq!(code, HeartbeatCode::Succeeded);
                assert!(
                    (before..=before + 2).contains(&server_time),
                    "{server_time}"
                );
            }
            other => panic!("expected a heartbeat answer, got {other:?}"),
        }
    }
    let seen = rig.demo.backend().observed();
    let beats: Vec<_> = seen
        .requests
        .iter()
        .filter(|r| r.oid == 10_013)
        .map(|r| (r.request.module, r.request.seq, r.request.index))
        .collect();
    assert_eq!(
        beats,
        [
            (SYSTEM_MODULE, HEARTBEAT_SEQ, 1),
            (SYSTEM_MODULE, HEARTBEAT_SEQ, 2)
        ],
        "on the player's tunnel, counted like any request"
    );
    assert_eq!(c.session.pending_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshake_and_echo_with_a_browser_origin() {
    let rig = Rig::start().await;
    let url = format!("ws://{}/ws", rig.gateway.addrs().ws.unwrap());
    let mut c = TestClient::ws(&url, 10_002).await;
    let index = c.send(3, 1, 0, b"over websocket").await;
    assert_eq!(&c.reply(index).await.data[..], b"over websocket");

    // a browser sends its own Origin; upstream only admits the literal "*"
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut()
        .insert("origin", "https://game.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
    // the wrong path is refused
    let bad = format!("ws://{}/nope", rig.gateway.addrs().ws.unwrap());
    assert!(
        tokio_tungstenite::connect_async(bad.as_str())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_sees_the_exact_metadata() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 10_003).await;
    let index = c.send(3, 1, 0, b"m").await;
    c.reply(index).await;
    let seen = rig.demo.backend().observed();
    let opened = seen
        .opened
        .iter()
        .find(|o| o.uid == 10_003)
        .expect("a stream for the uid");
    assert_eq!(opened.kind, TunnelKind::Player);
    let md = &opened.metadata;
    assert_eq!(md.oid.as_deref(), Some("10003"));
    assert_eq!(md.uid.as_deref(), Some("10003"));
    assert_eq!(md.sid.as_deref(), Some("1"));
    assert_eq!(md.status.as_deref(), Some("1"));
    assert_eq!(md.color.as_deref(), Some("local"));
    assert_eq!(md.client_ip.as_deref(), Some(c.local.to_string().as_str()));
    let referer = format!("{}#16", rig.gateway.endpoint());
    assert_eq!(
        md.referer.as_deref(),
        Some(referer.as_str()),
        "first TCP worker id is 1<<4|0"
    );
    assert_eq!(md.gate_referer.as_deref(), Some(referer.as_str()));
    assert_eq!(rig.gateway.endpoint(), rig.gateway.addrs().grpc.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_packets_go_to_the_room_tunnel_of_their_obj() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 10_004).await;
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
    let seen = rig.demo.backend().observed();
    assert!(
        seen.opened
            .iter()
            .any(|o| o.kind == TunnelKind::Room && o.oid == 4242 && o.uid == 10_004)
    );

    // A room request without an object (room list, create room) is the player's own, as
    // upstream: it reaches the room backend with oid = obj = uid.
    let index = c.send(6, 1, 0, b"list").await;
    let reply = c.reply(index).await;
    assert_eq!(
        (reply.r#mod, reply.obj, &reply.data[..]),
        (6, 10_004, &b"list"[..])
    );
    let seen = rig.demo.backend().observed();
    let own = seen
        .opened
        .iter()
        .find(|o| o.kind == TunnelKind::Room && o.oid == 10_004)
        .expect("a room stream for the player's own uid");
    assert_eq!(own.metadata.oid.as_deref(), Some("10004"));
    assert!(
        seen.requests.iter().any(|r| r.request.module == 6
            && r.request.obj == 10_004
            && &r.request.data[..] == b"list"),
        "forwarded with obj = uid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_player_obj_never_reaches_the_backend() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 10_005).await;
    c.send(3, 1, 77_777, b"I am someone else").await;
    let (closed, logout, events) = c.closed_after().await;
    assert!(
        closed && logout.is_none() && events.is_empty(),
        "{events:?}"
    );
    let seen = rig.demo.backend().observed();
    assert!(seen.opened.iter().all(|o| o.oid != 77_777));
    assert!(seen.requests.iter().all(|r| r.request.obj != 77_777));
    assert_eq!(
        rig.gateway
            .metrics()
            .closed_count(CloseReason::ObjectNotOwned),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_packet_closes_the_connection() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 10_006).await;
    c.session
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
    let frame = c.session.poll_transmit().unwrap();
    c.write_raw(frame.clone()).await;
    c.write_raw(frame).await;
    let (closed, _, answers) = c.closed_after().await;
    assert!(closed);
    assert!(answers.len() <= 1, "at most the first copy is answered");
    assert_eq!(
        rig.gateway
            .metrics()
            .closed_count(CloseReason::IndexMismatch),
        1
    );
    // The replay never reaches the backend. The first copy may not either: the session closes
    // at once, and a tunnel still opening when its session ends is abandoned.
    let forwarded = rig
        .demo
        .backend()
        .observed()
        .requests
        .iter()
        .filter(|r| &r.request.data[..] == b"once")
        .count();
    assert!(forwarded <= 1, "{forwarded} copies reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_requests_and_large_replies() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 10_007).await;
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
    assert_eq!(
        c.reply(index).await.data.to_vec(),
        body,
        "the backend got it inflated and echoed it"
    );
    assert!(
        rig.demo
            .backend()
            .observed()
            .requests
            .iter()
            .any(|r| r.request.data.len() == 8000)
    );

    let before = c.received;
    let index = c.send(3, 1, 0, b"big:60000").await;
    let reply = c.reply(index).await;
    assert_eq!(
        reply.data,
        demo::big_payload(60_000),
        "the client inflates it back"
    );
    assert!(
        c.received - before < 16_384,
        "sent compressed: {} bytes on the wire",
        c.received - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_multicast_and_broadcast_reach_the_right_clients_only() {
    let rig = Rig::start().await;
    let mut a = TestClient::tcp_color(rig.tcp(), 20_001, "local").await;
    let mut b = TestClient::tcp_color(rig.tcp(), 20_002, "local").await;
    let mut other = TestClient::tcp_color(rig.tcp(), 20_003, "blue").await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", rig.gateway.addrs().grpc))
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
            uid: 20_001,
        })
        .await
        .unwrap();
    assert!(r.into_inner().pushed);
    let p = a.next_packet().await.unwrap();
    assert_eq!((&p.data[..], p.index, p.data_version), (&b"to a"[..], 0, 3));

    let r = grpc
        .push(PushRequest {
            bodies: vec![body("nobody")],
            color: "local".into(),
            sid: 1,
            uid: 99,
        })
        .await
        .unwrap();
    assert!(!r.into_inner().pushed, "unknown uid: a no-op, not an error");

    let r = grpc
        .multicast(MulticastRequest {
            bodies: vec![body("to a and b")],
            uids: vec![20_001, 20_002, 99],
            color: "local".into(),
        })
        .await
        .unwrap();
    let mut pushed = r.into_inner().pushed_uids;
    pushed.sort_unstable();
    assert_eq!(pushed, vec![20_001, 20_002]);
    assert_eq!(&a.next_packet().await.unwrap().data[..], b"to a and b");
    assert_eq!(&b.next_packet().await.unwrap().data[..], b"to a and b");

    grpc.broadcast(BroadcastRequest {
        bodies: vec![body("everyone local")],
        color: "local".into(),
        sid: 1,
    })
    .await
    .unwrap();
    assert_eq!(&a.next_packet().await.unwrap().data[..], b"everyone local");
    assert_eq!(&b.next_packet().await.unwrap().data[..], b"everyone local");
    // the blue client got none of it: its next packet is the reply to its own request
    let index = other.send(3, 1, 0, b"mine").await;
    let p = other.next_packet().await.unwrap();
    assert_eq!((p.index, &p.data[..]), (index, &b"mine"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backend_stream_answers_pending_requests_and_the_next_packet_reopens_it() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 10_008).await;
    let index = c.send(3, 1, 0, demo::FAIL_STREAM).await;
    let Answer::Failed {
        module,
        seq,
        message,
    } = c.answer(index).await
    else {
        panic!("an SCServerUnexpectedErr answer");
    };
    assert_eq!(
        (module, seq, message.as_str()),
        (3, 1, "backend unavailable")
    );
    let index = c.send(3, 1, 0, b"after").await;
    assert_eq!(&c.reply(index).await.data[..], b"after");
    assert_eq!(
        rig.demo
            .backend()
            .observed()
            .opened
            .iter()
            .filter(|o| o.uid == 10_008)
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_gives_errors_not_hangs_and_recovery_follows_its_return() {
    let rig = Rig::start().await;
    let addr = rig.demo.addr();
    let mut c = TestClient::tcp(rig.tcp(), 10_009).await;
    let index = c.send(3, 1, 0, b"before").await;
    c.reply(index).await;
    rig.demo.kill();
    // the dead backend: requests are answered with errors, the session stays up
    for _ in 0..3 {
        let index = c.send(3, 1, 0, b"while down").await;
        let answer = tokio::time::timeout(WAIT * 2, c.answer(index))
            .await
            .expect("an answer, not a hang");
        assert!(matches!(answer, Answer::Failed { .. }), "{answer:?}");
    }
    // the backend comes back on the same address
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _back = demo::DemoBackend::new(demo::DemoConfig::default())
        .spawn(listener)
        .unwrap();
    let mut ok = false;
    for _ in 0..20 {
        let index = c.send(3, 1, 0, b"back").await;
        if c.answer(index).await.data() == Some(b"back") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "traffic flows again once the backend is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_replaces_the_first() {
    let rig = Rig::start().await;
    let mut first = TestClient::tcp(rig.tcp(), 10_010).await;
    let _second = TestClient::tcp(rig.tcp(), 10_010).await;
    let (closed, logout, _) = first.closed_after().await;
    assert!(closed);
    assert_eq!(logout, Some(LogoutCode::ConflictingLogin), "SCServerLogout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_logs_clients_out_and_ends() {
    let rig = Rig::start().await;
    let mut c = TestClient::tcp(rig.tcp(), 10_011).await;
    let index = c.send(3, 1, 0, b"x").await;
    c.reply(index).await;
    let Rig {
        gateway,
        demo: _demo,
    } = rig;
    let shutdown = tokio::spawn(gateway.shutdown());
    let (closed, logout, _) = c.closed_after().await;
    assert!(closed);
    assert_eq!(
        logout,
        Some(LogoutCode::Waiting),
        "SCServerLogout{{Waiting}}"
    );
    assert_eq!(
        tokio::time::timeout(WAIT, shutdown).await.unwrap().unwrap(),
        0,
        "no connection left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_http_serves_metrics_and_probes() {
    let rig = Rig::start().await;
    let http = rig.gateway.addrs().http.unwrap();
    let mut c = TestClient::tcp(rig.tcp(), 10_012).await;
    let index = c.send(3, 1, 0, b"count me").await;
    c.reply(index).await;
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("janus_handshakes_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("janus_sessions_open 1"));
    assert!(metrics.contains("janus_tunnels_requested_total 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_on_a_dead_backend_move_to_a_live_one_once_its_breaker_opens() {
    let other = demo::DemoBackend::new(demo::DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let other_addr = other.addr();
    let rig = Rig::start_with(|s| {
        let player = s.backends.get_mut("player").unwrap();
        player.push(janus_core::route::Backend {
            addr: other_addr.to_string(),
            weight: 1,
            color: None,
        });
    })
    .await;
    // find a uid placed on the rig's own demo backend, the one we will kill
    let mut uid = 50_000;
    let mut c = loop {
        uid += 1;
        let mut c = TestClient::tcp(rig.tcp(), uid).await;
        let index = c.send(3, 1, 0, b"where").await;
        c.reply(index).await;
        if rig
            .demo
            .backend()
            .observed()
            .opened
            .iter()
            .any(|o| o.uid == uid)
        {
            break c;
        }
    };
    let Rig {
        demo: doomed,
        gateway,
    } = rig;
    doomed.kill();
    let mut errors = 0;
    let mut answered = false;
    for _ in 0..20 {
        let index = c.send(3, 1, 0, b"still here").await;
        let answer = c.answer(index).await;
        if answer.data() == Some(b"still here") {
            answered = true;
            break;
        }
        assert!(
            matches!(answer, Answer::Failed { .. }),
            "an error answer, not silence: {answer:?}"
        );
        errors += 1;
    }
    assert!(answered, "the player never reached the live backend");
    assert!(
        errors <= janus_core::route::DEFAULT_FAILURE_THRESHOLD as usize + 1,
        "{errors} errors before moving"
    );
    assert!(
        other
            .backend()
            .observed()
            .opened
            .iter()
            .any(|o| o.uid == uid)
    );
    drop(gateway);
}
