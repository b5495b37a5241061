//! The client listeners: accept, ask admission control (evicting the handshake it names),
//! number the connection, and hand it to its connection task. A WebSocket connection starts with
//! its HTTP upgrade, which janus-core's `ws` layer reads like any other bytes.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use janus_core::session::Transport;
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, warn};

use super::{
    Shared,
    connection::{self, Ticket},
    until_true,
};
use crate::clock;

/// Pause after a failed accept (EMFILE and friends), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections on `listener` until the gateway drains.
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Transport,
    mut drain: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = until_true(&mut drain) => return,
        };
        let admit = shared.admission().try_admit(peer.ip(), clock::now());
        let admit = match admit {
            Ok(admit) => admit,
            Err(e) => {
                debug!(%peer, error = %e, "connection refused by admission control");
                shared.metrics.admission_refused(&e);
                continue;
            }
        };
        if let Some(victim) = admit.evict {
            // The pool was full: the least advanced handshake gives its slot to this one.
            shared.evict_handshake(victim);
        }
        let worker_id = shared.worker_ids.next(transport);
        let ticket = Ticket::new(Arc::clone(&shared), peer, worker_id, admit.admitted);
        shared.metrics.inc(if transport == Transport::WebSocket {
            &shared.metrics.connections_ws
        } else {
            &shared.metrics.connections_tcp
        });
        tokio::spawn(connection::serve(ticket, stream, transport));
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
