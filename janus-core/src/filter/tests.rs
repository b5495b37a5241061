//! The chain through real sessions on virtual time: each hook, each verdict, failures, counters.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use janus_proto::{
    broadcaster::service::push::v1::PushBody, message::sc_server_logout::Code as LogoutCode,
    packet::Packet,
};

use super::*;
use crate::{
    client::{ClientError, ClientEvent, Outgoing},
    config::ServerConfig,
    handshake::ClientHandshakeError,
    route::{TunnelKey, TunnelKind},
    session::{Event, PushOutcome, PushPacket, SessionState, TunnelId, TunnelMessage},
    testing::{Pair, test_client_config, test_server_config, test_token},
};

const UID: i64 = 10001;

fn t0() -> Time {
    Time::from_unix_secs(1_700_000_000)
}

fn config_with(chain: FilterChain) -> ServerConfig {
    let mut config = test_server_config(true);
    config.filters = chain;
    config
}

/// A pair after the handshake (established or not: the filters decide).
fn connect(config: ServerConfig) -> Pair {
    let mut p = Pair::new(
        Arc::new(config),
        &test_client_config(true, test_token(UID, t0(), 1)),
        t0(),
    );
    p.drive();
    p
}

fn chain_of<F: Filter>(filter: F) -> FilterChain {
    let mut chain = FilterChain::new();
    chain.push(filter).unwrap();
    chain
}

fn send(p: &mut Pair, module: i32, seq: i32, data: &'static [u8]) -> i32 {
    let index = p
        .client
        .send(
            p.now,
            Outgoing {
                module,
                seq,
                data: Bytes::from_static(data),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    index
}

fn forwards(events: &[Event]) -> Vec<(TunnelId, TunnelMessage)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Forward { tunnel, message } => Some((*tunnel, message.clone())),
            _ => None,
        })
        .collect()
}

fn opened(events: &[Event]) -> Vec<TunnelKey> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::OpenTunnel(open) => Some(open.key),
            _ => None,
        })
        .collect()
}

fn closed_with(events: &[Event]) -> Option<CloseReason> {
    events.iter().find_map(|e| match e {
        Event::Closed(r) => Some(*r),
        _ => None,
    })
}

/// The logout code the client was told: after its handshake, or instead of it.
fn logout(events: &[ClientEvent]) -> Option<LogoutCode> {
    events.iter().find_map(|e| match e {
        ClientEvent::Logout(code)
        | ClientEvent::Closed(ClientError::Handshake(ClientHandshakeError::Refused(code))) => {
            Some(*code)
        }
        _ => None,
    })
}

fn client_packets(events: &[ClientEvent]) -> Vec<Packet> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Packet(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn stats_of(config: &ServerConfig, name: &str) -> Arc<FilterStats> {
    config
        .filters
        .stats()
        .into_iter()
        .find(|(n, _)| &**n == name)
        .map(|(_, s)| s)
        .unwrap()
}

/// A filter whose every hook does what the test set, and records what it saw.
#[derive(Debug, Default)]
struct Scripted {
    name: &'static str,
    refuse: Option<Refusal>,
    packet: Option<PacketVerdict>,
    outbound: Option<OutboundVerdict>,
    rewrite: bool,
    panic_on_packet: bool,
    panic_on_handshake: bool,
    error_on_packet: bool,
    bypass: bool,
    recheck: Option<Refusal>,
    closes: Arc<Mutex<Vec<(u32, CloseReason)>>>,
    seen_peer: Arc<Mutex<Option<std::net::SocketAddr>>>,
}

impl Filter for Scripted {
    /// Packets seen this session.
    type State = u32;

    fn name(&self) -> &str {
        self.name
    }

    fn on_handshake(&self, s: &SessionView<'_>, _: Time) -> Result<Admit<u32>, FilterError> {
        assert!(!self.panic_on_handshake, "scripted handshake panic");
        *self.seen_peer.lock().unwrap() = Some(s.peer());
        assert_eq!(
            (s.uid(), s.sid(), s.color(), s.status()),
            (UID, 1, "local", 1)
        );
        Ok(match self.refuse {
            Some(r) => Admit::Refuse(r),
            None => Admit::Accept(0),
        })
    }

    fn on_packet(
        &self,
        seen: &mut u32,
        _: &SessionView<'_>,
        p: &mut ClientPacket,
        _: Time,
    ) -> Result<PacketVerdict, FilterError> {
        *seen += 1;
        assert!(!self.panic_on_packet, "scripted packet panic");
        if self.error_on_packet {
            return Err(FilterError::new("scripted error"));
        }
        if self.rewrite {
            p.set_module(p.module() + 100);
            p.set_seq(p.seq() * 2);
            let mut data = p.data().to_vec();
            data.reverse();
            p.set_data(data.into());
        }
        Ok(self.packet.clone().unwrap_or(PacketVerdict::Pass))
    }

    fn on_outbound(
        &self,
        _: &mut u32,
        _: &SessionView<'_>,
        p: &mut ServerPacket,
        _: Time,
    ) -> Result<OutboundVerdict, FilterError> {
        if self.rewrite {
            p.set_data(Bytes::from(format!(
                "{}!",
                String::from_utf8_lossy(p.data())
            )));
            p.set_seq(p.seq() + 1);
        }
        Ok(self.outbound.unwrap_or(OutboundVerdict::Pass))
    }

    fn on_close(&self, seen: u32, _: &SessionView<'_>, reason: CloseReason, _: Time) {
        self.closes.lock().unwrap().push((seen, reason));
    }

    fn recheck(&self, _: &SessionView<'_>, _: Time) -> Option<Refusal> {
        self.recheck
    }

    fn on_failure(&self) -> FailurePolicy {
        if self.bypass {
            FailurePolicy::Bypass
        } else {
            FailurePolicy::CloseSession
        }
    }
}

fn scripted(name: &'static str) -> Scripted {
    Scripted {
        name,
        ..Default::default()
    }
}

#[test]
fn an_empty_chain_changes_nothing() {
    let mut p = connect(test_server_config(true));
    assert!(p.client.is_established());
    send(&mut p, 1, 2, b"ab");
    let events = p.take_server_events();
    let fwd = forwards(&events);
    assert_eq!(fwd.len(), 1);
    assert_eq!((fwd[0].1.module, fwd[0].1.seq), (1, 2));
    assert!(FilterChain::new().stats().is_empty());
    let mut out = String::new();
    render_metrics(&[], &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_refused_handshake_is_told_the_code_and_earlier_filters_see_the_close() {
    let first = scripted("first");
    let closes = Arc::clone(&first.closes);
    let mut chain = chain_of(first);
    chain
        .push(Scripted {
            refuse: Some(Refusal::Waiting),
            ..scripted("second")
        })
        .unwrap();
    chain.push(scripted("third")).unwrap();
    let config = config_with(chain);
    let mut p = connect(config);
    assert!(!p.client.is_established());
    assert_eq!(logout(&p.client_events), Some(LogoutCode::Waiting));
    assert_eq!(
        closed_with(&p.server_events),
        Some(CloseReason::FilterRefused)
    );
    assert!(
        !p.server_events
            .iter()
            .any(|e| matches!(e, Event::Authenticated(_)))
    );
    assert_eq!(*closes.lock().unwrap(), [(0, CloseReason::FilterRefused)]);
    let config = Arc::clone(p.server.config());
    let second = stats_of(&config, "second");
    assert_eq!(second.decisions(Hook::Handshake, Decision::Refuse), 1);
    assert_eq!(stats_of(&config, "third").calls(Hook::Handshake), 0);
    p.take_server_events();
}

#[test]
fn a_ban_refusal_closes_as_banned() {
    let config = config_with(chain_of(Scripted {
        refuse: Some(Refusal::Banned),
        ..scripted("b")
    }));
    let p = connect(config);
    assert_eq!(logout(&p.client_events), Some(LogoutCode::Banned));
    assert_eq!(closed_with(&p.server_events), Some(CloseReason::Banned));
}

#[test]
fn filters_see_the_client_address() {
    let filter = scripted("peer");
    let seen = Arc::clone(&filter.seen_peer);
    let p = connect(config_with(chain_of(filter)));
    assert!(p.client.is_established());
    assert_eq!(
        *seen.lock().unwrap(),
        Some(std::net::SocketAddr::from(([192, 0, 2, 7], 40001)))
    );
}

#[test]
fn a_rejected_request_gets_an_error_reply_and_the_session_goes_on() {
    let config = config_with(chain_of(Scripted {
        packet: Some(PacketVerdict::reject("no chat for you")),
        ..scripted("r")
    }));
    let mut p = connect(config);
    let index = send(&mut p, 5, 3, b"hi");
    assert!(forwards(&p.take_server_events()).is_empty());
    let failed = p.take_client_events().into_iter().find_map(|e| match e {
        ClientEvent::RequestFailed {
            index,
            module,
            seq,
            message,
        } => Some((index, module, seq, message)),
        _ => None,
    });
    assert_eq!(failed, Some((index, 5, 3, "no chat for you".to_owned())));
    // The index was consumed: the next request is in step.
    let next = send(&mut p, 5, 3, b"hi");
    assert_eq!(next, index + 1);
    assert_eq!(p.server.state(), SessionState::Established);
    let stats = stats_of(p.server.config(), "r");
    assert_eq!(stats.decisions(Hook::Packet, Decision::Reject), 2);
}

#[test]
fn a_dropped_request_is_counted_with_its_reason() {
    let config = config_with(chain_of(Scripted {
        packet: Some(PacketVerdict::Drop(DropReason::Policy)),
        ..scripted("d")
    }));
    let mut p = connect(config);
    send(&mut p, 5, 3, b"hi");
    assert!(forwards(&p.take_server_events()).is_empty());
    assert!(client_packets(&p.take_client_events()).is_empty());
    assert_eq!(p.server.state(), SessionState::Established);
    let stats = stats_of(p.server.config(), "d");
    assert_eq!(stats.drops(DropReason::Policy), 1);
    assert_eq!(stats.decisions(Hook::Packet, Decision::Drop), 1);
}

#[test]
fn a_packet_verdict_can_close_the_session_with_a_code() {
    let filter = Scripted {
        packet: Some(PacketVerdict::Close(Refusal::Kicked)),
        ..scripted("c")
    };
    let closes = Arc::clone(&filter.closes);
    let mut p = connect(config_with(chain_of(filter)));
    send(&mut p, 5, 3, b"hi");
    assert_eq!(logout(&p.client_events), Some(LogoutCode::AdminKickOut));
    assert_eq!(
        closed_with(&p.server_events),
        Some(CloseReason::FilterClosed)
    );
    assert_eq!(*closes.lock().unwrap(), [(1, CloseReason::FilterClosed)]);
}

#[test]
fn a_rewrite_changes_what_the_backend_gets_and_later_filters_see_it() {
    #[derive(Debug)]
    struct Witness(Arc<Mutex<Vec<(i32, i32)>>>);
    impl Filter for Witness {
        type State = ();
        fn name(&self) -> &str {
            "witness"
        }
        fn hooks(&self) -> Hooks {
            Hooks::PACKET
        }
        fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
            Ok(Admit::Accept(()))
        }
        fn on_packet(
            &self,
            _: &mut (),
            _: &SessionView<'_>,
            p: &mut ClientPacket,
            _: Time,
        ) -> Result<PacketVerdict, FilterError> {
            self.0.lock().unwrap().push((p.module(), p.seq()));
            Ok(PacketVerdict::Pass)
        }
    }
    let witnessed = Arc::new(Mutex::new(Vec::new()));
    let mut chain = chain_of(Scripted {
        rewrite: true,
        ..scripted("rw")
    });
    chain.push(Witness(Arc::clone(&witnessed))).unwrap();
    let mut p = connect(config_with(chain));
    let index = send(&mut p, 5, 3, b"abc");
    let fwd = forwards(&p.take_server_events());
    assert_eq!(fwd.len(), 1);
    let m = &fwd[0].1;
    assert_eq!(
        (m.module, m.seq, m.index, &m.data[..]),
        (105, 6, index, &b"cba"[..])
    );
    assert_eq!(*witnessed.lock().unwrap(), [(105, 6)]);
    let stats = stats_of(p.server.config(), "rw");
    assert_eq!(stats.decisions(Hook::Packet, Decision::Rewrite), 1);
    assert_eq!(
        stats_of(p.server.config(), "witness").decisions(Hook::Packet, Decision::Pass),
        1
    );

    // The reply passes the rewrite hook too.
    p.server.handle_tunnel(
        p.now,
        fwd[0].0,
        TunnelMessage {
            data: Bytes::from_static(b"ok"),
            module: 105,
            seq: 6,
            index,
            obj: UID,
            ..Default::default()
        },
    );
    p.drive();
    let got = client_packets(&p.take_client_events());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].seq, &got[0].data[..]), (7, &b"ok!"[..]));
}

#[test]
fn a_filter_routes_a_module_to_another_tunnel_kind() {
    #[derive(Debug)]
    struct ToRoom;
    impl Filter for ToRoom {
        type State = ();
        fn name(&self) -> &str {
            "to_room"
        }
        fn hooks(&self) -> Hooks {
            Hooks::PACKET
        }
        fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
            Ok(Admit::Accept(()))
        }
        fn on_packet(
            &self,
            _: &mut (),
            _: &SessionView<'_>,
            p: &mut ClientPacket,
            _: Time,
        ) -> Result<PacketVerdict, FilterError> {
            if p.module() == 9 {
                p.route_to(TunnelKind::ROOM);
            }
            Ok(PacketVerdict::Pass)
        }
    }
    let mut p = connect(config_with(chain_of(ToRoom)));
    let index = p
        .client
        .send(
            p.now,
            Outgoing {
                module: 9,
                seq: 1,
                obj: 77,
                data: Bytes::from_static(b"x"),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    let events = p.take_server_events();
    let room = TunnelKey {
        kind: TunnelKind::ROOM,
        oid: 77,
    };
    assert_eq!(opened(&events), [room]);
    let fwd = forwards(&events);
    assert_eq!((fwd[0].1.module, fwd[0].1.index), (9, index));
}

#[test]
fn a_panicking_packet_hook_closes_only_that_session_and_is_counted() {
    let filter = Scripted {
        panic_on_packet: true,
        ..scripted("boom")
    };
    let closes = Arc::clone(&filter.closes);
    let config = Arc::new(config_with(chain_of(filter)));
    let mut a = Pair::new(
        Arc::clone(&config),
        &test_client_config(true, test_token(UID, t0(), 1)),
        t0(),
    );
    a.drive();
    let mut b = Pair::new(
        Arc::clone(&config),
        &test_client_config(true, test_token(UID, t0(), 2)),
        t0(),
    );
    b.drive();
    send(&mut a, 5, 3, b"hi");
    assert_eq!(logout(&a.client_events), Some(LogoutCode::Server));
    assert_eq!(
        closed_with(&a.server_events),
        Some(CloseReason::FilterFailed)
    );
    assert_eq!(b.server.state(), SessionState::Established);
    // The state a panic may have left half-updated is not handed to on_close.
    assert!(closes.lock().unwrap().is_empty());
    let stats = stats_of(&config, "boom");
    assert_eq!(stats.failures(), (0, 1));
    assert_eq!(stats.decisions(Hook::Packet, Decision::Failed), 1);
}

#[test]
fn a_panicking_handshake_hook_refuses_with_server() {
    let config = config_with(chain_of(Scripted {
        panic_on_handshake: true,
        ..scripted("boom")
    }));
    let p = connect(config);
    assert_eq!(logout(&p.client_events), Some(LogoutCode::Server));
    assert_eq!(
        closed_with(&p.server_events),
        Some(CloseReason::FilterFailed)
    );
    assert_eq!(stats_of(p.server.config(), "boom").failures(), (0, 1));
}

#[test]
fn a_bypassed_filter_fails_open_for_the_rest_of_the_session() {
    let filter = Scripted {
        error_on_packet: true,
        bypass: true,
        ..scripted("flaky")
    };
    let mut p = connect(config_with(chain_of(filter)));
    send(&mut p, 5, 3, b"1");
    send(&mut p, 5, 3, b"2");
    assert_eq!(forwards(&p.take_server_events()).len(), 2);
    assert_eq!(p.server.state(), SessionState::Established);
    let stats = stats_of(p.server.config(), "flaky");
    // Called once, then skipped.
    assert_eq!(stats.calls(Hook::Packet), 1);
    assert_eq!(stats.failures(), (1, 0));
}

#[test]
fn replies_can_be_dropped_and_sessions_closed_from_a_push() {
    let config = config_with(chain_of(Scripted {
        outbound: Some(OutboundVerdict::Drop(DropReason::Policy)),
        ..scripted("quiet")
    }));
    let mut p = connect(config);
    send(&mut p, 1, 2, b"x");
    let (tunnel, _) = forwards(&p.take_server_events())[0].clone();
    p.server.handle_tunnel(
        p.now,
        tunnel,
        TunnelMessage {
            data: Bytes::from_static(b"reply"),
            module: 1,
            seq: 2,
            index: 1,
            obj: UID,
            ..Default::default()
        },
    );
    p.drive();
    assert!(client_packets(&p.take_client_events()).is_empty());
    let push = PushPacket::encode(
        &PushBody {
            data: Bytes::from_static(b"p"),
            r#mod: 4,
            seq: 1,
            ..Default::default()
        },
        &test_server_config(true),
    )
    .unwrap();
    assert_eq!(p.server.push(p.now, &push), PushOutcome::Dropped);
    let stats = stats_of(p.server.config(), "quiet");
    assert_eq!(stats.drops(DropReason::Policy), 2);
    assert_eq!(stats.calls(Hook::Reply), 1);
    assert_eq!(stats.calls(Hook::Push), 1);

    let config = config_with(chain_of(Scripted {
        outbound: Some(OutboundVerdict::Close(Refusal::Kicked)),
        ..scripted("kick")
    }));
    let mut p = connect(config);
    assert_eq!(p.server.push(p.now, &push), PushOutcome::Dropped);
    p.drive();
    assert_eq!(logout(&p.client_events), Some(LogoutCode::AdminKickOut));
    assert_eq!(
        closed_with(&p.server_events),
        Some(CloseReason::FilterClosed)
    );
}

#[test]
fn a_rewritten_push_is_encoded_again_for_that_session_only() {
    let config = Arc::new(config_with(chain_of(Scripted {
        rewrite: true,
        ..scripted("stamp")
    })));
    let mut p = Pair::new(
        Arc::clone(&config),
        &test_client_config(true, test_token(UID, t0(), 1)),
        t0(),
    );
    p.drive();
    let push = PushPacket::encode(
        &PushBody {
            data: Bytes::from_static(b"news"),
            r#mod: 4,
            seq: 1,
            obj: 3,
            ..Default::default()
        },
        &config,
    )
    .unwrap();
    assert_eq!(p.server.push(p.now, &push), PushOutcome::Queued);
    p.drive();
    let got = client_packets(&p.take_client_events());
    assert_eq!(got.len(), 1);
    assert_eq!(
        (
            got[0].r#mod,
            got[0].seq,
            got[0].obj,
            got[0].index,
            &got[0].data[..]
        ),
        (4, 2, 3, 0, &b"news!"[..])
    );
    let stats = stats_of(&config, "stamp");
    assert_eq!(stats.decisions(Hook::Push, Decision::Rewrite), 1);
}

#[test]
fn close_hooks_get_the_state_and_the_reason() {
    let filter = scripted("count");
    let closes = Arc::clone(&filter.closes);
    let mut p = connect(config_with(chain_of(filter)));
    send(&mut p, 1, 2, b"a");
    send(&mut p, 1, 2, b"b");
    p.server.close(p.now, CloseReason::AdminKickOut);
    assert_eq!(*closes.lock().unwrap(), [(2, CloseReason::AdminKickOut)]);
    // Idle timeout, too.
    let filter = scripted("count");
    let closes = Arc::clone(&filter.closes);
    let mut p = connect(config_with(chain_of(filter)));
    p.advance(Duration::from_secs(3600));
    assert_eq!(*closes.lock().unwrap(), [(0, CloseReason::IdleTimeout)]);
}

#[test]
fn recheck_with_a_newer_chain_closes_a_live_session() {
    let mut p = connect(config_with(chain_of(scripted("old"))));
    assert!(p.server.recheck(p.now, &chain_of(scripted("fine"))));
    let newer = chain_of(Scripted {
        recheck: Some(Refusal::Banned),
        ..scripted("ban")
    });
    assert!(!p.server.recheck(p.now, &newer));
    p.drive();
    assert_eq!(logout(&p.client_events), Some(LogoutCode::Banned));
    assert_eq!(closed_with(&p.server_events), Some(CloseReason::Banned));
    let ban = newer.stats().pop().unwrap().1;
    assert_eq!(ban.decisions(Hook::Recheck, Decision::Close), 1);
}

#[test]
fn names_are_checked() {
    let mut chain = FilterChain::new();
    assert!(matches!(
        chain.push(scripted("Bad-Name")),
        Err(FilterConfigError::InvalidName { .. })
    ));
    assert!(matches!(
        chain.push(scripted("")),
        Err(FilterConfigError::InvalidName { .. })
    ));
    chain.push(scripted("ok")).unwrap();
    assert!(matches!(
        chain.push(scripted("ok")),
        Err(FilterConfigError::DuplicateName { .. })
    ));
    let names: Vec<&'static str> = (0..MAX_FILTERS)
        .map(|i| &*Box::leak(format!("f{i}").into_boxed_str()))
        .collect();
    let mut full = FilterChain::new();
    for name in names {
        full.push(scripted(name)).unwrap();
    }
    assert!(matches!(
        full.push(scripted("one_more")),
        Err(FilterConfigError::TooMany { .. })
    ));
}

#[derive(Debug, Default)]
struct Ticks(AtomicU64);

impl Stopwatch for Ticks {
    fn nanos(&self) -> u64 {
        self.0.fetch_add(1_000, Ordering::Relaxed)
    }
}

#[test]
fn time_is_sampled_and_counters_survive_a_reload() {
    let mut chain = chain_of(scripted("timed"));
    chain.set_stopwatch(Arc::new(Ticks::default()));
    let config = Arc::new(config_with(chain));
    let mut p = Pair::new(
        Arc::clone(&config),
        &test_client_config(true, test_token(UID, t0(), 1)),
        t0(),
    );
    p.drive();
    for _ in 0..(2 * TIMING_SAMPLE) {
        send(&mut p, 1, 2, b"a");
    }
    let stats = stats_of(&config, "timed");
    // The handshake and two of the 32 packets were timed, at 1 µs each.
    assert_eq!(stats.timing(), (3, 3_000));
    assert_eq!(stats.calls(Hook::Packet), u64::from(2 * TIMING_SAMPLE));

    let mut reloaded = chain_of(scripted("timed"));
    reloaded.carry_stats_from(&config.filters);
    let carried = reloaded.stats().pop().unwrap().1;
    assert!(Arc::ptr_eq(&carried, &stats));

    let mut out = String::new();
    render_metrics(&config.filters.stats(), &mut out);
    assert!(out.contains(
        "janus_filter_decisions_total{filter=\"timed\",hook=\"packet\",decision=\"pass\"} 32"
    ));
    assert!(out.contains("janus_filter_calls_total{filter=\"timed\",hook=\"handshake\"} 1"));
    assert!(out.contains("janus_filter_timed_seconds_total{filter=\"timed\"} 0.000003000"));
    assert!(out.contains("janus_filter_failures_total{filter=\"timed\",kind=\"panic\"} 0"));
}

#[test]
fn a_compressed_push_is_seen_uncompressed_and_sent_compressed_again() {
    let config = Arc::new(config_with(chain_of(Scripted {
        rewrite: true,
        ..scripted("stamp")
    })));
    let mut p = Pair::new(
        Arc::clone(&config),
        &test_client_config(true, test_token(UID, t0(), 1)),
        t0(),
    );
    p.drive();
    let big = vec![b'a'; 4 * config.session.compress_threshold];
    let push = PushPacket::encode(
        &PushBody {
            data: Bytes::from(big.clone()),
            r#mod: 4,
            seq: 1,
            ..Default::default()
        },
        &config,
    )
    .unwrap();
    assert!(push.is_compressed());
    let before = p.server_sent;
    assert_eq!(p.server.push(p.now, &push), PushOutcome::Queued);
    p.drive();
    let got = client_packets(&p.take_client_events());
    assert_eq!(got.len(), 1);
    let mut expected = big.clone();
    expected.push(b'!');
    assert_eq!(&got[0].data[..], &expected[..]);
    // Compressed on the wire: far smaller than the payload.
    assert!(p.server_sent - before < big.len() / 4);
}
