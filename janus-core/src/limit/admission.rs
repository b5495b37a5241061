//! Connection admission: global, per-address and handshake counters.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv6Addr},
};

/// Connections one gateway process holds, handshaking or established. Stops a connection flood
/// from exhausting memory and file descriptors; size it to the host (each session needs a few KiB
/// plus its socket buffers).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Connections from one [`AddressGroup`] (an IPv4 address or an IPv6 /64). Stops one host from
/// taking every slot; high enough for the players behind one NAT (cafés, carrier-grade NAT).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: u32 = 64;

/// IPv6 addresses sharing this many leading bits count as one address, in bits. A host is
/// normally handed a whole /64 and can use any of its 2^64 addresses to dodge a per-address limit.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// Connections still in the handshake at once. Stops handshake floods from exhausting CPU (each
/// costs an X25519 agreement, an Ed25519 verification and a token decryption) and unauthenticated
/// connections from crowding out players; each lasts at most the handshake timeout (10 s).
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// Limits of an [`Admission`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AdmissionConfig {
    /// Open connections in total ([`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Open connections per [`AddressGroup`] ([`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`]).
    pub max_connections_per_address: u32,
    /// Connections not yet through the handshake ([`DEFAULT_MAX_HANDSHAKES`]).
    pub max_handshakes: usize,
    /// IPv6 grouping prefix, bits, 0..=128 ([`DEFAULT_IPV6_PREFIX_LEN`]; larger values act as 128).
    pub ipv6_prefix_len: u8,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
        }
    }
}

/// Why a connection was refused. The adapter closes the socket without reading from it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The gateway is full.
    #[error("too many connections (max {max})")]
    TooManyConnections {
        /// [`AdmissionConfig::max_connections`].
        max: usize,
    },
    /// The client's address (group) already holds its share.
    #[error("too many connections from one address (max {max})")]
    TooManyFromAddress {
        /// [`AdmissionConfig::max_connections_per_address`].
        max: u32,
    },
    /// Too many connections are still handshaking.
    #[error("too many concurrent handshakes (max {max})")]
    TooManyHandshakes {
        /// [`AdmissionConfig::max_handshakes`].
        max: usize,
    },
}

/// The unit the per-address limit counts: an IPv4 address, or an IPv6 address cut to its prefix.
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack sockets) count as the IPv4
/// address; otherwise all of IPv4 would share one /64.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AddressGroup {
    /// The address with the host bits cleared.
    network: IpAddr,
    prefix_len: u8,
}

impl AddressGroup {
    /// The group of `ip`, IPv6 cut to `ipv6_prefix_len` bits (at most 128).
    pub fn new(ip: IpAddr, ipv6_prefix_len: u8) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressGroup {
                    network: IpAddr::V4(v4),
                    prefix_len: 32,
                },
                None => {
                    let prefix_len = ipv6_prefix_len.min(128);
                    let mask = u128::MAX
                        .checked_shl(128 - u32::from(prefix_len))
                        .unwrap_or(0);
                    let network = Ipv6Addr::from(u128::from(v6) & mask);
                    AddressGroup {
                        network: IpAddr::V6(network),
                        prefix_len,
                    }
                }
            },
            IpAddr::V4(_) => AddressGroup {
                network: ip,
                prefix_len: 32,
            },
        }
    }
}

impl fmt::Display for AddressGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.network {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{}", self.prefix_len),
        }
    }
}

/// An admitted connection's claim on the counters. Hand it back to [`Admission::release`] exactly
/// once when the connection ends; it is neither `Clone` nor `Copy`, so it cannot be released twice:
///
/// ```compile_fail,E0382
/// # use janus_core::limit::Admission;
/// let mut admission = Admission::default();
/// let admitted = admission.try_admit("192.0.2.1".parse().unwrap()).unwrap();
/// admission.release(admitted);
/// admission.release(admitted); // use of moved value
/// ```
#[derive(Debug)]
#[must_use = "release the admission when the connection ends"]
pub struct Admitted {
    id: u64,
    group: AddressGroup,
}

impl Admitted {
    /// The address group it counts against.
    pub fn address_group(&self) -> AddressGroup {
        self.group
    }
}

/// Counters for metrics.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct AdmissionSnapshot {
    /// Open connections.
    pub connections: usize,
    /// Of which still handshaking.
    pub handshakes: usize,
    /// Distinct address groups with open connections.
    pub addresses: usize,
}

/// Admission control for one listener (or one gateway): decides at accept time whether a
/// connection may start, before any byte is read.
///
/// Call order: [`try_admit`](Self::try_admit) on accept;
/// [`handshake_finished`](Self::handshake_finished) when the session is established (or gives up on
/// the handshake); [`release`](Self::release) when the connection closes. Memory is bounded by live
/// connections: a per-address entry goes when its last connection does. The maps are B-trees, whose
/// cost cannot be driven up by choosing addresses that collide.
#[derive(Debug, Default)]
pub struct Admission {
    config: AdmissionConfig,
    connections: usize,
    per_address: BTreeMap<AddressGroup, u32>,
    /// Ids of admitted connections still handshaking.
    handshaking: BTreeSet<u64>,
    next_id: u64,
}

impl Admission {
    /// Empty counters with these limits.
    pub fn new(config: AdmissionConfig) -> Self {
        Admission {
            config,
            ..Default::default()
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Changes the limits (configuration reload). Live connections stay; lower limits apply to
    /// the next admissions.
    pub fn set_config(&mut self, config: AdmissionConfig) {
        self.config = config;
    }

    /// Counts a new connection from `ip`, which starts in the handshake; or refuses it.
    pub fn try_admit(&mut self, ip: IpAddr) -> Result<Admitted, AdmissionError> {
        let config = &self.config;
        if self.connections >= config.max_connections {
            return Err(AdmissionError::TooManyConnections {
                max: config.max_connections,
            });
        }
        let group = AddressGroup::new(ip, config.ipv6_prefix_len);
        let from_address = self.per_address.get(&group).copied().unwrap_or(0);
        if from_address >= config.max_connections_per_address {
            return Err(AdmissionError::TooManyFromAddress {
                max: config.max_connections_per_address,
            });
        }
        if self.handshaking.len() >= config.max_handshakes {
            return Err(AdmissionError::TooManyHandshakes {
                max: config.max_handshakes,
            });
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.connections = self.connections.saturating_add(1);
        self.per_address
            .insert(group, from_address.saturating_add(1));
        self.handshaking.insert(id);
        Ok(Admitted { id, group })
    }

    /// The connection's handshake is over (it succeeded, or the connection is about to close).
    /// Counted once: later calls for the same connection do nothing.
    pub fn handshake_finished(&mut self, admitted: &Admitted) {
        self.handshaking.remove(&admitted.id);
    }

    /// The connection closed: gives back everything it held.
    pub fn release(&mut self, admitted: Admitted) {
        self.handshaking.remove(&admitted.id);
        self.connections = self.connections.saturating_sub(1);
        if let Some(count) = self.per_address.get_mut(&admitted.group) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&admitted.group);
            }
        }
    }

    /// Current counters.
    pub fn snapshot(&self) -> AdmissionSnapshot {
        AdmissionSnapshot {
            connections: self.connections,
            handshakes: self.handshaking.len(),
            addresses: self.per_address.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn small() -> AdmissionConfig {
        AdmissionConfig {
            max_connections: 5,
            max_connections_per_address: 2,
            max_handshakes: 3,
            ..Default::default()
        }
    }

    #[test]
    fn each_limit_refuses_with_its_own_error() {
        let mut admission = Admission::new(small());
        let a1 = admission.try_admit(ip("192.0.2.1")).unwrap();
        let a2 = admission.try_admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            admission.try_admit(ip("192.0.2.1")).unwrap_err(),
            AdmissionError::TooManyFromAddress { max: 2 }
        );
        let b1 = admission.try_admit(ip("192.0.2.2")).unwrap();
        assert_eq!(
            admission.try_admit(ip("192.0.2.3")).unwrap_err(),
            AdmissionError::TooManyHandshakes { max: 3 }
        );
        for a in [&a1, &a2, &b1] {
            admission.handshake_finished(a);
        }
        let c1 = admission.try_admit(ip("192.0.2.3")).unwrap();
        let d1 = admission.try_admit(ip("192.0.2.4")).unwrap();
        assert_eq!(
            admission.try_admit(ip("192.0.2.5")).unwrap_err(),
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
        let a = admission.try_admit(ip("192.0.2.1")).unwrap();
        let b = admission.try_admit(ip("192.0.2.2")).unwrap();
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
        let a = admission.try_admit(ip("2001:db8:1:2::1")).unwrap();
        let _b = admission
            .try_admit(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .unwrap();
        assert_eq!(
            admission
                .try_admit(ip("2001:db8:1:2:dead:beef::"))
                .unwrap_err(),
            AdmissionError::TooManyFromAddress { max: 2 }
        );
        let _other = admission.try_admit(ip("2001:db8:1:3::1")).unwrap();
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
        let a = admission.try_admit(ip("192.0.2.1")).unwrap();
        admission.set_config(AdmissionConfig {
            max_connections: 0,
            ..small()
        });
        assert_eq!(
            admission.try_admit(ip("192.0.2.2")).unwrap_err(),
            AdmissionError::TooManyConnections { max: 0 }
        );
        admission.release(a);
        assert_eq!(admission.snapshot(), AdmissionSnapshot::default());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Admit(u8),
        Finish(usize),
        Release(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            3 => (0u8..6).prop_map(Op::Admit),
            1 => any::<usize>().prop_map(Op::Finish),
            2 => any::<usize>().prop_map(Op::Release),
        ];
        proptest::collection::vec(op, 0..300)
    }

    proptest! {
        /// Against a model: counters equal the live tokens, limits hold, nothing leaks.
        #[test]
        fn counters_track_live_connections(ops in ops()) {
            let config = AdmissionConfig {
                max_connections: 12,
                max_connections_per_address: 3,
                max_handshakes: 5,
                ..Default::default()
            };
            let mut admission = Admission::new(config);
            // (token, address index, handshaking)
            let mut live: Vec<(Admitted, u8, bool)> = Vec::new();
            for op in ops {
                match op {
                    Op::Admit(host) => {
                        // Hosts 4 and 5 share a /64.
                        let addr = match host {
                            0..=3 => ip(&format!("198.51.100.{host}")),
                            _ => ip(&format!("2001:db8::{host}")),
                        };
                        let group = if host >= 4 { 4 } else { host };
                        let from_group = live.iter().filter(|(_, g, _)| *g == group).count();
                        let handshaking = live.iter().filter(|(_, _, h)| *h).count();
                        match admission.try_admit(addr) {
                            Ok(token) => {
                                prop_assert!(live.len() < 12 && from_group < 3 && handshaking < 5);
                                live.push((token, group, true));
                            }
                            Err(AdmissionError::TooManyConnections { .. }) => {
                                prop_assert_eq!(live.len(), 12)
                            }
                            Err(AdmissionError::TooManyFromAddress { .. }) => {
                                prop_assert_eq!(from_group, 3)
                            }
                            Err(AdmissionError::TooManyHandshakes { .. }) => {
                                prop_assert_eq!(handshaking, 5)
                            }
                        }
                    }
                    Op::Finish(i) if !live.is_empty() => {
                        let len = live.len();
                        let entry = &mut live[i % len];
                        admission.handshake_finished(&entry.0);
                        entry.2 = false;
                    }
                    Op::Release(i) if !live.is_empty() => {
                        let (token, _, _) = live.swap_remove(i % live.len());
                        admission.release(token);
                    }
                    Op::Finish(_) | Op::Release(_) => {}
                }
                let mut groups: Vec<u8> = live.iter().map(|(_, g, _)| *g).collect();
                groups.sort_unstable();
                groups.dedup();
                prop_assert_eq!(admission.snapshot(), AdmissionSnapshot {
                    connections: live.len(),
                    handshakes: live.iter().filter(|(_, _, h)| *h).count(),
                    addresses: groups.len(),
                });
            }
            for (token, _, _) in live {
                admission.release(token);
            }
            prop_assert_eq!(admission.snapshot(), AdmissionSnapshot::default());
        }
    }
}
