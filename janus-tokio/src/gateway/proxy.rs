//! The PROXY protocol on the client listeners (`server.tcp.proxy_protocol`,
//! `server.ws.proxy_protocol`): an L4 load balancer in front puts a v1 or v2 header before the
//! client's bytes, and the address in it is the client's. janus-core parses the header
//! ([`janus_core::proxy`]); this module reads it off the socket.
//!
//! With the option on, every connection must start with a header, read within
//! [`PROXY_HEADER_TIMEOUT`], or it is closed without an answer (there is no way to tell a
//! load balancer why) and counted (`janus_admission_refusals_total{cause="proxy_header"}`). The
//! header's source address then feeds admission (per-address limits), the logs and the
//! backends (`x-md-global-client-ip`). A v2 `LOCAL` header (the balancer's own health check)
//! keeps the socket's address.

use std::{io, net::SocketAddr, time::Duration};

use bytes::BytesMut;
use janus_core::proxy::{self, ProxyError, ProxyHeader, V2_MAX_LEN};
use tokio::{io::AsyncReadExt as _, net::TcpStream};

/// How long a connection may take to send its PROXY header. A load balancer sends it with the
/// first packet; this only bounds connections that never do.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyRefused {
    #[error(transparent)]
    Header(#[from] ProxyError),
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("closed before the PROXY header ended")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the header; returns the client's address (the socket's `peer` for `LOCAL`) and the
/// client bytes read after it.
pub async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Result<(SocketAddr, BytesMut), ProxyRefused> {
    let read = async {
        let mut buf = BytesMut::with_capacity(256);
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(ProxyRefused::Closed);
            }
            if let Some((header, len)) = proxy::parse(&buf)? {
                let rest = buf.split_off(len);
                let client = match header {
                    ProxyHeader::Proxied { source, .. } => source,
                    ProxyHeader::Local => peer,
                };
                return Ok((client, rest));
            }
            if buf.len() > V2_MAX_LEN {
                // The parser refuses longer headers itself; this only bounds the buffer.
                return Err(ProxyRefused::Header(ProxyError::TooLong {
                    max: V2_MAX_LEN,
                }));
            }
        }
    };
    tokio::time::timeout(PROXY_HEADER_TIMEOUT, read)
        .await
        .map_err(|_| ProxyRefused::Timeout(PROXY_HEADER_TIMEOUT))?
}
