//! The engine against a real server session on virtual time: every request gets one answer.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use janus_core::{
    CloseReason,
    client::{ClientConfig, HeartbeatCode, LogoutCode},
    session::{Event as ServerEvent, Session, TunnelMessage},
    system,
    testing::{test_client_config, test_context, test_server_config, test_token},
};

use super::*;

const UID: i64 = 10001;
const USER_MODULE: i32 = 3;

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

/// A server session, an engine whose waiters are plain labels, and virtual time.
struct Rig {
    server: Session,
    engine: Engine<&'static str>,
    now: Time,
    answers: Vec<(&'static str, Result<Packet, RequestError>)>,
    events: Vec<Event>,
    ended: Option<Disconnect>,
    forwarded: Vec<TunnelMessage>,
    tunnel: Option<janus_core::session::TunnelId>,
}

impl Rig {
    fn new(config: &ClientConfig) -> Rig {
        let mut engine = Engine::new();
        engine.start(config, t0(), [3; 32]);
        let mut rig = Rig {
            server: Session::new(
                Arc::new(test_server_config(true)),
                test_context(),
                t0(),
                [4; 32],
            ),
            engine,
            now: t0(),
            answers: Vec::new(),
            events: Vec::new(),
            ended: None,
            forwarded: Vec::new(),
            tunnel: None,
        };
        rig.drive();
        rig
    }

    fn established() -> Rig {
        let mut config = test_client_config(true, test_token(UID, t0(), 1));
        config.heartbeat_interval = None;
        let mut rig = Rig::new(&config);
        assert!(rig.engine.is_established());
        assert!(matches!(rig.events.as_slice(), [Event::Connected { .. }]));
        rig.events.clear();
        rig
    }

    fn drive(&mut self) {
        loop {
            let mut moved = false;
            if let Some(bytes) = self.engine.poll_transmit() {
                self.server.handle_bytes(self.now, &bytes);
                moved = true;
            }
            while let Some(event) = self.server.poll_event() {
                if let ServerEvent::Forward { message, tunnel } = event {
                    self.forwarded.push(message);
                    self.tunnel = Some(tunnel);
                }
            }
            if let Some(bytes) = self.server.poll_transmit() {
                self.engine.handle_bytes(self.now, &bytes);
                moved = true;
            }
            while let Some(out) = self.engine.poll() {
                match out {
                    Output::Answer(w, r) => self.answers.push((w, r)),
                    Output::Event(e) => self.events.push(e),
                    Output::Ended(d) => self.ended = Some(d),
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn send(&mut self, label: &'static str, data: &'static [u8]) -> i32 {
        let out = Outgoing {
            module: USER_MODULE,
            seq: 1,
            data: Bytes::from_static(data),
            ..Default::default()
        };
        let index = self.engine.send(self.now, out, label).unwrap();
        self.drive();
        index
    }

    /// The backend speaks on the player tunnel.
    fn backend(&mut self, module: i32, seq: i32, index: i32, data: Bytes) {
        let id = self.tunnel.expect("a request opened the player tunnel");
        let message = TunnelMessage {
            data,
            obj: UID,
            module,
            seq,
            index,
            ..Default::default()
        };
        self.server.handle_tunnel(self.now, id, message);
        self.drive();
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        self.engine.handle_timeout(self.now);
        self.drive();
    }
}

#[test]
fn replies_failures_and_pushes_reach_the_right_place() {
    let mut rig = Rig::established();
    let a = rig.send("a", b"one");
    let b = rig.send("b", b"two");
    assert_eq!((a, b), (1, 2));
    assert_eq!(rig.forwarded.len(), 2);

    rig.backend(USER_MODULE, 1, b, Bytes::from_static(b"two"));
    let err = system::unexpected_err(USER_MODULE, 1, a, "no such thing");
    rig.backend(err.r#mod, err.seq, a, err.data);
    rig.backend(USER_MODULE, 2, 0, Bytes::from_static(b"pushed"));

    assert_eq!(rig.answers.len(), 2);
    let (label, reply) = &rig.answers[0];
    assert_eq!(*label, "b");
    assert_eq!(reply.as_ref().unwrap().data.as_ref(), b"two");
    assert_eq!(
        rig.answers[1],
        (
            "a",
            Err(RequestError::Failed {
                module: USER_MODULE,
                seq: 1,
                message: "no such thing".into()
            })
        )
    );
    assert!(matches!(&rig.events[..], [Event::Push(p)] if p.data.as_ref() == b"pushed"));
    assert_eq!(rig.engine.waiting(), 0);
    // A second reply to the same index has nobody to go to.
    rig.backend(USER_MODULE, 1, b, Bytes::from_static(b"again"));
    assert_eq!(rig.answers.len(), 2);
}

#[test]
fn a_request_without_a_reply_times_out_once() {
    let mut rig = Rig::established();
    rig.send("late", b"x");
    rig.advance(janus_core::client::DEFAULT_REQUEST_TIMEOUT - Duration::from_millis(1));
    assert!(rig.answers.is_empty());
    rig.advance(Duration::from_millis(1));
    assert_eq!(rig.answers, vec![("late", Err(RequestError::Timeout))]);
    rig.backend(USER_MODULE, 1, 1, Bytes::from_static(b"too late"));
    assert_eq!(rig.answers.len(), 1, "one outcome per request");
    assert!(rig.events.is_empty(), "and the late reply is no push");
}

#[test]
fn a_lost_transport_answers_every_waiter_then_ends() {
    let mut rig = Rig::established();
    rig.send("first", b"x");
    rig.send("second", b"y");
    rig.engine.lost(Disconnect::Transport("reset".into()));
    rig.drive();
    assert_eq!(
        rig.answers,
        vec![
            ("first", Err(RequestError::ConnectionClosed)),
            ("second", Err(RequestError::ConnectionClosed)),
        ]
    );
    assert_eq!(rig.ended, Some(Disconnect::Transport("reset".into())));
    assert!(!rig.engine.is_active());
    let out = Outgoing::default();
    assert_eq!(
        rig.engine.send(rig.now, out, "after").err(),
        Some(("after", RequestError::NotConnected))
    );
    rig.engine.lost(Disconnect::Transport("twice".into()));
    assert!(rig.engine.poll().is_none(), "ended once");
}

#[test]
fn a_logout_ends_the_session_with_its_code() {
    let mut rig = Rig::established();
    rig.send("pending", b"x");
    rig.server.close(rig.now, CloseReason::ConflictingLogin);
    rig.drive();
    assert_eq!(
        rig.answers,
        vec![("pending", Err(RequestError::ConnectionClosed))]
    );
    let ended = rig.ended.clone().unwrap();
    assert_eq!(ended.logout(), Some(LogoutCode::ConflictingLogin));
    assert!(!ended.is_retryable());
}

#[test]
fn nothing_is_sent_before_the_handshake_and_heartbeats_become_events() {
    let mut config = test_client_config(true, test_token(UID, t0(), 2));
    config.heartbeat_interval = Some(Duration::from_secs(1));
    let mut engine: Engine<u8> = Engine::new();
    engine.start(&config, t0(), [5; 32]);
    assert_eq!(
        engine.send(t0(), Outgoing::default(), 7).err(),
        Some((7, RequestError::NotConnected))
    );

    let mut rig = Rig::new(&config);
    rig.events.clear();
    rig.advance(Duration::from_secs(1));
    let beat = rig.forwarded.pop().unwrap();
    assert_eq!(
        (beat.module, beat.seq),
        (system::SYSTEM_MODULE, system::HEARTBEAT_SEQ)
    );
    let answer = system::heartbeat_reply(1_700_000_002, HeartbeatCode::Succeeded as i32);
    rig.backend(beat.module, beat.seq, beat.index, answer);
    assert_eq!(
        rig.events,
        vec![Event::Heartbeat {
            server_time: 1_700_000_002,
            code: HeartbeatCode::Succeeded
        }]
    );
    assert!(rig.answers.is_empty(), "heartbeats have no waiter");
}

#[test]
fn a_closed_engine_says_so_and_a_new_start_replaces_the_session() {
    let mut rig = Rig::established();
    rig.send("x", b"x");
    let config = test_client_config(true, test_token(UID, t0(), 3));
    rig.engine.start(&config, rig.now, [6; 32]);
    let _ = rig.engine.poll_transmit();
    let mut outs = Vec::new();
    while let Some(o) = rig.engine.poll() {
        outs.push(o);
    }
    assert!(matches!(
        &outs[..],
        [
            Output::Answer("x", Err(RequestError::ConnectionClosed)),
            Output::Ended(Disconnect::Transport(_))
        ]
    ));
    assert!(rig.engine.is_active() && !rig.engine.is_established());
    rig.engine.close();
    assert!(matches!(
        rig.engine.poll(),
        Some(Output::Ended(Disconnect::Closed))
    ));
}

/// Moves bytes between an engine and a server session until both are quiet; the server's
/// events and the engine's outputs.
fn pump(
    engine: &mut Engine<&'static str>,
    server: &mut Session,
    now: Time,
) -> (Vec<ServerEvent>, Vec<Output<&'static str>>) {
    let (mut events, mut outputs) = (Vec::new(), Vec::new());
    loop {
        let mut moved = false;
        if let Some(bytes) = engine.poll_transmit() {
            server.handle_bytes(now, &bytes);
            moved = true;
        }
        events.extend(std::iter::from_fn(|| server.poll_event()));
        if let Some(bytes) = server.poll_transmit() {
            engine.handle_bytes(now, &bytes);
            moved = true;
        }
        outputs.extend(std::iter::from_fn(|| engine.poll()));
        if !moved {
            return (events, outputs);
        }
    }
}

#[test]
fn a_lost_connection_is_resumed_with_its_waiters_and_closing_meanwhile_answers_them() {
    let mut core = test_server_config(true);
    core.resume_key = Some(janus_core::resume::ResumeKey::new(&[1; 32]));
    let core = Arc::new(core);
    let mut config = test_client_config(true, test_token(UID, t0(), 1));
    config.heartbeat_interval = None;
    config.resume = true;
    let now = t0();
    let mut engine = Engine::new();
    let mut old = Session::new(Arc::clone(&core), test_context(), now, [4; 32]);
    engine.start(&config, now, [3; 32]);
    pump(&mut engine, &mut old, now);
    assert!(engine.is_established());
    let out = Outgoing {
        module: USER_MODULE,
        seq: 1,
        data: Bytes::from_static(b"a"),
        ..Default::default()
    };
    let index = engine.send(now, out, "a").ok().unwrap();
    let (events, _) = pump(&mut engine, &mut old, now);
    let tunnel = events
        .iter()
        .find_map(|e| match e {
            ServerEvent::Forward { tunnel, .. } => Some(*tunnel),
            _ => None,
        })
        .unwrap();

    // The connection drops: the waiter keeps waiting, the engine can resume.
    engine.lost(Disconnect::Transport("cut".into()));
    let outputs: Vec<_> = std::iter::from_fn(|| engine.poll()).collect();
    assert!(matches!(
        outputs.as_slice(),
        [Output::Ended(Disconnect::Transport(_))]
    ));
    assert!(engine.can_resume());
    assert_eq!(engine.waiting(), 1);
    old.transport_lost(now);
    let reply = TunnelMessage {
        data: Bytes::from_static(b"reply a"),
        obj: UID,
        module: USER_MODULE,
        seq: 1,
        index,
        ..Default::default()
    };
    old.handle_tunnel(now, tunnel, reply);

    // The next connection resumes; the reply sent meanwhile answers the waiter.
    let mut new = Session::new(Arc::clone(&core), test_context(), now, [6; 32]);
    config.token = test_token(UID, t0(), 2);
    engine.start(&config, now, [5; 32]);
    let (events, _) = pump(&mut engine, &mut new, now);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ServerEvent::ResumeRequested(_)))
    );
    new.resume(now, &mut old).unwrap();
    let (_, outputs) = pump(&mut engine, &mut new, now);
    assert!(matches!(
        outputs.first(),
        Some(Output::Event(Event::Resumed { .. }))
    ));
    assert!(matches!(
        outputs.get(1),
        Some(Output::Answer("a", Ok(p))) if p.data.as_ref() == b"reply a"
    ));

    // Lost again, and the application closes before reconnecting: the waiter is answered.
    let index = engine
        .send(
            now,
            Outgoing {
                module: USER_MODULE,
                seq: 1,
                data: Bytes::from_static(b"b"),
                ..Default::default()
            },
            "b",
        )
        .ok()
        .unwrap();
    assert!(index > 0);
    pump(&mut engine, &mut new, now);
    engine.lost(Disconnect::Transport("cut again".into()));
    let _ = std::iter::from_fn(|| engine.poll()).count();
    engine.close();
    let outputs: Vec<_> = std::iter::from_fn(|| engine.poll()).collect();
    assert!(matches!(
        outputs.as_slice(),
        [Output::Answer("b", Err(RequestError::ConnectionClosed))]
    ));
    assert!(!engine.can_resume());
}
