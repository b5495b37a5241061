//! Connection admission: who may open a connection, and which handshakes keep their slot.
//!
//! Three levers, each aimed at one attack and invisible to honest clients, however many share
//! an address (a carrier-grade NAT, a campus, an internet café: the Go gateway has no
//! per-address cap, and players behind one address must not be refused):
//!
//! * **A rate of new connections per address** (GCRA): a reconnect loop from one host is slowed
//!   down; a NAT's players, who connect once each, never notice.
//! * **Handshakes in progress per address**: one host cannot hold the handshake pool, however
//!   many connections it opens; an honest client finishes its handshake in one round trip.
//! * **A full pool evicts, it does not refuse**: when the gateway-wide cap on handshakes in
//!   progress is reached, the newcomer takes the slot of the handshake that has made the least
//!   progress (fewest bytes received per unit of time since it was admitted, among the least
//!   advanced; on a tie, from the address group with the most handshakes in progress, then the
//!   oldest). A slowloris that trickles bytes or
//!   sends nothing loses its slots to real clients, who send their whole handshake at once,
//!   instead of locking every player out until its deadline.
//!
//! Plus the caps that bound memory: connections in total and per address.

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{AddressGroup, Gcra, RateLimit};
use crate::Time;

/// Connections one gateway process holds, handshaking or established. Stops a connection flood
/// from exhausting memory and file descriptors; size it to the host (each session needs a few KiB
/// plus its socket buffers).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Connections from one [`AddressGroup`] (an IPv4 address or an IPv6 /64). Stops one host from
/// taking every slot, yet admits thousands of players behind one carrier-grade NAT.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: u32 = 4096;

/// IPv6 addresses sharing this many leading bits count as one address, in bits. A host is
/// normally handed a whole /64 and can use any of its 2^64 addresses to dodge a per-address limit.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// Connections still in the handshake at once. Stops handshake floods from exhausting CPU (each
/// costs an X25519 agreement, an Ed25519 verification and a token decryption); when it is full
/// the least advanced handshake is evicted for a newcomer.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// How many of the least advanced handshakes [`Admission`] looks at to choose whom a full pool
/// evicts (see `Admission::victim`).
pub const EVICTION_SCAN: usize = 64;

/// Handshakes in progress from one [`AddressGroup`]. Stops one host (a slowloris) from filling the
/// handshake pool; an honest client holds a slot for one round trip, so even a NAT's players
/// reconnecting together stay far below it.
pub const DEFAULT_MAX_HANDSHAKES_PER_ADDRESS: u32 = 32;

/// New connections per [`AddressGroup`]: 300 back to back, then 20 per second. Stops a reconnect
/// loop from one host (with the handshake pool turning over no faster than the hosts' combined
/// rate, a real client always has time to send its handshake); a NAT's players reconnecting
/// together after a gateway restart fit in the burst, and its steady trickle of logins in the
/// rate.
pub const DEFAULT_CONNECTION_RATE: RateLimit = RateLimit {
    per_second: 20,
    burst: 300,
};

/// Addresses whose connection rate is tracked at once. Bounds the rate table's memory; addresses
/// whose bucket has refilled are forgotten first, and beyond this a new address is not rate
/// limited (the total cap still holds).
pub const MAX_RATE_ENTRIES: usize = 65_536;

/// Limits of an [`Admission`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AdmissionConfig {
    /// Open connections in total ([`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Open connections per [`AddressGroup`] ([`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`]).
    pub max_connections_per_address: u32,
    /// Connections not yet through the handshake ([`DEFAULT_MAX_HANDSHAKES`]).
    pub max_handshakes: usize,
    /// Of those, from one [`AddressGroup`] ([`DEFAULT_MAX_HANDSHAKES_PER_ADDRESS`]).
    pub max_handshakes_per_address: u32,
    /// New connections per [`AddressGroup`] ([`DEFAULT_CONNECTION_RATE`]); `None`: no rate limit.
    pub connection_rate: Option<RateLimit>,
    /// IPv6 grouping prefix, bits, 0..=128 ([`DEFAULT_IPV6_PREFIX_LEN`]; larger values act as 128).
    pub ipv6_prefix_len: u8,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_address: DEFAULT_MAX_HANDSHAKES_PER_ADDRESS,
            connection_rate: Some(DEFAULT_CONNECTION_RATE),
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
    /// The client's address has as many handshakes in progress as it may.
    #[error("too many handshakes in progress from one address (max {max})")]
    TooManyHandshakesFromAddress {
        /// [`AdmissionConfig::max_handshakes_per_address`].
        max: u32,
    },
    /// The client's address opens connections faster than its rate.
    #[error("connecting too fast from one address")]
    ConnectingTooFast,
    /// No handshake slot can be had: the pool is full and holds nothing to evict (a pool of 0).
    #[error("too many concurrent handshakes (max {max})")]
    TooManyHandshakes {
        /// [`AdmissionConfig::max_handshakes`].
        max: usize,
    },
}

impl AdmissionError {
    /// A stable snake_case name, for metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::TooManyConnections { .. } => "max_connections",
            Self::TooManyFromAddress { .. } => "max_connections_per_address",
            Self::TooManyHandshakesFromAddress { .. } => "max_handshakes_per_address",
            Self::ConnectingTooFast => "connection_rate",
            Self::TooManyHandshakes { .. } => "max_handshakes",
        }
    }
}

/// An admitted connection's claim on the counters. Hand it back to [`Admission::release`] exactly
/// once when the connection ends; it is neither `Clone` nor `Copy`, so it cannot be released twice:
///
/// ```compile_fail,E0382
/// # use janus_core::{Time, limit::Admission};
/// let mut admission = Admission::default();
/// let admitted = admission.try_admit("192.0.2.1".parse().unwrap(), Time::EPOCH).unwrap().admitted;
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

    /// The connection's number in this [`Admission`] (what [`Admit::evict`] names).
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// A connection let in.
#[derive(Debug)]
#[must_use = "release the admission when the connection ends, and close the evicted one"]
pub struct Admit {
    /// The newcomer's claim.
    pub admitted: Admitted,
    /// A handshaking connection ([`Admitted::id`]) whose slot the newcomer took: close it now
    /// (`CloseReason::HandshakeEvicted`). Its connection slot stays counted until it is released.
    pub evict: Option<u64>,
}

/// Counters for metrics.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct AdmissionSnapshot {
    /// Open connections.
    pub connections: usize,
    /// Of which still handshaking (evicted ones excluded).
    pub handshakes: usize,
    /// Distinct address groups with open connections.
    pub addresses: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct PerAddress {
    connections: u32,
    handshakes: u32,
}

#[derive(Debug, Clone, Copy)]
struct Handshaking {
    group: AddressGroup,
    progress: u64,
    /// When it was admitted.
    since: Time,
}

/// Admission control for one gateway: decides at accept time whether a connection may start,
/// before any byte is read.
///
/// Call order: [`try_admit`](Self::try_admit) on accept (closing the connection it evicts, if
/// any); [`handshake_progress`](Self::handshake_progress) as handshake bytes arrive;
/// [`handshake_finished`](Self::handshake_finished) when the session is established (or gives up
/// on the handshake); [`release`](Self::release) when the connection closes. Every call is
/// idempotent for a connection whose handshake is over or was evicted. Memory is bounded by live
/// connections and [`MAX_RATE_ENTRIES`]; the maps are B-trees, whose cost cannot be driven up by
/// choosing addresses that collide.
#[derive(Debug, Default)]
pub struct Admission {
    config: AdmissionConfig,
    connections: usize,
    per_address: BTreeMap<AddressGroup, PerAddress>,
    /// Connections still handshaking, by id.
    handshaking: BTreeMap<u64, Handshaking>,
    /// The same, ordered by (progress, id): the first is the one to evict.
    by_progress: BTreeSet<(u64, u64)>,
    /// Connection rate per address.
    rates: BTreeMap<AddressGroup, Gcra>,
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
        if config.connection_rate != self.config.connection_rate {
            self.rates.clear();
        }
        self.config = config;
    }

    /// Counts a new connection from `ip` at `now`, which starts in the handshake; or refuses it.
    pub fn try_admit(&mut self, ip: IpAddr, now: Time) -> Result<Admit, AdmissionError> {
        let config = self.config;
        if self.connections >= config.max_connections {
            return Err(AdmissionError::TooManyConnections {
                max: config.max_connections,
            });
        }
        let group = AddressGroup::new(ip, config.ipv6_prefix_len);
        let from = self.per_address.get(&group).copied().unwrap_or_default();
        if from.connections >= config.max_connections_per_address {
            return Err(AdmissionError::TooManyFromAddress {
                max: config.max_connections_per_address,
            });
        }
        if from.handshakes >= config.max_handshakes_per_address {
            return Err(AdmissionError::TooManyHandshakesFromAddress {
                max: config.max_handshakes_per_address,
            });
        }
        let evict = if self.handshaking.len() >= config.max_handshakes {
            match self.victim(now) {
                Some(victim) => Some(victim),
                None => {
                    return Err(AdmissionError::TooManyHandshakes {
                        max: config.max_handshakes,
                    });
                }
            }
        } else {
            None
        };
        if let Some(rate) = config.connection_rate {
            self.check_rate(group, rate, now)?;
        }
        if let Some(victim) = evict {
            self.end_handshake(victim);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.connections = self.connections.saturating_add(1);
        let entry = self.per_address.entry(group).or_default();
        entry.connections = entry.connections.saturating_add(1);
        entry.handshakes = entry.handshakes.saturating_add(1);
        self.handshaking.insert(
            id,
            Handshaking {
                group,
                progress: 0,
                since: now,
            },
        );
        self.by_progress.insert((0, id));
        Ok(Admit {
            admitted: Admitted { id, group },
            evict,
        })
    }

    /// The handshake a full pool gives up for a newcomer: among the [`EVICTION_SCAN`] least
    /// advanced, the slowest, in bytes received per unit of time since it was admitted (a
    /// slowloris trickles; a player sends its whole handshake at once, but a connection admitted
    /// a moment ago may not have been read yet and has had no time to be slow); on a tie, one
    /// from the address group with the most handshakes in progress (a slowloris holds many per
    /// address, a player one), then the oldest.
    fn victim(&self, now: Time) -> Option<u64> {
        let shaking = |h: &Handshaking| self.per_address.get(&h.group).map_or(0, |a| a.handshakes);
        // (bytes + 1, age in ms + 1): compared as rates by cross-multiplying.
        let rate = |h: &Handshaking| {
            let age = now.saturating_since(h.since).as_millis();
            (u128::from(h.progress) + 1, age.saturating_add(1))
        };
        let mut best: Option<((u128, u128), u32, u64)> = None;
        for &(_, id) in self.by_progress.iter().take(EVICTION_SCAN) {
            let Some(h) = self.handshaking.get(&id) else {
                continue;
            };
            let candidate = (rate(h), shaking(h), id);
            let better = match &best {
                None => true,
                Some(((bytes, age), groups, _)) => {
                    let (c_bytes, c_age) = candidate.0;
                    // c_bytes / c_age < bytes / age  <=>  c_bytes * age < bytes * c_age
                    let (lhs, rhs) = (c_bytes.saturating_mul(*age), bytes.saturating_mul(c_age));
                    lhs < rhs || (lhs == rhs && candidate.1 > *groups)
                }
            };
            if better {
                best = Some(candidate);
            }
        }
        best.map(|(_, _, id)| id)
    }

    fn check_rate(
        &mut self,
        group: AddressGroup,
        rate: RateLimit,
        now: Time,
    ) -> Result<(), AdmissionError> {
        if !self.rates.contains_key(&group) && self.rates.len() >= MAX_RATE_ENTRIES {
            // Forget addresses whose bucket has refilled: they are exactly like new ones.
            self.rates.retain(|_, gcra| !gcra.is_full(now));
            if self.rates.len() >= MAX_RATE_ENTRIES {
                // Bounded memory wins: this address goes unmetered (the total caps still hold).
                return Ok(());
            }
        }
        self.rates
            .entry(group)
            .or_insert_with(|| Gcra::new(rate))
            .check(now)
            .map_err(|_| AdmissionError::ConnectingTooFast)
    }

    /// The connection has received `bytes_received` bytes in all (its handshake's progress, which
    /// decides who is evicted from a full pool). Ignored once its handshake is over.
    pub fn handshake_progress(&mut self, admitted: &Admitted, bytes_received: u64) {
        if let Some(h) = self.handshaking.get_mut(&admitted.id) {
            if bytes_received > h.progress {
                self.by_progress.remove(&(h.progress, admitted.id));
                h.progress = bytes_received;
                self.by_progress.insert((bytes_received, admitted.id));
            }
        }
    }

    /// The connection's handshake is over (it succeeded, or the connection is about to close).
    /// Counted once: later calls for the same connection do nothing.
    pub fn handshake_finished(&mut self, admitted: &Admitted) {
        self.end_handshake(admitted.id);
    }

    /// Whether connection `admitted` still holds a handshake slot (it was not evicted and has not
    /// finished).
    pub fn is_handshaking(&self, admitted: &Admitted) -> bool {
        self.handshaking.contains_key(&admitted.id)
    }

    fn end_handshake(&mut self, id: u64) {
        if let Some(h) = self.handshaking.remove(&id) {
            self.by_progress.remove(&(h.progress, id));
            if let Some(entry) = self.per_address.get_mut(&h.group) {
                entry.handshakes = entry.handshakes.saturating_sub(1);
            }
        }
    }

    /// The connection closed: gives back everything it held.
    pub fn release(&mut self, admitted: Admitted) {
        self.end_handshake(admitted.id);
        self.connections = self.connections.saturating_sub(1);
        if let Some(entry) = self.per_address.get_mut(&admitted.group) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
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
