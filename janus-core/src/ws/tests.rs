//! The WebSocket transport against a real client session: the upgrade, the frames, every
//! violation's close code, control-frame metering.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::{sync::Arc, time::Duration};

use proptest::prelude::*;

use super::{frame::masked, *};
use crate::{
    client::{ClientEvent, ClientSession, Outgoing},
    testing::{test_client_config, test_context, test_server_config, test_token},
};

const UID: i64 = 10001;
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

fn request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: game.example\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn ws_session(config: WsConfig) -> WsSession {
    let session = Session::new(
        Arc::new(test_server_config(true)),
        test_context(),
        t0(),
        [7; 32],
    );
    WsSession::new(session, Arc::new(config))
}

fn feed(ws: &mut WsSession, bytes: &[u8]) {
    ws.handle_buf(t0(), BytesMut::from(bytes));
}

fn drain_events(ws: &mut WsSession) -> Vec<Event> {
    std::iter::from_fn(|| ws.poll_event()).collect()
}

/// Everything the server wrote, as taken by a socket.
fn written(ws: &mut WsSession) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let chunk = ws.transmit().to_vec();
        if chunk.is_empty() {
            return out;
        }
        ws.advance_transmit(chunk.len());
        out.extend_from_slice(&chunk);
    }
}

/// Server frames (unmasked): (opcode byte, payload).
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let op = bytes[0] & 0x0F;
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match bytes[1] & 0x7F {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        out.push((op, bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    out
}

fn upgraded() -> WsSession {
    let mut ws = ws_session(WsConfig::new("/ws"));
    feed(&mut ws, request("/ws", "").as_bytes());
    let response = String::from_utf8(written(&mut ws)).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{response}"
    );
    ws
}

/// The client's frames, one masked binary message each.
fn client_messages(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in crate::frame::Frames(Bytes::copy_from_slice(bytes)) {
        out.extend(masked(0x82, &frame, [1, 2, 3, 4]));
    }
    out
}

/// An upgraded connection with an established session, and its client.
fn established() -> (WsSession, ClientSession) {
    let mut ws = upgraded();
    let mut client = ClientSession::new(
        &test_client_config(true, test_token(UID, t0(), 1)),
        t0(),
        [9; 32],
    );
    feed(&mut ws, &client_messages(&client.poll_transmit().unwrap()));
    assert!(matches!(
        drain_events(&mut ws)[..],
        [Event::Authenticated(_)]
    ));
    for (op, payload) in server_frames(&written(&mut ws)) {
        assert_eq!(op, 2);
        client.handle_bytes(t0(), &payload);
    }
    assert!(client.is_established());
    while client.poll_event().is_some() {}
    (ws, client)
}

/// The close reason the session ended with, and the close code the client was sent.
fn closed(ws: &mut WsSession) -> (Option<CloseReason>, Option<u16>) {
    let reason = drain_events(ws).into_iter().find_map(|e| match e {
        Event::Closed(r) => Some(r),
        _ => None,
    });
    let code = server_frames(&written(ws))
        .into_iter()
        .find(|(op, _)| *op == 8)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]));
    (reason, code)
}

#[test]
fn the_upgrade_answers_with_the_accept_key_of_rfc_6455() {
    let mut ws = ws_session(WsConfig::new("/ws"));
    // In two pieces, the second carrying the first frame already.
    let req = request("/ws?token=x", "Origin: https://game.example\r\n");
    feed(&mut ws, &req.as_bytes()[..20]);
    assert!(written(&mut ws).is_empty());
    let mut rest = req.as_bytes()[20..].to_vec();
    rest.extend(masked(0x89, b"hi", [9, 9, 9, 9]));
    feed(&mut ws, &rest);
    let out = written(&mut ws);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(
        server_frames(&out[head_end..]),
        vec![(0xA, b"hi".to_vec())],
        "the ping after it"
    );
}

#[test]
fn refused_upgrades_get_an_http_answer() {
    let cases: Vec<(WsConfig, String, &str)> = vec![
        (WsConfig::new("/ws"), request("/other", ""), "404 Not Found"),
        (
            WsConfig::new("/ws"),
            "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "426 Upgrade Required",
        ),
        (
            WsConfig::new("/ws"),
            request("/ws", "").replace("Version: 13", "Version: 8"),
            "426 Upgrade Required",
        ),
        (
            WsConfig::new("/ws"),
            request("/ws", "").replace(KEY, "short"),
            "400 Bad Request",
        ),
        (
            WsConfig::new("/ws"),
            request("/ws", "").replacen("GET", "POST", 1),
            "405 Method Not Allowed",
        ),
        (
            WsConfig::new("/ws"),
            format!("GET /ws HTTP/1.1\r\n{}\r\n\r\n", "X: y\r\n".repeat(2000)),
            "400 Bad Request",
        ),
        (
            {
                let mut c = WsConfig::new("/ws");
                c.upgrade.allowed_origins = vec!["https://game.example".into()];
                c
            },
            request("/ws", "Origin: https://evil.example\r\n"),
            "403 Forbidden",
        ),
    ];
    for (config, req, status) in cases {
        let mut ws = ws_session(config);
        feed(&mut ws, req.as_bytes());
        let out = String::from_utf8(written(&mut ws)).unwrap();
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{status}: {out}"
        );
        if status.starts_with("426") {
            assert!(out.contains("Sec-WebSocket-Version: 13\r\n"));
        }
        let (reason, code) = closed(&mut ws);
        assert_eq!((reason, code), (Some(CloseReason::WsUpgradeRejected), None));
    }
    // A native client sends no Origin: admitted even with a list.
    let mut config = WsConfig::new("/ws");
    config.upgrade.allowed_origins = vec!["https://game.example".into()];
    let mut ws = ws_session(config);
    feed(&mut ws, request("/ws", "").as_bytes());
    assert!(written(&mut ws).starts_with(b"HTTP/1.1 101"));
}

#[test]
fn a_session_runs_over_binary_messages_with_one_frame_each() {
    let (mut ws, mut client) = established();
    let index = client
        .send(
            t0(),
            Outgoing {
                module: 3,
                seq: 1,
                data: Bytes::from_static(b"echo"),
                ..Default::default()
            },
        )
        .unwrap();
    let bytes = client.poll_transmit().unwrap();
    // Sent fragmented: three pieces of one message.
    let (a, rest) = bytes.split_at(3);
    let (b, c) = rest.split_at(5);
    let mut wire = masked(0x02, a, [5, 6, 7, 8]);
    wire.extend(masked(0x89, b"beat", [1, 1, 1, 1])); // a ping between fragments is allowed
    wire.extend(masked(0x00, b, [5, 6, 7, 8]));
    wire.extend(masked(0x80, c, [5, 6, 7, 8]));
    feed(&mut ws, &wire);
    let events = drain_events(&mut ws);
    let (tunnel, message) = events
        .iter()
        .find_map(|e| match e {
            Event::Forward { tunnel, message } => Some((*tunnel, message.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(&message.data[..], b"echo");
    ws.session_mut().handle_tunnel(t0(), tunnel, message);
    let frames = server_frames(&written(&mut ws));
    assert_eq!(frames[0], (0xA, b"beat".to_vec()), "pong first");
    assert_eq!(frames[1].0, 2);
    client.handle_bytes(t0(), &frames[1].1);
    assert!(
        matches!(client.poll_event(), Some(ClientEvent::Packet(p)) if p.index == index && &p.data[..] == b"echo")
    );

    // A kick: the logout packet, then a close frame with 1000.
    ws.session_mut().close(t0(), CloseReason::AdminKickOut);
    assert_eq!(
        closed(&mut ws),
        (Some(CloseReason::AdminKickOut), Some(1000))
    );
}

#[test]
fn a_compacted_connection_carries_on_as_if_nothing_happened() {
    let (mut ws, mut client) = established();
    for round in 0..2u8 {
        // Idle: the buffers and the key schedule go; the next message both ways rebuilds them.
        ws.compact();
        assert_eq!(ws.pending_transmit(), 0);
        let data = Bytes::from(vec![round; 700]);
        let index = client
            .send(
                t0(),
                Outgoing {
                    module: 3,
                    seq: 1,
                    data: data.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        feed(
            &mut ws,
            &masked(0x82, &client.poll_transmit().unwrap(), [1, 2, 3, 4]),
        );
        let (tunnel, message) = drain_events(&mut ws)
            .into_iter()
            .find_map(|e| match e {
                Event::Forward { tunnel, message } => Some((tunnel, message)),
                _ => None,
            })
            .unwrap();
        assert_eq!(message.data, data);
        ws.compact();
        ws.session_mut().handle_tunnel(t0(), tunnel, message);
        let frames = server_frames(&written(&mut ws));
        assert_eq!(frames.len(), 1);
        client.handle_bytes(t0(), &frames[0].1);
        assert!(
            matches!(client.poll_event(), Some(ClientEvent::Packet(p)) if p.index == index && p.data == data)
        );
    }
}

#[test]
fn every_protocol_violation_closes_with_its_code() {
    let too_big = vec![0u8; 20_000];
    let cases: Vec<(Vec<u8>, CloseReason, u16)> = vec![
        (
            masked(0xC2, b"x", [1; 4]),
            CloseReason::WsProtocolError,
            1002,
        ), // RSV1
        (
            masked(0x83, b"x", [1; 4]),
            CloseReason::WsProtocolError,
            1002,
        ), // opcode 3
        (vec![0x82, 0x01, 0x00], CloseReason::WsProtocolError, 1002), // unmasked
        (
            masked(0x89, &[0; 126], [1; 4]),
            CloseReason::WsProtocolError,
            1002,
        ), // big ping
        (
            masked(0x09, b"x", [1; 4]),
            CloseReason::WsProtocolError,
            1002,
        ), // fragmented ping
        (
            masked(0x80, b"x", [1; 4]),
            CloseReason::WsProtocolError,
            1002,
        ), // lone continuation
        (
            [masked(0x02, b"ab", [1; 4]), masked(0x82, b"cd", [1; 4])].concat(),
            CloseReason::WsProtocolError,
            1002,
        ), // a new message inside a fragmented one
        (
            masked(0x81, b"hello", [1; 4]),
            CloseReason::WsTextMessage,
            1003,
        ),
        (
            masked(0x81, &[0xff, 0xfe], [1; 4]),
            CloseReason::WsInvalidUtf8,
            1007,
        ),
        (
            masked(0x82, &too_big, [1; 4]),
            CloseReason::WsMessageTooBig,
            1009,
        ),
        (
            masked(0x88, &[0x03], [1; 4]),
            CloseReason::WsProtocolError,
            1002,
        ), // 1-byte close
        (
            masked(0x88, &[0x03, 0xEC], [1; 4]),
            CloseReason::WsProtocolError,
            1002,
        ), // code 1004
        (
            masked(0x88, &[0x03, 0xE8, 0xff], [1; 4]),
            CloseReason::WsInvalidUtf8,
            1007,
        ), // reason not UTF-8
        (
            masked(0x82, &[0, 0, 0, 9, 1], [1; 4]),
            CloseReason::MalformedFrame,
            1002,
        ), // frame spans messages
    ];
    for (wire, reason, code) in cases {
        let (mut ws, _client) = established();
        feed(&mut ws, &wire);
        assert_eq!(closed(&mut ws), (Some(reason), Some(code)), "{wire:02x?}");
        // Nothing is read after that.
        feed(&mut ws, &masked(0x89, b"late", [1; 4]));
        assert!(written(&mut ws).is_empty());
    }
}

#[test]
fn a_client_close_is_echoed_and_ends_the_session() {
    let (mut ws, _client) = established();
    feed(
        &mut ws,
        &masked(0x88, &[0x0F, 0xA0, b'b', b'y', b'e'], [3; 4]),
    );
    assert_eq!(closed(&mut ws), (Some(CloseReason::PeerClosed), Some(4000)));
    let (mut ws, _client) = established();
    feed(&mut ws, &masked(0x88, &[], [3; 4]));
    assert_eq!(closed(&mut ws), (Some(CloseReason::PeerClosed), Some(1000)));
}

#[test]
fn a_ping_flood_is_rate_limited() {
    let (mut ws, _client) = established();
    let mut wire = Vec::new();
    for _ in 0..(DEFAULT_CONTROL_RATE.burst + 1) {
        wire.extend(masked(0x89, b"p", [2; 4]));
    }
    feed(&mut ws, &wire);
    assert_eq!(closed(&mut ws).0, Some(CloseReason::RateLimited));
}

#[test]
fn pongs_for_a_client_that_does_not_read_count_against_its_budget() {
    let mut config = WsConfig::new("/ws");
    config.control_rate = RateLimit {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    let mut ws = ws_session(config);
    feed(&mut ws, request("/ws", "").as_bytes());
    let _ = written(&mut ws);
    // Upgraded but never reads: 125-byte pings until the pongs exceed the 1 MiB budget.
    let ping = masked(0x89, &[7; 125], [4; 4]);
    let mut reason = None;
    for _ in 0..20_000 {
        feed(&mut ws, &ping);
        if let Some(r) = drain_events(&mut ws).into_iter().find_map(|e| match e {
            Event::Closed(r) => Some(r),
            _ => None,
        }) {
            reason = Some(r);
            break;
        }
    }
    assert_eq!(reason, Some(CloseReason::SlowConsumer));
    assert!(
        ws.pending_transmit() < 1024,
        "the pongs were dropped, not kept"
    );
}

#[test]
fn the_handshake_deadline_covers_the_upgrade() {
    let mut ws = ws_session(WsConfig::new("/ws"));
    feed(&mut ws, b"GET /ws HTTP/1.1\r\n");
    let deadline = ws.poll_timeout().unwrap();
    assert!(deadline <= t0() + Duration::from_secs(3));
    ws.handle_timeout(deadline);
    assert_eq!(closed(&mut ws).0, Some(CloseReason::HandshakeTimeout));
}

proptest! {
    // Each case runs a real handshake (X25519, Ed25519): a few dozen cases cover the splits.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// However the socket splits the bytes, the session sees the same packets.
    #[test]
    fn any_chunking_gives_the_same_messages(cuts in proptest::collection::vec(1usize..40, 0..40)) {
        let (mut ws, mut client) = established();
        let mut wire = Vec::new();
        for i in 0..5u8 {
            client.send(t0(), Outgoing { module: 3, seq: 1, data: Bytes::from(vec![i; 30]), ..Default::default() }).unwrap();
            wire.extend(client_messages(&client.poll_transmit().unwrap()));
            wire.extend(masked(0x8A, b"pong", [i, 1, 2, 3]));
        }
        let mut at = 0;
        for cut in cuts {
            let end = (at + cut).min(wire.len());
            feed(&mut ws, &wire[at..end]);
            at = end;
        }
        feed(&mut ws, &wire[at..]);
        let forwarded: Vec<Vec<u8>> = drain_events(&mut ws)
            .into_iter()
            .filter_map(|e| match e {
                Event::Forward { message, .. } => Some(message.data.to_vec()),
                _ => None,
            })
            .collect();
        prop_assert_eq!(forwarded, (0..5u8).map(|i| vec![i; 30]).collect::<Vec<_>>());
    }

    /// Garbage after the upgrade never panics and always ends in a defined close or waits.
    #[test]
    fn garbage_is_closed_or_waited_for(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (mut ws, _client) = established();
        feed(&mut ws, &bytes);
        let _ = drain_events(&mut ws);
        let _ = written(&mut ws);
    }
}
