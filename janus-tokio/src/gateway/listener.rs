//! The client listeners: accept, ask admission control, number the connection, and hand it to
//! its connection task (after the WebSocket upgrade, for WebSocket).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::BytesMut;
use janus_core::{
    limit::{AdmissionError, Admitted},
    session::Transport,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_tungstenite::tungstenite::{
    self,
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
    protocol::WebSocketConfig,
};
use tracing::{Instrument as _, debug, warn};

use super::{
    Shared, connection,
    drain::DrainPhase,
    metrics::{Listener, Refusal},
    proxy,
};

/// How long a WebSocket upgrade may take (upstream: the HTTP server's 5 s read timeout).
const WS_UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);
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
            if let Some((admitted, worker_id)) = admit(&shared, peer, transport) {
                let span = connection::connection_span(kind, peer);
                let serve = serve(
                    Arc::clone(&shared),
                    stream,
                    peer,
                    transport,
                    admitted,
                    worker_id,
                    BytesMut::new(),
                );
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
                    if let Some((admitted, worker_id)) = admit(&shared, client, transport) {
                        let span = connection::connection_span(kind, client);
                        serve(
                            shared, stream, client, transport, admitted, worker_id, early,
                        )
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
async fn until_draining(phase: &mut watch::Receiver<DrainPhase>) {
    let _ = phase.wait_for(|p| *p != DrainPhase::Serving).await.is_ok();
}

/// Asks admission control about a connection from `peer`.
fn admit(shared: &Shared, peer: SocketAddr, transport: Transport) -> Option<(Admitted, u64)> {
    match shared.admission().try_admit(peer.ip()) {
        Ok(admitted) => Some((admitted, shared.worker_ids.next(transport))),
        Err(e) => {
            debug!(%peer, error = %e, "connection refused by admission control");
            shared.metrics.refused(match e {
                AdmissionError::TooManyFromAddress { .. } => Refusal::PerAddress,
                AdmissionError::TooManyHandshakes { .. } => Refusal::MaxHandshakes,
                _ => Refusal::MaxConnections,
            });
            None
        }
    }
}

/// Serves an admitted connection (upgrading it first on the WebSocket listener).
async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    admitted: Admitted,
    worker_id: u64,
    early: BytesMut,
) {
    if transport != Transport::WebSocket {
        return connection::serve_tcp(shared, stream, peer, worker_id, admitted, early).await;
    }
    let _ = stream.set_nodelay(true);
    if early.is_empty() {
        upgrade_ws(shared, stream, peer, worker_id, admitted).await;
    } else {
        // Bytes of the upgrade request that came with the PROXY header go first.
        let (read, write) = stream.into_split();
        let joined = tokio::io::join(std::io::Cursor::new(early).chain(read), write);
        upgrade_ws(shared, joined, peer, worker_id, admitted).await;
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

async fn upgrade_ws<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    worker_id: u64,
    admitted: Admitted,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let check = {
        let shared = Arc::clone(&shared);
        #[allow(clippy::result_large_err)] // the callback type is tungstenite's
        move |req: &Request, response: Response| -> Result<Response, ErrorResponse> {
            if req.uri().path() != shared.ws_path {
                shared.metrics.refused(Refusal::WsPath);
                return Err(reject(StatusCode::NOT_FOUND, "no such path"));
            }
            let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
            let allowed = shared
                .allowed_origins
                .read()
                .unwrap_or_else(|p| p.into_inner());
            if !origin_allowed(&allowed, origin) {
                shared.metrics.refused(Refusal::WsOrigin);
                return Err(reject(StatusCode::FORBIDDEN, "origin not allowed"));
            }
            Ok(response)
        }
    };
    // Small buffers: a frame is at most 16 KiB and an idle connection should hold little.
    let core = shared.core();
    let max = janus_core::frame::wire_len(core.session.max_frame_len);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(core.session.outbound_budget.saturating_mul(2))
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    drop(core);
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config));
    match tokio::time::timeout(WS_UPGRADE_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => connection::serve_ws(shared, ws, peer, worker_id, admitted).await,
        Ok(Err(e)) => {
            debug!(error = %e, "websocket upgrade refused");
            // Path and origin refusals were counted by the check.
            if !matches!(e, tungstenite::Error::Http(_)) {
                shared.metrics.refused(Refusal::WsUpgrade);
            }
            shared.admission().release(admitted);
        }
        Err(_) => {
            debug!("websocket upgrade timed out");
            shared.metrics.refused(Refusal::WsUpgrade);
            shared.admission().release(admitted);
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
