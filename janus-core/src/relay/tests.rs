#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::{
    crypto::SigningKey,
    session::{PushPacket, TunnelId, TunnelMessage},
    testing::test_server_config,
};

const T0: Time = Time::from_unix_millis(1_700_000_000_000);

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

fn config(role: Role, me: u8, peer: u8) -> LinkConfig {
    let name = match role {
        Role::Edge => "edge-1",
        Role::Hub => "hub-1",
    };
    LinkConfig::new(role, name.into(), key(me), vec![key(peer).verifying_key()])
}

use crate::Time;

/// An edge and a hub link on virtual time, with the bytes between them moved by hand.
struct Pair {
    edge: Link,
    hub: Link,
    now: Time,
    edge_events: Vec<LinkEvent>,
    hub_events: Vec<LinkEvent>,
}

impl Pair {
    fn with(edge: LinkConfig, hub: LinkConfig) -> Pair {
        Pair {
            edge: Link::new(Arc::new(edge), T0, [1; 32]),
            hub: Link::new(Arc::new(hub), T0, [2; 32]),
            now: T0,
            edge_events: Vec::new(),
            hub_events: Vec::new(),
        }
    }

    fn new() -> Pair {
        let mut p = Self::with(config(Role::Edge, 7, 9), config(Role::Hub, 9, 7));
        p.drive();
        assert!(p.edge.is_established() && p.hub.is_established());
        p
    }

    /// Moves bytes both ways until nothing moves.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            if let Some(b) = self.edge.poll_transmit() {
                self.hub.handle_bytes(self.now, &b);
                moved = true;
            }
            if let Some(b) = self.hub.poll_transmit() {
                self.edge.handle_bytes(self.now, &b);
                moved = true;
            }
            while let Some(e) = self.edge.poll_event() {
                self.edge_events.push(e);
            }
            while let Some(e) = self.hub.poll_event() {
                self.hub_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    fn open(&mut self, session: u64) {
        let info = SessionInfo {
            session,
            identity: crate::handshake::Identity {
                uid: 100 + session as i64,
                sid: 1,
                color: "local".into(),
                status: 1,
                conn_id: 0,
                token_expiry: 0,
            },
            client_addr: "10.0.0.1:4000".parse().unwrap(),
            worker_id: 16,
        };
        self.edge
            .send(self.now, session, Outgoing::Open(Box::new(info)))
            .unwrap();
        self.edge
            .send(
                self.now,
                session,
                Outgoing::TunnelOpen {
                    tunnel: TunnelId(1),
                    kind: "player".into(),
                    oid: 100 + session as i64,
                },
            )
            .unwrap();
        self.drive();
    }
}

fn msg(data: &[u8], index: i32) -> TunnelMessage {
    TunnelMessage {
        data: Bytes::copy_from_slice(data),
        module: 3,
        seq: 1,
        index,
        ..Default::default()
    }
}

#[test]
fn both_sides_authenticate_and_a_session_round_trips() {
    let mut p = Pair::new();
    assert!(matches!(&p.edge_events[0], LinkEvent::Established(peer) if peer.node == "hub-1"));
    assert!(matches!(&p.hub_events[0], LinkEvent::Established(peer) if peer.node == "edge-1"));
    p.open(1);
    assert!(
        matches!(&p.hub_events[1], LinkEvent::SessionOpened(info) if info.identity.uid == 101 && info.worker_id == 16)
    );
    assert!(
        matches!(&p.hub_events[2], LinkEvent::TunnelOpened { session: 1, kind, oid: 101, .. } if kind == "player")
    );
    p.edge
        .send(
            p.now,
            1,
            Outgoing::Data {
                tunnel: TunnelId(1),
                message: msg(b"ping", 1),
            },
        )
        .unwrap();
    p.drive();
    let LinkEvent::Data {
        session: 1,
        tunnel,
        message,
        cost,
    } = p.hub_events[3].clone()
    else {
        panic!("{:?}", p.hub_events);
    };
    assert_eq!(
        (tunnel, &message.data[..], message.index),
        (TunnelId(1), &b"ping"[..], 1)
    );
    p.hub.release(1, cost);
    p.hub
        .send(
            p.now,
            1,
            Outgoing::Data {
                tunnel,
                message: msg(b"pong", 1),
            },
        )
        .unwrap();
    p.hub
        .send(
            p.now,
            1,
            Outgoing::TunnelClose {
                tunnel,
                failed: true,
            },
        )
        .unwrap();
    p.hub
        .send(p.now, 1, Outgoing::SessionClose(CloseReason::AdminKickOut))
        .unwrap();
    p.drive();
    let tail: Vec<_> = p.edge_events[1..].to_vec();
    assert!(matches!(&tail[0], LinkEvent::Data { message, .. } if &message.data[..] == b"pong"));
    assert!(matches!(
        tail[1],
        LinkEvent::TunnelClosed {
            session: 1,
            failed: true,
            ..
        }
    ));
    assert!(matches!(
        tail[2],
        LinkEvent::SessionClosed {
            session: 1,
            reason: CloseReason::AdminKickOut
        }
    ));
    assert!(!p.edge.has_session(1) && !p.hub.has_session(1));
}

fn refused(
    edge: LinkConfig,
    hub: LinkConfig,
) -> (Option<LinkCloseReason>, Option<LinkCloseReason>) {
    let mut p = Pair::with(edge, hub);
    p.drive();
    let closed = |events: &[LinkEvent]| {
        events.iter().find_map(|e| match e {
            LinkEvent::Closed(r) => Some(*r),
            _ => None,
        })
    };
    assert!(!p.hub.is_established());
    (closed(&p.edge_events), closed(&p.hub_events))
}

#[test]
fn a_wrong_key_is_refused_with_a_named_reason() {
    // The hub does not know key 8.
    let (edge, hub) = refused(config(Role::Edge, 8, 9), config(Role::Hub, 9, 7));
    assert_eq!(hub, Some(LinkCloseReason::UnknownKey));
    assert_eq!(edge, Some(LinkCloseReason::PeerGoodbye));
}

#[test]
fn a_forged_signature_is_refused() {
    // The edge claims key 7's public half but signs with key 8.
    let mut edge = config(Role::Edge, 8, 9);
    let mut hub = config(Role::Hub, 9, 7);
    hub.peers = vec![key(8).verifying_key()];
    edge.key = key(8);
    let mut p = Pair::with(edge, hub);
    // Tamper: flip a byte of the edge's Auth signature in transit.
    let hello = p.edge.poll_transmit().unwrap();
    p.hub.handle_bytes(T0, &hello);
    let hub_out = p.hub.poll_transmit().unwrap();
    p.edge.handle_bytes(T0, &hub_out);
    let mut auth = p.edge.poll_transmit().unwrap().to_vec();
    let last = auth.len() - 1;
    auth[last] ^= 1;
    p.hub.handle_bytes(T0, &auth);
    assert!(
        std::iter::from_fn(|| p.hub.poll_event())
            .any(|e| e == LinkEvent::Closed(LinkCloseReason::BadSignature))
    );
}

#[test]
fn garbage_and_early_messages_are_refused() {
    let mut hub = Link::new(Arc::new(config(Role::Hub, 9, 7)), T0, [2; 32]);
    hub.handle_bytes(T0, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        hub.poll_event(),
        Some(LinkEvent::Closed(LinkCloseReason::MalformedFrame))
    );

    let mut hub = Link::new(Arc::new(config(Role::Hub, 9, 7)), T0, [2; 32]);
    hub.handle_bytes(T0, &[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert_eq!(
        hub.poll_event(),
        Some(LinkEvent::Closed(LinkCloseReason::MalformedMessage))
    );

    // A heartbeat before authentication.
    let mut hub = Link::new(Arc::new(config(Role::Hub, 9, 7)), T0, [2; 32]);
    hub.handle_bytes(T0, &[0, 0, 0, 2, 0x1a, 0x00]);
    assert_eq!(
        hub.poll_event(),
        Some(LinkEvent::Closed(LinkCloseReason::UnexpectedMessage))
    );
}

#[test]
fn no_version_in_common_is_refused() {
    use janus_proto::janus::relay::v1 as pb;
    let hub_config = config(Role::Hub, 9, 7);
    let mut hub = Link::new(Arc::new(hub_config), T0, [2; 32]);
    let hello = pb::Hello {
        min_version: 7,
        max_version: 9,
        challenge: Bytes::from_static(&[1; 32]),
        public_key: Bytes::copy_from_slice(&key(7).verifying_key().to_bytes()),
        node: "future-edge".into(),
        max_frame_len: 1 << 20,
        session_window: 1 << 20,
        heartbeat_ms: 5000,
    };
    let mut out = bytes::BytesMut::new();
    wire::encode(
        janus_proto::janus::relay::v1::frame::Body::Hello(hello),
        &mut out,
    );
    hub.handle_bytes(T0, &out);
    assert_eq!(
        hub.poll_event(),
        Some(LinkEvent::Closed(LinkCloseReason::BadVersion))
    );
    assert!(String::from_utf8_lossy(&hub.poll_transmit().unwrap()).contains("bad_version"));
}

#[test]
fn handshake_and_heartbeat_deadlines() {
    let mut edge = Link::new(Arc::new(config(Role::Edge, 7, 9)), T0, [1; 32]);
    assert_eq!(edge.poll_timeout(), Some(T0 + DEFAULT_HANDSHAKE_TIMEOUT));
    edge.handle_timeout(T0 + DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(
        edge.poll_event(),
        Some(LinkEvent::Closed(LinkCloseReason::HandshakeTimeout))
    );

    let mut p = Pair::new();
    let before = p.edge.stats().frames_out;
    p.now = T0 + DEFAULT_HEARTBEAT_INTERVAL;
    p.edge.handle_timeout(p.now);
    p.hub.handle_timeout(p.now);
    p.drive();
    assert_eq!(p.edge.stats().frames_out, before + 1, "one heartbeat");
    assert!(p.edge.is_established() && p.hub.is_established());
    // Silence from the hub: the edge gives up after the timeout.
    let silent = p.now + DEFAULT_HEARTBEAT_TIMEOUT;
    p.edge.handle_timeout(silent);
    assert!(
        std::iter::from_fn(|| p.edge.poll_event())
            .any(|e| e == LinkEvent::Closed(LinkCloseReason::HeartbeatTimeout))
    );
}

#[test]
fn credit_bounds_each_session_and_one_slow_session_does_not_stall_another() {
    let mut edge = config(Role::Edge, 7, 9);
    let mut hub = config(Role::Hub, 9, 7);
    edge.session_window = 4096;
    hub.session_window = 4096;
    let mut p = Pair::with(edge, hub);
    p.drive();
    p.open(1);
    p.open(2);
    let payload = [0u8; 900];
    let mut sent = 0;
    // The hub never releases session 1: the edge can have one window in flight and one queued.
    let result = loop {
        match p.edge.send(
            p.now,
            1,
            Outgoing::Data {
                tunnel: TunnelId(1),
                message: msg(&payload, sent),
            },
        ) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100);
    };
    assert_eq!(result, SendError::Backlog);
    assert_eq!(
        sent, 8,
        "4 in flight (~930 bytes each in a 4096 window), 4 queued"
    );
    assert!(p.edge.credit(1).unwrap() < 1000);
    // Session 2 is not held up.
    p.edge
        .send(
            p.now,
            2,
            Outgoing::Data {
                tunnel: TunnelId(1),
                message: msg(b"x", 1),
            },
        )
        .unwrap();
    p.drive();
    let delivered = |events: &[LinkEvent], s: u64| {
        events
            .iter()
            .filter(|e| matches!(e, LinkEvent::Data { session, .. } if *session == s))
            .count()
    };
    assert_eq!(delivered(&p.hub_events, 1), 4);
    assert_eq!(delivered(&p.hub_events, 2), 1);
    // Releasing what arrived lets the queue through.
    let costs: Vec<u32> = p
        .hub_events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Data {
                session: 1, cost, ..
            } => Some(*cost),
            _ => None,
        })
        .collect();
    for c in costs {
        p.hub.release(1, c);
    }
    p.drive();
    assert_eq!(delivered(&p.hub_events, 1), 8);
}

#[test]
fn a_peer_overrunning_its_window_breaks_the_link() {
    use janus_proto::janus::relay::v1::{self as pb, frame::Body};
    let mut p = Pair::new();
    p.open(1);
    let mut out = bytes::BytesMut::new();
    for _ in 0..1100 {
        wire::encode(
            Body::Data(pb::Data {
                session: 1,
                tunnel: 1,
                data: Bytes::from(vec![0; 1000]),
                ..Default::default()
            }),
            &mut out,
        );
    }
    p.hub.handle_bytes(p.now, &out);
    assert!(
        std::iter::from_fn(|| p.hub.poll_event())
            .any(|e| e == LinkEvent::Closed(LinkCloseReason::FlowControl))
    );
}

#[test]
fn a_broadcast_crosses_the_link_once() {
    let mut p = Pair::new();
    for s in 1..=3 {
        p.open(s);
    }
    let body = janus_proto::broadcaster::service::push::v1::PushBody {
        data: Bytes::from_static(b"news"),
        r#mod: 3,
        seq: 2,
        ..Default::default()
    };
    let packet = PushPacket::encode(&body, &test_server_config(true)).unwrap();
    let before = p.hub.stats().frames_out;
    for s in 1..=3 {
        p.hub
            .send(p.now, s, Outgoing::Push(packet.clone()))
            .unwrap();
    }
    p.drive();
    assert_eq!(p.hub.stats().frames_out, before + 1);
    let pushes: Vec<_> = p
        .edge_events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Push { sessions, packet } => Some((sessions.clone(), packet.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].0, vec![1, 2, 3]);
    assert_eq!(pushes[0].1.as_bytes(), packet.as_bytes());
}

#[test]
fn the_hub_session_builds_metadata_naming_the_hub_and_refuses_foreign_oids() {
    use crate::session::Event;
    let info = SessionInfo {
        session: 5,
        identity: crate::handshake::Identity {
            uid: 42,
            sid: 1,
            color: "blue".into(),
            status: 1,
            conn_id: 0,
            token_expiry: 0,
        },
        client_addr: "10.0.0.1:4000".parse().unwrap(),
        worker_id: 33,
    };
    let mut s = HubSession::new(
        Arc::new(test_server_config(true)),
        &info,
        "10.9.9.9:9100".into(),
    );
    assert!(matches!(s.poll_event(), Some(Event::Authenticated(id)) if id.uid == 42));
    s.handle_tunnel_opened(TunnelId(1), "player", 42);
    let Some(Event::OpenTunnel(open)) = s.poll_event() else {
        panic!()
    };
    assert_eq!(&*open.method, "/player.intra.v1.TunnelService/Tunnel");
    assert!(
        open.metadata
            .contains(&("x-md-global-referer", "10.9.9.9:9100#33".into()))
    );
    assert!(
        open.metadata
            .contains(&("x-md-global-client-ip", "10.0.0.1:4000".into()))
    );
    // Another player's oid, an unknown kind: refused, nothing opened.
    s.handle_tunnel_opened(TunnelId(2), "player", 43);
    s.handle_tunnel_opened(TunnelId(3), "guild", 1);
    assert_eq!(s.poll_event(), None);
    assert_eq!(
        s.poll_outgoing(),
        Some(Outgoing::TunnelClose {
            tunnel: TunnelId(2),
            failed: true
        })
    );
    assert_eq!(
        s.poll_outgoing(),
        Some(Outgoing::TunnelClose {
            tunnel: TunnelId(3),
            failed: true
        })
    );
    s.handle_data(TunnelId(1), msg(b"q", 1));
    assert!(matches!(s.poll_event(), Some(Event::Forward { .. })));
    s.close(T0, CloseReason::ConflictingLogin);
    assert_eq!(s.poll_event(), Some(Event::CloseTunnel(TunnelId(1))));
    assert_eq!(
        s.poll_event(),
        Some(Event::Closed(CloseReason::ConflictingLogin))
    );
    assert_eq!(
        s.poll_outgoing(),
        Some(Outgoing::SessionClose(CloseReason::ConflictingLogin))
    );
    // Closed: nothing more in or out.
    s.handle_data(TunnelId(1), msg(b"late", 2));
    s.handle_tunnel(T0, TunnelId(1), msg(b"late", 2));
    assert_eq!((s.poll_event(), s.poll_outgoing()), (None, None));
}

/// One step of a random exchange.
#[derive(Debug, Clone)]
enum Op {
    Open(u8),
    Close(u8),
    Kick(u8),
    Request(u8, u16),
    Reply(u8, u16),
    Release,
    Deliver(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4).prop_map(Op::Open),
        (0u8..4).prop_map(Op::Close),
        (0u8..4).prop_map(Op::Kick),
        (0u8..4, 0u16..3000).prop_map(|(s, n)| Op::Request(s, n)),
        (0u8..4, 0u16..3000).prop_map(|(s, n)| Op::Reply(s, n)),
        Just(Op::Release),
        (1usize..64).prop_map(Op::Deliver),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The same byte stream, cut anywhere, yields the same events.
    #[test]
    fn any_chunking_gives_the_same_messages(cuts in proptest::collection::vec(1usize..200, 1..40)) {
        let mut p = Pair::new();
        for s in 1..=3 { p.open(s); }
        for i in 0..20 {
            let data = vec![i as u8; (i * 37) % 700];
            p.edge.send(p.now, 1 + (i % 3) as u64, Outgoing::Data { tunnel: TunnelId(1), message: msg(&data, i as i32) }).unwrap();
        }
        p.edge.send(p.now, 2, Outgoing::SessionClose(CloseReason::PeerClosed)).unwrap();
        let stream = p.edge.poll_transmit().unwrap();
        let whole = {
            let mut hub = clone_established_hub(&mut p);
            hub.handle_bytes(p.now, &stream);
            std::iter::from_fn(|| hub.poll_event()).collect::<Vec<_>>()
        };
        let mut hub = clone_established_hub(&mut p);
        let mut rest = &stream[..];
        let mut cuts = cuts.into_iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap().min(rest.len());
            hub.handle_bytes(p.now, &rest[..n]);
            rest = &rest[n..];
        }
        let chunked: Vec<_> = std::iter::from_fn(|| hub.poll_event()).collect();
        prop_assert_eq!(whole.len(), 21);
        prop_assert_eq!(chunked, whole);
    }

    /// Random opens, closes, kicks, data both ways, releases and partial deliveries: credit stays
    /// within the window, and a closed session receives nothing.
    #[test]
    fn credit_is_never_negative_and_closed_sessions_receive_nothing(ops in proptest::collection::vec(op(), 1..120)) {
        let mut edge_cfg = config(Role::Edge, 7, 9);
        let mut hub_cfg = config(Role::Hub, 9, 7);
        edge_cfg.session_window = 8192;
        hub_cfg.session_window = 8192;
        let mut p = Pair::with(edge_cfg, hub_cfg);
        p.drive();
        let mut next_id = 1u64;
        let mut ids = [0u64; 4];
        let mut closed_at_edge: std::collections::HashSet<u64> = Default::default();
        let mut closed_at_hub: std::collections::HashSet<u64> = Default::default();
        let mut pending_release: Vec<(u64, u32)> = Vec::new();
        let mut in_transit: Vec<u8> = Vec::new();
        for op in ops {
            match op {
                Op::Open(s) => {
                    let id = next_id; next_id += 1;
                    ids[s as usize] = id;
                    let info = SessionInfo { session: id, identity: crate::handshake::Identity { uid: id as i64, sid: 1, color: "c".into(), status: 1, conn_id: 0, token_expiry: 0 }, client_addr: "1.2.3.4:5".parse().unwrap(), worker_id: 16 };
                    let _ = p.edge.send(p.now, id, Outgoing::Open(Box::new(info)));
                    let _ = p.edge.send(p.now, id, Outgoing::TunnelOpen { tunnel: TunnelId(1), kind: "player".into(), oid: id as i64 });
                }
                Op::Close(s) => {
                    let id = ids[s as usize];
                    if p.edge.send(p.now, id, Outgoing::SessionClose(CloseReason::PeerClosed)).is_ok() { closed_at_edge.insert(id); }
                }
                Op::Kick(s) => {
                    let id = ids[s as usize];
                    if p.hub.send(p.now, id, Outgoing::SessionClose(CloseReason::AdminKickOut)).is_ok() { closed_at_hub.insert(id); }
                }
                Op::Request(s, n) => { let _ = p.edge.send(p.now, ids[s as usize], Outgoing::Data { tunnel: TunnelId(1), message: msg(&vec![1; n as usize], 1) }); }
                Op::Reply(s, n) => { let _ = p.hub.send(p.now, ids[s as usize], Outgoing::Data { tunnel: TunnelId(1), message: msg(&vec![2; n as usize], 1) }); }
                Op::Release => {
                    for (s, c) in pending_release.drain(..) { p.hub.release(s, c); }
                }
                Op::Deliver(n) => {
                    if let Some(b) = p.edge.poll_transmit() { in_transit.extend_from_slice(&b); }
                    let n = n.min(in_transit.len());
                    let chunk: Vec<u8> = in_transit.drain(..n).collect();
                    p.hub.handle_bytes(p.now, &chunk);
                    if let Some(b) = p.hub.poll_transmit() { p.edge.handle_bytes(p.now, &b); }
                }
            }
            while let Some(e) = p.hub.poll_event() {
                match e {
                    LinkEvent::Data { session, cost, .. } => {
                        prop_assert!(!closed_at_hub.contains(&session), "hub closed {session} and still got data");
                        pending_release.push((session, cost));
                    }
                    LinkEvent::Closed(r) => prop_assert!(false, "link closed: {r}"),
                    _ => {}
                }
            }
            while let Some(e) = p.edge.poll_event() {
                match e {
                    LinkEvent::Data { session, cost, .. } => {
                        prop_assert!(!closed_at_edge.contains(&session), "edge closed {session} and still got data");
                        p.edge.release(session, cost);
                    }
                    LinkEvent::SessionClosed { session, .. } => {
                        prop_assert!(!closed_at_edge.contains(&session));
                    }
                    LinkEvent::Closed(r) => prop_assert!(false, "link closed: {r}"),
                    _ => {}
                }
            }
            for id in ids {
                for link in [&p.edge, &p.hub] {
                    if let Some(c) = link.credit(id) { prop_assert!(c <= 8192); }
                }
            }
        }
    }
}

/// A hub that has seen exactly what `p.hub` saw so far (the handshake and the opens), to feed
/// one stream twice.
fn clone_established_hub(p: &mut Pair) -> Link {
    let mut edge = Link::new(Arc::new(config(Role::Edge, 7, 9)), T0, [1; 32]);
    let mut hub = Link::new(Arc::new(config(Role::Hub, 9, 7)), T0, [2; 32]);
    for _ in 0..3 {
        if let Some(b) = edge.poll_transmit() {
            hub.handle_bytes(T0, &b);
        }
        if let Some(b) = hub.poll_transmit() {
            edge.handle_bytes(T0, &b);
        }
    }
    for s in 1..=3u64 {
        let info = SessionInfo {
            session: s,
            identity: crate::handshake::Identity {
                uid: 100 + s as i64,
                sid: 1,
                color: "local".into(),
                status: 1,
                conn_id: 0,
                token_expiry: 0,
            },
            client_addr: "10.0.0.1:4000".parse().unwrap(),
            worker_id: 16,
        };
        edge.send(T0, s, Outgoing::Open(Box::new(info))).unwrap();
        edge.send(
            T0,
            s,
            Outgoing::TunnelOpen {
                tunnel: TunnelId(1),
                kind: "player".into(),
                oid: 100 + s as i64,
            },
        )
        .unwrap();
    }
    hub.handle_bytes(T0, &edge.poll_transmit().unwrap());
    while hub.poll_event().is_some() {}
    let _ = p;
    hub
}

#[test]
fn durations_are_sane() {
    assert!(DEFAULT_HEARTBEAT_TIMEOUT >= DEFAULT_HEARTBEAT_INTERVAL * 3);
    assert!(DEFAULT_SESSION_WINDOW as usize >= DEFAULT_MAX_FRAME_LEN);
    let _ = Duration::ZERO;
}
