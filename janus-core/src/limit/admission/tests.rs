//! Admission against each of its limits, and against a model.

use super::*;
use crate::Time;
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn small() -> AdmissionConfig {
    AdmissionConfig {
        max_connections: 5,
        max_connections_per_address: 2,
        max_handshakes: 3,
        max_handshakes_per_address: 2,
        connection_rate: None,
        ..Default::default()
    }
}

const T0: Time = Time::from_unix_millis(1_700_000_000_000);

fn admit(admission: &mut Admission, addr: &str) -> Admitted {
    let admit = admission.try_admit(ip(addr), T0).unwrap();
    assert_eq!(admit.evict, None);
    admit.admitted
}

fn refuse(admission: &mut Admission, addr: &str) -> AdmissionError {
    admission.try_admit(ip(addr), T0).unwrap_err()
}

#[test]
fn each_limit_refuses_with_its_own_error() {
    let mut admission = Admission::new(small());
    let a1 = admit(&mut admission, "192.0.2.1");
    let a2 = admit(&mut admission, "192.0.2.1");
    assert_eq!(
        refuse(&mut admission, "192.0.2.1"),
        AdmissionError::TooManyFromAddress { max: 2 }
    );
    let b1 = admit(&mut admission, "192.0.2.2");
    for a in [&a1, &a2, &b1] {
        admission.handshake_finished(a);
    }
    let c1 = admit(&mut admission, "192.0.2.3");
    let d1 = admit(&mut admission, "192.0.2.4");
    assert_eq!(
        refuse(&mut admission, "192.0.2.5"),
        AdmissionError::TooManyConnections { max: 5 }
    );
    assert_eq!(
        admission.snapshot(),
        AdmissionSnapshot {
            connections: 5,
            handshakes: 2,
            addresses: 4
        }
    );
    for a in [a1, a2, b1, c1, d1] {
        admission.release(a);
    }
    assert_eq!(admission.snapshot(), AdmissionSnapshot::default());
    assert!(admission.per_address.is_empty());
}

#[test]
fn handshake_is_counted_once() {
    let mut admission = Admission::new(small());
    let a = admit(&mut admission, "192.0.2.1");
    let b = admit(&mut admission, "192.0.2.2");
    admission.handshake_finished(&a);
    admission.handshake_finished(&a);
    assert_eq!(admission.snapshot().handshakes, 1, "b is still handshaking");
    admission.release(a);
    admission.release(b);
    assert_eq!(admission.snapshot(), AdmissionSnapshot::default());
}

#[test]
fn ipv6_hosts_are_grouped_by_prefix() {
    let mut admission = Admission::new(small());
    let a = admit(&mut admission, "2001:db8:1:2::1");
    let _b = admit(&mut admission, "2001:db8:1:2:ffff:ffff:ffff:ffff");
    assert_eq!(
        refuse(&mut admission, "2001:db8:1:2:dead:beef::"),
        AdmissionError::TooManyFromAddress { max: 2 }
    );
    let _other = admit(&mut admission, "2001:db8:1:3::1");
    assert_eq!(a.address_group().to_string(), "2001:db8:1:2::/64");
}

#[test]
fn ipv4_mapped_addresses_count_as_ipv4() {
    let mapped = AddressGroup::new(ip("::ffff:192.0.2.1"), 64);
    assert_eq!(mapped, AddressGroup::new(ip("192.0.2.1"), 64));
    assert_ne!(mapped, AddressGroup::new(ip("::ffff:192.0.2.2"), 64));
    assert_eq!(mapped.to_string(), "192.0.2.1");
}

#[test]
fn prefix_lengths_at_the_edges() {
    let a = ip("2001:db8::1");
    let b = ip("fe80::1");
    assert_eq!(AddressGroup::new(a, 0), AddressGroup::new(b, 0));
    assert_ne!(
        AddressGroup::new(a, 128),
        AddressGroup::new(ip("2001:db8::2"), 128)
    );
    assert_eq!(AddressGroup::new(a, 200), AddressGroup::new(a, 128));
    assert_eq!(AddressGroup::new(a, 200).to_string(), "2001:db8::1/128");
}

#[test]
fn lowering_limits_keeps_live_connections() {
    let mut admission = Admission::new(small());
    let a = admit(&mut admission, "192.0.2.1");
    admission.set_config(AdmissionConfig {
        max_connections: 0,
        ..small()
    });
    assert_eq!(
        refuse(&mut admission, "192.0.2.2"),
        AdmissionError::TooManyConnections { max: 0 }
    );
    admission.release(a);
    assert_eq!(admission.snapshot(), AdmissionSnapshot::default());
}

#[test]
fn among_equally_advanced_handshakes_a_full_pool_evicts_from_the_busiest_address() {
    let mut admission = Admission::new(AdmissionConfig {
        max_connections: 10,
        max_handshakes: 3,
        ..small()
    });
    // A player connects first; its bytes have not been read yet when an attacker's two
    // connections arrive and a newcomer finds the pool full.
    let player = admit(&mut admission, "192.0.2.1");
    let attacker = admit(&mut admission, "198.51.100.7");
    let _attacker2 = admit(&mut admission, "198.51.100.7");
    let admit = admission.try_admit(ip("192.0.2.9"), T0).unwrap();
    assert_eq!(
        admit.evict,
        Some(attacker.id()),
        "the oldest of the busiest address"
    );
    assert!(admission.is_handshaking(&player));
}

#[test]
fn a_full_pool_evicts_the_least_advanced_handshake() {
    let mut admission = Admission::new(AdmissionConfig {
        max_connections: 10,
        max_handshakes: 3,
        ..small()
    });
    let slow = admit(&mut admission, "192.0.2.1");
    let trickle = admit(&mut admission, "192.0.2.2");
    let quick = admit(&mut admission, "192.0.2.3");
    admission.handshake_progress(&trickle, 1);
    admission.handshake_progress(&quick, 180);
    // The pool is full: the newcomer takes the slot of the one that sent nothing.
    let admit = admission.try_admit(ip("192.0.2.4"), T0).unwrap();
    assert_eq!(admit.evict, Some(slow.id()));
    assert!(!admission.is_handshaking(&slow));
    // The newcomer sends its whole handshake at once; the next newcomer takes the slot of the
    // one that trickled a byte, not of those that sent theirs.
    admission.handshake_progress(&admit.admitted, 190);
    let next = admission.try_admit(ip("192.0.2.5"), T0).unwrap();
    assert_eq!(next.evict, Some(trickle.id()));
    // Among equals (nothing received yet), the oldest goes first: here the previous newcomer.
    let third = admission.try_admit(ip("192.0.2.6"), T0).unwrap();
    assert_eq!(third.evict, Some(next.admitted.id()));
    assert_eq!(admission.snapshot().handshakes, 3);
    assert_eq!(
        admission.snapshot().connections,
        6,
        "evicted connections hold their connection slot until released"
    );
    // Releasing an evicted connection, or finishing its handshake, is harmless.
    admission.handshake_finished(&slow);
    admission.handshake_progress(&slow, 500);
    for a in [
        slow,
        trickle,
        quick,
        admit.admitted,
        next.admitted,
        third.admitted,
    ] {
        admission.release(a);
    }
    assert_eq!(admission.snapshot(), AdmissionSnapshot::default());
}

#[test]
fn one_address_cannot_hold_the_handshake_pool() {
    let mut admission = Admission::new(AdmissionConfig {
        max_connections_per_address: 100,
        max_handshakes: 10,
        max_handshakes_per_address: 3,
        ..small()
    });
    let mut held: Vec<Admitted> = (0..3)
        .map(|_| admit(&mut admission, "203.0.113.9"))
        .collect();
    assert_eq!(
        refuse(&mut admission, "203.0.113.9"),
        AdmissionError::TooManyHandshakesFromAddress { max: 3 }
    );
    // A finished handshake frees its address's share: established sessions do not count.
    admission.handshake_finished(&held[0]);
    held.push(admit(&mut admission, "203.0.113.9"));
    // Other addresses are unaffected.
    held.push(admit(&mut admission, "198.51.100.1"));
    for a in held {
        admission.release(a);
    }
    assert_eq!(admission.snapshot(), AdmissionSnapshot::default());
}

#[test]
fn a_nat_of_thousands_is_admitted_by_default_and_a_reconnect_loop_is_slowed() {
    let mut admission = Admission::default();
    let mut now = T0;
    let mut live = Vec::new();
    // 3,000 players behind one address: 300 at once (a gateway restart), then one every 60 ms.
    for i in 0..3_000u64 {
        now = Time::from_unix_millis(T0.unix_millis() + i.saturating_sub(299) * 60);
        let admit = admission.try_admit(ip("100.64.0.1"), now).unwrap();
        admission.handshake_finished(&admit.admitted);
        live.push(admit.admitted);
    }
    assert_eq!(admission.snapshot().connections, 3_000);
    // One host reconnecting in a tight loop: the burst passes, then the rate holds it.
    let mut admitted = 0;
    let mut refused = 0;
    for _ in 0..1_000 {
        match admission.try_admit(ip("192.0.2.66"), now) {
            Ok(admit) => {
                admitted += 1;
                admission.release(admit.admitted);
            }
            Err(AdmissionError::ConnectingTooFast) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(admitted, DEFAULT_CONNECTION_RATE.burst);
    assert_eq!(refused, 1_000 - DEFAULT_CONNECTION_RATE.burst);
    // A second later, the sustained rate's worth more.
    let later = Time::from_unix_millis(now.unix_millis() + 1_000);
    let passed = (0..200)
        .filter(|_| match admission.try_admit(ip("192.0.2.66"), later) {
            Ok(admit) => {
                admission.release(admit.admitted);
                true
            }
            Err(_) => false,
        })
        .count();
    assert_eq!(passed, DEFAULT_CONNECTION_RATE.per_second as usize);
    for a in live {
        admission.release(a);
    }
}

#[test]
fn the_rate_table_is_bounded() {
    let mut admission = Admission::new(AdmissionConfig {
        connection_rate: Some(RateLimit {
            per_second: 1,
            burst: 1,
        }),
        ..AdmissionConfig::default()
    });
    // More distinct addresses than the table holds, each connecting once.
    for i in 0..(MAX_RATE_ENTRIES as u32 + 10) {
        let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let admit = admission.try_admit(addr, T0).unwrap();
        admission.release(admit.admitted);
    }
    assert!(admission.rates.len() <= MAX_RATE_ENTRIES);
    // Once their buckets refill, old entries are forgotten to make room.
    let later = Time::from_unix_millis(T0.unix_millis() + 2_000);
    let admit = admission.try_admit(ip("192.0.2.200"), later).unwrap();
    admission.release(admit.admitted);
    assert!(admission.rates.len() < 100, "{}", admission.rates.len());
}

#[derive(Clone, Debug)]
enum Op {
    Admit(u8),
    Progress(usize, u16),
    Finish(usize),
    Release(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0u8..6).prop_map(Op::Admit),
        1 => (any::<usize>(), any::<u16>()).prop_map(|(i, b)| Op::Progress(i, b)),
        1 => any::<usize>().prop_map(Op::Finish),
        2 => any::<usize>().prop_map(Op::Release),
    ];
    proptest::collection::vec(op, 0..300)
}

/// One live connection in the model: its token, address group, whether it holds a handshake
/// slot, and the bytes it has received.
struct Live {
    token: Admitted,
    group: u8,
    handshaking: bool,
    progress: u64,
}

proptest! {
    /// Against a model: counters equal the live tokens, limits hold, a full pool evicts exactly
    /// the least advanced (then oldest) handshake, nothing leaks.
    #[test]
    fn counters_track_live_connections(ops in ops()) {
        let config = AdmissionConfig {
            max_connections: 12,
            max_connections_per_address: 4,
            max_handshakes: 5,
            max_handshakes_per_address: 3,
            connection_rate: None,
            ..Default::default()
        };
        let mut admission = Admission::new(config);
        let mut live: Vec<Live> = Vec::new();
        for op in ops {
            match op {
                Op::Admit(host) => {
                    // Hosts 4 and 5 share a /64.
                    let addr = match host {
                        0..=3 => ip(&format!("198.51.100.{host}")),
                        _ => ip(&format!("2001:db8::{host}")),
                    };
                    let group = if host >= 4 { 4 } else { host };
                    let from_group = live.iter().filter(|l| l.group == group).count();
                    let shaking_group = live.iter().filter(|l| l.group == group && l.handshaking).count();
                    let shaking = live.iter().filter(|l| l.handshaking).count();
                    match admission.try_admit(addr, T0) {
                        Ok(admit) => {
                            prop_assert!(live.len() < 12 && from_group < 4 && shaking_group < 3);
                            // The least advanced; among those, the one whose group has the
                            // most handshakes in progress; then the oldest.
                            let least = live.iter().filter(|l| l.handshaking).map(|l| l.progress).min();
                            let group_shaking = |g: u8| live.iter().filter(|l| l.group == g && l.handshaking).count();
                            let expected_victim = live
                                .iter()
                                .filter(|l| l.handshaking && Some(l.progress) == least)
                                .min_by_key(|l| (std::cmp::Reverse(group_shaking(l.group)), l.token.id()))
                                .map(|l| l.token.id());
                            if shaking >= 5 {
                                prop_assert_eq!(admit.evict, expected_victim);
                            } else {
                                prop_assert_eq!(admit.evict, None);
                            }
                            if let Some(victim) = admit.evict {
                                for l in live.iter_mut().filter(|l| l.token.id() == victim) {
                                    l.handshaking = false;
                                }
                            }
                            live.push(Live { token: admit.admitted, group, handshaking: true, progress: 0 });
                        }
                        Err(AdmissionError::TooManyConnections { .. }) => prop_assert_eq!(live.len(), 12),
                        Err(AdmissionError::TooManyFromAddress { .. }) => prop_assert_eq!(from_group, 4),
                        Err(AdmissionError::TooManyHandshakesFromAddress { .. }) => prop_assert_eq!(shaking_group, 3),
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Op::Progress(i, bytes) if !live.is_empty() => {
                    let len = live.len();
                    let l = &mut live[i % len];
                    admission.handshake_progress(&l.token, u64::from(bytes));
                    if l.handshaking {
                        l.progress = l.progress.max(u64::from(bytes));
                    }
                }
                Op::Finish(i) if !live.is_empty() => {
                    let len = live.len();
                    let l = &mut live[i % len];
                    admission.handshake_finished(&l.token);
                    l.handshaking = false;
                }
                Op::Release(i) if !live.is_empty() => {
                    let l = live.swap_remove(i % live.len());
                    admission.release(l.token);
                }
                Op::Progress(..) | Op::Finish(_) | Op::Release(_) => {}
            }
            let mut groups: Vec<u8> = live.iter().map(|l| l.group).collect();
            groups.sort_unstable();
            groups.dedup();
            prop_assert_eq!(admission.snapshot(), AdmissionSnapshot {
                connections: live.len(),
                handshakes: live.iter().filter(|l| l.handshaking).count(),
                addresses: groups.len(),
            });
        }
        for l in live {
            admission.release(l.token);
        }
        prop_assert_eq!(admission.snapshot(), AdmissionSnapshot::default());
    }
}
