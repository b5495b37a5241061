//! The relay link from either end, after a real handshake: arbitrary bytes from the peer, in
//! arbitrary chunks, plus local sends in between. Never panics; a closed link produces nothing
//! more; a session this side closed receives nothing; credit stays within the window; the hub's
//! stand-in sessions take every event the link hands them.
#![no_main]

use std::{collections::HashMap, collections::HashSet, sync::Arc};

use janus_core::{
    CloseReason, Time,
    crypto::SigningKey,
    handshake::Identity,
    relay::{HubSession, Link, LinkConfig, LinkEvent, Outgoing, Role, SessionInfo},
    session::{TunnelId, TunnelMessage},
    testing::test_server_config,
};
use libfuzzer_sys::fuzz_target;

const T0: Time = Time::from_unix_millis(1_700_000_000_000);
const WINDOW: u32 = 16 * 1024;

fn config(role: Role, me: u8, peer: u8) -> LinkConfig {
    let mut c = LinkConfig::new(
        role,
        format!("{role:?}"),
        SigningKey::from_seed(&[me; 32]),
        vec![SigningKey::from_seed(&[peer; 32]).verifying_key()],
    );
    c.session_window = WINDOW;
    c.max_frame_len = WINDOW as usize;
    c.max_sessions = 64;
    c
}

/// Both ends, authenticated.
fn pair() -> (Link, Link) {
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
    while edge.poll_event().is_some() {}
    while hub.poll_event().is_some() {}
    assert!(edge.is_established() && hub.is_established());
    (edge, hub)
}

fn identity(uid: i64) -> Identity {
    Identity { uid, sid: 1, color: "local".into(), status: 1, conn_id: 0, token_expiry: 0 }
}

fuzz_target!(|input: (bool, u8, Vec<u8>, Vec<u8>)| {
    let (as_edge, step, stream, sends) = input;
    let (mut edge, mut hub) = pair();
    let (me, _) = if as_edge { (&mut edge, &mut hub) } else { (&mut hub, &mut edge) };
    let core = Arc::new(test_server_config(true));
    let mut hub_sessions: HashMap<u64, HubSession> = HashMap::new();
    let mut closed_here: HashSet<u64> = HashSet::new();
    if as_edge {
        for s in 1..=3u64 {
            let info = SessionInfo { session: s, identity: identity(s as i64), client_addr: "1.2.3.4:5".parse().unwrap(), worker_id: 16 };
            me.send(T0, s, Outgoing::Open(Box::new(info))).unwrap();
            me.send(T0, s, Outgoing::TunnelOpen { tunnel: TunnelId::from_relay(1), kind: "player".into(), oid: s as i64 }).unwrap();
        }
    }
    let step = usize::from(step).max(1);
    let mut sends = sends.into_iter();
    let mut link_closed = false;
    let mut now = T0;
    for chunk in stream.chunks(step) {
        now = now + std::time::Duration::from_millis(10);
        me.handle_bytes(now, chunk);
        // A local action between chunks.
        if let Some(b) = sends.next() {
            let s = u64::from(b % 4);
            let tunnel = TunnelId::from_relay(u64::from(b / 64));
            let out = match b % 5 {
                0 => Outgoing::SessionClose(CloseReason::PeerClosed),
                1 | 2 => Outgoing::Data { tunnel, message: TunnelMessage { data: vec![b; usize::from(b) * 16].into(), index: 1, ..Default::default() } },
                3 => Outgoing::TunnelClose { tunnel, failed: true },
                _ => {
                    me.release(s, u32::from(b) * 8);
                    continue;
                }
            };
            if matches!(out, Outgoing::SessionClose(_)) && me.send(now, s, out.clone()).is_ok() {
                closed_here.insert(s);
                hub_sessions.remove(&s);
            } else {
                let _ = me.send(now, s, out);
            }
        }
        if b_timeout(chunk) {
            me.handle_timeout(now + std::time::Duration::from_secs(60));
        }
        while let Some(event) = me.poll_event() {
            assert!(!link_closed, "an event after Closed: {event:?}");
            match event {
                LinkEvent::Closed(_) => link_closed = true,
                LinkEvent::Data { session, tunnel, message, cost } => {
                    assert!(!closed_here.contains(&session), "data for a session closed here");
                    if let Some(h) = hub_sessions.get_mut(&session) {
                        h.handle_data(tunnel, message);
                    }
                    me.release(session, cost);
                }
                LinkEvent::SessionOpened(info) => {
                    assert!(!as_edge);
                    hub_sessions.insert(info.session, HubSession::new(Arc::clone(&core), &info, "hub:1".into()));
                }
                LinkEvent::TunnelOpened { session, tunnel, kind, oid } => {
                    if let Some(h) = hub_sessions.get_mut(&session) {
                        h.handle_tunnel_opened(tunnel, &kind, oid);
                    }
                }
                LinkEvent::TunnelClosed { session, tunnel, .. } => {
                    if let Some(h) = hub_sessions.get_mut(&session) {
                        h.handle_tunnel_released(tunnel);
                    }
                }
                LinkEvent::SessionClosed { session, reason } => {
                    assert!(!closed_here.contains(&session));
                    if let Some(mut h) = hub_sessions.remove(&session) {
                        h.handle_closed_by_edge(reason);
                    }
                }
                LinkEvent::Push { sessions, .. } => {
                    assert!(as_edge && sessions.iter().all(|s| !closed_here.contains(s)));
                }
                _ => {}
            }
            for h in hub_sessions.values_mut() {
                while h.poll_event().is_some() {}
                while h.poll_outgoing().is_some() {}
            }
        }
        for s in 0..4 {
            assert!(me.credit(s).is_none_or(|c| c <= WINDOW));
        }
        let _ = me.poll_transmit();
    }
});

/// Some chunks also fire the timers (a long silence).
fn b_timeout(chunk: &[u8]) -> bool {
    chunk.first() == Some(&0xfe)
}
