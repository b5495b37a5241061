//! The hub: a relay listener for janus-mio edges. Each link is one task that drives a
//! janus-core relay [`Link`](janus_core::relay::Link) and, for every relay session on it, a
//! [`Conn`](super::connection::Conn) around a [`HubSession`](janus_core::relay::HubSession):
//! the same registry entry, gate-table entry, tunnels, pushes, kicks, metrics and admin view as
//! a direct connection, carried out by the same code.
//!
//! ```text
//! edge ══ TCP ══ link task ─ Link (framing, auth, heartbeats, credit)
//!                   │  LinkEvent::SessionOpened ─► Conn<HubSession> ─► Registry, gate table
//!                   │  TunnelOpened / Data      ─► Conn ─► tunnel tasks (tonic)
//!                   ◄─ ConnCmd (replies, pushes, kicks) addressed by session ─► Outgoing ─► Link
//! ```
//!
//! A link that fails authentication (unknown key, bad version, garbage) is closed with its
//! reason counted in `janus_relay_links_refused_total{reason}`. On shutdown the hub tells every
//! edge to move its sessions (`Drain`); the edges close them here as they go.

mod link;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use janus_core::relay::LinkConfig;
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, warn};

use super::{Shared, drain::DrainPhase, listener::until_draining};

/// Pause after a failed accept (EMFILE and friends), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every link task of a hub shares.
#[derive(Debug)]
pub(crate) struct Hub {
    pub config: Arc<LinkConfig>,
    pub max_links: usize,
    pub links: AtomicUsize,
}

/// Accepts relay links until the gateway drains.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    listener: TcpListener,
    mut phase: watch::Receiver<DrainPhase>,
) {
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "relay accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = until_draining(&mut phase) => return,
        };
        if hub.links.fetch_add(1, Ordering::AcqRel) >= hub.max_links {
            hub.links.fetch_sub(1, Ordering::AcqRel);
            debug!(%peer, "relay link refused: too many links");
            shared.metrics.relay.over_limit();
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (shared, hub) = (Arc::clone(&shared), Arc::clone(&hub));
        tokio::spawn(async move {
            link::run(&shared, &hub, stream, peer).await;
            hub.links.fetch_sub(1, Ordering::AcqRel);
        });
    }
}
