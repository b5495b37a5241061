//! One client connection as a state machine: Handshaking → Established → (Draining →) Closed.
//!
//! A [`Session`] owns no socket and no clock. The adapter creates it with the connection's
//! [`ConnectionContext`] and feeds it:
//!
//! * [`handle_bytes`](Session::handle_bytes) / [`handle_buf`](Session::handle_buf): bytes read
//!   from the connection, in any split;
//! * [`handle_timeout`](Session::handle_timeout): when [`poll_timeout`](Session::poll_timeout)'s
//!   deadline has passed;
//! * [`handle_tunnel`](Session::handle_tunnel) / [`handle_tunnel_closed`](Session::handle_tunnel_closed):
//!   what the backend sent on a tunnel, and the tunnel's end, named by the [`TunnelId`] the
//!   session gave it (inputs for a tunnel the session has since closed are ignored);
//! * [`push`](Session::push): a server push, encoded once by [`PushPacket::encode`];
//! * [`drain`](Session::drain) and [`close`](Session::close): the gateway's decisions;
//! * [`recheck`](Session::recheck): the filters of a newer configuration (a reload, a ban-list
//!   refresh) asked whether the live session may go on.
//!
//! The gateway's [filters](crate::filter) run inside these inputs: at the handshake, on every
//! client packet, reply and push, and when the session ends.
//!
//! After **every** input, drain the outputs in this order:
//!
//! 1. [`poll_event`](Session::poll_event) until `None` (tunnels to open, feed and close,
//!    authentication, the final `Closed`);
//! 2. [`poll_transmit`](Session::poll_transmit) (or [`transmit`](Session::transmit) and
//!    [`advance_transmit`](Session::advance_transmit)) whenever the socket can take more bytes:
//!    everything queued comes as one buffer, so many frames go out in one write. Bytes still in
//!    the session count against its outbound budget, which is how a client that does not read
//!    gets evicted ([`CloseReason::SlowConsumer`]) instead of growing the gateway's memory;
//! 3. [`poll_timeout`](Session::poll_timeout) to re-arm the timer.
//!
//! Once [`Event::Closed`] has been returned no further event is produced; write out what
//! `poll_transmit` still returns (a last `SCServerLogout`, when the reason calls for one) and close
//! the connection. [`stats`](Session::stats) counts packets and bytes both ways for metrics.

mod context;
mod event;
mod filters;
mod inbound;
mod link;
mod outbound;
mod push;
mod reply;
mod resume;
#[cfg(test)]
mod tests;

use std::{collections::VecDeque, sync::Arc};

use bytes::{Bytes, BytesMut};
use janus_proto::message::sc_server_logout::Code as LogoutCode;
use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
use rand_core::RngCore;

pub use self::{
    context::{ConnectionContext, Transport, WorkerIds},
    event::{Event, OpenTunnel, TunnelId, TunnelLayout, TunnelMessage, metadata},
    push::{PushError, PushOutcome, PushPacket},
};
use self::{
    event::Events,
    link::{Link, Pending},
    outbound::{Outbound, Sealer},
};
use crate::{
    CloseReason, Time, config::ServerConfig, crypto::NonceSequence, frame::FrameDecoder, handshake,
    system,
};

/// An empty receive buffer larger than this is freed: with [`Session::handle_buf`] it is the
/// adapter's spent read buffer, and keeping its spare capacity would cost an idle connection
/// kilobytes. Small ones are kept so [`Session::handle_bytes`] does not allocate per packet.
const IDLE_RX_CAP: usize = 1024;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for the client's `CSHandshake`.
    Handshaking,
    /// Authenticated; packets flow.
    Established,
    /// Shutting down: no new requests, in-flight replies still delivered.
    Draining,
    /// Its connection is gone; kept for the client to resume (see [`crate::resume`]).
    Parked,
    /// Over; only buffered bytes remain to be written.
    Closed,
}

/// Packets and bytes a session has moved, both ways, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Frames received from the client (the handshake included).
    pub packets_in: u64,
    /// Bytes received from the client.
    pub bytes_in: u64,
    /// Frames queued for the client (replies, pushes, errors, the handshake and logout).
    pub packets_out: u64,
    /// Bytes the adapter has taken for writing.
    pub bytes_out: u64,
}

impl SessionStats {
    /// What moved since `earlier` (for exporting counters as deltas).
    pub fn since(&self, earlier: &SessionStats) -> SessionStats {
        SessionStats {
            packets_in: self.packets_in.saturating_sub(earlier.packets_in),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            packets_out: self.packets_out.saturating_sub(earlier.packets_out),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
        }
    }
}

#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
enum State {
    /// `seed` seeds the generator for the ephemeral key; nothing random is needed afterwards.
    Handshaking {
        deadline: Time,
        seed: [u8; 32],
        /// A resume handshake waiting for the adapter to bring the old session.
        resuming: Option<Box<resume::Resuming>>,
    },
    /// Boxed: the cipher's key schedule makes a link large, and a handshaking session need not
    /// carry that much.
    Established(Box<Link>),
    Closed,
}

/// One client connection. See the [module documentation](self) for the call order.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Session {
    config: Arc<ServerConfig>,
    context: ConnectionContext,
    frames: FrameDecoder,
    state: State,
    rx: BytesMut,
    tx: Outbound,
    events: Events,
    packets_in: u64,
    bytes_in: u64,
    /// What a drain closes with ([`drain_with`](Session::drain_with)).
    drain_reason: CloseReason,
}

impl Session {
    /// A session for a connection accepted at `now`. `seed` must come from a CSPRNG: it seeds the
    /// generator for the session's ephemeral key and nonce prefix.
    pub fn new(
        config: Arc<ServerConfig>,
        context: ConnectionContext,
        now: Time,
        seed: [u8; 32],
    ) -> Self {
        // The first frame is the handshake: the earlier of the two deadlines applies.
        let session = &config.session;
        let deadline = now + session.handshake_timeout.min(session.first_frame_timeout);
        Self {
            frames: FrameDecoder::new(config.session.max_frame_len),
            config,
            context,
            state: State::Handshaking {
                deadline,
                seed,
                resuming: None,
            },
            rx: BytesMut::new(),
            tx: Outbound::default(),
            events: Events::default(),
            packets_in: 0,
            bytes_in: 0,
            drain_reason: CloseReason::Shutdown,
        }
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        match &self.state {
            State::Handshaking { .. } => SessionState::Handshaking,
            State::Established(link) if link.drain_deadline.is_some() => SessionState::Draining,
            State::Established(link) if link.resume.as_ref().is_some_and(|r| r.parked) => {
                SessionState::Parked
            }
            State::Established(_) => SessionState::Established,
            State::Closed => SessionState::Closed,
        }
    }

    /// The authenticated client, once the handshake succeeded and until the session closes.
    pub fn identity(&self) -> Option<&handshake::Identity> {
        match &self.state {
            State::Established(link) => Some(&link.identity),
            _ => None,
        }
    }

    /// The gateway configuration the session runs under.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// The connection's context, as given to [`new`](Self::new).
    pub fn context(&self) -> &ConnectionContext {
        &self.context
    }

    /// Packets and bytes moved so far.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            packets_in: self.packets_in,
            bytes_in: self.bytes_in,
            packets_out: self.tx.packets,
            bytes_out: self.tx.bytes,
        }
    }

    /// The open tunnel for `key`, if any (tests name tunnels by key).
    pub(crate) fn tunnel_of(&self, key: crate::route::TunnelKey) -> Option<TunnelId> {
        match &self.state {
            State::Established(link) => link.tunnels.iter().find(|t| t.key == key).map(|t| t.id),
            _ => None,
        }
    }

    /// Gives back what an idle session does not need: the expanded AES-GCM key schedule (rebuilt
    /// from the 32-byte key by the next packet either way, at the cost of one key expansion) and
    /// empty receive, transmit and event buffers. For adapters that hold many idle connections
    /// (the edge calls it after a second of quiet); nothing observable changes.
    pub fn compact(&mut self) {
        if let State::Established(link) = &mut self.state {
            if let Some(sealer) = &mut link.sealer {
                sealer.compact();
            }
        }
        if self.rx.is_empty() {
            self.rx = BytesMut::new();
        }
        self.tx.compact();
        self.events.release();
    }

    /// Bytes queued for the client and not yet taken by [`poll_transmit`](Self::poll_transmit).
    pub fn pending_transmit(&self) -> usize {
        self.tx.len()
    }

    /// Bytes received from the client, in any split.
    pub fn handle_bytes(&mut self, now: Time, bytes: &[u8]) {
        if self.accepts_input() {
            self.bytes_in += bytes.len() as u64;
            self.rx.extend_from_slice(bytes);
            // The receive buffer is the session's own: frames are split off and it is reused.
            self.process_rx(now, false);
        }
    }

    /// Like [`handle_bytes`](Self::handle_bytes), taking the adapter's read buffer instead of
    /// copying it: when no partial frame is pending, the frames are decrypted in place in `buf`
    /// and forwarded payloads point into it.
    pub fn handle_buf(&mut self, now: Time, buf: BytesMut) {
        if !self.accepts_input() {
            return;
        }
        self.bytes_in += buf.len() as u64;
        if self.rx.is_empty() {
            self.rx = buf;
            // The adapter's buffer: a last frame that fills it takes it whole.
            self.process_rx(now, true);
        } else {
            self.rx.extend_from_slice(&buf);
            self.process_rx(now, false);
        }
    }

    fn accepts_input(&self) -> bool {
        match &self.state {
            State::Closed => false,
            // A draining session takes no new requests; the bytes are read only to notice EOF.
            // A parked one has no connection: bytes from the one it lost are stale.
            State::Established(link) => {
                link.drain_deadline.is_none() && !link.resume.as_ref().is_some_and(|r| r.parked)
            }
            State::Handshaking { .. } => true,
        }
    }

    /// Handles every whole frame in the receive buffer. `adopted`: the buffer came from the
    /// adapter, so a frame that is all that is left of it takes the buffer itself (no
    /// reference-count traffic per packet) instead of being split off a buffer kept for reuse.
    fn process_rx(&mut self, now: Time, adopted: bool) {
        while !matches!(self.state, State::Closed) {
            let frame = if adopted {
                self.frames.decode_owned(&mut self.rx)
            } else {
                self.frames.decode(&mut self.rx)
            };
            match frame {
                Ok(Some(frame)) => {
                    self.packets_in += 1;
                    match &self.state {
                        State::Handshaking { .. } => self.handle_handshake(now, frame.body()),
                        State::Established(_) => self.handle_packet(now, frame),
                        State::Closed => {}
                    }
                }
                Ok(None) => break,
                Err(_) => self.close(now, CloseReason::MalformedFrame),
            }
        }
        if self.rx.is_empty() && self.rx.capacity() > IDLE_RX_CAP {
            self.rx = BytesMut::new();
        }
    }

    #[inline(never)]
    fn handle_handshake(&mut self, now: Time, body: &[u8]) {
        let State::Handshaking { seed, resuming, .. } = &self.state else {
            return;
        };
        if resuming.is_some() {
            // Nothing may follow a resume handshake before its answer.
            return self.close(now, CloseReason::MalformedPacket);
        }
        let mut rng = ChaCha20Rng::from_seed(*seed);
        match self.resume_intent(now, body, &mut rng) {
            resume::Intent::Login { requested, refused } => {
                self.login(now, body, requested, refused);
            }
            resume::Intent::Handled => {}
        }
    }

    /// A handshake that logs in with its token. `requested`: the client asked for a resume
    /// ticket; `refused`: it asked to resume and could not (the reply says why).
    fn login(
        &mut self,
        now: Time,
        body: &[u8],
        requested: bool,
        refused: Option<crate::resume::ResumeRefusal>,
    ) {
        let State::Handshaking { seed, .. } = &self.state else {
            return;
        };
        let mut rng = ChaCha20Rng::from_seed(*seed);
        let accepted = match handshake::accept(&self.config, now, body, &mut rng) {
            Ok(accepted) => accepted,
            Err(e) => return self.close(now, e.close_reason()),
        };
        // Filters: the token is open and the signature checked; the session is not accepted yet.
        let Ok(filters) = self.admit(now, &accepted.identity) else {
            return;
        };
        let sealer = accepted.key.as_ref().map(|key| {
            let mut prefix = [0u8; 4];
            rng.fill_bytes(&mut prefix);
            Sealer::new(key, NonceSequence::new(prefix))
        });
        let mut link = Link::new(accepted.identity, sealer, now, &self.config);
        link.filters = filters;
        let mut reply = accepted.reply;
        let replay = self.grant_resume(
            &mut link,
            accepted.key.as_ref(),
            &mut reply,
            &mut rng,
            requested,
            refused,
        );
        // The reply is plaintext: the client needs it to derive the key.
        self.tx.packet(None, &reply);
        self.tx.replay = replay;
        self.events
            .push(Event::Authenticated(link.identity.clone()));
        if let Some(resumable) = &link.resume {
            self.events.push(Event::ResumeGranted(resumable.session));
        }
        self.state = State::Established(Box::new(link));
    }

    /// The backend stream of `tunnel` ended (finished or failed). Every request still waiting for
    /// a reply on it is answered with `SCServerUnexpectedErr` (same index, "backend
    /// unavailable"), so the client can retry instead of waiting forever; the next client packet
    /// for that key opens a new tunnel. A tunnel the session has already closed is ignored.
    pub fn handle_tunnel_closed(&mut self, now: Time, tunnel: TunnelId) {
        let State::Established(link) = &mut self.state else {
            return;
        };
        let Some(closed) = link.remove(tunnel) else {
            return;
        };
        fail_pending(&mut self.tx, link.sealer.as_mut(), &closed.pending);
        if self.check_budget(now) {
            self.finish_drain_if_done(now);
        }
    }

    /// A server push, encoded by [`PushPacket::encode`] (once for all the sessions it goes to)
    /// and sealed for this one.
    pub fn push(&mut self, now: Time, push: &PushPacket) -> PushOutcome {
        let State::Established(link) = &mut self.state else {
            return PushOutcome::NotEstablished;
        };
        if link.filters.is_some() && self.config.filters.wants(crate::filter::Hooks::PUSH) {
            return self.push_filtered(now, push);
        }
        self.tx.encoded(link.sealer.as_mut(), push.as_bytes());
        if self.check_budget(now) {
            PushOutcome::Queued
        } else {
            PushOutcome::Evicted
        }
    }

    /// Begins a graceful close (gateway shutdown): client packets are no longer taken, replies to
    /// requests already forwarded are still delivered until they are all in or the drain timeout
    /// passes; then the client gets `SCServerLogout{Server}` and the session closes with
    /// [`CloseReason::Shutdown`]. A session still handshaking closes at once.
    pub fn drain(&mut self, now: Time) {
        self.drain_with(now, CloseReason::Shutdown);
    }

    /// [`drain`](Self::drain), closing with `reason` instead of `Shutdown` (its
    /// [`logout_code`](CloseReason::logout_code) is what the client is told): the gateway's
    /// spread-out drain uses [`CloseReason::Drained`], so clients hear `Waiting` and reconnect
    /// elsewhere. A session already draining keeps its first reason.
    pub fn drain_with(&mut self, now: Time, reason: CloseReason) {
        match &mut self.state {
            State::Handshaking { .. } => self.close(now, reason),
            State::Established(link) if link.drain_deadline.is_none() => {
                link.drain_deadline = Some(now + self.config.session.drain_timeout);
                self.drain_reason = reason;
                self.finish_drain_if_done(now);
            }
            _ => {}
        }
    }

    fn finish_drain_if_done(&mut self, now: Time) {
        if let State::Established(link) = &self.state {
            if link.drain_deadline.is_some() && link.nothing_pending() {
                self.close(now, self.drain_reason);
            }
        }
    }

    /// Closes the session now. When the reason calls for it
    /// ([`CloseReason::logout_code`]) the client is sent `SCServerLogout` first. Every open
    /// tunnel is closed ([`Event::CloseTunnel`]). Closing twice does nothing.
    pub fn close(&mut self, now: Time, reason: CloseReason) {
        self.close_as(now, reason, reason.logout_code());
    }

    /// [`close`](Self::close), telling the client `code` (a filter's choice) instead of the
    /// reason's own.
    fn close_as(&mut self, now: Time, reason: CloseReason, code: Option<LogoutCode>) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let mut sealer = None;
        match state {
            State::Closed => return,
            State::Handshaking { .. } => {}
            State::Established(link) => {
                let mut link = *link;
                if let Some(filters) = link.filters.as_deref_mut() {
                    filters::closed(
                        &self.config,
                        &self.context,
                        &link.identity,
                        filters,
                        reason,
                        now,
                    );
                }
                for tunnel in &link.tunnels {
                    self.events.push(Event::CloseTunnel(tunnel.id));
                }
                sealer = link.sealer;
            }
        }
        if reason == CloseReason::SlowConsumer {
            // The client is not reading: nothing queued will reach it.
            self.tx.discard();
        } else if let Some(code) = code {
            let packet = system::logout(code);
            self.tx.packet(sealer.as_mut(), &packet);
        }
        self.rx = BytesMut::new();
        self.events.push(Event::Closed(reason));
    }

    /// A deadline passed: call when `now` reaches [`poll_timeout`](Self::poll_timeout). Calling it
    /// early, or more than once, is harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        let reason = match &self.state {
            State::Handshaking { deadline, .. } if now >= *deadline => {
                CloseReason::HandshakeTimeout
            }
            State::Established(link) => match link.drain_deadline {
                Some(drain) if now >= drain => self.drain_reason,
                Some(_) => return,
                None if now >= link.idle_deadline => CloseReason::IdleTimeout,
                None => return,
            },
            _ => return,
        };
        if reason == CloseReason::IdleTimeout {
            // A resumable session outlives a silent connection for its window; a parked one
            // whose window has passed ends as on a disconnect.
            if self.is_parked() {
                return self.close(now, CloseReason::ResumeExpired);
            }
            if self.park(now) {
                return;
            }
        }
        self.close(now, reason);
    }

    /// The next deadline, or `None` once closed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        match &self.state {
            State::Handshaking { deadline, .. } => Some(*deadline),
            State::Established(link) => Some(link.drain_deadline.unwrap_or(link.idle_deadline)),
            State::Closed => None,
        }
    }

    /// The next event for the adapter.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some((tunnel, message)) = self.events.take_forward() {
            return Some(Event::Forward { tunnel, message });
        }
        if self.events.is_empty() {
            if self.events.holds_memory() && self.is_quiet() {
                // Nothing in flight (typically just after login): give the queue's memory
                // back. A busy session keeps it, so forwarding does not allocate per packet.
                self.events.release();
            }
            return None;
        }
        self.events.pop()
    }

    /// Authenticated with no tunnel open, or not authenticated at all.
    fn is_quiet(&self) -> bool {
        match &self.state {
            State::Established(link) => link.tunnels.is_empty(),
            _ => true,
        }
    }

    /// Everything queued for the client, as one buffer (many frames batched into one write).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.tx.take()
    }

    /// The bytes queued for the client, borrowed: write them, then
    /// [`advance_transmit`](Self::advance_transmit) by what was written. The zero-copy
    /// alternative to [`poll_transmit`](Self::poll_transmit); bytes not yet consumed count against
    /// the outbound budget.
    pub fn transmit(&self) -> &[u8] {
        self.tx.as_slice()
    }

    /// Consumes `written` bytes from the front of [`transmit`](Self::transmit).
    pub fn advance_transmit(&mut self, written: usize) {
        self.tx.advance(written);
    }

    fn check_budget(&mut self, now: Time) -> bool {
        if self.tx.len() > self.config.session.outbound_budget {
            self.close(now, CloseReason::SlowConsumer);
            return false;
        }
        if self.tx.replay_overflowed() {
            self.close(now, CloseReason::ResumeOverflow);
            return false;
        }
        true
    }
}

/// Answers each pending request with `SCServerUnexpectedErr`: its tunnel is gone.
fn fail_pending(tx: &mut Outbound, mut sealer: Option<&mut Sealer>, pending: &VecDeque<Pending>) {
    for p in pending {
        let reply = system::unexpected_err(p.module, p.seq, p.index, "backend unavailable");
        tx.packet(sealer.as_deref_mut(), &reply);
    }
}
