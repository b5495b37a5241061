//! Hostile load from outside, over real sockets: what an attacker does must not lock players out.
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
    sync::Arc,
    time::{Duration, Instant},
};

use common::{Rig, TestClient};
use janus_core::CloseReason;
use janus_tokio::gateway::metrics::Refusal;
use tokio::io::AsyncWriteExt as _;

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

/// Issue defect 3: a carrier-grade NAT is not an attack. Hundreds of players behind one address,
/// arriving as real players do (a few at a time, over seconds), are all admitted by the default
/// limits, and stay connected together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_players_behind_one_address_are_all_admitted() {
    raise_fd_limit();
    let rig = Rig::start_with(|s| s.admission = Default::default()).await;
    let nat = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 77));
    let players = 300;
    let mut joined = Vec::with_capacity(players);
    let start = Instant::now();
    for wave in 0..players / 20 {
        // 20 players every 200 ms: 100 new connections a second from one address.
        let due = start + Duration::from_millis(200 * wave as u64);
        tokio::time::sleep_until(due.into()).await;
        let mut batch = Vec::new();
        for i in 0..20 {
            let uid = 50_000 + (wave * 20 + i) as i64;
            batch.push(tokio::spawn(TestClient::tcp_from(rig.tcp(), nat, uid)));
        }
        for c in batch {
            joined.push(c.await.expect("admitted and authenticated"));
        }
    }
    assert_eq!(rig.gateway.sessions(), players);
    // Every one of them is served.
    for c in joined.iter_mut().step_by(30) {
        let index = c.send(3, 1, 0, b"still here").await;
        c.reply(index).await;
    }
    let metrics = rig.gateway.metrics();
    let refused: u64 = Refusal::ALL.iter().map(|r| metrics.refusals(*r)).sum();
    assert_eq!(refused, 0, "no player was refused");
}

// ------------------------------------------------------------------------------------------
// WebSocket, byte by byte: a raw client that writes exactly the frames a test wants.

use bytes::{Bytes, BytesMut};
use janus_core::{
    client::{ClientEvent, ClientSession},
    frame::Frames,
};
use tokio::{io::AsyncReadExt as _, net::TcpStream};

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame.
fn masked(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![first_byte];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

/// Server frames (opcode, payload) in `bytes`, and how many bytes they took.
fn server_frames(bytes: &[u8]) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 2 {
        let op = bytes[at] & 0x0F;
        let (len, head) = match bytes[at + 1] & 0x7F {
            126 if bytes.len() >= at + 4 => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 if bytes.len() >= at + 10 => (
                u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if bytes.len() < at + head + len {
            break;
        }
        out.push((op, bytes[at + head..at + head + len].to_vec()));
        at += head + len;
    }
    (out, at)
}

/// Upgrades a raw socket; returns it and the server's response head.
async fn ws_upgrade(rig: &Rig, request: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(rig.gateway.addrs().ws.unwrap())
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// Everything the server sends until it closes (bounded by `WAIT`).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(common::WAIT, s.read_to_end(&mut all)).await;
    all
}

/// The close code in the server's close frame, if it sent one.
fn close_code(bytes: &[u8]) -> Option<u16> {
    server_frames(bytes)
        .0
        .into_iter()
        .find(|(op, _)| *op == 8)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_violations_close_with_their_code_and_reason() {
    let rig = Rig::start().await;
    let cases: Vec<(Vec<u8>, u16, CloseReason)> = vec![
        (masked(0xC2, b"x"), 1002, CloseReason::WsProtocolError), // RSV1
        (masked(0x83, b"x"), 1002, CloseReason::WsProtocolError), // unknown opcode
        (vec![0x82, 0x01, 0x00], 1002, CloseReason::WsProtocolError), // unmasked
        (masked(0x09, b"x"), 1002, CloseReason::WsProtocolError), // fragmented ping
        (masked(0x80, b"x"), 1002, CloseReason::WsProtocolError), // continuation, no start
        (masked(0x81, b"hi"), 1003, CloseReason::WsTextMessage),
        (
            masked(0x81, &[0xC3, 0x28]),
            1007,
            CloseReason::WsInvalidUtf8,
        ),
        (
            masked(0x82, &vec![0u8; 40_000]),
            1009,
            CloseReason::WsMessageTooBig,
        ),
    ];
    for (frame, code, reason) in cases {
        let before = rig.gateway.metrics().closed_count(reason);
        let (mut s, head) = ws_upgrade(&rig, UPGRADE).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(&frame).await.unwrap();
        let rest = read_to_close(&mut s).await;
        assert_eq!(close_code(&rest), Some(code), "{reason}");
        assert_eq!(
            rig.gateway.metrics().closed_count(reason),
            before + 1,
            "{reason}"
        );
    }
    assert_eq!(
        rig.gateway.metrics().closed_count(CloseReason::PeerClosed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upgrades_get_an_http_answer() {
    let rig = Rig::start_with(|s| {
        s.ws.as_mut().unwrap().allowed_origins = vec!["https://game.example".into()];
    })
    .await;
    for (request, status) in [
        (UPGRADE.replace("/ws", "/nope"), "404"),
        ("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), "426"),
        (UPGRADE.replace("Version: 13", "Version: 7"), "426"),
        (
            UPGRADE.replace("Host: x\r\n", "Host: x\r\nOrigin: https://evil.example\r\n"),
            "403",
        ),
        ("HELLO\r\n\r\n".to_owned(), "400"),
    ] {
        let (mut s, head) = ws_upgrade(&rig, &request).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status}: {head}"
        );
        if status == "426" {
            assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
        }
        let _ = read_to_close(&mut s).await;
    }
    // A native client (no Origin) is admitted despite the list; a listed browser origin too.
    let (_s, head) = ws_upgrade(&rig, UPGRADE).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let browser = UPGRADE.replace("Host: x\r\n", "Host: x\r\nOrigin: https://game.example\r\n");
    let (_s, head) = ws_upgrade(&rig, &browser).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        rig.gateway
            .metrics()
            .closed_count(CloseReason::WsUpgradeRejected),
        5
    );
}

/// Issue defect 2: a client that floods pings without reading used to lose a reply silently and
/// be counted as `peer_closed`. Now the flood is rate limited: the session closes with a close
/// frame (1008) and `rate_limited`; and a client that pings within the rate and reads slowly
/// gets its reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ping_flood_is_closed_with_a_reason_and_replies_are_not_lost() {
    let rig = Rig::start().await;
    let (mut s, head) = ws_upgrade(&rig, UPGRADE).await;
    assert!(head.starts_with("HTTP/1.1 101"));
    let ping = masked(0x89, b"ping");
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 100_000)
        .collect();
    // The gateway closes long before all of it is written; the write may fail then.
    let _ = s.write_all(&flood).await;
    let rest = read_to_close(&mut s).await;
    assert_eq!(close_code(&rest), Some(1008));
    let metrics = rig.gateway.metrics();
    assert_eq!(metrics.closed_count(CloseReason::RateLimited), 1);
    assert_eq!(metrics.closed_count(CloseReason::PeerClosed), 0);

    // Within the rate: authenticate, ping a few times, send a request, read slowly.
    let (mut s, _) = ws_upgrade(&rig, UPGRADE).await;
    let mut client = ClientSession::new(
        &common::quiet_config(common::token(70_001, "local")),
        common::now(),
        [8; 32],
    );
    let send_frames =
        |bytes: Bytes| -> Vec<u8> { Frames(bytes).flat_map(|f| masked(0x82, &f)).collect() };
    s.write_all(&send_frames(client.poll_transmit().unwrap()))
        .await
        .unwrap();
    let mut inbox = BytesMut::new();
    let deliver = |inbox: &mut BytesMut, client: &mut ClientSession| {
        let (frames, used) = server_frames(inbox);
        let _ = inbox.split_to(used);
        for (op, payload) in frames {
            if op == 2 {
                client.handle_bytes(common::now(), &payload);
            }
        }
    };
    while !client.is_established() {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        inbox.extend_from_slice(&buf[..n]);
        deliver(&mut inbox, &mut client);
    }
    let mut wire = Vec::new();
    for _ in 0..10 {
        wire.extend(masked(0x89, b"still alive"));
    }
    let index = client
        .send(
            common::now(),
            janus_core::client::Outgoing {
                module: 3,
                seq: 1,
                data: Bytes::from_static(b"slow reader"),
                ..Default::default()
            },
        )
        .unwrap();
    wire.extend(send_frames(client.poll_transmit().unwrap()));
    s.write_all(&wire).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Read a byte at a time.
    let deadline = Instant::now() + common::WAIT;
    loop {
        assert!(Instant::now() < deadline, "the reply never came");
        let mut byte = [0u8; 1];
        if s.read(&mut byte).await.unwrap() == 0 {
            panic!("closed before the reply");
        }
        inbox.extend_from_slice(&byte);
        deliver(&mut inbox, &mut client);
        if std::iter::from_fn(|| client.poll_event())
            .any(|e| matches!(e, ClientEvent::Packet(p) if p.index == index && &p.data[..] == b"slow reader"))
        {
            break;
        }
    }
}

/// A storm of real clients from many addresses at once: every one gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_storm_from_a_hundred_addresses_is_served() {
    raise_fd_limit();
    let rig = Rig::start_with(|s| s.admission = Default::default()).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for host in 0..100u8 {
        for i in 0..4i64 {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 3, host + 1));
            let uid = 80_000 + i64::from(host) * 100 + i;
            let tcp = rig.tcp();
            tasks.push(tokio::spawn(async move {
                let mut c = TestClient::tcp_from(tcp, source, uid).await;
                let index = c.send(3, 1, 0, b"storm").await;
                c.reply(index).await;
                c
            }));
        }
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("every client of the storm is served"));
    }
    eprintln!(
        "storm: 400 clients from 100 addresses served in {:?}",
        started.elapsed()
    );
    assert_eq!(rig.gateway.sessions(), 400);
    let metrics = rig.gateway.metrics();
    assert_eq!(
        Refusal::ALL
            .iter()
            .map(|r| metrics.refusals(*r))
            .sum::<u64>(),
        0
    );
}

/// A client that vanishes without a FIN (a phone losing its network) is closed at the idle
/// deadline, and the gateway forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_client_is_closed_at_the_idle_deadline() {
    let rig = Rig::start_with(|s| {
        let mut core = janus_core::testing::test_server_config(true);
        core.session.idle_timeout = Duration::from_secs(2);
        s.core = Arc::new(core);
    })
    .await;
    let mut c = TestClient::tcp(rig.tcp(), 90_001).await;
    let index = c.send(3, 1, 0, b"then silence").await;
    c.reply(index).await;
    assert_eq!(rig.gateway.sessions(), 1);
    // The client neither sends nor closes: the socket stays half-open from the gateway's view.
    let (closed, _, _) = c.closed_after().await;
    assert!(closed, "closed by the gateway");
    assert_eq!(
        rig.gateway.metrics().closed_count(CloseReason::IdleTimeout),
        1
    );
    assert_eq!(rig.gateway.sessions(), 0);
}
