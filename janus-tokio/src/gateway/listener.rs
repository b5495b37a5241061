//! The client listeners: accept, ask admission control, number the connection, and hand it to
//! its connection task (after the WebSocket upgrade, for WebSocket).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use janus_core::session::Transport;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
    protocol::WebSocketConfig,
};
use tracing::{debug, warn};

use super::{
    Shared,
    connection::{self, Ticket},
    until_true,
};
use crate::clock;

/// How long a WebSocket upgrade may take (upstream: the HTTP server's 5 s read timeout).
const WS_UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);
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
        if transport == Transport::WebSocket {
            shared.metrics.inc(&shared.metrics.connections_ws);
            tokio::spawn(upgrade_ws(ticket, stream));
        } else {
            shared.metrics.inc(&shared.metrics.connections_tcp);
            tokio::spawn(connection::serve_tcp(ticket, stream));
        }
    }
}

/// Whether a WebSocket `Origin` is allowed. Upstream admits only the literal `*` (so browsers
/// fail); here an empty list or `*` admits any origin, and a list admits exactly its entries.
fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    if allowed.is_empty() || allowed.iter().any(|a| a == "*") {
        return true;
    }
    origin.is_some_and(|o| allowed.iter().any(|a| a == o))
}

fn reject(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

async fn upgrade_ws(ticket: Ticket, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let shared = Arc::clone(&ticket.shared);
    let peer = ticket.peer();
    let check = {
        let shared = Arc::clone(&shared);
        #[allow(clippy::result_large_err)] // the callback type is tungstenite's
        move |req: &Request, response: Response| -> Result<Response, ErrorResponse> {
            if req.uri().path() != shared.ws_path {
                return Err(reject(StatusCode::NOT_FOUND, "no such path"));
            }
            let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
            if !origin_allowed(&shared.allowed_origins, origin) {
                return Err(reject(StatusCode::FORBIDDEN, "origin not allowed"));
            }
            Ok(response)
        }
    };
    // Small buffers: a frame is at most 16 KiB and an idle connection should hold little.
    let max = janus_core::frame::wire_len(shared.core.session.max_frame_len);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(shared.core.session.outbound_budget.saturating_mul(2))
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config));
    match tokio::time::timeout(WS_UPGRADE_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => connection::serve_ws(ticket, ws).await,
        // Dropping the ticket gives its admission back.
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "websocket upgrade refused");
            shared.metrics.inc(&shared.metrics.ws_upgrades_rejected);
        }
        Err(_) => {
            debug!(%peer, "websocket upgrade timed out");
            shared.metrics.inc(&shared.metrics.ws_upgrades_rejected);
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
    fn browsers_are_admitted_by_default() {
        assert!(origin_allowed(&[], Some("https://game.example")));
        assert!(origin_allowed(&[], None));
        assert!(origin_allowed(&["*".into()], Some("https://x")));
        let list = vec!["https://game.example".to_owned()];
        assert!(origin_allowed(&list, Some("https://game.example")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(!origin_allowed(&list, None));
    }

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
