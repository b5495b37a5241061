//! One task per client connection, driving a janus-core [`Session`]; and what every session,
//! local or relayed, needs carried out.
//!
//! ```text
//! listener ─► serve_tcp / serve_ws ─► driver::run(Conn<Session>, reader, writer)
//!                                       ├─ reader: bytes (TCP) or one frame per message (WS)
//!                                       ├─ writer: the session's queued bytes, when writable
//!                                       ├─ ConnCmd: tunnel replies, pushes, kicks, drain
//!                                       └─ the session's deadline
//! hub link task ─► Conn<HubSession> per relay session (see `gateway::hub`)
//! Conn::process_events: Authenticated ─► Registry (+ gate table)
//!                       OpenTunnel ─► tunnel task (id → request sender)
//!                       Forward ─► that sender (never waits: full ⇒ backend_backpressure)
//!                       CloseTunnel ─► drop the sender
//! ```
//!
//! The task owns the socket and the session and never blocks on anything but them. Everything
//! that decides what goes on a wire is the session's; [`Conn`] only carries out its events and
//! keeps `tunnel id → stream handle`, for any [`SessionCore`]: a local [`Session`] or a hub's
//! [`HubSession`] standing in for a session on an edge. The TCP and WebSocket halves (modules
//! `tcp`, `ws`) are the only transport-specific code; [`driver`] is shared.

mod driver;
mod tcp;
mod ws;

use std::{net::SocketAddr, sync::Arc};

use bytes::BytesMut;
use janus_core::{
    CloseReason, Time,
    handshake::Identity,
    limit::Admitted,
    relay::HubSession,
    session::{
        ConnectionContext, Event, OpenTunnel, PushPacket, Session, SessionStats, TunnelId,
        TunnelMessage,
    },
};
use tokio::{sync::mpsc, time::Instant};
use tracing::debug;

pub use self::{tcp::serve_tcp, ws::serve_ws};
use super::{
    Shared,
    command::{Addressed, ConnCmd, ConnTx},
    mailbox,
    registry::ConnHandle,
    tunnel,
};
use crate::clock;

/// Commands queued per connection. Replies wait for room (backpressure onto the backend stream);
/// pushes that find it full close the session as a slow consumer.
pub const CONN_QUEUE: usize = 256;
/// How long the last bytes of a closed session may take to go out (a logout packet, the
/// replies a drain waited for) before the socket is closed anyway.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Who the session is, kept after the session itself forgets (for the registry and gate-table
/// clean-up when the connection ends).
struct Registered {
    uid: i64,
    color: String,
}

/// What [`Conn`] needs of a session: the inputs and outputs a local [`Session`] and a relay
/// [`HubSession`] share.
pub(crate) trait SessionCore {
    fn poll_event(&mut self) -> Option<Event>;
    fn handle_tunnel(&mut self, now: Time, id: TunnelId, message: TunnelMessage);
    fn handle_tunnel_closed(&mut self, now: Time, id: TunnelId);
    fn push(&mut self, now: Time, push: &PushPacket);
    fn close(&mut self, now: Time, reason: CloseReason);
    fn drain(&mut self, now: Time);
    fn stats(&self) -> SessionStats;
    fn peer(&self) -> SocketAddr;
}

impl SessionCore for Session {
    fn poll_event(&mut self) -> Option<Event> {
        Session::poll_event(self)
    }
    fn handle_tunnel(&mut self, now: Time, id: TunnelId, message: TunnelMessage) {
        Session::handle_tunnel(self, now, id, message);
    }
    fn handle_tunnel_closed(&mut self, now: Time, id: TunnelId) {
        Session::handle_tunnel_closed(self, now, id);
    }
    fn push(&mut self, now: Time, push: &PushPacket) {
        Session::push(self, now, push);
    }
    fn close(&mut self, now: Time, reason: CloseReason) {
        Session::close(self, now, reason);
    }
    fn drain(&mut self, now: Time) {
        Session::drain(self, now);
    }
    fn stats(&self) -> SessionStats {
        Session::stats(self)
    }
    fn peer(&self) -> SocketAddr {
        self.context().peer
    }
}

impl SessionCore for HubSession {
    fn poll_event(&mut self) -> Option<Event> {
        HubSession::poll_event(self)
    }
    fn handle_tunnel(&mut self, now: Time, id: TunnelId, message: TunnelMessage) {
        HubSession::handle_tunnel(self, now, id, message);
    }
    fn handle_tunnel_closed(&mut self, now: Time, id: TunnelId) {
        HubSession::handle_tunnel_closed(self, now, id);
    }
    fn push(&mut self, now: Time, push: &PushPacket) {
        HubSession::push(self, now, push);
    }
    fn close(&mut self, now: Time, reason: CloseReason) {
        HubSession::close(self, now, reason);
    }
    /// The hub's drain is the link's (`Drain` to the edge, which moves its sessions).
    fn drain(&mut self, _now: Time) {}
    fn stats(&self) -> SessionStats {
        HubSession::stats(self)
    }
    fn peer(&self) -> SocketAddr {
        self.context().peer
    }
}

/// The transport-independent half of a connection: carries out a session's events.
pub(crate) struct Conn<S> {
    shared: Arc<Shared>,
    pub(crate) session: S,
    conn_id: u64,
    admitted: Option<Admitted>,
    cmd_tx: ConnTx,
    registered: Option<Registered>,
    /// The session's open tunnels: id → request sender (a handful: a Vec beats a map).
    tunnels: Vec<(TunnelId, mpsc::Sender<TunnelMessage>)>,
    /// Stats already added to the gateway's counters.
    exported: SessionStats,
    closed: Option<CloseReason>,
}

impl Conn<Session> {
    /// A direct client connection (TCP or WebSocket) and its mailbox.
    fn direct(
        shared: Arc<Shared>,
        peer: SocketAddr,
        worker_id: u64,
        admitted: Admitted,
    ) -> (Self, mailbox::Receiver<Addressed>) {
        let (tx, cmd_rx) = mailbox::mailbox(CONN_QUEUE);
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let context = ConnectionContext {
            peer,
            gateway: Arc::clone(&shared.endpoint),
            worker_id,
        };
        let session = Session::new(Arc::clone(&shared.core), context, clock::now(), seed);
        let conn = Self::new(shared, session, Some(admitted), ConnTx::new(tx, 0));
        (conn, cmd_rx)
    }

    fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout().map(clock::instant_of)
    }

    fn on_timeout(&mut self) {
        self.session.handle_timeout(clock::now());
        self.process_events();
    }

    fn on_read(&mut self, buf: BytesMut) {
        self.session.handle_buf(clock::now(), buf);
        self.process_events();
    }
}

impl<S: SessionCore> Conn<S> {
    /// Carries out `session`'s events; commands for it arrive through `cmd_tx`'s mailbox.
    pub(crate) fn new(
        shared: Arc<Shared>,
        session: S,
        admitted: Option<Admitted>,
        cmd_tx: ConnTx,
    ) -> Self {
        shared.metrics.connection_opened();
        let conn_id = shared.next_conn_id();
        Self {
            shared,
            session,
            conn_id,
            admitted,
            cmd_tx,
            registered: None,
            tunnels: Vec::new(),
            exported: SessionStats::default(),
            closed: None,
        }
    }

    fn peer(&self) -> SocketAddr {
        self.session.peer()
    }

    /// Carries out the session's events after an input, and exports what moved.
    pub(crate) fn process_events(&mut self) {
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

    pub(crate) fn export_stats(&mut self) {
        let now = self.session.stats();
        self.shared
            .metrics
            .session_moved(&now.since(&self.exported));
        self.exported = now;
    }

    fn finish_handshake(&mut self) {
        if let Some(admitted) = &self.admitted {
            // The core counts each connection's handshake once, however often this is called.
            self.shared.admission().handshake_finished(admitted);
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
                    .close(clock::now(), CloseReason::BackendBackpressure);
            }
            // The stream just ended; its TunnelClosed command is on the way and the session
            // answers this request along with the others pending.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub(crate) fn handle_cmd(&mut self, cmd: ConnCmd) {
        let now = clock::now();
        match cmd {
            ConnCmd::Tunnel { id, message } => self.session.handle_tunnel(now, id, message),
            ConnCmd::TunnelClosed { id, failed } => {
                if self.drop_tunnel(id) && failed {
                    let metrics = &self.shared.metrics;
                    metrics.inc(&metrics.tunnel_failures);
                }
                self.session.handle_tunnel_closed(now, id);
            }
            ConnCmd::Push(push) => {
                self.session.push(now, &push);
            }
            ConnCmd::Close(reason) => self.session.close(now, reason),
            ConnCmd::Drain => self.session.drain(now),
        }
        self.process_events();
    }

    pub(crate) fn close(&mut self, reason: CloseReason) {
        self.session.close(clock::now(), reason);
        self.process_events();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_some()
    }
}

impl<S> Drop for Conn<S> {
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
            self.shared.admission().release(admitted);
        }
    }
}
