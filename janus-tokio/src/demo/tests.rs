//! The demo backend driven by a real tonic client over a socket, as the gateway drives it.

use std::time::Duration;

use bytes::Bytes;
use janus_proto::message::{ScHeartbeat, ScServerLogout, sc_heartbeat, sc_server_logout};
use janus_proto::player::intra::v1 as player;
use janus_proto::room::intra::v1 as room;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

use super::*;

const OID: i64 = 42;
const UID: i64 = 7;
const WAIT: Duration = Duration::from_secs(5);

/// The headers a gateway sends for oid 42 / uid 7, with `status` as given.
fn gate_headers(status: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        (HEADER_OID, "42"),
        (HEADER_UID, "7"),
        (HEADER_SID, "3"),
        (HEADER_STATUS, status),
        (HEADER_COLOR, "blue"),
        (HEADER_CLIENT_IP, "10.1.2.3:5678"),
        (HEADER_REFERER, "127.0.0.1:9100#17"),
        (HEADER_GATE_REFERER, "127.0.0.1:9100#17"),
    ]
}

async fn channel(handle: &DemoHandle) -> Channel {
    Endpoint::from_shared(handle.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_headers<T>(message: T, headers: &[(&'static str, &'static str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (name, value) in headers {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

type PlayerTunnel = (
    mpsc::Sender<player::TunnelRequest>,
    Streaming<player::TunnelResponse>,
);

async fn open_player(
    channel: &Channel,
    headers: &[(&'static str, &'static str)],
) -> Result<PlayerTunnel, Status> {
    let (tx, rx) = mpsc::channel(16);
    let request = with_headers(ReceiverStream::new(rx), headers);
    let client = &mut player::tunnel_service_client::TunnelServiceClient::new(channel.clone());
    let response = tokio::time::timeout(WAIT, client.tunnel(request))
        .await
        .unwrap()?;
    Ok((tx, response.into_inner()))
}

async fn next<T>(stream: &mut Streaming<T>) -> Result<Option<T>, Status> {
    tokio::time::timeout(WAIT, stream.message()).await.unwrap()
}

fn request(module: i32, seq: i32, index: i32, data: impl Into<Bytes>) -> player::TunnelRequest {
    player::TunnelRequest {
        data: data.into(),
        data_version: 5,
        obj: OID,
        r#mod: module,
        seq,
        index,
    }
}

async fn wait_open(backend: &DemoBackend, count: usize) {
    tokio::time::timeout(WAIT, backend.wait_open_streams(count))
        .await
        .unwrap_or_else(|_| panic!("open streams stuck at {}", backend.open_streams()));
}

#[tokio::test]
async fn echoes_requests_and_records_metadata() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let (tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    for index in 1..=3 {
        let sent = request(3, 3, index, format!("name-{index}\0\u{ff}"));
        tx.send(sent.clone()).await.unwrap();
        let reply = next(&mut rx).await.unwrap().unwrap();
        assert_eq!(
            (
                reply.data,
                reply.data_version,
                reply.obj,
                reply.r#mod,
                reply.seq,
                reply.index
            ),
            (sent.data, 5, OID, 3, 3, index)
        );
    }

    let observed = handle.backend().observed();
    assert_eq!(observed.open_streams, 1);
    let [opened] = observed.opened.as_slice() else {
        panic!("{observed:?}")
    };
    assert_eq!(
        (opened.kind, opened.oid, opened.uid),
        (TunnelKind::Player, OID, UID)
    );
    let expected = StreamMetadata {
        oid: Some("42".into()),
        uid: Some("7".into()),
        sid: Some("3".into()),
        status: Some("1".into()),
        color: Some("blue".into()),
        client_ip: Some("10.1.2.3:5678".into()),
        referer: Some("127.0.0.1:9100#17".into()),
        gate_referer: Some("127.0.0.1:9100#17".into()),
        traceparent: None,
    };
    assert_eq!(opened.metadata, expected);
    let indexes: Vec<_> = observed.requests.iter().map(|r| r.request.index).collect();
    assert_eq!(indexes, [1, 2, 3]);
    assert!(
        observed
            .requests
            .iter()
            .all(|r| r.stream_id == opened.stream_id
                && r.kind == TunnelKind::Player
                && r.oid == OID
                && r.request.module == 3
                && r.request.data_version == 5)
    );
}

#[tokio::test]
async fn heartbeat_gets_server_time() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let (tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    tx.send(request(
        1,
        2,
        1,
        janus_proto::message::CsHeartbeat { client_time: 1 }.encode_to_vec(),
    ))
    .await
    .unwrap();
    let reply = next(&mut rx).await.unwrap().unwrap();
    assert_eq!(
        (reply.r#mod, reply.seq, reply.index, reply.obj),
        (1, 2, 1, OID)
    );
    let heartbeat = ScHeartbeat::decode(reply.data).unwrap();
    assert_eq!(heartbeat.code, sc_heartbeat::Code::Succeeded as i32);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (heartbeat.server_time - now).abs() <= 2,
        "{heartbeat:?} vs {now}"
    );
}

#[tokio::test]
async fn big_replies_carry_the_pattern() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let (tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    for (index, len) in [(1, 20_000), (2, MAX_BIG_REPLY)] {
        tx.send(request(3, 3, index, format!("big:{len}")))
            .await
            .unwrap();
        let reply = next(&mut rx).await.unwrap().unwrap();
        assert_eq!(reply.index, index);
        assert_eq!(reply.data.len(), len);
        assert_eq!(reply.data, big_payload(len));
    }
}

#[tokio::test]
async fn push_me_sends_a_push_after_the_reply() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let (tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    tx.send(request(3, 3, 1, PUSH_ME)).await.unwrap();
    let reply = next(&mut rx).await.unwrap().unwrap();
    assert_eq!((reply.index, reply.data.as_ref()), (1, PUSH_ME));
    let push = next(&mut rx).await.unwrap().unwrap();
    assert_eq!((push.r#mod, push.seq, push.obj, push.index), (3, 2, OID, 0));
    assert_eq!(push.data.as_ref(), PUSHED);
}

#[tokio::test]
async fn periodic_pushes_on_every_stream() {
    let config = DemoConfig {
        push_interval: Some(Duration::from_millis(50)),
        ..DemoConfig::default()
    };
    let handle = DemoBackend::new(config).spawn_local().await.unwrap();
    let channel = channel(&handle).await;
    let (_tx1, mut rx1) = open_player(&channel, &gate_headers("1")).await.unwrap();
    let (_tx2, mut rx2) = open_player(&channel, &gate_headers("1")).await.unwrap();
    for rx in [&mut rx1, &mut rx2] {
        for n in 1..=2 {
            let push = next(rx).await.unwrap().unwrap();
            assert_eq!((push.r#mod, push.seq, push.obj, push.index), (3, 2, OID, 0));
            assert_eq!(push.data, format!("tick {n}"));
        }
    }
}

#[tokio::test]
async fn fail_stream_ends_the_stream_with_internal() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let (tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    tx.send(request(3, 3, 1, "before")).await.unwrap();
    assert_eq!(next(&mut rx).await.unwrap().unwrap().data, "before");
    tx.send(request(3, 3, 2, FAIL_STREAM)).await.unwrap();
    let status = next(&mut rx).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    wait_open(handle.backend(), 0).await;
    let closed = handle.backend().observed().closed;
    assert_eq!(
        closed.iter().map(|c| c.end).collect::<Vec<_>>(),
        [StreamEnd::Failed]
    );
}

#[tokio::test]
async fn rejects_streams_roma_would_reject() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let channel = channel(&handle).await;
    let cases: [(Vec<(&'static str, &'static str)>, Code); 5] = [
        (gate_headers("2"), Code::PermissionDenied),
        (
            gate_headers("1")
                .into_iter()
                .filter(|(k, _)| *k != HEADER_STATUS)
                .collect(),
            Code::PermissionDenied,
        ),
        (
            gate_headers("1")
                .into_iter()
                .filter(|(k, _)| *k != HEADER_UID)
                .collect(),
            Code::InvalidArgument,
        ),
        (
            gate_headers("1")
                .into_iter()
                .map(|(k, v)| if k == HEADER_OID { (k, "4x2") } else { (k, v) })
                .collect(),
            Code::InvalidArgument,
        ),
        (
            vec![(HEADER_STATUS, "1"), (HEADER_UID, "7")],
            Code::InvalidArgument,
        ),
    ];
    for (headers, code) in &cases {
        let status = open_player(&channel, headers).await.unwrap_err();
        assert_eq!(status.code(), *code, "{headers:?}: {status:?}");
        assert!(status.message().starts_with("x-md-global-"), "{status:?}");
    }
    let observed = handle.backend().observed();
    assert!(observed.opened.is_empty());
    assert_eq!(observed.rejected.len(), cases.len());
    let first = &observed.rejected[0];
    assert_eq!(
        (first.kind, first.code),
        (TunnelKind::Player, Code::PermissionDenied)
    );
    assert_eq!(first.metadata.status.as_deref(), Some("2"));
    assert_eq!(first.metadata.client_ip.as_deref(), Some("10.1.2.3:5678"));
    assert_eq!(handle.backend().open_streams(), 0);
}

#[tokio::test]
async fn room_streams_echo_conn_and_fragments() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    let request = with_headers(ReceiverStream::new(rx), &gate_headers("1"));
    let mut client = room::tunnel_service_client::TunnelServiceClient::new(channel(&handle).await);
    let mut replies = client.tunnel(request).await.unwrap().into_inner();
    let sent = room::TunnelRequest {
        data: Bytes::from_static(b"room data"),
        data_version: 1,
        obj: 900,
        r#mod: 6,
        seq: 2,
        index: 4,
        conn_id: 11,
        frag_id: 12,
        frag_count: 3,
        frag_index: 2,
    };
    tx.send(sent.clone()).await.unwrap();
    let reply = next(&mut replies).await.unwrap().unwrap();
    let echoed = room::TunnelRequest {
        data: reply.data,
        data_version: reply.data_version,
        obj: reply.obj,
        r#mod: reply.r#mod,
        seq: reply.seq,
        index: reply.index,
        conn_id: reply.conn_id,
        frag_id: reply.frag_id,
        frag_count: reply.frag_count,
        frag_index: reply.frag_index,
    };
    assert_eq!(echoed, sent);
    let observed = handle.backend().observed();
    assert_eq!(observed.opened[0].kind, TunnelKind::Room);
    let seen = &observed.requests[0];
    assert_eq!(
        (seen.kind, seen.request.conn_id, seen.request.frag_index),
        (TunnelKind::Room, 11, 2)
    );
}

#[tokio::test]
async fn half_close_ends_the_stream_after_the_replies() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let (tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    tx.send(request(3, 3, 1, "one")).await.unwrap();
    tx.send(request(3, 3, 2, "two")).await.unwrap();
    drop(tx); // CloseSend
    assert_eq!(next(&mut rx).await.unwrap().unwrap().index, 1);
    assert_eq!(next(&mut rx).await.unwrap().unwrap().index, 2);
    assert!(
        next(&mut rx).await.unwrap().is_none(),
        "stream should end with OK"
    );
    wait_open(handle.backend(), 0).await;
    assert_eq!(
        handle.backend().observed().closed[0].end,
        StreamEnd::HalfClosed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_stream_count_returns_to_zero() {
    let handle = DemoBackend::new(DemoConfig {
        push_interval: Some(Duration::from_millis(20)),
        ..DemoConfig::default()
    })
    .spawn_local()
    .await
    .unwrap();
    let backend = handle.backend().clone();
    let channel = channel(&handle).await;
    for _round in 0..3 {
        let mut tunnels = Vec::new();
        for i in 0..40 {
            let (tx, mut rx) = open_player(&channel, &gate_headers("1")).await.unwrap();
            tx.send(request(3, 3, 1, "hello")).await.unwrap();
            assert_eq!(next(&mut rx).await.unwrap().unwrap().data, "hello");
            tunnels.push((i, tx, rx));
        }
        wait_open(&backend, 40).await;
        let mut half_closed = Vec::new();
        for (i, tx, rx) in tunnels {
            // Half of them half-close and read to the end, half drop the whole stream (RST_STREAM).
            drop(tx);
            if i % 2 == 0 {
                half_closed.push(rx);
            }
        }
        for mut rx in half_closed {
            while let Some(push) = next(&mut rx).await.unwrap() {
                assert_eq!(push.index, 0, "only pushes may follow the reply");
            }
        }
        wait_open(&backend, 0).await;
    }
    let observed = backend.observed();
    assert_eq!(observed.opened.len(), 120);
    assert_eq!(observed.closed.len(), 120);
}

#[tokio::test]
async fn graceful_stop_pushes_logout_and_ends_streams() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let backend = handle.backend().clone();
    let (_tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    wait_open(&backend, 1).await;
    tokio::time::timeout(WAIT, handle.stop())
        .await
        .unwrap()
        .unwrap();
    let logout = next(&mut rx).await.unwrap().unwrap();
    assert_eq!(
        (logout.r#mod, logout.seq, logout.obj, logout.index),
        (1, 4, OID, 0)
    );
    let code = ScServerLogout::decode(logout.data).unwrap().code;
    assert_eq!(code, sc_server_logout::Code::Waiting as i32);
    assert!(next(&mut rx).await.unwrap().is_none());
    assert_eq!(backend.open_streams(), 0);
    assert_eq!(backend.observed().closed[0].end, StreamEnd::Shutdown);
}

#[tokio::test]
async fn kill_drops_streams_without_a_goodbye() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let backend = handle.backend().clone();
    let addr = handle.addr();
    let (_tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    wait_open(&backend, 1).await;
    handle.kill();
    let status = next(&mut rx)
        .await
        .expect_err("a killed backend must not end the stream cleanly");
    assert_ne!(status.code(), Code::Ok);
    wait_open(&backend, 0).await;
    assert!(
        backend
            .observed()
            .closed
            .iter()
            .all(|c| c.end == StreamEnd::Cancelled)
    );
    // The port no longer accepts.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    refused.await.unwrap();
}

#[tokio::test]
async fn dropped_connections_fail_streams_and_the_backend_keeps_serving() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let channel = channel(&handle).await;
    let (_tx, mut rx) = open_player(&channel, &gate_headers("1")).await.unwrap();
    wait_open(handle.backend(), 1).await;
    assert_eq!(handle.drop_connections(), 1);
    assert!(next(&mut rx).await.is_err());
    wait_open(handle.backend(), 0).await;
    // The channel reconnects on the next call; give it a few tries while it notices the loss.
    let reopened = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(tunnel) = open_player(&channel, &gate_headers("1")).await {
                break tunnel;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let (tx, mut rx) = reopened.await.unwrap();
    tx.send(request(3, 3, 1, "again")).await.unwrap();
    assert_eq!(next(&mut rx).await.unwrap().unwrap().data, "again");
}

#[tokio::test]
async fn subscribers_see_live_events() {
    let handle = DemoBackend::new(DemoConfig::default())
        .spawn_local()
        .await
        .unwrap();
    let mut events = handle.backend().subscribe();
    let (tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    tx.send(request(3, 3, 1, "x")).await.unwrap();
    next(&mut rx).await.unwrap().unwrap();
    drop(tx);
    assert!(next(&mut rx).await.unwrap().is_none());
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(
            tokio::time::timeout(WAIT, events.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(matches!(&seen[0], DemoEvent::Opened(o) if o.oid == OID));
    assert!(matches!(&seen[1], DemoEvent::Request(r) if r.request.data == "x"));
    assert!(matches!(&seen[2], DemoEvent::Closed(c) if c.end == StreamEnd::HalfClosed));
}

#[tokio::test]
async fn history_is_bounded() {
    let handle = DemoBackend::new(DemoConfig {
        observe_capacity: 2,
        ..DemoConfig::default()
    })
    .spawn_local()
    .await
    .unwrap();
    let (tx, mut rx) = open_player(&channel(&handle).await, &gate_headers("1"))
        .await
        .unwrap();
    for index in 1..=5 {
        tx.send(request(3, 3, index, "x")).await.unwrap();
        next(&mut rx).await.unwrap().unwrap();
    }
    let indexes: Vec<_> = handle
        .backend()
        .observed()
        .requests
        .iter()
        .map(|r| r.request.index)
        .collect();
    assert_eq!(indexes, [4, 5]);
}
