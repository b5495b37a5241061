//! Address groups: the unit per-address limits count.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
};

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
