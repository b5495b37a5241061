//! One task per client connection, driving a janus-core [`Session`].
//!
//! ```text
//! listener ─► serve(ticket, socket, transport) ─► driver::run(Conn, reader, writer)
//!                                       ├─ reader: socket bytes (for WS, the upgrade and frames too)
//!                                       ├─ writer: the session's queued bytes, when writable
//!                                       ├─ ConnCmd: tunnel replies, pushes, kicks, drain
//!                                       └─ the session's deadline
//! Conn::process_events: Authenticated ─► Registry (+ gate table)
//!                       OpenTunnel ─► tunnel task (id → request sender)
//!                       Forward ─► that sender (never waits: full ⇒ backend_backpressure)
//!                       CloseTunnel ─► drop the sender
//! ```
//!
//! The task owns the socket and the session and never blocks on anything but them. Everything
//! that decides what goes on a wire is janus-core's (the session, and for WebSocket its `ws`
//! layer, upgrade included); [`Conn`] only carries out the session's events and keeps
//! `tunnel id → stream handle`. Both transports are plain sockets to this module: one driver,
//! one pair of IO halves (`tcp`), and an [`Endpoint`] that is a session or a WebSocket session.

mod driver;
mod endpoint;
mod tcp;

use std::{net::SocketAddr, sync::Arc};

use bytes::BytesMut;
use janus_core::{
    CloseReason,
    handshake::Identity,
    limit::Admitted,
    session::{
        ConnectionContext, Event, OpenTunnel, Session, SessionStats, Transport, TunnelId,
        TunnelMessage,
    },
    ws::WsSession,
};
use tokio::{sync::mpsc, time::Instant};
use tracing::debug;

use self::endpoint::Endpoint;
pub use self::tcp::serve;
use super::{Shared, command::ConnCmd, mailbox, registry::ConnHandle, tunnel};
use crate::clock;

/// Commands queued per connection. Replies wait for room (backpressure onto the backend stream);
/// pushes that find it full close the session as a slow consumer.
pub const CONN_QUEUE: usize = 256;
/// How long the last bytes of a closed session may take to go out (a logout packet, the
/// replies a drain waited for) before the socket is closed anyway.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// An accepted connection before its task starts: its admission claim, its number, and its
/// command queue, registered at once in the handshake pool so admission can evict it even before
/// the task runs (or while a WebSocket upgrade is under way). Dropped without becoming a
/// connection (a failed upgrade), it gives everything back.
#[derive(Debug)]
pub struct Ticket {
    pub(super) shared: Arc<Shared>,
    peer: SocketAddr,
    worker_id: u64,
    admitted: Option<Admitted>,
    cmds: Option<(mailbox::Sender<ConnCmd>, mailbox::Receiver<ConnCmd>)>,
}

impl Ticket {
    /// A connection from `peer` admitted as `admitted`.
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, worker_id: u64, admitted: Admitted) -> Self {
        let (tx, rx) = mailbox::mailbox(CONN_QUEUE);
        shared.handshake_started(admitted.id(), tx.clone());
        Self {
            shared,
            peer,
            worker_id,
            admitted: Some(admitted),
            cmds: Some((tx, rx)),
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(admitted) = self.admitted.take() {
            self.shared.handshake_over(admitted.id());
            self.shared.admission().release(admitted);
        }
    }
}

/// Who the session is, kept after the session itself forgets (for the registry and gate-table
/// clean-up when the connection ends).
struct Registered {
    uid: i64,
    color: String,
}

/// The transport-independent half of a connection.
struct Conn {
    shared: Arc<Shared>,
    session: Endpoint,
    conn_id: u64,
    admitted: Option<Admitted>,
    cmd_tx: mailbox::Sender<ConnCmd>,
    registered: Option<Registered>,
    /// The session's open tunnels: id → request sender (a handful: a Vec beats a map).
    tunnels: Vec<(TunnelId, mpsc::Sender<TunnelMessage>)>,
    /// Stats already added to the gateway's counters.
    exported: SessionStats,
    closed: Option<CloseReason>,
}

impl Conn {
    fn new(mut ticket: Ticket, transport: Transport) -> Option<(Self, mailbox::Receiver<ConnCmd>)> {
        let shared = Arc::clone(&ticket.shared);
        let (peer, worker_id) = (ticket.peer, ticket.worker_id);
        let admitted = ticket.admitted.take()?;
        let (cmd_tx, cmd_rx) = ticket.cmds.take()?;
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let context = ConnectionContext {
            peer,
            gateway: Arc::clone(&shared.endpoint),
            worker_id,
        };
        let session = Session::new(Arc::clone(&shared.core), context, clock::now(), seed);
        let session = match transport {
            Transport::WebSocket => {
                Endpoint::Ws(Box::new(WsSession::new(session, Arc::clone(&shared.ws))))
            }
            _ => Endpoint::Tcp(session),
        };
        shared.metrics.connection_opened();
        let conn_id = shared.next_conn_id();
        let conn = Self {
            shared,
            session,
            conn_id,
            admitted: Some(admitted),
            cmd_tx,
            registered: None,
            tunnels: Vec::new(),
            exported: SessionStats::default(),
            closed: None,
        };
        Some((conn, cmd_rx))
    }

    fn peer(&self) -> SocketAddr {
        self.session.session().context().peer
    }

    fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout().map(clock::instant_of)
    }

    /// Carries out the session's events after an input, and exports what moved.
    fn process_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Authenticated(identity) => self.authenticated(identity),
                Event::OpenTunnel(open) => self.open_tunnel(*open),
                Event::Forward { tunnel, message } => self.forward(tunnel, message),
                Event::CloseTunnel(id) => {
                    self.drop_tunnel(id);
                }
                Event::Closed(reason) => {
                    self.closed = Some(reason);
                    self.shared.metrics.closed(reason);
                    debug!(peer = %self.peer(), reason = reason.as_str(), "session closed");
                }
                _ => {}
            }
        }
        self.export_stats();
    }

    fn export_stats(&mut self) {
        let now = self.session.session().stats();
        self.shared
            .metrics
            .session_moved(&now.since(&self.exported));
        self.exported = now;
    }

    fn finish_handshake(&mut self) {
        if let Some(admitted) = &self.admitted {
            // The core counts each connection's handshake once, however often this is called.
            self.shared.handshake_over(admitted.id());
            self.shared.admission().handshake_finished(admitted);
        }
    }

    /// Reports the handshake's progress (bytes received), which decides who a full handshake
    /// pool evicts.
    fn handshake_progress(&self) {
        if let Some(admitted) = &self.admitted {
            if self.registered.is_none() {
                let received = self.session.bytes_received();
                self.shared
                    .admission()
                    .handshake_progress(admitted, received);
            }
        }
    }

    fn authenticated(&mut self, identity: Identity) {
        self.finish_handshake();
        let metrics = &self.shared.metrics;
        metrics.session_opened();
        let handle = ConnHandle {
            color: identity.color.clone(),
            sid: identity.sid,
            tx: self.cmd_tx.clone(),
        };
        if self
            .shared
            .registry
            .login(identity.uid, self.conn_id, handle)
        {
            metrics.inc(&metrics.kicks_conflicting_login);
        }
        if let Some(gate) = &self.shared.gate {
            gate.login(&self.shared, identity.uid, &identity.color);
        }
        debug!(peer = %self.peer(), uid = identity.uid, sid = identity.sid, color = %identity.color, "authenticated");
        self.registered = Some(Registered {
            uid: identity.uid,
            color: identity.color,
        });
    }

    fn open_tunnel(&mut self, open: OpenTunnel) {
        let id = open.id;
        let tx = tunnel::spawn(Arc::clone(&self.shared), open, self.cmd_tx.clone());
        self.tunnels.push((id, tx));
        self.shared.metrics.tunnel_opened();
    }

    /// Forgets a tunnel's handle (dropping the sender ends its request stream). Returns whether
    /// the tunnel was still open here.
    fn drop_tunnel(&mut self, id: TunnelId) -> bool {
        match self.tunnels.iter().position(|(t, _)| *t == id) {
            Some(i) => {
                self.tunnels.swap_remove(i);
                self.shared.metrics.tunnel_closed();
                true
            }
            None => false,
        }
    }

    fn forward(&mut self, id: TunnelId, message: TunnelMessage) {
        let Some((_, tx)) = self.tunnels.iter().find(|(t, _)| *t == id) else {
            return;
        };
        match tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let metrics = &self.shared.metrics;
                metrics.inc(&metrics.tunnel_overflow);
                self.session
                    .session_mut()
                    .close(clock::now(), CloseReason::BackendBackpressure);
            }
            // The stream just ended; its TunnelClosed command is on the way and the session
            // answers this request along with the others pending.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn handle_cmd(&mut self, cmd: ConnCmd) {
        let now = clock::now();
        match cmd {
            ConnCmd::Tunnel { id, message } => {
                self.session.session_mut().handle_tunnel(now, id, message)
            }
            ConnCmd::TunnelClosed { id, failed } => {
                if self.drop_tunnel(id) && failed {
                    let metrics = &self.shared.metrics;
                    metrics.inc(&metrics.tunnel_failures);
                }
                self.session.session_mut().handle_tunnel_closed(now, id);
            }
            ConnCmd::Push(push) => {
                self.session.session_mut().push(now, &push);
            }
            ConnCmd::Close(reason) => self.session.session_mut().close(now, reason),
            ConnCmd::Drain => self.session.session_mut().drain(now),
        }
        self.process_events();
    }

    fn on_timeout(&mut self) {
        self.session.handle_timeout(clock::now());
        self.process_events();
    }

    fn on_read(&mut self, buf: BytesMut) {
        self.session.handle_buf(clock::now(), buf);
        self.process_events();
        if self.registered.is_none() && !self.is_closed() {
            self.handshake_progress();
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.session.session_mut().close(clock::now(), reason);
        self.process_events();
    }

    fn is_closed(&self) -> bool {
        self.closed.is_some()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let metrics = &self.shared.metrics;
        metrics.connection_closed();
        if let Some(Registered { uid, color }) = self.registered.take() {
            metrics.session_closed();
            if self.shared.registry.logout(uid, self.conn_id).is_some() {
                if let Some(gate) = &self.shared.gate {
                    gate.logout(&self.shared, uid, &color);
                }
            }
        }
        for _ in self.tunnels.drain(..) {
            metrics.tunnel_closed();
        }
        if let Some(admitted) = self.admitted.take() {
            // Releases the handshake slot too if the handshake never finished.
            self.shared.handshake_over(admitted.id());
            self.shared.admission().release(admitted);
        }
    }
}
