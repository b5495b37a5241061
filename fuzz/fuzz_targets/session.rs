//! Sequences of session operations after a successful handshake, with `cfg(fuzzing)` packet
//! opening (a sealed body is `nonce ‖ plaintext ‖ tag`, tags unchecked) so the fuzzer writes
//! packets directly. Checks the session's invariants after every operation, and that the client
//! on the other end neither panics nor reports anything after its `Closed`.
#![no_main]

use std::{collections::HashMap, sync::Arc, time::Duration};

use janus_core::{
    CloseReason, Time,
    client::{ClientEvent, ClientSession},
    route::TunnelKind,
    session::{Event, PushPacket, Session, SessionState, TunnelId, TunnelMessage},
    testing::{test_client_config, test_context, test_server_config, test_token},
};
use janus_proto::{broadcaster::service::push::v1::PushBody, packet::Packet};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const UID: i64 = 10001;
const BUDGET: usize = 64 * 1024;

#[derive(Arbitrary, Debug)]
enum Op {
    Packet { module: i32, seq: i32, obj: i64, index_delta: i8, compress: bool, data: Vec<u8> },
    RawFrame(Vec<u8>),
    Bytes(Vec<u8>),
    /// A message on the n-th tunnel ever opened (closed ones included: stale inputs must be ignored).
    Reply { tunnel: u8, index: i32, len: u16 },
    Push { len: u16 },
    PushPacket(Vec<u8>),
    Advance(u16),
    Flush,
    TunnelClosed { tunnel: u8 },
    Drain,
    Close,
}

/// An established pair, made once: the handshake's key agreement and signature are most of a
/// fresh pair's cost, and every input starts from a copy (`Clone` exists in fuzzing builds only).
struct Established {
    config: Arc<janus_core::config::ServerConfig>,
    server: Session,
    client: ClientSession,
}

fn established(now0: Time) -> Established {
    let mut config = test_server_config(true);
    config.session.outbound_budget = BUDGET;
    config.session.max_tunnels = 4;
    let config = Arc::new(config);
    let mut server = Session::new(Arc::clone(&config), test_context(), now0, [3; 32]);
    let mut client = ClientSession::new(&test_client_config(true, test_token(UID, now0, 1)), now0, [4; 32]);
    // Handshake for real (it is plaintext; verification is bypassed in fuzzing builds anyway),
    // so the client is established and reads what the fuzzer makes the server send.
    if let Some(b) = client.poll_transmit() {
        server.handle_bytes(now0, &b);
    }
    if let Some(b) = server.poll_transmit() {
        client.handle_bytes(now0, &b);
    }
    // The handshake's own events are not what the inputs are about.
    while server.poll_event().is_some() {}
    while client.poll_event().is_some() {}
    assert_eq!(server.state(), SessionState::Established);
    Established { config, server, client }
}

thread_local! {
    static PAIR: Established = established(Time::from_unix_secs(1_700_000_000));
}

fuzz_target!(|ops: Vec<Op>| {
    let now0 = Time::from_unix_secs(1_700_000_000);
    let (config, mut server, mut client) =
        PAIR.with(|p| (Arc::clone(&p.config), p.server.clone(), p.client.clone()));
    let mut now = now0;
    let mut next_index = 1i32;
    let mut closed = false;
    let mut client_closed = false;
    let mut open = HashMap::new();
    let mut ever: Vec<TunnelId> = Vec::new();
    let pick = |ever: &[TunnelId], n: u8| ever.get(usize::from(n) % ever.len().max(1)).copied();
    for op in ops {
        match op {
            Op::Packet { module, seq, obj, index_delta, compress, data } => {
                let index = next_index.wrapping_add(i32::from(index_delta) % 2);
                next_index = next_index.wrapping_add(1);
                let p = Packet { data: data.into(), obj, r#mod: module, seq, index, compress, ..Default::default() };
                let body = p.encode_to_vec();
                let mut frame = ((body.len() + 28) as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&[0; 12]);
                frame.extend_from_slice(&body);
                frame.extend_from_slice(&[0; 16]);
                server.handle_bytes(now, &frame);
            }
            Op::RawFrame(body) => {
                let mut frame = (body.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                server.handle_bytes(now, &frame);
            }
            Op::Bytes(b) => server.handle_bytes(now, &b),
            Op::Reply { tunnel, index, len } => {
                if let Some(id) = pick(&ever, tunnel) {
                    let msg = TunnelMessage { data: vec![7u8; usize::from(len)].into(), module: 3, seq: 1, index, ..Default::default() };
                    server.handle_tunnel(now, id, msg);
                }
            }
            Op::Push { len } => {
                let body = PushBody { data: vec![1u8; usize::from(len)].into(), r#mod: 3, seq: 2, ..Default::default() };
                if let Ok(push) = PushPacket::encode(&body, &config) {
                    server.push(now, &push);
                }
            }
            Op::PushPacket(p) => {
                // Arbitrary bytes as a push body's data.
                let body = PushBody { data: p.into(), r#mod: 4, seq: 1, ..Default::default() };
                if let Ok(push) = PushPacket::encode(&body, &config) {
                    server.push(now, &push);
                }
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(ms) * 10);
                server.handle_timeout(now);
                client.handle_timeout(now);
                let _ = client.poll_transmit();
            }
            Op::Flush => {
                if let Some(bytes) = server.poll_transmit() {
                    // The client may not understand fuzzing-build packets; it must not panic.
                    client.handle_bytes(now, &bytes);
                }
            }
            Op::TunnelClosed { tunnel } => {
                if let Some(id) = pick(&ever, tunnel) {
                    open.remove(&id);
                    server.handle_tunnel_closed(now, id);
                }
            }
            Op::Drain => server.drain(now),
            Op::Close => server.close(now, CloseReason::AdminKickOut),
        }
        while let Some(event) = server.poll_event() {
            assert!(!closed, "event after Closed: {event:?}");
            match event {
                Event::OpenTunnel(t) => {
                    assert!(!ever.contains(&t.id), "id reused: {:?}", t.id);
                    assert!(open.values().all(|k| *k != t.key), "opened twice: {:?}", t.key);
                    ever.push(t.id);
                    open.insert(t.id, t.key);
                }
                Event::CloseTunnel(id) => assert!(open.remove(&id).is_some(), "closed unopened: {id:?}"),
                Event::Forward { tunnel, message } => {
                    let key = open.get(&tunnel).copied();
                    assert!(key.is_some(), "forward on unopened {tunnel:?}");
                    let Some(key) = key else { continue };
                    if key.kind == TunnelKind::PLAYER {
                        assert_eq!((key.oid, message.obj), (UID, UID), "player tunnels are the session's own");
                    }
                }
                Event::Closed(_) => closed = true,
                _ => {}
            }
        }
        while let Some(event) = client.poll_event() {
            assert!(!client_closed, "client event after Closed: {event:?}");
            match event {
                ClientEvent::Closed(_) => client_closed = true,
                ClientEvent::Established { .. }
                | ClientEvent::Packet(_)
                | ClientEvent::Heartbeat { .. }
                | ClientEvent::RequestFailed { .. }
                | ClientEvent::RequestTimeout { .. }
                | ClientEvent::Logout(_) => {}
                _ => {}
            }
        }
        assert_eq!(client_closed, client.is_closed());
        if let Some(deadline) = client.poll_timeout() {
            assert!(deadline > now || { client.handle_timeout(now); client.poll_timeout().is_none_or(|d| d > now) });
        }
        assert!(server.pending_transmit() <= BUDGET + 1024);
        assert_eq!(closed, server.state() == SessionState::Closed);
        if let Some(deadline) = server.poll_timeout() {
            assert!(deadline > now || { server.handle_timeout(now); server.poll_timeout().is_none_or(|d| d > now) });
        }
    }
});
