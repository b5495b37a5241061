//! The client's clock-driven behaviour and events, against a real server session on virtual time.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use janus_proto::{broadcaster::service::push::v1::PushBody, message::CsHeartbeat};
use proptest::prelude::*;

use super::*;
use crate::{
    CloseReason,
    route::{TunnelKey, TunnelKind},
    session::{Event, PushOutcome, PushPacket, TunnelMessage},
    system::UNEXPECTED_ERR_SEQ,
    testing::{Pair, test_client_config, test_server_config, test_token},
};

const UID: i64 = 10001;
/// A game module (User) and request (Login): routed to the player tunnel.
const USER_MODULE: i32 = janus_proto::module::ModuleId::User as i32;
const LOGIN_SEQ: i32 = janus_proto::sequence::UserSeq::Login as i32;
const MS: Duration = Duration::from_millis(1);

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

fn config() -> ClientConfig {
    test_client_config(true, test_token(UID, t0(), 1))
}

/// An established pair whose client runs with `config`; the handshake's events are taken.
fn pair_with(config: &ClientConfig) -> Pair {
    let mut p = Pair::new(Arc::new(test_server_config(true)), config, t0());
    p.drive();
    assert!(p.client.is_established(), "{:?}", p.client_events);
    p.take_client_events();
    p.take_server_events();
    p
}

/// A client that only times requests out (no heartbeats in the way).
fn quiet() -> ClientConfig {
    let mut c = config();
    c.heartbeat_interval = None;
    c
}

fn player() -> TunnelKey {
    TunnelKey {
        kind: TunnelKind::PLAYER,
        oid: UID,
    }
}

fn request(p: &mut Pair, data: &'static [u8]) -> i32 {
    let index = p
        .client
        .send(
            p.now,
            Outgoing {
                module: USER_MODULE,
                seq: LOGIN_SEQ,
                data: Bytes::from_static(data),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    index
}

/// The backend answers the request at `index` (or pushes, with index 0) on the player tunnel,
/// which a request opens first if none is open: the backend only speaks on a stream the gateway
/// opened.
fn reply(p: &mut Pair, module: i32, seq: i32, index: i32, data: Bytes) {
    if p.server_tunnel(player()).is_none() {
        let opener = request(p, b"open");
        assert_ne!(opener, index);
    }
    let id = p.server_tunnel(player()).expect("player tunnel open");
    p.server.handle_tunnel(
        p.now,
        id,
        TunnelMessage {
            data,
            obj: UID,
            module,
            seq,
            index,
            ..Default::default()
        },
    );
    p.drive();
}

fn forwarded(events: &[Event]) -> Vec<TunnelMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Forward { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_silent_server_fails_the_handshake_at_its_deadline() {
    let mut client = ClientSession::new(&config(), t0(), [1; 32]);
    let deadline = t0() + crate::config::DEFAULT_HANDSHAKE_TIMEOUT;
    assert_eq!(client.poll_timeout(), Some(deadline));
    client.handle_timeout(t0());
    client.handle_timeout(t0() + (crate::config::DEFAULT_HANDSHAKE_TIMEOUT - MS));
    assert!(!client.is_closed(), "early calls do nothing");
    assert_eq!(client.poll_event(), None);

    // Through the pair: the handshake never reaches the server.
    let mut p = Pair::new(Arc::new(test_server_config(true)), &config(), t0());
    let _ = p.client.poll_transmit();
    p.advance_both(crate::config::DEFAULT_HANDSHAKE_TIMEOUT - MS);
    assert!(!p.client.is_closed());
    p.advance_both(MS);
    assert_eq!(
        p.take_client_events(),
        vec![ClientEvent::Closed(ClientError::HandshakeTimeout)]
    );
    assert_eq!(p.client.poll_timeout(), None);
    p.client.handle_timeout(p.now);
    assert_eq!(p.client.poll_event(), None, "twice is harmless");
}

#[test]
fn an_established_session_has_no_handshake_deadline() {
    let mut c = quiet();
    c.request_timeout = None;
    let mut p = pair_with(&c);
    assert_eq!(p.client.poll_timeout(), None, "nothing to wait for");
    p.advance_both(Duration::from_secs(3600));
    assert!(p.take_client_events().is_empty());
}

#[test]
fn silence_sends_a_heartbeat_whose_answer_is_a_heartbeat_event() {
    let mut p = pair_with(&config());
    let interval = DEFAULT_HEARTBEAT_INTERVAL;
    assert_eq!(p.client.poll_timeout(), Some(t0() + interval));
    p.advance_both(interval - MS);
    assert!(forwarded(&p.take_server_events()).is_empty());
    p.advance_both(MS);
    let beats = forwarded(&p.take_server_events());
    assert_eq!(beats.len(), 1);
    let beat = &beats[0];
    assert_eq!(
        (beat.module, beat.seq, beat.index),
        (SYSTEM_MODULE, HEARTBEAT_SEQ, 1)
    );
    assert_eq!(
        CsHeartbeat::decode(beat.data.clone()).unwrap().client_time,
        p.now.unix_secs()
    );
    assert_eq!(p.client.pending_requests(), 1);

    let server_time = p.now.unix_secs() + 2;
    reply(
        &mut p,
        SYSTEM_MODULE,
        HEARTBEAT_SEQ,
        beat.index,
        system::heartbeat_reply(server_time, HeartbeatCode::Succeeded as i32),
    );
    assert_eq!(
        p.take_client_events(),
        vec![ClientEvent::Heartbeat {
            server_time,
            code: HeartbeatCode::Succeeded
        }]
    );
    assert_eq!(p.client.pending_requests(), 0);
}

#[test]
fn traffic_postpones_the_heartbeat() {
    let mut p = pair_with(&heartbeats_only());
    p.advance_both(Duration::from_secs(6));
    request(&mut p, b"keeps the line busy");
    p.take_server_events();
    p.advance_both(DEFAULT_HEARTBEAT_INTERVAL - MS);
    assert!(forwarded(&p.take_server_events()).is_empty());
    p.advance_both(MS);
    let beats = forwarded(&p.take_server_events());
    assert_eq!(beats.len(), 1);
    assert_eq!((beats[0].seq, beats[0].index), (HEARTBEAT_SEQ, 2));
    // one per silence, not one per call
    p.client.handle_timeout(p.now);
    assert_eq!(p.client.poll_transmit(), None);
}

/// A client that heartbeats but does not time requests out.
fn heartbeats_only() -> ClientConfig {
    let mut c = config();
    c.request_timeout = None;
    c
}

#[test]
fn a_heartbeat_the_application_sends_is_answered_as_a_packet() {
    let mut p = pair_with(&quiet());
    let index = p
        .client
        .send(
            p.now,
            Outgoing {
                module: SYSTEM_MODULE,
                seq: HEARTBEAT_SEQ,
                data: system::heartbeat_body(p.now.unix_secs()),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    let body = system::heartbeat_reply(5, HeartbeatCode::Succeeded as i32);
    reply(&mut p, SYSTEM_MODULE, HEARTBEAT_SEQ, index, body.clone());
    let events = p.take_client_events();
    assert!(
        matches!(&events[..], [ClientEvent::Packet(pk)] if pk.index == index && pk.data == body),
        "{events:?}"
    );
}

#[test]
fn an_unanswered_request_times_out_exactly_once() {
    let mut p = pair_with(&quiet());
    let index = request(&mut p, b"into the void");
    assert_eq!(
        p.client.poll_timeout(),
        Some(t0() + DEFAULT_REQUEST_TIMEOUT)
    );
    p.advance_both(DEFAULT_REQUEST_TIMEOUT - MS);
    assert!(p.take_client_events().is_empty());
    p.advance_both(MS);
    assert_eq!(
        p.take_client_events(),
        vec![ClientEvent::RequestTimeout {
            index,
            module: USER_MODULE,
            seq: LOGIN_SEQ
        }]
    );
    p.client.handle_timeout(p.now);
    p.advance_both(Duration::from_secs(1));
    assert_eq!(p.client.poll_timeout(), None);
    // the reply comes after all: the application already has its answer
    reply(
        &mut p,
        USER_MODULE,
        LOGIN_SEQ,
        index,
        Bytes::from_static(b"late"),
    );
    assert!(p.take_client_events().is_empty());
    assert!(p.client.is_established());
}

#[test]
fn replies_settle_their_requests_and_pushes_pass_through() {
    let mut p = pair_with(&quiet());
    let first = request(&mut p, b"a");
    let second = request(&mut p, b"b");
    reply(
        &mut p,
        USER_MODULE,
        LOGIN_SEQ,
        second,
        Bytes::from_static(b"B"),
    );
    reply(
        &mut p,
        USER_MODULE,
        LOGIN_SEQ,
        first,
        Bytes::from_static(b"A"),
    );
    let push = PushPacket::encode(
        &PushBody {
            data: Bytes::from_static(b"news"),
            r#mod: USER_MODULE,
            seq: 2,
            ..Default::default()
        },
        &test_server_config(true),
    )
    .unwrap();
    assert_eq!(p.server.push(p.now, &push), PushOutcome::Queued);
    p.drive();
    let got: Vec<(i32, Bytes)> = p
        .take_client_events()
        .into_iter()
        .map(|e| match e {
            ClientEvent::Packet(pk) => (pk.index, pk.data),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (second, Bytes::from_static(b"B")),
            (first, Bytes::from_static(b"A")),
            (0, Bytes::from_static(b"news"))
        ]
    );
    assert_eq!(p.client.pending_requests(), 0);
    p.advance_both(DEFAULT_REQUEST_TIMEOUT + Duration::from_secs(1));
    assert!(p.take_client_events().is_empty(), "answered: no timeout");
}

#[test]
fn a_server_error_fails_the_request_and_settles_it() {
    let mut p = pair_with(&quiet());
    let index = request(&mut p, b"doomed");
    // the backend stream dies: the gateway answers the request with SCServerUnexpectedErr
    let id = p.server_tunnel(player()).expect("player tunnel open");
    p.server.handle_tunnel_closed(p.now, id);
    p.drive();
    assert_eq!(
        p.take_client_events(),
        vec![ClientEvent::RequestFailed {
            index,
            module: USER_MODULE,
            seq: LOGIN_SEQ,
            message: "backend unavailable".into()
        }]
    );
    assert_eq!(p.client.pending_requests(), 0);
    p.advance_both(DEFAULT_REQUEST_TIMEOUT + Duration::from_secs(1));
    assert!(p.take_client_events().is_empty(), "failed: no timeout");

    // an error push (index 0) answers nothing: it stays a packet
    let push = system::unexpected_err(USER_MODULE, LOGIN_SEQ, 0, "odd");
    reply(&mut p, push.r#mod, push.seq, 0, push.data);
    assert!(matches!(
        &p.take_client_events()[..],
        [ClientEvent::Packet(pk)] if pk.seq == UNEXPECTED_ERR_SEQ
    ));
}

#[test]
fn a_logout_ends_the_session() {
    let mut p = pair_with(&config());
    request(&mut p, b"x");
    p.server.close(p.now, CloseReason::ConflictingLogin);
    p.drive();
    assert_eq!(
        p.take_client_events(),
        vec![
            ClientEvent::Logout(LogoutCode::ConflictingLogin),
            ClientEvent::Closed(ClientError::LoggedOut(LogoutCode::ConflictingLogin))
        ]
    );
    assert!(p.client.is_closed());
    assert_eq!(
        p.client.send(p.now, Outgoing::default()),
        Err(ClientError::NotEstablished)
    );
    assert_eq!(p.client.poll_timeout(), None, "no heartbeat, no timeout");
    p.client.handle_bytes(p.now, b"\0\0\0\x01x");
    p.client.handle_timeout(p.now + DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(p.client.poll_event(), None, "later input is ignored");
}

#[test]
fn a_logout_the_backend_pushes_ends_the_session_too() {
    let mut p = pair_with(&config());
    let logout = system::logout(LogoutCode::Banned);
    reply(&mut p, logout.r#mod, logout.seq, 0, logout.data);
    assert_eq!(
        p.take_client_events(),
        vec![
            ClientEvent::Logout(LogoutCode::Banned),
            ClientEvent::Closed(ClientError::LoggedOut(LogoutCode::Banned))
        ]
    );
}

#[test]
fn pending_requests_stay_bounded_and_the_oldest_is_given_up() {
    let mut c = quiet();
    c.max_pending = 4;
    let mut p = pair_with(&c);
    let indexes: Vec<i32> = (0..10).map(|_| request(&mut p, b"")).collect();
    assert_eq!(p.client.pending_requests(), 4);
    let given_up: Vec<i32> = p
        .take_client_events()
        .into_iter()
        .map(|e| match e {
            ClientEvent::RequestTimeout { index, .. } => index,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(given_up, indexes[..6]);
    // a reply to a given-up request is dropped; one to a remembered request is delivered
    reply(&mut p, USER_MODULE, LOGIN_SEQ, indexes[0], Bytes::new());
    reply(&mut p, USER_MODULE, LOGIN_SEQ, indexes[9], Bytes::new());
    assert!(matches!(
        &p.take_client_events()[..],
        [ClientEvent::Packet(pk)] if pk.index == indexes[9]
    ));
    p.advance_both(DEFAULT_REQUEST_TIMEOUT);
    let timed_out: Vec<i32> = p
        .take_client_events()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::RequestTimeout { index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(timed_out, indexes[6..9]);
}

#[test]
fn without_a_request_timeout_nothing_is_tracked() {
    let mut c = quiet();
    c.request_timeout = None;
    let mut p = pair_with(&c);
    let index = request(&mut p, b"");
    assert_eq!(p.client.pending_requests(), 0);
    assert_eq!(p.client.poll_timeout(), None);
    reply(&mut p, USER_MODULE, LOGIN_SEQ, index, Bytes::new());
    reply(&mut p, USER_MODULE, LOGIN_SEQ, index, Bytes::new());
    assert_eq!(p.take_client_events().len(), 2, "every packet as it comes");
}

#[test]
fn poll_timeout_is_the_earliest_deadline() {
    let mut c = config();
    c.heartbeat_interval = Some(Duration::from_secs(10));
    c.request_timeout = Some(Duration::from_secs(4));
    let mut p = pair_with(&c);
    p.advance_both(Duration::from_secs(1));
    request(&mut p, b"");
    assert_eq!(p.client.poll_timeout(), Some(t0() + Duration::from_secs(5)));
    p.advance_both(Duration::from_secs(4));
    assert!(matches!(
        &p.take_client_events()[..],
        [ClientEvent::RequestTimeout { .. }]
    ));
    assert_eq!(
        p.client.poll_timeout(),
        Some(t0() + Duration::from_secs(11))
    );
}

#[derive(Debug, Clone)]
enum Op {
    Send,
    /// The backend answers the `n`-th unanswered request (modulo), with an error if `fail`.
    Answer {
        n: usize,
        fail: bool,
    },
    Advance(u64),
    Push,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Send),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(n, fail)| Op::Answer { n, fail }),
        3 => (0u64..20_000).prop_map(Op::Advance),
        1 => Just(Op::Push),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the order of sends, answers, pushes and time: no request is reported twice
    /// (reply, failure and timeout exclude each other), and once its timeout has passed every
    /// request has been reported.
    #[test]
    fn each_request_has_one_outcome(ops in proptest::collection::vec(op(), 1..80)) {
        let mut c = config();
        c.heartbeat_interval = Some(Duration::from_secs(7));
        c.request_timeout = Some(Duration::from_secs(10));
        c.max_pending = 5;
        let timeout = Duration::from_secs(10);
        let mut p = pair_with(&c);
        // what the backend has seen and not answered yet, in arrival order
        let mut unanswered: Vec<TunnelMessage> = Vec::new();
        let mut sent: HashMap<i32, Time> = HashMap::new();
        let mut outcomes: HashMap<i32, usize> = HashMap::new();
        let mut ops = ops;
        ops.push(Op::Advance(timeout.as_millis() as u64 + 1));
        for op in ops {
            match op {
                Op::Send => {
                    let index = request(&mut p, b"q");
                    sent.insert(index, p.now);
                }
                Op::Answer { n, fail } => {
                    if !unanswered.is_empty() {
                        let m = unanswered.remove(n % unanswered.len());
                        let (module, seq, data) = if fail {
                            let e = system::unexpected_err(m.module, m.seq, m.index, "no");
                            (e.r#mod, e.seq, e.data)
                        } else if m.module == SYSTEM_MODULE {
                            (m.module, m.seq, system::heartbeat_reply(1, HeartbeatCode::Succeeded as i32))
                        } else {
                            (m.module, m.seq, Bytes::from_static(b"r"))
                        };
                        reply(&mut p, module, seq, m.index, data);
                    }
                }
                Op::Advance(ms) => p.advance_both(Duration::from_millis(ms)),
                Op::Push => {
                    let push = PushPacket::encode(&PushBody { r#mod: USER_MODULE, seq: 2, ..Default::default() }, &test_server_config(true)).unwrap();
                    p.server.push(p.now, &push);
                    p.drive();
                }
            }
            unanswered.extend(forwarded(&p.take_server_events()));
            for event in p.take_client_events() {
                let index = match event {
                    ClientEvent::Packet(pk) if pk.index == 0 => continue,
                    ClientEvent::Packet(pk) => pk.index,
                    ClientEvent::RequestFailed { index, .. } | ClientEvent::RequestTimeout { index, .. } => index,
                    ClientEvent::Heartbeat { .. } => continue,
                    other => { prop_assert!(false, "unexpected {other:?}"); continue }
                };
                let n = outcomes.entry(index).or_default();
                *n += 1;
                prop_assert_eq!(*n, 1, "index {} reported twice", index);
            }
            prop_assert!(p.client.pending_requests() <= 5);
            prop_assert!(p.client.poll_timeout().is_none_or(|t| t > p.now), "a deadline left behind");
        }
        prop_assert!(p.client.is_established());
        for (index, at) in sent {
            if at + timeout <= p.now {
                prop_assert_eq!(outcomes.get(&index), Some(&1), "request {} has no outcome", index);
            }
        }
    }
}
