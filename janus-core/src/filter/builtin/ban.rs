//! `ban`: banned accounts and client addresses.
//!
//! The wire protocol carries no device id (spec §2.3: `CSHandshake` has a key, a signature, the
//! token, a server id and a timestamp), so a "device" ban is a ban of the client's address or
//! network, as the gateway sees it (after a PROXY header, if any). A custom filter can key bans
//! on anything else a game puts in its requests.

use std::{
    collections::HashSet,
    fmt,
    net::IpAddr,
    str::FromStr,
    sync::{Arc, RwLock},
};

use crate::{
    Time,
    filter::{Admit, Filter, FilterError, Hooks, Refusal, SessionView},
};

/// An IPv4 or IPv6 network: `203.0.113.7` (one address), `198.51.100.0/24`, `2001:db8::/32`.
/// IPv4-mapped IPv6 client addresses (`::ffff:a.b.c.d`, from dual-stack sockets) match IPv4
/// networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix_len: u8,
}

/// A network that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (a.b.c.d, a.b.c.d/n, an IPv6 address or prefix)")]
pub struct InvalidNetwork(String);

impl IpNetwork {
    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidNetwork(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| invalid())?,
            None => max,
        };
        if prefix_len > max {
            return Err(invalid());
        }
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Banned uids that an adapter keeps up to date from outside (a Redis set, an admin API), read
/// by the [`Ban`] filter without waiting: the *cached decision* pattern of the
/// [filter manual](crate::filter#decisions-that-need-io). Cloning shares it. The adapter
/// [`replace`](Self::replace)s the whole set after each successful lookup and asks live
/// sessions to recheck when it changed; a failed lookup keeps the last set.
#[derive(Clone, Debug, Default)]
pub struct BanFeed(Arc<RwLock<Arc<HashSet<i64>>>>);

impl BanFeed {
    /// Installs `uids` as the banned set; returns whether it differs from the previous one.
    pub fn replace(&self, uids: HashSet<i64>) -> bool {
        let mut current = self.0.write().unwrap_or_else(|p| p.into_inner());
        if **current == uids {
            return false;
        }
        *current = Arc::new(uids);
        true
    }

    /// Whether `uid` is in the set.
    pub fn contains(&self, uid: i64) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&uid)
    }

    /// How many uids the set holds.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Refuses (`SCServerLogout{Banned}`, [`CloseReason::Banned`](crate::CloseReason::Banned))
/// sessions whose uid is banned, or whose client address is in a banned network. Checked at the
/// handshake, and again for every live session when the adapter asks after a reload or a feed
/// update ([`Filter::recheck`]), so a ban takes effect on players already online.
#[derive(Clone, Debug, Default)]
pub struct Ban {
    uids: HashSet<i64>,
    networks: Vec<IpNetwork>,
    feed: Option<BanFeed>,
}

impl Ban {
    /// Bans `uids` and `networks`, and whatever `feed` holds.
    pub fn new(
        uids: impl IntoIterator<Item = i64>,
        networks: Vec<IpNetwork>,
        feed: Option<BanFeed>,
    ) -> Self {
        Self {
            uids: uids.into_iter().collect(),
            networks,
            feed,
        }
    }

    /// Whether a session of `uid` from `ip` is banned.
    pub fn bans(&self, uid: i64, ip: IpAddr) -> bool {
        self.uids.contains(&uid)
            || self.feed.as_ref().is_some_and(|f| f.contains(uid))
            || self.networks.iter().any(|n| n.contains(ip))
    }
}

impl Filter for Ban {
    type State = ();

    fn name(&self) -> &str {
        "ban"
    }

    fn hooks(&self) -> Hooks {
        Hooks::RECHECK
    }

    fn on_handshake(&self, s: &SessionView<'_>, _: Time) -> Result<Admit<()>, FilterError> {
        Ok(if self.bans(s.uid(), s.peer().ip()) {
            Admit::Refuse(Refusal::Banned)
        } else {
            Admit::Accept(())
        })
    }

    fn recheck(&self, s: &SessionView<'_>, _: Time) -> Option<Refusal> {
        self.bans(s.uid(), s.peer().ip()).then_some(Refusal::Banned)
    }
}
