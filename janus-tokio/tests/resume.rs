//! Session resume end to end: real client sockets cut mid-stream, the demo backend over gRPC,
//! pushes through the push service, and the gateway's metrics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use common::{Rig, TestClient, Wire, quiet_config, token};
use janus_core::{
    client::{ClientConfig, ClientError, ClientEvent, ClientResume, ClientSession},
    handshake::{ClientHandshake, ClientHandshakeError, ResumeRequest},
    resume::{ResumeKey, ResumeRefusal},
    testing::{test_client_config, test_server_config},
};
use janus_proto::broadcaster::service::push::v1::{
    PushBody, PushRequest, push_service_client::PushServiceClient,
};
use prost::Message as _;
use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _, net::TcpStream};

/// A gateway granting resume with a `window`.
async fn rig(window: Duration) -> Rig {
    let mut core = test_server_config(true);
    core.resume_key = Some(ResumeKey::new(&[0x42; 32]));
    core.session.resume.window = window;
    Rig::start_with(|s| s.core = Arc::new(core)).await
}

fn resume_config(uid: i64) -> ClientConfig {
    let mut config = quiet_config(token(uid, "local"));
    config.resume = true;
    config
}

async fn login(rig: &Rig, uid: i64) -> TestClient {
    let c = TestClient::tcp_with(rig.tcp(), uid, resume_config(uid)).await;
    assert!(c.session.is_resumable(), "the gateway granted resume");
    c
}

/// The client's connection drops (the socket is closed under it); what it needs to resume.
fn cut(c: &mut TestClient) -> ClientResume {
    let resume = c.session.take_resume().expect("resumable");
    // Dropping the old socket closes it.
    c.wire = Wire::Tcp(dead_socket());
    resume
}

/// A closed socket to park a cut client's `wire` on.
fn dead_socket() -> TcpStream {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    s.set_nonblocking(true).unwrap();
    drop(listener);
    TcpStream::from_std(s).unwrap()
}

/// A new connection resuming `previous` (with the config's token, or none).
async fn reconnect(rig: &Rig, uid: i64, previous: ClientResume, with_token: bool) -> TestClient {
    let mut config = resume_config(uid);
    if !with_token {
        config.token = String::new();
    }
    let stream = TcpStream::connect(rig.tcp()).await.unwrap();
    let local = stream.local_addr().unwrap();
    let session = ClientSession::resume(&config, common::now(), [11; 32], previous);
    TestClient::started(Wire::Tcp(stream), local, uid, session).await
}

async fn pusher(rig: &Rig) -> PushServiceClient<tonic::transport::Channel> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", rig.gateway.addrs().grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
    PushServiceClient::new(channel)
}

async fn push(
    grpc: &mut PushServiceClient<tonic::transport::Channel>,
    uid: i64,
    text: &str,
) -> bool {
    grpc.push(PushRequest {
        bodies: vec![PushBody {
            data: Bytes::copy_from_slice(text.as_bytes()),
            r#mod: 3,
            seq: 2,
            ..Default::default()
        }],
        color: "local".into(),
        sid: 1,
        uid,
    })
    .await
    .unwrap()
    .into_inner()
    .pushed
}

/// Replies and pushes the application sees (as their data) until `n` arrived.
async fn collect(c: &mut TestClient, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        match c.next_event().await {
            Some(ClientEvent::Packet(p)) => {
                seen.push(String::from_utf8_lossy(&p.data).into_owned())
            }
            Some(ClientEvent::Closed(e)) => panic!("closed: {e} after {seen:?}"),
            Some(_) => {}
            None => panic!("nothing more after {seen:?}"),
        }
    }
    seen
}

async fn metrics(rig: &Rig) -> String {
    common::http(rig.gateway.addrs().http.unwrap(), "GET", "/metrics", None)
        .await
        .1
}

fn metric(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mid_stream_loses_and_repeats_nothing() {
    let rig = rig(Duration::from_secs(30)).await;
    let uid = 41_001;
    let mut grpc = pusher(&rig).await;
    let mut c = login(&rig, uid).await;

    // Connected: a reply and a push arrive.
    let i = c.send(3, 1, 0, b"r0").await;
    assert_eq!(c.reply(i).await.data, &b"r0"[..]);
    assert!(push(&mut grpc, uid, "p0").await);
    assert_eq!(collect(&mut c, 1).await, ["p0"]);

    // Slow replies are on their way when the connection drops; pushes come while it is down.
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(c.send(3, 1, 0, b"delay:300").await);
    }
    let previous = cut(&mut c);
    assert!(
        push(&mut grpc, uid, "p1").await,
        "a parked session takes pushes"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(push(&mut grpc, uid, "p2").await);

    let mut c = reconnect(&rig, uid, previous, false).await;
    match c.next_event().await {
        Some(ClientEvent::Resumed { start_index, .. }) => assert_eq!(start_index, slow[2] + 1),
        other => panic!("not resumed: {other:?}"),
    }
    let seen = collect(&mut c, 5).await;
    assert_eq!(
        seen,
        ["p1", "delay:300", "delay:300", "delay:300", "p2"],
        "every reply and push once, in the order the gateway had them"
    );

    // The session carries on: same index sequence, same tunnel, no new login at the backend.
    let i = c.send(3, 1, 0, b"after").await;
    assert_eq!(i, slow[2] + 1);
    assert_eq!(c.reply(i).await.data, &b"after"[..]);
    assert!(push(&mut grpc, uid, "p3").await);
    assert_eq!(collect(&mut c, 1).await, ["p3"]);
    let opened = rig
        .demo
        .backend()
        .observed()
        .opened
        .iter()
        .filter(|o| o.uid == uid)
        .count();
    assert_eq!(opened, 1, "the tunnel lived through the cut");

    let m = metrics(&rig).await;
    assert_eq!(
        metric(&m, "janus_resumes_total{outcome=\"attempted\"}"),
        1,
        "{m}"
    );
    assert_eq!(metric(&m, "janus_resumes_total{outcome=\"succeeded\"}"), 1);
    assert_eq!(metric(&m, "janus_sessions_parked"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_taken_over() {
    let rig = rig(Duration::from_secs(30)).await;
    let uid = 41_002;
    let mut grpc = pusher(&rig).await;
    let mut c = login(&rig, uid).await;
    let i = c.send(3, 1, 0, b"delay:200").await;
    // The phone changed networks: the old socket is still open at the gateway, unread.
    let previous = c.session.take_resume().unwrap();
    let old = std::mem::replace(&mut c.wire, Wire::Tcp(dead_socket()));
    let mut c = reconnect(&rig, uid, previous, false).await;
    assert!(matches!(
        c.next_event().await,
        Some(ClientEvent::Resumed { .. })
    ));
    assert_eq!(c.reply(i).await.data, &b"delay:200"[..]);
    assert!(push(&mut grpc, uid, "here").await);
    assert_eq!(collect(&mut c, 1).await, ["here"]);
    // The old socket was closed by the gateway.
    let Wire::Tcp(mut old) = old else {
        unreachable!()
    };
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(common::WAIT, old.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_window_the_resume_is_refused_and_the_session_is_gone() {
    let rig = rig(Duration::from_millis(500)).await;
    let uid = 41_003;
    let mut grpc = pusher(&rig).await;
    let mut c = login(&rig, uid).await;
    let i = c.send(3, 1, 0, b"hi").await;
    c.reply(i).await;
    let previous = cut(&mut c);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !push(&mut grpc, uid, "late").await,
        "the session ended with its window, as on a disconnect"
    );
    let closed = rig
        .demo
        .backend()
        .observed()
        .closed
        .iter()
        .filter(|s| s.oid == uid)
        .count();
    assert_eq!(closed, 1, "its tunnel closed");

    let mut c = reconnect(&rig, uid, previous, false).await;
    assert_eq!(
        c.next_event().await,
        Some(ClientEvent::Closed(ClientError::Handshake(
            ClientHandshakeError::ResumeRefused(ResumeRefusal::Expired)
        )))
    );
    let (closed, _, _) = c.closed_after().await;
    assert!(closed, "the gateway closed the connection");

    let m = metrics(&rig).await;
    assert_eq!(
        metric(&m, "janus_resumes_total{outcome=\"expired\"}"),
        1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "janus_sessions_closed_total{reason=\"resume_expired\"}"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resume_with_a_fresh_token_logs_in_afresh() {
    let rig = rig(Duration::from_millis(300)).await;
    let uid = 41_004;
    let mut c = login(&rig, uid).await;
    let previous = cut(&mut c);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut c = reconnect(&rig, uid, previous, true).await;
    assert_eq!(
        c.next_event().await,
        Some(ClientEvent::ResumeRefused(ResumeRefusal::Expired))
    );
    assert!(matches!(
        c.next_event().await,
        Some(ClientEvent::Established { start_index: 1, .. })
    ));
    let i = c.send(3, 1, 0, b"again").await;
    assert_eq!(c.reply(i).await.data, &b"again"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_tickets_are_refused() {
    let rig = rig(Duration::from_secs(30)).await;
    let uid = 41_005;
    let mut grpc = pusher(&rig).await;
    let mut c = login(&rig, uid).await;
    let previous = cut(&mut c);
    let copy = previous.clone();

    // A forged ticket: refused at once, the parked session untouched.
    let refusal = raw_resume(
        rig.tcp(),
        ResumeRequest {
            request: true,
            ticket: Bytes::from(vec![7u8; 49]),
            received: 0,
            secret: Some([1; 32]),
        },
    )
    .await;
    assert_eq!(
        refusal,
        Err(ClientHandshakeError::ResumeRefused(ResumeRefusal::Invalid))
    );
    assert!(push(&mut grpc, uid, "still parked").await);

    // The real resume.
    let mut c = reconnect(&rig, uid, previous, false).await;
    assert!(matches!(
        c.next_event().await,
        Some(ClientEvent::Resumed { .. })
    ));
    assert_eq!(collect(&mut c, 1).await, ["still parked"]);

    // The same ticket again (a replay, proof and all): refused, the live session untouched.
    let mut again = reconnect(&rig, uid, copy, false).await;
    assert_eq!(
        again.next_event().await,
        Some(ClientEvent::Closed(ClientError::Handshake(
            ClientHandshakeError::ResumeRefused(ResumeRefusal::Replayed)
        )))
    );
    assert!(push(&mut grpc, uid, "live").await);
    assert_eq!(collect(&mut c, 1).await, ["live"]);

    let m = metrics(&rig).await;
    assert_eq!(
        metric(&m, "janus_resumes_total{outcome=\"attempted\"}"),
        3,
        "{m}"
    );
    assert_eq!(metric(&m, "janus_resumes_total{outcome=\"refused\"}"), 2);
    assert_eq!(
        metric(&m, "janus_resume_refusals_total{reason=\"invalid\"}"),
        1
    );
    assert_eq!(
        metric(&m, "janus_resume_refusals_total{reason=\"replayed\"}"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_login_during_the_window_wins() {
    let rig = rig(Duration::from_secs(30)).await;
    let uid = 41_006;
    let mut grpc = pusher(&rig).await;
    let mut c = login(&rig, uid).await;
    let previous = cut(&mut c);
    let mut fresh = TestClient::tcp(rig.tcp(), uid).await;
    assert!(push(&mut grpc, uid, "to the new one").await);
    assert_eq!(collect(&mut fresh, 1).await, ["to the new one"]);
    let mut late = reconnect(&rig, uid, previous, false).await;
    assert_eq!(
        late.next_event().await,
        Some(ClientEvent::Closed(ClientError::Handshake(
            ClientHandshakeError::ResumeRefused(ResumeRefusal::Superseded)
        )))
    );
    let i = fresh.send(3, 1, 0, b"ok").await;
    assert_eq!(fresh.reply(i).await.data, &b"ok"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_ask_is_not_parked() {
    let rig = rig(Duration::from_secs(30)).await;
    let uid = 41_007;
    let mut grpc = pusher(&rig).await;
    let mut c = TestClient::tcp(rig.tcp(), uid).await;
    assert!(!c.session.is_resumable());
    assert!(c.session.take_resume().is_none());
    c.wire = Wire::Tcp(dead_socket());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!push(&mut grpc, uid, "gone").await, "closed as today");
    let m = metrics(&rig).await;
    assert_eq!(metric(&m, "janus_sessions_parked"), 0);
}

/// A resume handshake built by hand (a forged ticket, say); what the gateway answered.
async fn raw_resume(addr: SocketAddr, request: ResumeRequest) -> Result<(), ClientHandshakeError> {
    let keys = test_client_config(true, String::new()).keys;
    let mut rng = rand_core::OsRng;
    let (handshake, hello) =
        ClientHandshake::start_with(keys, "", 0, 0, common::now(), 5, Some(&request), &mut rng);
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&(hello.encoded_len() as u32).to_be_bytes());
    hello.encode_raw(&mut frame);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame).await.unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    handshake.finish(common::now(), &body).map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_session_resumes_over_websocket() {
    let rig = rig(Duration::from_secs(30)).await;
    let uid = 41_008;
    let mut grpc = pusher(&rig).await;
    let mut c = login(&rig, uid).await;
    c.send(3, 1, 0, b"delay:200").await;
    let previous = cut(&mut c);
    assert!(push(&mut grpc, uid, "while away").await);

    let url = format!("ws://{}/ws", rig.gateway.addrs().ws.unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let local = match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap(),
        _ => unreachable!(),
    };
    let mut config = resume_config(uid);
    config.token = String::new();
    let session = ClientSession::resume(&config, common::now(), [12; 32], previous);
    let mut c = TestClient::started(Wire::Ws(ws), local, uid, session).await;
    assert!(matches!(
        c.next_event().await,
        Some(ClientEvent::Resumed { .. })
    ));
    assert_eq!(collect(&mut c, 2).await, ["while away", "delay:200"]);
    let j = c.send(3, 1, 0, b"over ws").await;
    assert_eq!(c.reply(j).await.data, &b"over ws"[..]);
    let m = metrics(&rig).await;
    assert_eq!(
        metric(&m, "janus_connections_active{listener=\"ws\"}"),
        1,
        "the session counts for the socket it is on now"
    );
    assert_eq!(metric(&m, "janus_connections_active{listener=\"tcp\"}"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_that_would_lose_a_push_ends() {
    let mut core = test_server_config(true);
    core.resume_key = Some(ResumeKey::new(&[0x42; 32]));
    core.session.resume.max_buffered_packets = 3;
    let rig = Rig::start_with(|s| s.core = Arc::new(core)).await;
    let uid = 41_009;
    let mut grpc = pusher(&rig).await;
    let mut c = login(&rig, uid).await;
    let previous = cut(&mut c);
    for n in 0..3 {
        assert!(push(&mut grpc, uid, &format!("kept {n}")).await);
    }
    // One more than the buffer holds: the session ends rather than lose it.
    push(&mut grpc, uid, "one too many").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!push(&mut grpc, uid, "after").await, "the session is gone");
    let mut c = reconnect(&rig, uid, previous, false).await;
    assert_eq!(
        c.next_event().await,
        Some(ClientEvent::Closed(ClientError::Handshake(
            ClientHandshakeError::ResumeRefused(ResumeRefusal::Expired)
        )))
    );
    let m = metrics(&rig).await;
    assert_eq!(
        metric(
            &m,
            "janus_sessions_closed_total{reason=\"resume_overflow\"}"
        ),
        1,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lost_with_the_connection_is_sent_again_and_answered_once() {
    let rig = rig(Duration::from_secs(30)).await;
    let uid = 41_010;
    let mut c = login(&rig, uid).await;
    let delivered = c.send(3, 1, 0, b"delivered").await;
    assert_eq!(c.reply(delivered).await.data, &b"delivered"[..]);
    // Queued but never written: the connection died first.
    let lost = c
        .session
        .send(
            common::now(),
            janus_core::client::Outgoing {
                module: 3,
                seq: 1,
                data: Bytes::from_static(b"lost"),
                ..Default::default()
            },
        )
        .unwrap();
    let previous = cut(&mut c);
    let mut c = reconnect(&rig, uid, previous, false).await;
    match c.next_event().await {
        Some(ClientEvent::Resumed { start_index, .. }) => assert_eq!(start_index, lost),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.reply(lost).await.data, &b"lost"[..]);
    let next = c.send(3, 1, 0, b"next").await;
    assert_eq!(next, lost + 1);
    assert_eq!(c.reply(next).await.data, &b"next"[..]);
    let seen: Vec<_> = rig
        .demo
        .backend()
        .observed()
        .requests
        .iter()
        .filter(|r| r.oid == uid)
        .map(|r| String::from_utf8_lossy(&r.request.data).into_owned())
        .collect();
    assert_eq!(
        seen,
        ["delivered", "lost", "next"],
        "each reached the backend once"
    );
}
