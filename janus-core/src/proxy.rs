//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that an L4 load balancer puts in
//! front of a client's bytes, so the gateway learns the client's real address.
//!
//! [`parse`] takes the first bytes of a connection, in any split, and says whether more are
//! needed, what the header says and how long it is; the bytes after it are the client's. It
//! never reads past the header and never reserves memory for a length it has not seen.
//!
//! * v1: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or `TCP6`, or `UNKNOWN ...`), at most
//!   [`V1_MAX_LEN`] bytes;
//! * v2: the 12-byte signature, version/command, family/protocol, a big-endian length, then the
//!   addresses and TLVs (ignored). `LOCAL` (a load balancer's own health check) and `UNSPEC`
//!   carry no client address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 header, CRLF included (the spec's limit).
pub const V1_MAX_LEN: usize = 107;
/// Longest v2 header accepted, bytes: 16 fixed, the addresses and some TLVs (cloud load balancers
/// add a few dozen bytes). A longer one is refused rather than buffered.
pub const V2_MAX_LEN: usize = 16 + 1024;
/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied client connection from `source` to `destination`.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// The address the client dialled.
        destination: SocketAddr,
    },
    /// No client address: v2 `LOCAL` (the proxy's own connection, e.g. a health check), v2
    /// `UNSPEC`, or v1 `UNKNOWN`. The socket's peer address stands.
    Local,
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// Neither `PROXY ` nor the v2 signature: the client spoke first (no proxy in front).
    #[error("no PROXY protocol header")]
    Missing,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 header: {0}")]
    MalformedV1(&'static str),
    /// A v2 header with a bad version, command, family or length.
    #[error("malformed PROXY v2 header: {0}")]
    MalformedV2(&'static str),
    /// Longer than [`V1_MAX_LEN`] or [`V2_MAX_LEN`].
    #[error("PROXY header longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
}

/// Parses a header at the start of `buf`. `Ok(None)`: a prefix of a valid header, read more;
/// `Ok(Some((header, len)))`: the header is the first `len` bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    const V1_PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(V1_PREFIX.len());
    if buf.get(..n) == V1_PREFIX.get(..n) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(None)
        } else {
            parse_v1(buf)
        };
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf.get(..n) == V2_SIGNATURE.get(..n) {
        return parse_v2(buf);
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = buf.get(..buf.len().min(V1_MAX_LEN)).unwrap_or(buf);
    let Some(cr) = window.iter().position(|b| *b == b'\r') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::TooLong { max: V1_MAX_LEN })
        } else {
            Ok(None)
        };
    };
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::MalformedV1("CR not followed by LF")),
    }
    let line = std::str::from_utf8(buf.get(..cr).unwrap_or_default())
        .map_err(|_| ProxyError::MalformedV1("not ASCII"))?;
    let mut parts = line.split(' ');
    let _proxy = parts.next();
    let header = match parts.next() {
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut field = || parts.next().ok_or(ProxyError::MalformedV1("missing field"));
            let (src, dst, sport, dport) = (field()?, field()?, field()?, field()?);
            if parts.next().is_some() {
                return Err(ProxyError::MalformedV1("trailing fields"));
            }
            let ip = |s: &str| -> Result<IpAddr, ProxyError> {
                let ip: IpAddr = if family == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                }
                .map_err(|_| ProxyError::MalformedV1("bad address"))?;
                Ok(ip)
            };
            let port = |s: &str| -> Result<u16, ProxyError> {
                // The spec forbids leading zeros and signs; `parse` would accept `+1` and `01`.
                if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ProxyError::MalformedV1("bad port"));
                }
                if s.len() > 1 && s.starts_with('0') {
                    return Err(ProxyError::MalformedV1("bad port"));
                }
                s.parse().map_err(|_| ProxyError::MalformedV1("bad port"))
            };
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(ProxyError::MalformedV1("unknown protocol family")),
    };
    Ok(Some((header, cr + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(None);
    };
    let byte = |i: usize| fixed.get(i).copied().unwrap_or(0);
    let version_command = byte(12);
    let family_protocol = byte(13);
    let len = usize::from(u16::from_be_bytes([byte(14), byte(15)]));
    if version_command >> 4 != 2 {
        return Err(ProxyError::MalformedV2("version is not 2"));
    }
    if 16 + len > V2_MAX_LEN {
        return Err(ProxyError::TooLong { max: V2_MAX_LEN });
    }
    let Some(body) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    let total = 16 + len;
    match version_command & 0x0f {
        0 => return Ok(Some((ProxyHeader::Local, total))),
        1 => {}
        _ => return Err(ProxyError::MalformedV2("unknown command")),
    }
    let at = |i: usize| body.get(i).copied().unwrap_or(0);
    let port = |i: usize| u16::from_be_bytes([at(i), at(i + 1)]);
    let header = match family_protocol >> 4 {
        0 => ProxyHeader::Local,
        // AF_INET: src 4, dst 4, sport 2, dport 2.
        1 => {
            if body.len() < 12 {
                return Err(ProxyError::MalformedV2("short IPv4 address block"));
            }
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(at(i), at(i + 1), at(i + 2), at(i + 3)));
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            }
        }
        // AF_INET6: src 16, dst 16, sport 2, dport 2.
        2 => {
            if body.len() < 36 {
                return Err(ProxyError::MalformedV2("short IPv6 address block"));
            }
            let ip = |i: usize| {
                let mut octets = [0u8; 16];
                for (k, o) in octets.iter_mut().enumerate() {
                    *o = at(i + k);
                }
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            }
        }
        // AF_UNIX carries paths, not client addresses.
        3 => ProxyHeader::Local,
        _ => return Err(ProxyError::MalformedV2("unknown address family")),
    };
    Ok(Some((header, total)))
}

/// A v2 `PROXY` header for a TCP connection from `source` to `destination` (tests, tools).
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_headers_parse_in_any_split_and_stop_at_crlf() {
        let text = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 7001\r\nclient bytes";
        for split in 0..text.len() {
            let got = parse(&text[..split]).unwrap();
            if split < 46 {
                assert_eq!(got, None, "split {split}");
            }
        }
        let (header, len) = parse(text).unwrap().unwrap();
        assert_eq!(len, 46);
        assert_eq!(
            header,
            ProxyHeader::Proxied {
                source: addr("192.0.2.7:56324"),
                destination: addr("198.51.100.1:7001"),
            }
        );
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert!(matches!(
            parse(v6).unwrap().unwrap().0,
            ProxyHeader::Proxied { source, .. } if source == addr("[2001:db8::1]:1")
        ));
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap(),
            Some((ProxyHeader::Local, 35))
        );
    }

    #[test]
    fn v1_errors_are_named() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::MalformedV1(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(&[b'P'; 200]),
            Err(ProxyError::Missing),
            "not the prefix"
        );
        let mut long = b"PROXY ".to_vec();
        long.extend_from_slice(&[b'A'; 200]);
        assert_eq!(parse(&long), Err(ProxyError::TooLong { max: V1_MAX_LEN }));
        assert_eq!(parse(b"\x00\x00\x00\x10hello"), Err(ProxyError::Missing));
    }

    #[test]
    fn v2_headers_round_trip_and_local_carries_no_address() {
        for (src, dst) in [
            ("203.0.113.9:40000", "10.0.0.1:7001"),
            ("[2001:db8::9]:40000", "[2001:db8::1]:7001"),
        ] {
            let mut bytes = encode_v2(addr(src), addr(dst));
            let len = bytes.len();
            for split in 0..len {
                assert_eq!(parse(&bytes[..split]).unwrap(), None, "split {split}");
            }
            bytes.extend_from_slice(b"\x00\x00\x00\x05");
            assert_eq!(
                parse(&bytes).unwrap(),
                Some((
                    ProxyHeader::Proxied {
                        source: addr(src),
                        destination: addr(dst)
                    },
                    len
                ))
            );
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).unwrap(), Some((ProxyHeader::Local, 16)));
    }

    #[test]
    fn v2_errors_are_named() {
        let mut bad_version = V2_SIGNATURE.to_vec();
        bad_version.extend_from_slice(&[0x11, 0x11, 0, 12]);
        assert!(matches!(
            parse(&bad_version),
            Err(ProxyError::MalformedV2(_))
        ));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Err(ProxyError::MalformedV2(_))));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(ProxyError::TooLong { max: V2_MAX_LEN }));
    }
}
