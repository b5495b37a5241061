//! The client listeners: accept, read the PROXY header when one is required, ask admission
//! control (closing the handshake it evicts, if any), number the connection, and hand it to its
//! connection task. A WebSocket connection starts with its HTTP upgrade, which janus-core's `ws`
//! layer reads like any other bytes.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::BytesMut;
use janus_core::{limit::AdmissionError, session::Transport};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tracing::{Instrument as _, debug, warn};

use super::{
    Shared,
    connection::{self, Ticket},
    drain::DrainPhase,
    metrics::{Listener, Refusal},
    proxy,
};
use crate::clock;

/// Pause after a failed accept (EMFILE and friends), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

fn listener_of(transport: Transport) -> Listener {
    match transport {
        Transport::WebSocket => Listener::Ws,
        _ => Listener::Tcp,
    }
}

/// Accepts connections on `listener` until the gateway drains.
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Transport,
    mut phase: watch::Receiver<DrainPhase>,
) {
    let kind = listener_of(transport);
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = until_draining(&mut phase) => return,
        };
        if !shared.proxy_protocol(kind) {
            if let Some(ticket) = admit(&shared, peer, transport) {
                let span = connection::connection_span(kind, peer);
                let early = early_bytes(&stream, &ticket);
                let serve = connection::serve(ticket, stream, transport, early);
                tokio::spawn(serve.instrument(span));
            }
            continue;
        }
        // The header is read before admission: the address that counts is the one in it.
        let Ok(slot) = Arc::clone(&shared.proxy_slots).try_acquire_owned() else {
            shared.metrics.refused(Refusal::MaxHandshakes);
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let header = proxy::read_header(&mut stream, peer).await;
            drop(slot);
            match header {
                Ok((client, early)) => {
                    if let Some(ticket) = admit(&shared, client, transport) {
                        let span = connection::connection_span(kind, client);
                        connection::serve(ticket, stream, transport, early)
                            .instrument(span)
                            .await;
                    }
                }
                Err(e) => {
                    debug!(%peer, error = %e, "connection without a valid PROXY header closed");
                    shared.metrics.refused(Refusal::ProxyHeader);
                }
            }
        });
    }
}

/// Resolves once the drain has started (or the gateway is gone).
pub(crate) async fn until_draining(phase: &mut watch::Receiver<DrainPhase>) {
    let _ = phase.wait_for(|p| *p != DrainPhase::Serving).await.is_ok();
}

/// The bytes a client sent before the accept loop reached its connection (a client sends its
/// handshake as soon as it connects), read at once without waiting, and counted as handshake
/// progress before the connection's task first runs. Under a slowloris flood the accept loop can
/// admit (and evict for) hundreds of connections before a new task is polled; a client whose
/// handshake is already waiting in the socket must not lose its slot to an idle attacker's
/// connection meanwhile (a full pool evicts the least advanced handshake, the oldest on a tie).
fn early_bytes(stream: &TcpStream, ticket: &Ticket) -> BytesMut {
    let mut buf = [0u8; EARLY_READ];
    // The socket is non-blocking: nothing there is `WouldBlock`; `Ok(0)` (EOF) and errors are
    // left for the connection's own reader to find.
    match std::io::Read::read(&mut &*socket2::SockRef::from(stream), &mut buf) {
        Ok(n) if n > 0 => {
            ticket.handshake_progress(n as u64);
            BytesMut::from(buf.get(..n).unwrap_or_default())
        }
        _ => BytesMut::new(),
    }
}

/// How much [`early_bytes`] reads: a whole handshake frame (a few hundred bytes) or a WebSocket
/// upgrade request's start; the rest comes through the connection's reader.
const EARLY_READ: usize = 2048;

/// Asks admission control about a connection from `peer`; closes the handshake it evicts to make
/// room, if any.
fn admit(shared: &Arc<Shared>, peer: SocketAddr, transport: Transport) -> Option<Ticket> {
    let admit = shared.admission().try_admit(peer.ip(), clock::now());
    match admit {
        Ok(admit) => {
            if let Some(victim) = admit.evict {
                // The pool was full: the least advanced handshake gives its slot to this one.
                shared.evict_handshake(victim);
            }
            let worker_id = shared.worker_ids.next(transport);
            Some(Ticket::new(
                Arc::clone(shared),
                peer,
                worker_id,
                admit.admitted,
            ))
        }
        Err(e) => {
            debug!(%peer, error = %e, "connection refused by admission control");
            shared.metrics.refused(match e {
                AdmissionError::TooManyFromAddress { .. } => Refusal::PerAddress,
                AdmissionError::TooManyHandshakesFromAddress { .. } => {
                    Refusal::HandshakesPerAddress
                }
                AdmissionError::ConnectingTooFast => Refusal::ConnectionRate,
                AdmissionError::TooManyHandshakes { .. } => Refusal::MaxHandshakes,
                _ => Refusal::MaxConnections,
            });
            None
        }
    }
}

/// The gRPC endpoint to advertise: the bound address, or for a wildcard bind the host's first
/// non-loopback address (from its name's resolution), or loopback as a last resort.
pub fn advertised_endpoint(bound: SocketAddr) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let ip = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), bound.port()))
        .ok()
        .and_then(|mut addrs| addrs.find(|a| !a.ip().is_loopback() && !a.ip().is_unspecified()))
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    SocketAddr::new(ip, bound.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_advertise_a_concrete_address() {
        assert_eq!(
            advertised_endpoint("10.1.2.3:9100".parse().unwrap()),
            "10.1.2.3:9100"
        );
        let derived = advertised_endpoint("0.0.0.0:9100".parse().unwrap());
        assert!(
            derived.ends_with(":9100") && !derived.starts_with("0.0.0.0"),
            "{derived}"
        );
    }
}
