//! Session behaviour, driven through a client on virtual time.

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use janus_proto::{
    broadcaster::service::push::v1::PushBody,
    message::{ScServerLogout, ScServerUnexpectedErr, sc_server_logout::Code as LogoutCode},
    packet::Packet,
};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::{
    client::{ClientError, ClientEvent, Outgoing},
    config::ServerConfig,
    handshake::ClientHandshakeError,
    limit::RateLimit,
    route::{TunnelKey, TunnelKind},
    testing::{Pair, test_client_config, test_server_config, test_token},
};

const UID: i64 = 10001;

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

fn pair_with(config: ServerConfig) -> Pair {
    let mut p = Pair::new(
        Arc::new(config),
        &test_client_config(true, test_token(UID, t0(), 1)),
        t0(),
    );
    p.drive();
    assert!(p.client.is_established(), "{:?}", p.client_events);
    p
}

fn pair() -> Pair {
    pair_with(test_server_config(true))
}

fn send(p: &mut Pair, module: i32, seq: i32, obj: i64, data: &'static [u8]) -> i32 {
    let index = p
        .client
        .send(
            p.now,
            Outgoing {
                module,
                seq,
                obj,
                data: Bytes::from_static(data),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    index
}

fn player(oid: i64) -> TunnelKey {
    TunnelKey {
        kind: TunnelKind::PLAYER,
        oid,
    }
}

fn room(oid: i64) -> TunnelKey {
    TunnelKey {
        kind: TunnelKind::ROOM,
        oid,
    }
}

/// The packets the client received, with the system messages it turned into events rebuilt.
fn packets(events: Vec<ClientEvent>) -> Vec<Packet> {
    events
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Packet(p) => Some(p),
            ClientEvent::Logout(code) => Some(crate::system::logout(code)),
            ClientEvent::RequestFailed {
                index,
                module,
                seq,
                message,
            } => Some(crate::system::unexpected_err(module, seq, index, &message)),
            _ => None,
        })
        .collect()
}

/// The key of an [`Event::OpenTunnel`].
fn opened(event: &Event) -> Option<TunnelKey> {
    match event {
        Event::OpenTunnel(open) => Some(open.key),
        _ => None,
    }
}

/// The id of the open tunnel for `key` (what an adapter remembers from `OpenTunnel`).
fn tunnel(p: &Pair, key: TunnelKey) -> TunnelId {
    match &p.server.state {
        State::Established(link) => link
            .tunnels
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.id)
            .expect("tunnel open"),
        _ => panic!("not established"),
    }
}

fn closed_with(events: &[Event]) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        Event::Closed(r) => Some(*r),
        _ => None,
    })
}

#[test]
fn handshake_then_request_and_reply() {
    let mut p = pair();
    let events = p.take_server_events();
    assert!(
        matches!(&events[..], [Event::Authenticated(id)] if id.uid == UID && id.sid == 1 && id.color == "local")
    );
    assert_eq!(p.server.state(), SessionState::Established);

    let index = send(&mut p, 1, 2, 0, b"\x08\x01");
    assert_eq!(index, 1);
    let events = p.take_server_events();
    let forwarded = TunnelMessage {
        data: Bytes::from_static(b"\x08\x01"),
        obj: UID,
        module: 1,
        seq: 2,
        index: 1,
        ..Default::default()
    };
    let Event::OpenTunnel(open) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (open.key, &*open.kind, &*open.method),
        (
            player(UID),
            "player",
            "/player.intra.v1.TunnelService/Tunnel"
        )
    );
    assert_eq!(
        (open.layout, open.color.as_str()),
        (TunnelLayout::Player, "local")
    );
    let headers: Vec<(&str, &str)> = open
        .metadata
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("x-md-global-oid", "10001"),
            ("x-md-global-uid", "10001"),
            ("x-md-global-sid", "1"),
            ("x-md-global-status", "1"),
            ("x-md-global-color", "local"),
            ("x-md-global-client-ip", "192.0.2.7:40001"),
            ("x-md-global-referer", "10.0.0.1:9100#16"),
            ("x-md-global-gate-referer", "10.0.0.1:9100#16"),
        ]
    );
    assert_eq!(
        events[1],
        Event::Forward {
            tunnel: open.id,
            message: forwarded
        }
    );
    assert_eq!(events.len(), 2);

    p.server.handle_tunnel(
        p.now,
        open.id,
        TunnelMessage {
            data: Bytes::from_static(b"pong"),
            data_version: 3,
            obj: UID,
            module: 1,
            seq: 2,
            index: 1,
            ..Default::default()
        },
    );
    p.drive();
    let got = packets(p.take_client_events());
    assert_eq!(got.len(), 1);
    assert_eq!(
        (
            &got[0].data[..],
            got[0].index,
            got[0].data_version,
            got[0].obj
        ),
        (&b"pong"[..], 1, 3, UID)
    );

    // the second packet on the same tunnel opens nothing new
    send(&mut p, 3, 1, UID, b"x");
    assert!(
        matches!(&p.take_server_events()[..], [Event::Forward { tunnel, message }] if *tunnel == open.id && message.index == 2)
    );
}

#[test]
fn room_packets_use_obj_and_carry_fragments() {
    let mut p = pair();
    p.take_server_events();
    p.client
        .send(
            p.now,
            Outgoing {
                module: 6,
                seq: 2,
                obj: 42,
                data: Bytes::from_static(b"r"),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    let events = p.take_server_events();
    let Event::OpenTunnel(open) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!((open.key, open.layout), (room(42), TunnelLayout::Room));
    assert_eq!(open.metadata[0], ("x-md-global-oid", "42".to_owned()));
    assert!(
        matches!(&events[1], Event::Forward { tunnel, message } if *tunnel == open.id && message.obj == 42)
    );

    // obj 0 on a room module means the session uid, as upstream (room list, create room)
    send(&mut p, 6, 3, 0, b"");
    let events = p.take_server_events();
    assert_eq!(opened(&events[0]), Some(room(UID)));
    assert!(matches!(&events[1], Event::Forward { message, .. } if message.obj == UID));
    assert_eq!(p.server.state(), SessionState::Established);
}

#[test]
fn another_players_obj_never_reaches_a_backend() {
    let mut p = pair();
    p.take_server_events();
    send(&mut p, 3, 1, UID + 1, b"spoof");
    let events = p.take_server_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Forward { .. } | Event::OpenTunnel(_))),
        "{events:?}"
    );
    assert_eq!(closed_with(&events), Some(CloseReason::ObjectNotOwned));
    assert_eq!(p.server.state(), SessionState::Closed);
}

#[test]
fn a_replayed_packet_closes_the_session() {
    let mut p = pair();
    p.client
        .send(
            p.now,
            Outgoing {
                module: 1,
                seq: 2,
                ..Default::default()
            },
        )
        .unwrap();
    let frame = p.client.poll_transmit().unwrap();
    p.server.handle_bytes(p.now, &frame);
    p.server.handle_bytes(p.now, &frame);
    let events: Vec<_> = std::iter::from_fn(|| p.server.poll_event()).collect();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Forward { .. }))
            .count(),
        1
    );
    assert_eq!(closed_with(&events), Some(CloseReason::IndexMismatch));
}

#[test]
fn tampered_packets_and_garbage_frames_close() {
    let mut p = pair();
    p.client
        .send(
            p.now,
            Outgoing {
                module: 1,
                seq: 2,
                ..Default::default()
            },
        )
        .unwrap();
    let mut frame = p.client.poll_transmit().unwrap().to_vec();
    let last = frame.len() - 1;
    frame[last] ^= 1;
    p.server.handle_bytes(p.now, &frame);
    assert_eq!(
        closed_with(&std::iter::from_fn(|| p.server.poll_event()).collect::<Vec<_>>()),
        Some(CloseReason::DecryptFailed)
    );

    let mut p = pair();
    p.server.handle_bytes(p.now, &[0x80, 0, 0, 0]);
    assert_eq!(closed_with(&p.take_server_events()), None);
    assert_eq!(
        closed_with(&std::iter::from_fn(|| p.server.poll_event()).collect::<Vec<_>>()),
        Some(CloseReason::MalformedFrame)
    );
}

#[test]
fn compressed_requests_are_inflated_and_bombs_refused() {
    let mut p = pair();
    p.take_server_events();
    let body = Bytes::from(vec![b'a'; 5000]);
    p.client
        .send(
            p.now,
            Outgoing {
                module: 3,
                seq: 1,
                data: body.clone(),
                compress: true,
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    let events = p.take_server_events();
    assert!(matches!(&events[1], Event::Forward { message, .. } if message.data == body));

    p.client
        .send(
            p.now,
            Outgoing {
                module: 3,
                seq: 1,
                data: Bytes::from(vec![0; 1 << 20]),
                compress: true,
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::DecompressFailed)
    );
}

#[test]
fn large_replies_go_out_compressed_and_oversized_ones_become_errors() {
    let mut p = pair();
    p.take_server_events();
    let index = send(&mut p, 3, 1, 0, b"");
    let big = Bytes::from(vec![b'z'; 200_000]);
    let sent_before = p.server_sent;
    let id = tunnel(&p, player(UID));
    p.server.handle_tunnel(
        p.now,
        id,
        TunnelMessage {
            data: big.clone(),
            module: 3,
            seq: 1,
            index,
            ..Default::default()
        },
    );
    p.drive();
    assert!(
        p.server_sent - sent_before < 2_000,
        "sent {} bytes",
        p.server_sent - sent_before
    );
    let got = packets(p.take_client_events());
    assert_eq!(got[0].data, big, "the client inflates it back");

    // incompressible and over the 16 KiB frame limit: the client gets an error for that request
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..40_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    p.server.handle_tunnel(
        p.now,
        id,
        TunnelMessage {
            data: noise.into(),
            module: 3,
            seq: 1,
            index: 7,
            ..Default::default()
        },
    );
    p.drive();
    let got = packets(p.take_client_events());
    assert_eq!((got[0].r#mod, got[0].seq, got[0].index), (1, 3, 7));
    assert_eq!(p.server.state(), SessionState::Established);
}

fn encode_push(body: &PushBody) -> PushPacket {
    PushPacket::encode(body, &test_server_config(true)).unwrap()
}

#[test]
fn pushes_carry_index_zero() {
    let mut p = pair();
    let push = encode_push(&PushBody {
        data: Bytes::from_static(b"hi"),
        data_version: 9,
        obj: 5,
        r#mod: 4,
        seq: 1,
    });
    assert_eq!(p.server.push(p.now, &push), PushOutcome::Queued);
    p.drive();
    let got = packets(p.take_client_events());
    assert_eq!(got.len(), 1);
    assert_eq!(
        (
            &got[0].data[..],
            got[0].index,
            got[0].data_version,
            got[0].obj,
            got[0].r#mod,
            got[0].compress
        ),
        (&b"hi"[..], 0, 9, 5, 4, false)
    );
}

/// One rule for every push, whichever path (push, multicast, broadcast) delivers it: the Go
/// gateway's packet, uncompressed, as long as it fits the client's frame limit; compressed when
/// only that makes it fit; refused when nothing does.
#[test]
fn pushes_follow_one_encoding_rule() {
    let config = test_server_config(true);
    let body = |data: Vec<u8>| PushBody {
        data: data.into(),
        r#mod: 3,
        seq: 2,
        obj: 7,
        data_version: 1,
    };
    // What the Go gateway sends: Packet{mod, seq, obj, data, data_version}, nothing else.
    let small = body(vec![b'a'; 12_000]);
    let go = Packet {
        data: small.data.clone(),
        data_version: 1,
        obj: 7,
        r#mod: 3,
        seq: 2,
        ..Default::default()
    }
    .encode_to_vec();
    let encoded = PushPacket::encode(&small, &config).unwrap();
    assert_eq!(
        encoded.as_bytes(),
        &go[..],
        "above the reply compression threshold, still as Go sends it"
    );
    assert!(!encoded.is_compressed());

    // Too large for a 16 KiB frame, but compressible: compressed (clients inflate replies too).
    let big = PushPacket::encode(&body(vec![b'b'; 100_000]), &config).unwrap();
    assert!(big.is_compressed() && big.as_bytes().len() < 16_384);

    // Too large and incompressible: refused, with the sizes.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(matches!(
        PushPacket::encode(&body(noise), &config),
        Err(PushError::TooLarge { max: 16_384, .. })
    ));

    // Every session receives the same packet; only the sealing differs.
    let mut a = pair();
    let mut b = pair_with(test_server_config(true));
    for p in [&mut a, &mut b] {
        assert_eq!(p.server.push(p.now, &big), PushOutcome::Queued);
        p.drive();
        let got = packets(p.take_client_events());
        assert_eq!(
            got[0].data,
            Bytes::from(vec![b'b'; 100_000]),
            "inflated by the client"
        );
        assert_eq!(got[0].index, 0);
    }
    // A session still handshaking takes nothing.
    let mut fresh = Pair::new(
        Arc::new(test_server_config(true)),
        &test_client_config(true, test_token(UID, t0(), 9)),
        t0(),
    );
    assert_eq!(
        fresh.server.push(fresh.now, &big),
        PushOutcome::NotEstablished
    );
    fresh.drive();
}

#[test]
fn deadlines_close_with_their_reasons() {
    let cfg = Arc::new(test_server_config(true));
    let mut p = Pair::new(
        cfg,
        &test_client_config(true, test_token(UID, t0(), 1)),
        t0(),
    );
    // never send the handshake: closed at the first-frame deadline (3 s), not after 10 s
    let _ = p.client.poll_transmit();
    p.advance(Duration::from_millis(2_999));
    assert_eq!(p.server.state(), SessionState::Handshaking);
    p.advance(Duration::from_millis(1));
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::HandshakeTimeout)
    );
    assert_eq!(p.server.poll_timeout(), None);

    // trickle the handshake a byte at a time: the same deadline holds
    let mut config = test_server_config(true);
    config.session.first_frame_timeout = Duration::from_secs(3);
    let mut p = Pair::new(
        Arc::new(config),
        &test_client_config(true, test_token(UID, t0(), 2)),
        t0(),
    );
    let hello = p.client.poll_transmit().unwrap();
    for byte in hello.iter().take(12) {
        p.server.handle_bytes(p.now, &[*byte]);
        p.advance(Duration::from_millis(290));
    }
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::HandshakeTimeout)
    );

    // with a longer first-frame allowance, the handshake timeout (10 s) is the bound
    let mut config = test_server_config(true);
    config.session.first_frame_timeout = Duration::from_secs(60);
    let mut p = Pair::new(
        Arc::new(config),
        &test_client_config(true, test_token(UID, t0(), 3)),
        t0(),
    );
    let _ = p.client.poll_transmit();
    p.advance(Duration::from_millis(9_999));
    assert_eq!(p.server.state(), SessionState::Handshaking);
    p.advance(Duration::from_millis(1));
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::HandshakeTimeout)
    );

    let mut p = pair();
    p.advance(Duration::from_secs(59));
    send(&mut p, 1, 2, 0, b"");
    p.advance(Duration::from_secs(59));
    assert_eq!(
        p.server.state(),
        SessionState::Established,
        "traffic renews the idle deadline"
    );
    p.advance(Duration::from_secs(1));
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::IdleTimeout)
    );
}

#[test]
fn authentication_failures_reach_the_client_as_unauthorized() {
    let cfg = Arc::new(test_server_config(true));
    let token = test_token(UID, t0(), 1);
    let mut first = Pair::new(
        Arc::clone(&cfg),
        &test_client_config(true, token.clone()),
        t0(),
    );
    first.drive();
    assert!(first.client.is_established());

    // the same token again
    let mut again = Pair::new(Arc::clone(&cfg), &test_client_config(true, token), t0());
    again.drive();
    assert_eq!(
        closed_with(&again.server_events),
        Some(CloseReason::TokenReplayed)
    );
    assert_eq!(
        again.client_events,
        vec![ClientEvent::Closed(ClientError::Handshake(
            ClientHandshakeError::Refused(LogoutCode::Unauthorized)
        ))]
    );

    // an expired token
    let old = test_token(UID, Time::from_unix_secs(1_699_990_000), 2);
    let mut expired = Pair::new(Arc::clone(&cfg), &test_client_config(true, old), t0());
    expired.drive();
    assert_eq!(
        closed_with(&expired.server_events),
        Some(CloseReason::TokenExpired)
    );

    // a client without the certificate key
    let mut client = test_client_config(true, test_token(UID, t0(), 3));
    if let Some(keys) = &mut client.keys {
        keys.client_cert = crate::crypto::SigningKey::from_seed(&[0x99; 32]);
    }
    let mut forged = Pair::new(Arc::clone(&cfg), &client, t0());
    forged.drive();
    assert_eq!(
        closed_with(&forged.server_events),
        Some(CloseReason::BadSignature)
    );

    // garbage instead of a handshake: closed silently
    let mut garbage = Pair::new(cfg, &test_client_config(true, String::new()), t0());
    let _ = garbage.client.poll_transmit();
    garbage.client.send_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    garbage.drive();
    assert_eq!(
        closed_with(&garbage.server_events),
        Some(CloseReason::MalformedPacket)
    );
    assert_eq!(garbage.server_sent, 0);
}

#[test]
fn unencrypted_sessions_work_end_to_end() {
    let cfg = Arc::new(test_server_config(false));
    let mut p = Pair::new(
        cfg,
        &test_client_config(false, test_token(UID, t0(), 1)),
        t0(),
    );
    p.drive();
    assert!(p.client.is_established());
    send(&mut p, 1, 2, 0, b"hb");
    assert!(
        p.take_server_events()
            .iter()
            .any(|e| matches!(e, Event::Forward { message, .. } if &message.data[..] == b"hb"))
    );
}

#[test]
fn a_client_that_does_not_read_is_evicted() {
    let mut config = test_server_config(true);
    config.session.outbound_budget = 64 * 1024;
    let mut p = pair_with(config);
    let _ = p.server.poll_transmit();
    let body = encode_push(&PushBody {
        data: Bytes::from(vec![1u8; 1000]),
        r#mod: 3,
        seq: 2,
        ..Default::default()
    });
    let mut pushed = 0;
    while p.server.push(p.now, &body) == PushOutcome::Queued {
        pushed += 1;
        assert!(p.server.pending_transmit() <= 64 * 1024 + 2048);
    }
    assert!((60..70).contains(&pushed), "{pushed}");
    let events: Vec<_> = std::iter::from_fn(|| p.server.poll_event()).collect();
    assert_eq!(closed_with(&events), Some(CloseReason::SlowConsumer));
    assert_eq!(
        p.server.pending_transmit(),
        0,
        "nothing left to flush to a client that does not read"
    );
}

#[test]
fn the_rate_limit_closes_a_flooding_client() {
    let mut config = test_server_config(true);
    config.session.rate_limit = Some(RateLimit {
        per_second: 10,
        burst: 5,
    });
    let mut p = pair_with(config);
    for _ in 0..5 {
        send(&mut p, 1, 2, 0, b"");
    }
    assert_eq!(p.server.state(), SessionState::Established);
    send(&mut p, 1, 2, 0, b"");
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::RateLimited)
    );
}

#[test]
fn draining_delivers_in_flight_replies_then_logs_out() {
    let mut p = pair();
    p.take_server_events();
    let index = send(&mut p, 3, 1, 0, b"");
    let id = tunnel(&p, player(UID));
    p.take_server_events();
    p.server.drain(p.now);
    assert_eq!(p.server.state(), SessionState::Draining);
    // new requests are not taken while draining
    send(&mut p, 3, 1, 0, b"");
    assert!(
        p.take_server_events()
            .iter()
            .all(|e| !matches!(e, Event::Forward { .. }))
    );
    p.server.handle_tunnel(
        p.now,
        id,
        TunnelMessage {
            data: Bytes::from_static(b"late"),
            module: 3,
            seq: 1,
            index,
            ..Default::default()
        },
    );
    p.drive();
    let got = packets(p.take_client_events());
    assert_eq!(&got[0].data[..], b"late");
    assert_eq!((got[1].r#mod, got[1].seq), (1, 4));
    assert_eq!(
        ScServerLogout::decode(got[1].data.clone()).unwrap().code(),
        LogoutCode::Server
    );
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::Shutdown)
    );

    // a reply that never comes: closed at the drain deadline
    let mut p = pair();
    send(&mut p, 3, 1, 0, b"");
    p.server.drain(p.now);
    p.advance(DEFAULT_DRAIN - Duration::from_millis(1));
    assert_eq!(p.server.state(), SessionState::Draining);
    p.advance(Duration::from_millis(1));
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::Shutdown)
    );
}

const DEFAULT_DRAIN: Duration = crate::config::DEFAULT_DRAIN_TIMEOUT;

#[test]
fn a_drain_with_a_reason_logs_out_with_its_code_after_the_replies_and_at_the_deadline() {
    let mut p = pair();
    p.take_server_events();
    let index = send(&mut p, 3, 1, 0, b"");
    let id = tunnel(&p, player(UID));
    p.take_server_events();
    p.server.drain_with(p.now, CloseReason::Drained);
    // a second drain does not change the reason
    p.server.drain(p.now);
    p.server.handle_tunnel(
        p.now,
        id,
        TunnelMessage {
            data: Bytes::from_static(b"in flight"),
            module: 3,
            seq: 1,
            index,
            ..Default::default()
        },
    );
    p.drive();
    let got = packets(p.take_client_events());
    assert_eq!(&got[0].data[..], b"in flight");
    assert_eq!(
        ScServerLogout::decode(got[1].data.clone()).unwrap().code(),
        LogoutCode::Waiting
    );
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::Drained)
    );

    let mut p = pair();
    send(&mut p, 3, 1, 0, b"");
    p.server.drain_with(p.now, CloseReason::Drained);
    p.advance(DEFAULT_DRAIN);
    assert_eq!(
        closed_with(&p.take_server_events()),
        Some(CloseReason::Drained)
    );
}

#[test]
fn tunnels_reopen_after_ending_and_the_oldest_is_evicted() {
    let mut config = test_server_config(true);
    config.session.max_tunnels = 2;
    let mut p = pair_with(config);
    p.take_server_events();
    send(&mut p, 6, 1, 1, b"");
    p.advance(Duration::from_millis(1));
    send(&mut p, 6, 1, 2, b"");
    let second = tunnel(&p, room(2));
    p.advance(Duration::from_millis(1));
    send(&mut p, 6, 1, 1, b"");
    p.take_server_events();
    send(&mut p, 6, 1, 3, b"");
    let events = p.take_server_events();
    assert_eq!(events[0], Event::CloseTunnel(second));
    assert_eq!(opened(&events[1]), Some(room(3)));
    let third = tunnel(&p, room(3));
    assert!(third > second, "ids are never reused");

    p.server.handle_tunnel_closed(p.now, third);
    send(&mut p, 6, 1, 3, b"");
    let events = p.take_server_events();
    assert_eq!(opened(&events[0]), Some(room(3)));
    let reopened = tunnel(&p, room(3));
    assert_ne!(reopened, third);

    // the late end of the first stream for room 3 does not touch the new one
    p.take_client_events();
    p.server.handle_tunnel_closed(p.now, third);
    p.server.handle_tunnel(
        p.now,
        third,
        TunnelMessage {
            data: Bytes::from_static(b"stale"),
            module: 6,
            seq: 1,
            index: 99,
            ..Default::default()
        },
    );
    p.drive();
    assert!(p.take_server_events().is_empty());
    assert!(
        packets(p.take_client_events()).is_empty(),
        "a stale tunnel's message is dropped"
    );
    assert_eq!(tunnel(&p, room(3)), reopened, "still open");
}

#[test]
fn kicks_send_their_logout_code() {
    let mut p = pair();
    p.take_server_events();
    send(&mut p, 3, 1, 0, b"");
    let id = tunnel(&p, player(UID));
    p.take_server_events();
    p.server.close(p.now, CloseReason::ConflictingLogin);
    p.drive();
    assert_eq!(
        p.take_server_events(),
        vec![
            Event::CloseTunnel(id),
            Event::Closed(CloseReason::ConflictingLogin)
        ]
    );
    let got = packets(p.take_client_events());
    assert_eq!(
        ScServerLogout::decode(got[0].data.clone()).unwrap().code(),
        LogoutCode::ConflictingLogin
    );
    // closing again, or any input after, produces nothing
    p.server.close(p.now, CloseReason::Banned);
    p.server.handle_bytes(p.now, b"\0\0\0\x01x");
    assert_eq!(
        p.server.push(
            p.now,
            &encode_push(&PushBody {
                r#mod: 3,
                ..Default::default()
            })
        ),
        PushOutcome::NotEstablished
    );
    assert_eq!(p.server.poll_event(), None);
    assert_eq!(p.server.poll_transmit(), None);
}

#[derive(Debug, Clone)]
enum Op {
    Send {
        module: i32,
        obj: i64,
        len: usize,
        compress: bool,
    },
    Garbage(Vec<u8>),
    Replay,
    Reply {
        index: i32,
        len: usize,
    },
    Push(usize),
    Advance(u64),
    Flush,
    TunnelClosed,
    Drain,
    Kick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop_oneof![Just(1), Just(3), Just(6), Just(99)], prop_oneof![Just(0i64), Just(UID), Just(7i64)], 0usize..3000, any::<bool>())
            .prop_map(|(module, obj, len, compress)| Op::Send { module, obj, len, compress }),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Garbage),
        1 => Just(Op::Replay),
        4 => (0i32..5, 0usize..30_000).prop_map(|(index, len)| Op::Reply { index, len }),
        3 => (0usize..20_000).prop_map(Op::Push),
        3 => (0u64..40_000).prop_map(Op::Advance),
        3 => Just(Op::Flush),
        1 => Just(Op::TunnelClosed),
        1 => Just(Op::Drain),
        1 => Just(Op::Kick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever happens: nothing after Closed, buffered bytes within the budget, deadlines never
    /// behind the clock, and every Forward preceded by an OpenTunnel for its key.
    #[test]
    fn session_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut config = test_server_config(true);
        config.session.outbound_budget = 32 * 1024;
        let budget = config.session.outbound_budget;
        let mut p = Pair::new(Arc::new(config), &test_client_config(true, test_token(UID, t0(), 1)), t0());
        p.drive();
        let mut last_frame = None;
        let mut closed = false;
        let mut open = std::collections::HashMap::new();
        let mut next_id: u64 = 1;
        for op in ops {
            match op {
                Op::Send { module, obj, len, compress } => {
                    if p.client.send(p.now, Outgoing { module, seq: 1, obj, data: Bytes::from(vec![3u8; len]), compress, ..Default::default() }).is_ok() {
                        let frame = p.client.poll_transmit();
                        if let Some(f) = &frame { p.server.handle_bytes(p.now, f); }
                        last_frame = frame;
                    }
                }
                Op::Garbage(bytes) => p.server.handle_bytes(p.now, &bytes),
                Op::Replay => if let Some(f) = &last_frame { p.server.handle_bytes(p.now, f) },
                Op::Reply { index, len } => p.server.handle_tunnel(p.now, TunnelId(next_id.saturating_sub(1)), TunnelMessage { data: vec![index as u8; len].into(), module: 3, seq: 1, index, ..Default::default() }),
                Op::Push(len) => {
                    if let Ok(push) = PushPacket::encode(&PushBody { data: vec![0u8; len].into(), r#mod: 3, seq: 2, ..Default::default() }, &test_server_config(true)) {
                        p.server.push(p.now, &push);
                    }
                }
                Op::Advance(ms) => { p.now = p.now + Duration::from_millis(ms); p.server.handle_timeout(p.now); }
                Op::Flush => { let _ = p.server.poll_transmit(); }
                Op::TunnelClosed => p.server.handle_tunnel_closed(p.now, TunnelId(next_id.saturating_sub(1))),
                Op::Drain => p.server.drain(p.now),
                Op::Kick => p.server.close(p.now, CloseReason::AdminKickOut),
            }
            while let Some(event) = p.server.poll_event() {
                prop_assert!(!closed, "event after Closed: {event:?}");
                match event {
                    Event::OpenTunnel(t) => {
                        prop_assert_eq!(t.id, TunnelId(next_id), "ids in order, never reused");
                        next_id += 1;
                        prop_assert!(open.values().all(|k| *k != t.key), "one tunnel per key");
                        open.insert(t.id, t.key);
                    }
                    Event::CloseTunnel(id) => { prop_assert!(open.remove(&id).is_some()); }
                    Event::Forward { tunnel, message } => {
                        let key = open.get(&tunnel).copied();
                        prop_assert!(key.is_some(), "forward on unopened {tunnel:?}");
                        let key = key.unwrap_or(player(UID));
                        prop_assert!(key.kind != TunnelKind::PLAYER || (key.oid == UID && message.obj == UID));
                    }
                    Event::Closed(_) => closed = true,
                    _ => {}
                }
            }
            // a tunnel the adapter was told ended is no longer open
            if matches!(p.server.state(), SessionState::Established | SessionState::Draining) {
                open.retain(|id, _| p.server_tunnel_open(*id));
            }
            prop_assert!(p.server.pending_transmit() <= budget + 1024, "{} buffered", p.server.pending_transmit());
            if let Some(deadline) = p.server.poll_timeout() {
                p.server.handle_timeout(p.now);
                if let Some(d) = p.server.poll_timeout() {
                    prop_assert!(d > p.now, "deadline {d:?} not after now {:?} ({deadline:?})", p.now);
                }
            }
            prop_assert_eq!(closed, p.server.state() == SessionState::Closed);
        }
    }
}

trait TunnelOpen {
    fn server_tunnel_open(&self, id: TunnelId) -> bool;
}

impl TunnelOpen for Pair {
    fn server_tunnel_open(&self, id: TunnelId) -> bool {
        match &self.server.state {
            State::Established(link) => link.tunnels.iter().any(|t| t.id == id),
            _ => false,
        }
    }
}

#[test]
fn owned_buffers_and_borrowed_transmit_behave_like_the_copying_calls() {
    let mut p = pair();
    p.take_server_events();
    let mut stream = bytes::BytesMut::new();
    for _ in 0..3 {
        p.client
            .send(
                p.now,
                Outgoing {
                    module: 3,
                    seq: 1,
                    data: Bytes::from_static(b"abc"),
                    ..Default::default()
                },
            )
            .unwrap();
        stream.extend_from_slice(&p.client.poll_transmit().unwrap());
    }
    // split mid-frame: the tail of the first buffer waits for the next one
    let second = stream.split_off(stream.len() / 2 + 3);
    p.server.handle_buf(p.now, stream);
    p.server.handle_buf(p.now, second);
    let forwarded: Vec<i32> = std::iter::from_fn(|| p.server.poll_event())
        .filter_map(|e| match e {
            Event::Forward { message, .. } => Some(message.index),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded, vec![1, 2, 3]);

    let id = tunnel(&p, player(UID));
    for index in 1..=3 {
        p.server.handle_tunnel(
            p.now,
            id,
            TunnelMessage {
                data: Bytes::from_static(b"r"),
                module: 3,
                seq: 1,
                index,
                ..Default::default()
            },
        );
    }
    let all = p.server.transmit().to_vec();
    // the client reads what a short write delivered, then the rest
    p.server.advance_transmit(10);
    assert_eq!(p.server.transmit(), &all[10..]);
    p.client.handle_bytes(p.now, &all[..10]);
    let rest = p.server.transmit().to_vec();
    p.server.advance_transmit(usize::MAX);
    assert!(p.server.transmit().is_empty());
    p.client.handle_bytes(p.now, &rest);
    let indexes: Vec<i32> = std::iter::from_fn(|| p.client.poll_event())
        .filter_map(|e| match e {
            ClientEvent::Packet(p) => Some(p.index),
            _ => None,
        })
        .collect();
    assert_eq!(indexes, vec![1, 2, 3]);
}

#[test]
fn requests_pending_on_a_failed_tunnel_are_answered_with_errors() {
    let mut p = pair();
    p.take_server_events();
    let first = send(&mut p, 3, 1, 0, b"a");
    let second = send(&mut p, 4, 2, 0, b"b");
    // the backend answers the first, then its stream dies
    let id = tunnel(&p, player(UID));
    p.server.handle_tunnel(
        p.now,
        id,
        TunnelMessage {
            data: Bytes::from_static(b"ok"),
            module: 3,
            seq: 1,
            index: first,
            ..Default::default()
        },
    );
    p.server.handle_tunnel_closed(p.now, id);
    p.drive();
    let got = packets(p.take_client_events());
    assert_eq!(got.len(), 2);
    assert_eq!((&got[0].data[..], got[0].index), (&b"ok"[..], first));
    assert_eq!((got[1].r#mod, got[1].seq, got[1].index), (1, 3, second));
    let err = ScServerUnexpectedErr::decode(got[1].data.clone()).unwrap();
    assert_eq!(
        (err.r#mod, err.seq, err.msg.as_str()),
        (4, 2, "backend unavailable")
    );
    // the session goes on, and the next packet reopens the tunnel
    send(&mut p, 3, 1, 0, b"c");
    assert_eq!(opened(&p.take_server_events()[0]), Some(player(UID)));
}

#[test]
fn pending_requests_stay_bounded_when_a_backend_never_answers() {
    let mut config = test_server_config(true);
    config.session.max_pending = 4;
    let mut p = pair_with(config);
    for _ in 0..10 {
        send(&mut p, 3, 1, 0, b"");
    }
    let id = tunnel(&p, player(UID));
    p.server.handle_tunnel_closed(p.now, id);
    p.drive();
    let got = packets(p.take_client_events());
    assert_eq!(
        got.iter().map(|p| p.index).collect::<Vec<_>>(),
        vec![7, 8, 9, 10],
        "the newest four"
    );
}

#[test]
fn a_compacted_session_carries_on_as_if_nothing_happened() {
    let mut p = pair();
    p.take_server_events();
    send(&mut p, 3, 1, UID, b"before");
    let events = p.take_server_events();
    let Event::OpenTunnel(open) = &events[0] else {
        panic!("{events:?}")
    };
    let id = open.id;
    // Idle: the key schedule and the buffers go; the next packets both ways rebuild them.
    p.server.compact();
    assert_eq!(p.server.pending_transmit(), 0);
    let index = send(&mut p, 3, 1, UID, b"after");
    assert!(
        matches!(&p.take_server_events()[..], [Event::Forward { message, .. }] if &message.data[..] == b"after" && message.index == index)
    );
    p.server.compact();
    p.server.handle_tunnel(
        p.now,
        id,
        TunnelMessage {
            data: Bytes::from_static(b"reply"),
            obj: UID,
            module: 3,
            seq: 1,
            index,
            ..Default::default()
        },
    );
    p.drive();
    let got = packets(p.take_client_events());
    assert_eq!(got.len(), 1);
    assert_eq!((&got[0].data[..], got[0].index), (&b"reply"[..], index));
}

/// Several frames in one read: each tunnel's `OpenTunnel` still comes before its first `Forward`,
/// forwards keep the client's order, and a close caused by a later frame comes last.
#[test]
fn events_keep_their_order_when_one_read_holds_many_frames() {
    let mut config = test_server_config(true);
    config.session.max_tunnels = 1; // the room tunnel evicts the player tunnel
    let mut p = pair_with(config);
    // The player tunnel is open and its events drained: the next forward takes the empty-queue
    // slot, and what follows it must still come after it.
    send(&mut p, 3, 1, 0, b"x");
    assert!(
        p.take_server_events()
            .iter()
            .any(|e| opened(e) == Some(player(UID)))
    );
    let mut stream = BytesMut::new();
    for (module, obj) in [(3, 0), (6, 77), (3, 0)] {
        p.client
            .send(
                p.now,
                Outgoing {
                    module,
                    seq: 1,
                    obj,
                    data: Bytes::from_static(b"x"),
                    ..Default::default()
                },
            )
            .unwrap();
        stream.extend_from_slice(&p.client.poll_transmit().unwrap());
    }
    // A frame with a bad tag last: the session closes after forwarding the others.
    stream.extend_from_slice(&[0, 0, 0, 40]);
    stream.extend_from_slice(&[0xee; 40]);
    p.server.handle_buf(p.now, stream);
    let events: Vec<String> = std::iter::from_fn(|| p.server.poll_event())
        .map(|e| match e {
            Event::OpenTunnel(open) => format!("open {:?} {}", open.key.kind, open.key.oid),
            Event::Forward { message, .. } => format!("forward {}", message.index),
            Event::CloseTunnel(_) => "close tunnel".into(),
            Event::Closed(reason) => format!("closed {reason:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        events,
        [
            "forward 2",
            "close tunnel",
            "open TunnelKind(1) 77",
            "forward 3",
            "close tunnel",
            "open TunnelKind(0) 10001",
            "forward 4",
            "close tunnel",
            "closed DecryptFailed",
        ]
    );
}
