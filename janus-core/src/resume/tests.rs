//! Session resume, driven through real client and server sessions on virtual time, and the
//! replay buffer's bounds and order under arbitrary traffic.

use std::sync::Arc;

use bytes::Bytes;
use core::time::Duration;
use janus_proto::broadcaster::service::push::v1::PushBody;
use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::{
    CloseReason, Time,
    client::{ClientConfig, ClientError, ClientEvent, ClientResume, ClientSession, Outgoing},
    config::ServerConfig,
    handshake::{ClientHandshake, ClientHandshakeError, ResumeRequest},
    route::{TunnelKey, TunnelKind},
    session::{Event, PushPacket, Session, SessionState, TunnelMessage},
    testing::{Pair, test_client_config, test_context, test_server_config, test_token},
};

const UID: i64 = 10001;
const KEY: [u8; 32] = [0x5a; 32];

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

fn server_config(encrypted: bool) -> ServerConfig {
    let mut config = test_server_config(encrypted);
    config.resume_key = Some(ResumeKey::new(&KEY));
    config
}

fn client_config(encrypted: bool, rand: u64, resume: bool) -> ClientConfig {
    let mut config = test_client_config(encrypted, test_token(UID, t0(), rand));
    config.resume = resume;
    config.heartbeat_interval = None;
    config
}

/// A logged-in pair whose client asked for resume.
fn resumable_pair(config: Arc<ServerConfig>, encrypted: bool) -> Pair {
    let mut p = Pair::new(config, &client_config(encrypted, 1, true), t0());
    p.drive();
    assert!(p.client.is_established(), "{:?}", p.client_events);
    assert!(p.client.is_resumable(), "granted: {:?}", p.server_events);
    p
}

fn push(p: &mut Pair, n: u32) {
    let body = PushBody {
        data: Bytes::from(format!("push {n}")),
        obj: UID,
        r#mod: 4,
        seq: 1,
        ..Default::default()
    };
    let encoded = PushPacket::encode(&body, &test_server_config(true)).unwrap();
    p.server.push(p.now, &encoded);
}

/// What the application saw of pushes and replies, as "push N" / "reply N".
fn seen(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Packet(p) => Some(String::from_utf8_lossy(&p.data).into_owned()),
            _ => None,
        })
        .collect()
}

fn request(p: &mut Pair, data: &'static [u8]) -> i32 {
    p.client
        .send(
            p.now,
            Outgoing {
                module: 3,
                seq: 1,
                data: Bytes::from_static(data),
                ..Default::default()
            },
        )
        .unwrap()
}

fn reply(p: &mut Pair, index: i32, n: u32) {
    let key = TunnelKey {
        kind: TunnelKind::PLAYER,
        oid: UID,
    };
    let tunnel = p.server.tunnel_of(key).expect("a tunnel");
    p.server.handle_tunnel(
        p.now,
        tunnel,
        TunnelMessage {
            data: Bytes::from(format!("reply {n}")),
            obj: UID,
            module: 3,
            seq: 1,
            index,
            ..Default::default()
        },
    );
}

/// The connection drops: the server parks, the client keeps what it needs.
fn cut(p: &mut Pair) -> ClientResume {
    p.server.transport_lost(p.now);
    assert_eq!(p.server.state(), SessionState::Parked);
    // Whatever the server had queued never reaches the client.
    let _ = p.server.poll_transmit();
    p.client.take_resume().expect("resumable")
}

/// A new connection resuming `previous`: its session and client, after the handshake frame, and
/// the claim the new session asks the adapter to carry out.
fn reconnect(
    config: &Arc<ServerConfig>,
    previous: ClientResume,
    now: Time,
    encrypted: bool,
    with_token: bool,
) -> (Session, ClientSession, Vec<Event>) {
    let mut cc = client_config(encrypted, 2, true);
    if !with_token {
        cc.token = String::new();
    }
    let mut client = ClientSession::resume(&cc, now, [3; 32], previous);
    let mut server = Session::new(Arc::clone(config), test_context(), now, [4; 32]);
    let hello = client.poll_transmit().unwrap();
    server.handle_bytes(now, &hello);
    let events = std::iter::from_fn(|| server.poll_event()).collect();
    (server, client, events)
}

fn claim(events: &[Event]) -> Option<&ResumeClaim> {
    events.iter().find_map(|e| match e {
        Event::ResumeRequested(c) => Some(c),
        _ => None,
    })
}

/// Moves the new connection's bytes both ways until quiet; the client's events (the server's
/// stay queued).
fn settle(server: &mut Session, client: &mut ClientSession, now: Time) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    loop {
        let mut moved = false;
        if let Some(b) = server.poll_transmit() {
            client.handle_bytes(now, &b);
            moved = true;
        }
        events.extend(std::iter::from_fn(|| client.poll_event()));
        if let Some(b) = client.poll_transmit() {
            server.handle_bytes(now, &b);
            moved = true;
        }
        if !moved {
            return events;
        }
    }
}

#[test]
fn a_client_that_does_not_ask_sends_and_receives_upstreams_bytes() {
    // The handshake without the extension, with it empty, and the plain start are one message.
    let start = |resume: Option<&ResumeRequest>| {
        let mut rng = crate::testing::SeqRng::new(1);
        ClientHandshake::start_with(None, "tok", 1, 0, t0(), 5, resume, &mut rng).1
    };
    let mut rng = crate::testing::SeqRng::new(1);
    let plain = ClientHandshake::start(None, "tok", 1, 0, t0(), 5, &mut rng).1;
    assert_eq!(start(None), plain);
    assert_eq!(start(Some(&ResumeRequest::default())), plain);
    assert_ne!(
        start(Some(&ResumeRequest {
            request: true,
            ..Default::default()
        })),
        plain
    );

    // A gateway with resume on answers a client that does not ask exactly as one with it off.
    for encrypted in [true, false] {
        let wire = |config: ServerConfig| {
            let mut p = Pair::new(Arc::new(config), &client_config(encrypted, 1, false), t0());
            p.drive();
            assert!(p.client.is_established());
            assert!(!p.client.is_resumable());
            assert!(
                !p.server_events
                    .iter()
                    .any(|e| matches!(e, Event::ResumeGranted(_)))
            );
            p.server_sent
        };
        assert_eq!(
            wire(server_config(encrypted)),
            wire(test_server_config(encrypted))
        );
    }
}

#[test]
fn a_gateway_without_a_key_ignores_the_request() {
    let mut p = Pair::new(
        Arc::new(test_server_config(true)),
        &client_config(true, 1, true),
        t0(),
    );
    p.drive();
    assert!(p.client.is_established());
    assert!(!p.client.is_resumable());
}

#[test]
fn resume_replays_every_missed_reply_and_push_once_in_order() {
    for encrypted in [true, false] {
        let config = Arc::new(server_config(encrypted));
        let mut p = resumable_pair(Arc::clone(&config), encrypted);
        let i1 = request(&mut p, b"a");
        p.drive();
        push(&mut p, 1);
        reply(&mut p, i1, 1);
        p.drive();
        assert_eq!(seen(&p.take_client_events()), ["push 1", "reply 1"]);

        // In flight when the connection drops: a push and a request the server had; then a
        // request the server never gets, and a reply and pushes while the client is away.
        let i2 = request(&mut p, b"b");
        p.drive();
        push(&mut p, 2);
        let _lost = p.server.poll_transmit();
        let i3 = request(&mut p, b"c");
        let _never_arrives = p.client.poll_transmit();
        let previous = cut(&mut p);
        reply(&mut p, i2, 2);
        push(&mut p, 3);
        assert_eq!(p.server.state(), SessionState::Parked);

        p.now = p.now + Duration::from_secs(5);
        let (mut server, mut client, events) = reconnect(&config, previous, p.now, encrypted, true);
        let claim = claim(&events).expect("resume requested").clone();
        assert_eq!(
            (claim.uid, Some(claim.session)),
            (UID, p.server.resume_id())
        );
        p.server_events
            .extend(std::iter::from_fn(|| p.server.poll_event()));
        server.resume(p.now, &mut p.server).unwrap();
        assert_eq!(p.server.state(), SessionState::Closed);
        assert!(
            p.server.poll_event().is_none(),
            "the old session says nothing"
        );
        let events = settle(&mut server, &mut client, p.now);
        assert!(
            matches!(events.first(), Some(ClientEvent::Resumed { start_index, .. }) if *start_index == i3),
            "{events:?}"
        );
        assert_eq!(seen(&events), ["push 2", "reply 2", "push 3"]);

        // The request the server never got was sent again at its index; the index continues.
        let mut p2 = Pair {
            server,
            client,
            now: p.now,
            server_events: Vec::new(),
            client_events: Vec::new(),
            server_sent: 0,
        };
        p2.drive();
        reply(&mut p2, i3, 3);
        let i4 = request(&mut p2, b"d");
        assert_eq!(i4, i3 + 1);
        p2.drive();
        assert_eq!(seen(&p2.take_client_events()), ["reply 3"]);
        assert_eq!(p2.server.state(), SessionState::Established);
    }
}

#[test]
fn a_resend_reaches_the_backend_once() {
    let config = Arc::new(server_config(true));
    let mut p = resumable_pair(Arc::clone(&config), true);
    let i1 = request(&mut p, b"a");
    p.drive();
    let i2 = request(&mut p, b"b");
    let _lost = p.client.poll_transmit();
    let previous = cut(&mut p);
    p.server_events
        .extend(std::iter::from_fn(|| p.server.poll_event()));
    let (mut server, mut client, events) = reconnect(&config, previous, p.now, true, true);
    assert!(claim(&events).is_some());
    server.resume(p.now, &mut p.server).unwrap();
    let _ = settle(&mut server, &mut client, p.now);
    let forwarded: Vec<i32> = p
        .server_events
        .iter()
        .chain(&std::iter::from_fn(|| server.poll_event()).collect::<Vec<_>>())
        .filter_map(|e| match e {
            Event::Forward { message, .. } => Some(message.index),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded, [i1, i2]);
}

#[test]
fn the_window_ends_the_session_and_a_late_resume_is_refused() {
    let config = Arc::new(server_config(true));
    let mut p = resumable_pair(Arc::clone(&config), true);
    let previous = cut(&mut p);
    p.take_server_events();
    p.advance(DEFAULT_RESUME_WINDOW - Duration::from_millis(1));
    assert_eq!(p.server.state(), SessionState::Parked);
    p.advance(Duration::from_millis(1));
    assert_eq!(p.server.state(), SessionState::Closed);
    assert!(
        p.server_events
            .iter()
            .any(|e| *e == Event::Closed(CloseReason::ResumeExpired)),
        "{:?}",
        p.server_events
    );

    let (mut server, mut client, _) = reconnect(&config, previous, p.now, true, false);
    assert_eq!(
        server.resume(p.now, &mut p.server),
        Err(ResumeRefusal::Expired)
    );
    let events = settle(&mut server, &mut client, p.now);
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Closed(ClientError::Handshake(
            ClientHandshakeError::ResumeRefused(ResumeRefusal::Expired)
        )))
    );
    assert_eq!(server.state(), SessionState::Closed);
}

#[test]
fn a_refused_resume_with_a_token_logs_in_afresh() {
    let config = Arc::new(server_config(true));
    let mut p = resumable_pair(Arc::clone(&config), true);
    let pending = request(&mut p, b"a");
    p.drive();
    let previous = cut(&mut p);
    p.server.close(p.now, CloseReason::AdminKickOut);
    let (mut server, mut client, _) = reconnect(&config, previous, p.now, true, true);
    assert_eq!(
        server.resume(p.now, &mut p.server),
        Err(ResumeRefusal::Expired)
    );
    let events = settle(&mut server, &mut client, p.now);
    assert!(
        matches!(
            &events[..],
            [
                ClientEvent::ResumeRefused(ResumeRefusal::Expired),
                ClientEvent::RequestTimeout { index, .. },
                ClientEvent::Established { start_index: 1, .. },
            ] if *index == pending
        ),
        "{events:?}"
    );
    assert_eq!(server.state(), SessionState::Established);
    assert!(client.is_resumable(), "a new ticket for the new session");
}

#[test]
fn a_ticket_is_single_use() {
    let config = Arc::new(server_config(true));
    let mut p = resumable_pair(Arc::clone(&config), true);
    let previous = cut(&mut p);
    let old_request = previous.request();
    let (mut server, mut client, _) = reconnect(&config, previous, p.now, true, true);
    server.resume(p.now, &mut p.server).unwrap();
    let _ = settle(&mut server, &mut client, p.now);

    // Someone replays the first ticket, with the right proof even, against the live session.
    let mut rng = crate::testing::SeqRng::new(9);
    let keys = test_client_config(true, String::new()).keys;
    let (_, hello) =
        ClientHandshake::start_with(keys, "", 0, 0, p.now, 5, Some(&old_request), &mut rng);
    let mut thief = Session::new(Arc::clone(&config), test_context(), p.now, [6; 32]);
    let mut frame = bytes::BytesMut::new();
    crate::frame::put_header(&mut frame, hello.encoded_len()).unwrap();
    hello.encode_raw(&mut frame);
    thief.handle_bytes(p.now, &frame);
    let events: Vec<_> = std::iter::from_fn(|| thief.poll_event()).collect();
    assert!(claim(&events).is_some(), "the ticket itself opens");
    assert_eq!(
        thief.resume(p.now, &mut server),
        Err(ResumeRefusal::Replayed)
    );
    assert_eq!(thief.state(), SessionState::Closed);
    assert_eq!(server.state(), SessionState::Established, "untouched");
}

#[test]
fn forged_tickets_and_missing_proofs_are_refused() {
    let config = Arc::new(server_config(true));
    let mut p = resumable_pair(Arc::clone(&config), true);
    let previous = cut(&mut p);
    let real = previous.request();

    let attempt = |request: ResumeRequest| {
        let mut rng = crate::testing::SeqRng::new(3);
        let keys = test_client_config(true, String::new()).keys;
        let (handshake, hello) =
            ClientHandshake::start_with(keys, "", 0, 0, t0(), 5, Some(&request), &mut rng);
        let mut s = Session::new(Arc::clone(&config), test_context(), t0(), [8; 32]);
        let mut frame = bytes::BytesMut::new();
        crate::frame::put_header(&mut frame, hello.encoded_len()).unwrap();
        hello.encode_raw(&mut frame);
        s.handle_bytes(t0(), &frame);
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        (s, handshake, events)
    };

    // A flipped bit: the ticket does not open; refused at once, in plaintext.
    let mut forged = real.ticket.to_vec();
    forged[20] ^= 1;
    let (mut s, handshake, events) = attempt(ResumeRequest {
        ticket: forged.into(),
        ..real.clone()
    });
    assert!(events.contains(&Event::ResumeRefused(ResumeRefusal::Invalid)));
    assert!(events.contains(&Event::Closed(CloseReason::ResumeRefused)));
    let reply = s.poll_transmit().unwrap();
    let body = &reply[crate::frame::HEADER_LEN..];
    assert_eq!(
        handshake.finish(t0(), body).unwrap_err(),
        ClientHandshakeError::ResumeRefused(ResumeRefusal::Invalid)
    );

    // A ticket from another gateway's key.
    let other = ResumeKey::new(&[1; 32]).seal(
        &TicketClaims {
            session: p.server.resume_id().unwrap(),
            uid: UID,
            generation: 1,
        },
        [0; 12],
    );
    let (_, _, events) = attempt(ResumeRequest {
        ticket: other,
        ..real.clone()
    });
    assert!(events.contains(&Event::ResumeRefused(ResumeRefusal::Invalid)));

    // The real ticket without the session's secret (sniffed off the wire): no proof.
    for secret in [None, Some([0u8; 32])] {
        let (mut s, _, events) = attempt(ResumeRequest {
            secret,
            ..real.clone()
        });
        assert!(claim(&events).is_some());
        assert_eq!(s.resume(t0(), &mut p.server), Err(ResumeRefusal::Proof));
        assert_eq!(p.server.state(), SessionState::Parked, "untouched");
    }

    // A ticket for someone else's uid cannot exist (it is sealed); a claim of more packets
    // than were sent is a gap.
    let (mut s, _, _) = attempt(ResumeRequest {
        received: 99,
        ..real.clone()
    });
    assert_eq!(s.resume(t0(), &mut p.server), Err(ResumeRefusal::Gap));
}

#[test]
fn a_newer_login_supersedes_the_parked_session() {
    let config = Arc::new(server_config(true));
    let mut p = resumable_pair(Arc::clone(&config), true);
    let previous = cut(&mut p);
    // The adapter closes the old session when the uid logs in again (Logins::login).
    p.server.close(p.now, crate::login::SUPERSEDED);
    let (mut server, _, _) = reconnect(&config, previous, p.now, true, false);
    assert_eq!(
        server.resume(p.now, &mut p.server),
        Err(ResumeRefusal::Expired)
    );
    let mut sessions = ResumableSessions::<()>::default();
    let id = SessionId(7);
    sessions.insert(id, UID, ());
    assert!(sessions.find(id, UID, t0()).is_ok());
    sessions.remove(id, t0(), Tombstone::Superseded, DEFAULT_RESUME_WINDOW);
    assert_eq!(
        sessions.find(id, UID, t0()).err(),
        Some(ResumeRefusal::Superseded)
    );
    assert_eq!(
        sessions.find(id, UID, t0() + DEFAULT_RESUME_WINDOW).err(),
        Some(ResumeRefusal::Unknown),
        "forgotten after the window"
    );
}

#[test]
fn a_parked_session_that_overflows_ends() {
    let mut config = server_config(true);
    config.session.resume.max_buffered_packets = 4;
    let config = Arc::new(config);
    let mut p = resumable_pair(Arc::clone(&config), true);
    let _previous = cut(&mut p);
    for n in 0..4 {
        push(&mut p, n);
    }
    assert_eq!(p.server.state(), SessionState::Parked);
    push(&mut p, 4);
    assert_eq!(p.server.state(), SessionState::Closed);
    let events: Vec<_> = std::iter::from_fn(|| p.server.poll_event()).collect();
    assert!(events.contains(&Event::Closed(CloseReason::ResumeOverflow)));
}

#[test]
fn acknowledgements_empty_the_buffer_and_reach_no_backend() {
    let config = Arc::new(server_config(true));
    let mut p = resumable_pair(Arc::clone(&config), true);
    for n in 0..(ACK_EVERY_PACKETS as u32 * 3) {
        push(&mut p, n);
        p.drive();
    }
    assert!(
        !p.server_events
            .iter()
            .any(|e| matches!(e, Event::OpenTunnel(_) | Event::Forward { .. })),
        "acks are the gateway's own"
    );
    // Every full batch was acknowledged: the server keeps fewer than one batch.
    let previous = cut(&mut p);
    assert_eq!(previous.received(), ACK_EVERY_PACKETS * 3);
    let held = p.server.replay_len().unwrap();
    assert!(held < ACK_EVERY_PACKETS as usize, "held {held}");
}

#[test]
fn a_resumed_client_keeps_its_ack_timer_armed() {
    let config = Arc::new(server_config(true));
    let mut p = resumable_pair(Arc::clone(&config), true);
    push(&mut p, 1);
    p.drive();
    assert_eq!(p.client.poll_timeout(), Some(p.now + ACK_DELAY));
    p.advance_both(ACK_DELAY);
    assert_eq!(p.client.poll_timeout(), None, "acknowledged");
    assert_eq!(p.server.replay_len(), Some(0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever is recorded and acknowledged, the buffer stays within both bounds, and what it
    /// gives a resuming client is exactly the packets after its count, in order; a parked buffer
    /// that had to forget an unseen packet says so.
    #[test]
    fn replay_buffer_bounds_and_order(
        max_bytes in 1usize..400,
        max_packets in 1usize..20,
        ops in proptest::collection::vec((0u8..4, 1usize..60), 0..200),
    ) {
        let config = ResumeConfig { max_buffered_bytes: max_bytes, max_buffered_packets: max_packets, ..Default::default() };
        let mut buffer = ReplayBuffer::new(&config);
        let mut all: Vec<Bytes> = Vec::new();
        let mut acked = 0u64;
        let mut lost_while_parked = false;
        for (op, n) in ops {
            match op {
                0 | 1 => {
                    let packet = Bytes::from(vec![all.len() as u8; n]);
                    all.push(packet.clone());
                    let before = buffer.len();
                    buffer.record(packet);
                    if buffer.is_parked() && buffer.len() <= before {
                        lost_while_parked = true;
                    }
                }
                2 => {
                    let upto = acked + (n as u64 % 5);
                    if buffer.ack(upto) { acked = acked.max(upto); } else { prop_assert!(upto > all.len() as u64); }
                }
                _ => if buffer.is_parked() { buffer.unpark() } else { buffer.park() },
            }
            prop_assert!(buffer.len() <= max_packets);
            prop_assert!(buffer.bytes() <= max_bytes);
            prop_assert_eq!(buffer.bytes(), buffer.since(buffer.sent() - buffer.len() as u64).map(|i| i.map(|b| b.len()).sum::<usize>()).unwrap_or(0));
            prop_assert_eq!(buffer.sent(), all.len() as u64);
            prop_assert_eq!(buffer.overflowed(), lost_while_parked);
            // Every count the buffer accepts yields exactly the packets after it, in order.
            for received in 0..=all.len() as u64 {
                if let Ok(rest) = buffer.since(received) {
                    let rest: Vec<_> = rest.cloned().collect();
                    prop_assert_eq!(&rest[..], &all[received as usize..]);
                }
            }
            prop_assert!(buffer.since(all.len() as u64 + 1).is_err());
        }
    }

    /// Any cut point, any mix of replies and pushes before and after it, some of what the
    /// server sent lost with the connection: after the resume the application has seen each
    /// reply and push exactly once, in the order the server sent them.
    #[test]
    fn any_cut_loses_and_duplicates_nothing(
        before in proptest::collection::vec(any::<bool>(), 0..12),
        outstanding in 0usize..4,
        lost in 0usize..4,
        after in proptest::collection::vec(any::<bool>(), 0..12),
    ) {
        let config = Arc::new(server_config(true));
        let mut p = resumable_pair(Arc::clone(&config), true);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut n = 0u32;
        for is_push in &before {
            n += 1;
            if *is_push {
                push(&mut p, n);
                expected.push(format!("push {n}"));
            } else {
                let i = request(&mut p, b"r");
                p.drive();
                reply(&mut p, i, n);
                expected.push(format!("reply {n}"));
            }
            p.drive();
        }
        // Requests the backend has not answered yet when the connection drops.
        let mut waiting: Vec<i32> = (0..outstanding).map(|_| request(&mut p, b"w")).collect();
        p.drive();
        // The last few packets the server sends are lost with the connection.
        for _ in 0..lost {
            n += 1;
            push(&mut p, n);
            expected.push(format!("push {n}"));
        }
        got.extend(seen(&p.take_client_events()));
        let previous = cut(&mut p);
        for is_push in &after {
            n += 1;
            match waiting.pop() {
                Some(i) if !*is_push => {
                    reply(&mut p, i, n);
                    expected.push(format!("reply {n}"));
                }
                _ => {
                    push(&mut p, n);
                    expected.push(format!("push {n}"));
                }
            }
        }
        let (mut server, mut client, _) = reconnect(&config, previous, p.now, true, true);
        server.resume(p.now, &mut p.server).unwrap();
        got.extend(seen(&settle(&mut server, &mut client, p.now)));
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn tickets_open_only_under_their_key_and_bind_their_claims() {
    let key = ResumeKey::new(&KEY);
    let claims = TicketClaims {
        session: SessionId(42),
        uid: -7,
        generation: 3,
    };
    let ticket = key.seal(&claims, [9; 12]);
    assert_eq!(key.open(&ticket), Ok(claims));
    for i in 0..ticket.len() {
        let mut bad = ticket.to_vec();
        bad[i] ^= 0x80;
        assert_eq!(key.open(&bad), Err(ResumeRefusal::Invalid), "byte {i}");
    }
    assert_eq!(key.open(&ticket[1..]), Err(ResumeRefusal::Invalid));
    assert_eq!(key.open(&[]), Err(ResumeRefusal::Invalid));
    // HMAC-SHA256, RFC 4231 test case 2.
    assert_eq!(
        hex::encode(hmac_sha256(
            b"Jefe",
            &[b"what do ya want ", b"for nothing?"]
        )),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
