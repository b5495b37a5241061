//! One relay link: the socket, the core [`Link`], and a [`Conn`] per relay session.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use janus_core::{
    CloseReason,
    relay::{HubSession, Link, LinkCloseReason, LinkEvent, Outgoing, SendError},
};
use tokio::{io::AsyncReadExt as _, net::TcpStream};
use tracing::{debug, info};

use super::Hub;
use crate::{
    clock,
    gateway::{
        Shared,
        command::{Addressed, ConnTx},
        connection::{Conn, connection_span},
        listener::until_draining,
        mailbox,
        metrics::{DropCause, Listener},
    },
};

/// Commands queued for all the sessions of one link (replies, pushes, kicks). Tunnel replies
/// wait for room, which slows the backend streams of a link that cannot keep up.
const LINK_QUEUE: usize = 65_536;
/// Read buffer per link.
const READ_CHUNK: usize = 64 * 1024;
/// How long the last bytes of a closed link may take to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The sessions of a link and what it needs to serve them.
struct Sessions<'a> {
    shared: &'a Arc<Shared>,
    tx: mailbox::Sender<Addressed>,
    conns: HashMap<u64, Conn<HubSession>>,
    draining: bool,
}

impl Sessions<'_> {
    /// Carries out what the link decoded.
    fn on_event(&mut self, link: &mut Link, event: LinkEvent) {
        let now = clock::now();
        match event {
            LinkEvent::Established(peer) => {
                info!(edge = %peer.node, version = peer.version, "relay link authenticated");
            }
            LinkEvent::SessionOpened(info) => {
                let id = info.session;
                if self.draining {
                    let _ = link.send(now, id, Outgoing::SessionClose(CloseReason::Shutdown));
                    return;
                }
                let session =
                    HubSession::new(self.shared.core(), &info, Arc::clone(&self.shared.endpoint));
                let span = connection_span(Listener::Relay, info.client_addr);
                let tx = ConnTx::new(self.tx.clone(), id);
                let mut conn = Conn::new(
                    Arc::clone(self.shared),
                    session,
                    Listener::Relay,
                    None,
                    tx,
                    span,
                );
                // Authenticated: registry login and gate table, as for a direct connection.
                conn.process_events();
                self.conns.insert(id, conn);
                self.settle(link, id);
            }
            LinkEvent::SessionClosed { session, reason } => {
                if let Some(conn) = self.conns.get_mut(&session) {
                    conn.session.handle_closed_by_edge(reason);
                    conn.process_events();
                }
                self.conns.remove(&session);
            }
            LinkEvent::TunnelOpened {
                session,
                tunnel,
                kind,
                oid,
            } => {
                if let Some(conn) = self.conns.get_mut(&session) {
                    conn.session.handle_tunnel_opened(tunnel, &kind, oid);
                    conn.process_events();
                    self.settle(link, session);
                }
            }
            LinkEvent::TunnelClosed {
                session, tunnel, ..
            } => {
                if let Some(conn) = self.conns.get_mut(&session) {
                    conn.session.handle_tunnel_released(tunnel);
                    conn.process_events();
                }
            }
            LinkEvent::Data {
                session,
                tunnel,
                message,
                cost,
            } => {
                if let Some(conn) = self.conns.get_mut(&session) {
                    conn.session.handle_data(tunnel, message);
                    conn.process_events();
                    self.settle(link, session);
                }
                // Handed to the tunnel's queue (whose overflow closes the session): consumed.
                link.release(session, cost);
            }
            LinkEvent::Closed(reason) => {
                let authenticated = link.peer().is_some();
                self.shared.metrics.relay.closed(reason, authenticated);
                if authenticated {
                    info!(reason = reason.as_str(), goodbye = ?link.peer_goodbye(), "relay link closed");
                } else {
                    info!(reason = reason.as_str(), "relay link refused");
                }
            }
            _ => {}
        }
    }

    /// A command for one session (a reply, a push, a kick).
    fn on_cmd(&mut self, link: &mut Link, addressed: Addressed) {
        if let Some(conn) = self.conns.get_mut(&addressed.session) {
            conn.handle_cmd(addressed.cmd);
            self.settle(link, addressed.session);
        }
    }

    /// Sends what the session queued for the edge; forgets the session once it is over.
    fn settle(&mut self, link: &mut Link, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let now = clock::now();
        while let Some(out) = conn.session.poll_outgoing() {
            let push = matches!(out, Outgoing::Push(_));
            let tunnel = match &out {
                Outgoing::Data { tunnel, .. } => Some(*tunnel),
                _ => None,
            };
            match link.send(now, id, out) {
                Ok(()) => {}
                Err(SendError::Backlog) if push => {
                    let metrics = &self.shared.metrics;
                    metrics.dropped(DropCause::QueueFull);
                }
                // The edge does not take this session's replies as fast as they come.
                Err(SendError::Backlog) => conn.close(CloseReason::SlowConsumer),
                // A backend message no edge may receive: the request is answered as failed.
                Err(SendError::TooLarge) => {
                    if let Some(tunnel) = tunnel {
                        conn.session.handle_tunnel_closed(now, tunnel);
                        conn.process_events();
                    }
                }
                Err(_) => {}
            }
        }
        if conn.session.is_closed() {
            conn.export_stats();
            self.conns.remove(&id);
        }
    }
}

/// Serves one relay link until it closes.
pub(super) async fn run(shared: &Arc<Shared>, hub: &Hub, mut stream: TcpStream, peer: SocketAddr) {
    let mut challenge = [0u8; janus_core::relay::CHALLENGE_LEN];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut challenge);
    let mut link = Link::new(Arc::clone(&hub.config), clock::now(), challenge);
    let (tx, mut cmds) = mailbox::mailbox(LINK_QUEUE);
    let mut sessions = Sessions {
        shared,
        tx,
        conns: HashMap::new(),
        draining: false,
    };
    shared.metrics.relay.accepted();
    debug!(%peer, "relay link accepted");
    let mut phase = shared.drain.clone();
    let (mut reader, writer) = stream.split();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut flush_deadline = None;
    loop {
        while let Some(event) = link.poll_event() {
            sessions.on_event(&mut link, event);
        }
        let wants_write = link.pending_transmit() > 0;
        let open = link.poll_timeout().is_some();
        if !open {
            if !wants_write {
                break;
            }
            flush_deadline.get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_TIMEOUT);
        }
        let deadline = flush_deadline.or_else(|| link.poll_timeout().map(clock::instant_of));
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = reader.read_buf(&mut buf), if open => match read {
                Ok(0) | Err(_) => link.close(clock::now(), LinkCloseReason::PeerClosed),
                Ok(_) => {
                    link.handle_bytes(clock::now(), &buf);
                    buf.clear();
                }
            },
            ready = writer.writable(), if wants_write => {
                let written = ready.is_ok() && match writer.try_write(link.transmit()) {
                    Ok(n) => {
                        link.advance_transmit(n);
                        true
                    }
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                };
                if !written {
                    link.close(clock::now(), LinkCloseReason::PeerClosed);
                    break;
                }
            }
            Some(addressed) = cmds.recv(), if open => sessions.on_cmd(&mut link, addressed),
            () = until_draining(&mut phase), if !sessions.draining && open => {
                sessions.draining = true;
                link.drain(clock::now());
            }
            () = sleep_until(deadline) => {
                if flush_deadline.is_some() {
                    break;
                }
                link.handle_timeout(clock::now());
            }
        }
    }
    // The sessions end with the link (their Conns unregister as they drop); the edge moves them.
    for (_, mut conn) in sessions.conns.drain() {
        conn.session.handle_closed_by_edge(CloseReason::PeerClosed);
        conn.process_events();
    }
    shared.metrics.relay.ended();
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
