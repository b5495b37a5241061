//! One task per client connection, driving a janus-core [`Session`].
//!
//! ```text
//! listener ─► serve(ticket, socket, transport) ─► driver::run(Conn, reader, writer)
//!                                       ├─ reader: socket bytes (for WS, the upgrade and frames too)
//!                                       ├─ writer: the session's queued bytes, when writable
//!                                       ├─ ConnCmd: tunnel replies, pushes, kicks, drain
//!                                       └─ the session's deadline
//! hub link task ─► Conn<HubSession> per relay session (see `gateway::hub`)
//! Conn::process_events: Authenticated ─► Registry (+ gate table), metrics, span fields
//!                       OpenTunnel ─► tunnel task (id → request sender)
//!                       Forward ─► that sender (never waits: full ⇒ backend_backpressure)
//!                       CloseTunnel ─► drop the sender
//! ```
//!
//! The task owns the socket and the session and never blocks on anything but them. Everything
//! that decides what goes on a wire is janus-core's (the session, and for WebSocket its `ws`
//! layer, upgrade included); [`Conn`] only carries out the session's events and keeps
//! `tunnel id → stream handle`, for any [`SessionCore`]: an [`Endpoint`] (a client's session over
//! TCP, or behind the WebSocket layer) or a hub's [`HubSession`] standing in for a session held
//! by an edge. Both client transports are plain sockets to this module: one driver, one pair of
//! IO halves (`tcp`).

mod driver;
mod endpoint;
mod resume;
mod tcp;

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::SystemTime,
};

use bytes::BytesMut;
use janus_core::{
    CloseReason, Time,
    filter::FilterChain,
    handshake::Identity,
    limit::Admitted,
    relay::HubSession,
    session::{
        ConnectionContext, Event, OpenTunnel, PushPacket, Session, SessionState, SessionStats,
        Transport, TunnelId, TunnelMessage,
    },
    ws::{UpgradeError, WsSession},
};
use tokio::{sync::mpsc, time::Instant};
use tracing::{Span, debug, info_span};

use self::endpoint::Endpoint;
pub use self::{resume::Takeover, tcp::serve};
use super::{
    Shared,
    command::{Addressed, ConnCmd, ConnTx, SessionInfo, TunnelInfo},
    mailbox,
    metrics::{Listener, Refusal},
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

/// An accepted connection before its task starts: its admission claim, its number, and its
/// command queue, registered at once in the handshake pool so admission can evict it even before
/// the task runs. Dropped without becoming a connection, it gives everything back.
#[derive(Debug)]
pub struct Ticket {
    pub(super) shared: Arc<Shared>,
    peer: SocketAddr,
    worker_id: u64,
    admitted: Option<Admitted>,
    cmds: Option<(mailbox::Sender<Addressed>, mailbox::Receiver<Addressed>)>,
}

impl Ticket {
    /// A connection from `peer` admitted as `admitted`.
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, worker_id: u64, admitted: Admitted) -> Self {
        let (tx, rx) = mailbox::mailbox(CONN_QUEUE);
        shared.handshake_started(admitted.id(), ConnTx::new(tx.clone(), 0));
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

    /// Reports `bytes_received` bytes of handshake read before the connection's task runs (see
    /// `listener::early_bytes`).
    pub fn handshake_progress(&self, bytes_received: u64) {
        if let Some(admitted) = &self.admitted {
            self.shared
                .admission()
                .handshake_progress(admitted, bytes_received);
        }
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

/// One open tunnel: the sender of its requests and what the admin API shows of it.
struct TunnelEntry {
    id: TunnelId,
    tx: mpsc::Sender<TunnelMessage>,
    kind: Arc<str>,
    oid: i64,
    /// Filled by the tunnel task once it has chosen the backend.
    backend: Arc<OnceLock<String>>,
}

/// The `connection` span of a new connection (fields filled as the session goes).
pub fn connection_span(listener: Listener, peer: SocketAddr) -> Span {
    info_span!(
        "connection",
        listener = listener.as_str(),
        peer = %peer,
        conn = tracing::field::Empty,
        uid = tracing::field::Empty,
        sid = tracing::field::Empty,
        color = tracing::field::Empty,
        close_reason = tracing::field::Empty,
    )
}

/// What [`Conn`] needs of a session: the inputs and outputs a client's session (an
/// [`Endpoint`]) and a hub's relay session ([`HubSession`]) share.
pub(crate) trait SessionCore {
    fn poll_event(&mut self) -> Option<Event>;
    fn handle_tunnel(&mut self, now: Time, id: TunnelId, message: TunnelMessage);
    fn handle_tunnel_closed(&mut self, now: Time, id: TunnelId);
    fn push(&mut self, now: Time, push: &PushPacket);
    fn close(&mut self, now: Time, reason: CloseReason);
    /// The session's turn in a drain (the hub's drain is the link's: the edge moves them).
    fn drain(&mut self, now: Time, reason: CloseReason);
    /// The filters of `chain` (a newer configuration's) asked about the live session.
    fn recheck(&mut self, now: Time, chain: &FilterChain);
    fn stats(&self) -> SessionStats;
    fn context(&self) -> &ConnectionContext;
    fn identity(&self) -> Option<&Identity>;
    fn state(&self) -> SessionState;
    /// Why a WebSocket upgrade was refused, for a session that never got past it.
    fn upgrade_error(&self) -> Option<UpgradeError> {
        None
    }
}

impl SessionCore for Endpoint {
    fn poll_event(&mut self) -> Option<Event> {
        Endpoint::poll_event(self)
    }
    fn handle_tunnel(&mut self, now: Time, id: TunnelId, message: TunnelMessage) {
        self.session_mut().handle_tunnel(now, id, message);
    }
    fn handle_tunnel_closed(&mut self, now: Time, id: TunnelId) {
        self.session_mut().handle_tunnel_closed(now, id);
    }
    fn push(&mut self, now: Time, push: &PushPacket) {
        self.session_mut().push(now, push);
    }
    fn close(&mut self, now: Time, reason: CloseReason) {
        self.session_mut().close(now, reason);
    }
    fn drain(&mut self, now: Time, reason: CloseReason) {
        self.session_mut().drain_with(now, reason);
    }
    fn recheck(&mut self, now: Time, chain: &FilterChain) {
        self.session_mut().recheck(now, chain);
    }
    fn stats(&self) -> SessionStats {
        self.session().stats()
    }
    fn context(&self) -> &ConnectionContext {
        self.session().context()
    }
    fn identity(&self) -> Option<&Identity> {
        self.session().identity()
    }
    fn state(&self) -> SessionState {
        self.session().state()
    }
    fn upgrade_error(&self) -> Option<UpgradeError> {
        match self {
            Endpoint::Ws(ws) => ws.upgrade_error(),
            Endpoint::Tcp(_) => None,
        }
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
    fn drain(&mut self, _now: Time, _reason: CloseReason) {}
    fn recheck(&mut self, now: Time, chain: &FilterChain) {
        HubSession::recheck(self, now, chain);
    }
    fn stats(&self) -> SessionStats {
        HubSession::stats(self)
    }
    fn context(&self) -> &ConnectionContext {
        HubSession::context(self)
    }
    fn identity(&self) -> Option<&Identity> {
        Some(HubSession::identity(self))
    }
    fn state(&self) -> SessionState {
        if self.is_closed() {
            SessionState::Closed
        } else {
            SessionState::Established
        }
    }
}

/// The transport-independent half of a connection.
pub(crate) struct Conn<S> {
    shared: Arc<Shared>,
    pub(crate) session: S,
    conn_id: u64,
    listener: Listener,
    admitted: Option<Admitted>,
    cmd_tx: ConnTx,
    registered: Option<Registered>,
    /// The session's open tunnels (a handful: a Vec beats a map).
    tunnels: Vec<TunnelEntry>,
    /// Stats already added to the gateway's counters.
    exported: SessionStats,
    closed: Option<CloseReason>,
    /// The `connection` span, and its `handshake` child until the handshake ends.
    span: Span,
    handshake: Option<Span>,
    connected_at: SystemTime,
    /// When the client last sent bytes.
    last_input: Time,
    /// Session resume: this session's resume id (registered in `Shared::resumable`), whether
    /// it is parked, and a resume this connection's handshake asks for.
    resume_id: Option<janus_core::resume::SessionId>,
    parked: bool,
    resume_request: Option<janus_core::resume::ResumeClaim>,
    resume_asked: bool,
}

impl Conn<Endpoint> {
    /// A client connection (TCP or WebSocket) from its ticket, and its mailbox.
    fn direct(
        mut ticket: Ticket,
        transport: Transport,
        span: Span,
    ) -> Option<(Self, mailbox::Receiver<Addressed>)> {
        let shared = Arc::clone(&ticket.shared);
        let (peer, worker_id) = (ticket.peer, ticket.worker_id);
        let admitted = ticket.admitted.take()?;
        let (cmd_tx, cmd_rx) = ticket.cmds.take()?;
        let listener = match transport {
            Transport::WebSocket => Listener::Ws,
            _ => Listener::Tcp,
        };
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        let context = ConnectionContext {
            peer,
            gateway: Arc::clone(&shared.endpoint),
            worker_id,
        };
        let now = clock::now();
        let session = Session::new(shared.core(), context, now, seed);
        let session = match transport {
            Transport::WebSocket => {
                Endpoint::Ws(Box::new(WsSession::new(session, shared.ws_config())))
            }
            _ => Endpoint::Tcp(session),
        };
        let handshake = info_span!(parent: &span, "handshake", result = tracing::field::Empty);
        let mut conn = Conn::new(
            shared,
            session,
            listener,
            Some(admitted),
            ConnTx::new(cmd_tx, 0),
            span,
        );
        conn.handshake = Some(handshake);
        conn.last_input = now;
        Some((conn, cmd_rx))
    }

    fn deadline(&self) -> Option<Instant> {
        self.session.poll_timeout().map(clock::instant_of)
    }

    /// Reports the handshake's progress (bytes received), which decides who a full handshake
    /// pool evicts.
    fn handshake_progress(&self) {
        if let Some(admitted) = &self.admitted {
            let received = self.session.bytes_received();
            self.shared
                .admission()
                .handshake_progress(admitted, received);
        }
    }

    /// The socket is gone: a resumable session parks, any other closes.
    fn transport_lost(&mut self) {
        self.session.session_mut().transport_lost(clock::now());
        self.process_events();
    }

    fn on_timeout(&mut self) {
        self.session.handle_timeout(clock::now());
        self.process_events();
    }

    fn on_read(&mut self, buf: BytesMut) {
        let now = clock::now();
        self.last_input = now;
        self.session.handle_buf(now, buf);
        self.process_events();
        if self.registered.is_none() && !self.is_closed() {
            self.handshake_progress();
        }
    }

    /// The drain started: a session still handshaking closes now (it has nothing to lose); an
    /// established one waits for its turn (`ConnCmd::Drain`).
    fn drain_if_handshaking(&mut self) {
        if self.session.session().state() == SessionState::Handshaking {
            self.session
                .session_mut()
                .drain_with(clock::now(), CloseReason::Drained);
            self.process_events();
        }
    }
}

impl<S: SessionCore> Conn<S> {
    /// Carries out `session`'s events; commands for it arrive through `cmd_tx`'s mailbox.
    pub(crate) fn new(
        shared: Arc<Shared>,
        session: S,
        listener: Listener,
        admitted: Option<Admitted>,
        cmd_tx: ConnTx,
        span: Span,
    ) -> Self {
        shared.metrics.connection_opened(listener);
        let conn_id = shared.next_conn_id();
        span.record("conn", conn_id);
        Self {
            shared,
            session,
            conn_id,
            listener,
            admitted,
            cmd_tx,
            registered: None,
            tunnels: Vec::new(),
            exported: SessionStats::default(),
            closed: None,
            span,
            handshake: None,
            connected_at: SystemTime::now(),
            last_input: clock::now(),
            resume_id: None,
            parked: false,
            resume_request: None,
            resume_asked: false,
        }
    }

    fn peer(&self) -> SocketAddr {
        self.session.context().peer
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
                Event::Closed(reason) => self.on_closed(reason),
                Event::ResumeGranted(id) => self.resume_granted(id),
                Event::ResumeRequested(claim) => {
                    self.shared.metrics.resume_attempted();
                    self.resume_asked = true;
                    self.resume_request = Some(claim);
                }
                Event::Parked => {
                    self.parked = true;
                    self.shared.metrics.parked(1);
                    debug!(parent: &self.span, "parked");
                }
                Event::Resumed(_) => {
                    self.shared.metrics.resume_succeeded();
                    debug!(parent: &self.span, "resumed");
                }
                Event::ResumeRefused(refusal) => {
                    // A refusal at once (a ticket that does not open) is an attempt too.
                    if !std::mem::replace(&mut self.resume_asked, true) {
                        self.shared.metrics.resume_attempted();
                    }
                    self.shared.metrics.resume_refused(refusal);
                }
                _ => {}
            }
        }
        self.export_stats();
    }

    fn on_closed(&mut self, reason: CloseReason) {
        self.closed = Some(reason);
        self.forget_resumable(reason);
        let metrics = &self.shared.metrics;
        metrics.session_closed_for(reason);
        if let Some(handshake) = self.handshake.take() {
            metrics.handshake_failed(reason);
            handshake.record("result", reason.as_str());
        }
        if reason == CloseReason::WsUpgradeRejected {
            metrics.refused(match self.session.upgrade_error() {
                Some(UpgradeError::Path) => Refusal::WsPath,
                Some(UpgradeError::Origin) => Refusal::WsOrigin,
                _ => Refusal::WsUpgrade,
            });
        }
        self.span.record("close_reason", reason.as_str());
        debug!(parent: &self.span, reason = reason.as_str(), "session closed");
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
            self.shared.handshake_over(admitted.id());
            self.shared.admission().handshake_finished(admitted);
        }
    }

    fn authenticated(&mut self, identity: Identity) {
        self.finish_handshake();
        let metrics = &self.shared.metrics;
        metrics.handshake_succeeded();
        if let Some(handshake) = self.handshake.take() {
            handshake.record("result", "ok");
        }
        self.span.record("uid", identity.uid);
        self.span.record("sid", identity.sid);
        self.span.record("color", identity.color.as_str());
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
            metrics.kicked(CloseReason::ConflictingLogin);
        }
        if let Some(gate) = &self.shared.gate {
            gate.login(&self.shared, identity.uid, &identity.color);
        }
        debug!(parent: &self.span, "authenticated");
        self.registered = Some(Registered {
            uid: identity.uid,
            color: identity.color,
        });
    }

    fn open_tunnel(&mut self, open: OpenTunnel) {
        let span = info_span!(
            parent: &self.span,
            "tunnel",
            kind = %open.kind,
            oid = open.key.oid,
            backend = tracing::field::Empty,
        );
        let (id, kind, oid) = (open.id, Arc::clone(&open.kind), open.key.oid);
        let handle = tunnel::spawn(Arc::clone(&self.shared), open, self.cmd_tx.clone(), span);
        self.tunnels.push(TunnelEntry {
            id,
            tx: handle.tx,
            kind,
            oid,
            backend: handle.backend,
        });
        self.shared.metrics.tunnel_requested();
    }

    /// Forgets a tunnel's handle (dropping the sender ends its request stream). Returns whether
    /// the tunnel was still open here.
    fn drop_tunnel(&mut self, id: TunnelId) -> bool {
        match self.tunnels.iter().position(|t| t.id == id) {
            Some(i) => {
                self.tunnels.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn forward(&mut self, id: TunnelId, message: TunnelMessage) {
        let Some(tunnel) = self.tunnels.iter().find(|t| t.id == id) else {
            return;
        };
        match tunnel.tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
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
            ConnCmd::TunnelClosed { id, .. } => {
                self.drop_tunnel(id);
                self.session.handle_tunnel_closed(now, id);
            }
            ConnCmd::Push(push) => self.session.push(now, &push),
            ConnCmd::Close(reason) => self.session.close(now, reason),
            ConnCmd::Drain => self.session.drain(now, CloseReason::Drained),
            ConnCmd::Recheck(core) => self.session.recheck(now, &core.filters),
            ConnCmd::Describe(reply) => {
                let _ = reply.send(self.describe(now));
            }
            // Only a client's own connection task (the driver) takes a session over.
            ConnCmd::Resume(takeover) => takeover.hand_back(),
        }
        self.process_events();
    }

    fn describe(&self, now: Time) -> SessionInfo {
        let session = &self.session;
        let stats = session.stats();
        let (uid, sid, color) = match session.identity() {
            Some(id) => (id.uid, id.sid, id.color.clone()),
            None => (0, 0, String::new()),
        };
        let connected_at = self
            .connected_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let connected_for = SystemTime::now()
            .duration_since(self.connected_at)
            .map_or(0, |d| d.as_secs());
        SessionInfo {
            uid,
            sid,
            color,
            peer: self.peer().to_string(),
            listener: self.listener.as_str(),
            worker_id: session.context().worker_id,
            state: match session.state() {
                SessionState::Draining => "draining",
                SessionState::Handshaking => "handshaking",
                SessionState::Closed => "closed",
                SessionState::Parked => "parked",
                _ => "established",
            },
            connected_at,
            connected_for_secs: connected_for,
            idle_secs: now.saturating_since(self.last_input).as_secs(),
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            packets_in: stats.packets_in,
            packets_out: stats.packets_out,
            tunnels: self
                .tunnels
                .iter()
                .map(|t| TunnelInfo {
                    id: t.id.get(),
                    kind: t.kind.to_string(),
                    oid: t.oid,
                    backend: t.backend.get().cloned(),
                })
                .collect(),
        }
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
        self.forget_resumable(self.closed.unwrap_or(CloseReason::PeerClosed));
        let metrics = &self.shared.metrics;
        metrics.connection_closed(self.listener);
        if let Some(Registered { uid, color }) = self.registered.take() {
            metrics.session_ended();
            if self.shared.registry.logout(uid, self.conn_id).is_some() {
                if let Some(gate) = &self.shared.gate {
                    gate.logout(&self.shared, uid, &color);
                }
            }
        }
        if let Some(admitted) = self.admitted.take() {
            // Releases the handshake slot too if the handshake never finished.
            self.shared.handshake_over(admitted.id());
            self.shared.admission().release(admitted);
        }
    }
}

impl<S> Conn<S> {
    /// The client was granted resume: a new connection of its can find this one by `id`.
    fn resume_granted(&mut self, id: janus_core::resume::SessionId) {
        if let Some(registered) = &self.registered {
            self.shared
                .resumable()
                .insert(id, registered.uid, self.cmd_tx.clone());
            self.resume_id = Some(id);
        }
    }

    /// The session ended (for `reason`): no resume can reach it any more, and one that tries
    /// within the window is told why.
    fn forget_resumable(&mut self, reason: CloseReason) {
        if std::mem::take(&mut self.parked) {
            self.shared.metrics.parked(-1);
        }
        let Some(id) = self.resume_id.take() else {
            return;
        };
        let tombstone = if reason == janus_core::login::SUPERSEDED {
            janus_core::resume::Tombstone::Superseded
        } else {
            janus_core::resume::Tombstone::Ended
        };
        let remember = self
            .shared
            .core()
            .session
            .resume
            .window
            .max(std::time::Duration::from_secs(1));
        self.shared
            .resumable()
            .remove(id, clock::now(), tombstone, remember);
    }
}
