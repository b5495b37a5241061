//! One client connection as a state machine: Handshaking → Established → (Draining →) Closed.
//!
//! A [`Session`] owns no socket and no clock. The adapter feeds it:
//!
//! * [`handle_bytes`](Session::handle_bytes): bytes read from the connection, in any split;
//! * [`handle_timeout`](Session::handle_timeout): when [`poll_timeout`](Session::poll_timeout)'s
//!   deadline has passed;
//! * [`handle_tunnel`](Session::handle_tunnel) / [`handle_tunnel_closed`](Session::handle_tunnel_closed):
//!   what the backend sent on a tunnel, and the tunnel's end;
//! * [`push`](Session::push) / [`push_packet`](Session::push_packet): server pushes;
//! * [`drain`](Session::drain) and [`close`](Session::close): the gateway's decisions.
//!
//! After **every** input, drain the outputs in this order:
//!
//! 1. [`poll_event`](Session::poll_event) until `None` (tunnels to open and feed, authentication,
//!    the final `Closed`);
//! 2. [`poll_transmit`](Session::poll_transmit) whenever the socket can take more bytes: it returns
//!    everything queued as one buffer, so many frames go out in one write. Call it again only
//!    once that write has completed: bytes still in the session count against its outbound
//!    budget, which is how a client that does not read gets evicted
//!    ([`CloseReason::SlowConsumer`]) instead of growing the gateway's memory;
//! 3. [`poll_timeout`](Session::poll_timeout) to re-arm the timer.
//!
//! Once [`Event::Closed`] has been returned no further event is produced; write out what
//! `poll_transmit` still returns (a last `SCServerLogout`, when the reason calls for one) and close
//! the connection.

mod event;
#[cfg(test)]
mod tests;

use std::{collections::VecDeque, sync::Arc};

use bytes::{BufMut, Bytes, BytesMut};
use janus_proto::{
    broadcaster::service::push::v1::PushBody,
    message::{ScServerLogout, ScServerUnexpectedErr, sc_server_logout::Code as LogoutCode},
    packet::Packet,
};
use prost::Message;
use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
use rand_core::RngCore;

pub use self::event::{Event, TunnelMessage};
use crate::{
    CloseReason, Time, codec,
    compress::{deflate_reply, inflate},
    config::ServerConfig,
    crypto::{NonceSequence, PacketCipher, SEAL_OVERHEAD},
    frame::{FrameDecoder, HEADER_LEN},
    handshake::{self, Identity, SYSTEM_MODULE},
    limit::Gcra,
    route::{OidRule, RouteError, TunnelKey},
};

/// `SystemSeq.ServerUnexpectedErr`.
const UNEXPECTED_ERR_SEQ: i32 = 3;
/// `SystemSeq.ServerLogout`.
const LOGOUT_SEQ: i32 = 4;
/// A transmit buffer larger than this is freed once empty, so an idle session holds no large
/// buffer after a burst.
const IDLE_BUFFER_CAP: usize = 4096;
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
    /// Over; only buffered bytes remain to be written.
    Closed,
}

#[derive(Debug)]
enum State {
    /// `seed` seeds the generator for the ephemeral key; nothing random is needed afterwards.
    Handshaking {
        deadline: Time,
        seed: [u8; 32],
    },
    /// Boxed: the cipher's key schedule makes a link large, and a handshaking session need not
    /// carry that much.
    Established(Box<Link>),
    Closed,
}

/// An authenticated connection.
#[derive(Debug)]
struct Link {
    identity: Identity,
    /// `None` in unencrypted mode.
    sealer: Option<Sealer>,
    /// The index the next client packet must carry.
    next_index: i32,
    idle_deadline: Time,
    drain_deadline: Option<Time>,
    /// Open tunnels (a handful per session: a linear scan beats a map).
    tunnels: Vec<Tunnel>,
    rate: Option<Gcra>,
}

/// An open tunnel of a session.
#[derive(Debug)]
struct Tunnel {
    key: TunnelKey,
    /// For least-recently-used eviction.
    last_used: Time,
    /// Requests forwarded and not yet answered, oldest first, at most `max_pending`: if the
    /// backend stream ends, each gets `SCServerUnexpectedErr` instead of silence.
    pending: VecDeque<Pending>,
}

/// A forwarded request awaiting its reply (the reply echoes `index`).
#[derive(Debug, Clone, Copy)]
struct Pending {
    index: i32,
    module: i32,
    seq: i32,
}

impl Tunnel {
    /// Forgets the request a reply answers. Replies come in order on a tunnel (the backend
    /// serialises an actor's requests), so the match is almost always at the front.
    fn answered(&mut self, index: i32) {
        if let Some(i) = self.pending.iter().position(|p| p.index == index) {
            self.pending.remove(i);
        }
    }
}

/// One client connection. See the [module documentation](self) for the call order.
#[derive(Debug)]
pub struct Session {
    config: Arc<ServerConfig>,
    frames: FrameDecoder,
    state: State,
    rx: BytesMut,
    tx: BytesMut,
    events: VecDeque<Event>,
}

/// The session key with the nonces this side seals under it.
#[derive(Debug)]
struct Sealer {
    cipher: PacketCipher,
    nonces: NonceSequence,
}

impl Session {
    /// A session for a connection accepted at `now`. `seed` must come from a CSPRNG: it seeds the
    /// generator for the session's ephemeral key and nonce prefix.
    pub fn new(config: Arc<ServerConfig>, now: Time, seed: [u8; 32]) -> Self {
        let deadline = now + config.session.handshake_timeout;
        Self {
            frames: FrameDecoder::new(config.session.max_frame_len),
            config,
            state: State::Handshaking { deadline, seed },
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            events: VecDeque::new(),
        }
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        match &self.state {
            State::Handshaking { .. } => SessionState::Handshaking,
            State::Established(link) if link.drain_deadline.is_some() => SessionState::Draining,
            State::Established(_) => SessionState::Established,
            State::Closed => SessionState::Closed,
        }
    }

    /// The authenticated client, once the handshake succeeded and until the session closes.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.state {
            State::Established(link) => Some(&link.identity),
            _ => None,
        }
    }

    /// Bytes queued for the client and not yet taken by [`poll_transmit`](Self::poll_transmit).
    pub fn pending_transmit(&self) -> usize {
        self.tx.len()
    }

    /// Bytes received from the client, in any split.
    pub fn handle_bytes(&mut self, now: Time, bytes: &[u8]) {
        if self.accepts_input() {
            self.rx.extend_from_slice(bytes);
            self.process_rx(now);
        }
    }

    /// Like [`handle_bytes`](Self::handle_bytes), taking the adapter's read buffer instead of
    /// copying it: when no partial frame is pending, the frames are decrypted in place in `buf`
    /// and forwarded payloads point into it.
    pub fn handle_buf(&mut self, now: Time, buf: BytesMut) {
        if !self.accepts_input() {
            return;
        }
        if self.rx.is_empty() {
            self.rx = buf;
        } else {
            self.rx.extend_from_slice(&buf);
        }
        self.process_rx(now);
    }

    fn accepts_input(&self) -> bool {
        match &self.state {
            State::Closed => false,
            // A draining session takes no new requests; the bytes are read only to notice EOF.
            State::Established(link) => link.drain_deadline.is_none(),
            State::Handshaking { .. } => true,
        }
    }

    fn process_rx(&mut self, now: Time) {
        while !matches!(self.state, State::Closed) {
            match self.frames.decode(&mut self.rx) {
                Ok(Some(frame)) => self.handle_frame(now, frame.into_body()),
                Ok(None) => break,
                Err(_) => self.close(now, CloseReason::MalformedFrame),
            }
        }
        if self.rx.is_empty() && self.rx.capacity() > IDLE_RX_CAP {
            self.rx = BytesMut::new();
        }
    }

    fn handle_frame(&mut self, now: Time, body: BytesMut) {
        match &mut self.state {
            State::Handshaking { .. } => self.handle_handshake(now, &body),
            State::Established(_) => self.handle_packet(now, body),
            State::Closed => {}
        }
    }

    fn handle_handshake(&mut self, now: Time, body: &[u8]) {
        let State::Handshaking { seed, .. } = &self.state else {
            return;
        };
        let mut rng = ChaCha20Rng::from_seed(*seed);
        let accepted = match handshake::accept(&self.config, now, body, &mut rng) {
            Ok(accepted) => accepted,
            Err(e) => return self.close(now, e.close_reason()),
        };
        let link = Link {
            identity: accepted.identity,
            sealer: accepted.key.as_ref().map(|key| {
                let mut prefix = [0u8; 4];
                rng.fill_bytes(&mut prefix);
                Sealer {
                    cipher: PacketCipher::new(key),
                    nonces: NonceSequence::new(prefix),
                }
            }),
            next_index: handshake::START_INDEX,
            idle_deadline: now + self.config.session.idle_timeout,
            drain_deadline: None,
            tunnels: Vec::new(),
            rate: self.config.session.rate_limit.map(Gcra::new),
        };
        // The reply is plaintext: the client needs it to derive the key.
        write_packet(
            None,
            &mut self.tx,
            &accepted.reply,
            accepted.reply.encoded_len(),
        );
        self.events
            .push_back(Event::Authenticated(link.identity.clone()));
        self.state = State::Established(Box::new(link));
    }

    fn handle_packet(&mut self, now: Time, body: BytesMut) {
        let Self {
            config,
            state,
            events,
            ..
        } = self;
        let State::Established(link) = state else {
            return;
        };
        let plaintext = match &link.sealer {
            Some(sealer) => match sealer.cipher.open(body) {
                Ok(text) => text,
                Err(_) => return self.close(now, CloseReason::DecryptFailed),
            },
            None => body.freeze(),
        };
        let Ok(packet) = codec::decode_packet(plaintext) else {
            return self.close(now, CloseReason::MalformedPacket);
        };
        if let Some(rate) = &mut link.rate {
            if rate.check(now).is_err() {
                return self.close(now, CloseReason::RateLimited);
            }
        }
        if config.session.check_index && packet.index != link.next_index {
            return self.close(now, CloseReason::IndexMismatch);
        }
        link.next_index = link.next_index.wrapping_add(1);
        link.idle_deadline = now + config.session.idle_timeout;

        let data = if packet.compress {
            match inflate(&packet.data, config.session.max_inflated_len) {
                Ok(data) => Bytes::from(data),
                Err(_) => return self.close(now, CloseReason::DecompressFailed),
            }
        } else {
            packet.data
        };

        let routed = match config
            .routes
            .route(packet.r#mod, packet.obj, link.identity.uid)
        {
            Ok(routed) => routed,
            Err(RouteError::ObjectNotOwned { .. }) => {
                return self.close(now, CloseReason::ObjectNotOwned);
            }
            Err(e) => {
                // A client mistake, not an attack: answer this request with an error and go on.
                let reply = unexpected_err(packet.r#mod, packet.seq, packet.index, &e.to_string());
                self.send(now, &reply);
                return;
            }
        };
        let key = routed.key;
        let tunnel = match link.tunnels.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                if link.tunnels.len() >= config.session.max_tunnels.max(1) {
                    // Evict the least recently used tunnel, preferring one with nothing pending.
                    let lru = link
                        .tunnels
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, t)| (!t.pending.is_empty(), t.last_used))
                        .map(|(i, _)| i);
                    if let Some(i) = lru {
                        let evicted = link.tunnels.swap_remove(i);
                        events.push_back(Event::CloseTunnel(evicted.key));
                        let cipher = link.sealer.as_mut();
                        fail_pending(cipher, &mut self.tx, &evicted.pending);
                    }
                }
                link.tunnels.push(Tunnel {
                    key,
                    last_used: now,
                    pending: VecDeque::new(),
                });
                events.push_back(Event::OpenTunnel(key));
                link.tunnels.len() - 1
            }
        };
        if let Some(t) = link.tunnels.get_mut(tunnel) {
            t.last_used = now;
            if t.pending.len() >= config.session.max_pending.max(1) {
                // A backend that never answers some requests must not make this grow: forget
                // the oldest (it would most likely never be answered either).
                t.pending.pop_front();
            }
            t.pending.push_back(Pending {
                index: packet.index,
                module: packet.r#mod,
                seq: packet.seq,
            });
        }
        let object_kind = config.routes.oid_rule(key.kind) == OidRule::Object;
        let message = TunnelMessage {
            data,
            data_version: packet.data_version,
            obj: routed.obj,
            module: packet.r#mod,
            seq: packet.seq,
            index: packet.index,
            conn_id: if object_kind { packet.conn_id } else { 0 },
            frag_id: if object_kind { packet.frag_id } else { 0 },
            frag_count: if object_kind { packet.frag_count } else { 0 },
            frag_index: if object_kind { packet.frag_index } else { 0 },
        };
        events.push_back(Event::Forward { key, message });
    }

    /// A message from the backend on tunnel `key`: a reply (non-zero index) or a push (index 0).
    /// Replies at least `compress_threshold` bytes go out zlib-compressed.
    pub fn handle_tunnel(&mut self, now: Time, key: TunnelKey, message: TunnelMessage) {
        let State::Established(link) = &mut self.state else {
            return;
        };
        if message.index != 0 {
            if let Some(t) = link.tunnels.iter_mut().find(|t| t.key == key) {
                t.answered(message.index);
            }
        }
        let session = &self.config.session;
        let (data, compress) = deflate_reply(
            message.data,
            session.compress_threshold,
            session.compress_strong,
        );
        let object_kind = self.config.routes.oid_rule(key.kind) == OidRule::Object;
        let packet = Packet {
            data,
            // Upstream drops data_version on replies (spec §3.1); the client cache needs it.
            data_version: message.data_version,
            obj: message.obj,
            r#mod: message.module,
            seq: message.seq,
            ver: 0,
            index: message.index,
            conn_id: if object_kind { message.conn_id } else { 0 },
            frag_id: if object_kind { message.frag_id } else { 0 },
            frag_count: if object_kind { message.frag_count } else { 0 },
            frag_index: if object_kind { message.frag_index } else { 0 },
            compress,
        };
        self.send(now, &packet);
        self.finish_drain_if_done(now);
    }

    /// The backend stream for `key` ended (finished or failed). Every request still waiting for a
    /// reply on it is answered with `SCServerUnexpectedErr` (same index, "backend unavailable"), so
    /// the client can retry instead of waiting forever; the next client packet for that key opens
    /// a new tunnel ([`Event::OpenTunnel`]).
    pub fn handle_tunnel_closed(&mut self, now: Time, key: TunnelKey) {
        let State::Established(link) = &mut self.state else {
            return;
        };
        let Some(i) = link.tunnels.iter().position(|t| t.key == key) else {
            return;
        };
        let closed = link.tunnels.swap_remove(i);
        fail_pending(link.sealer.as_mut(), &mut self.tx, &closed.pending);
        if self.check_budget(now) {
            self.finish_drain_if_done(now);
        }
    }

    /// A server push (`index` 0), compressed like a reply when large. Returns whether it was
    /// queued (only an authenticated, open session takes pushes).
    pub fn push(&mut self, now: Time, body: &PushBody) -> bool {
        if !matches!(self.state, State::Established(_)) {
            return false;
        }
        let session = &self.config.session;
        let (data, compress) = deflate_reply(
            body.data.clone(),
            session.compress_threshold,
            session.compress_strong,
        );
        let packet = Packet {
            data,
            data_version: body.data_version,
            obj: body.obj,
            r#mod: body.r#mod,
            seq: body.seq,
            compress,
            ..Default::default()
        };
        self.send(now, &packet)
    }

    /// A push already serialized as a `Packet` (a broadcast is serialized once and sealed per
    /// session). Returns whether it was queued; a packet too large for the client's frame limit is
    /// dropped.
    pub fn push_packet(&mut self, now: Time, packet: &[u8]) -> bool {
        let State::Established(link) = &mut self.state else {
            return false;
        };
        let overhead = if link.sealer.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        if packet.is_empty() || packet.len() + overhead > self.config.session.max_frame_len {
            return false;
        }
        match &mut link.sealer {
            Some(sealer) => {
                let nonce = sealer.nonces.next_nonce();
                if sealer
                    .cipher
                    .seal_bytes(nonce, packet, &mut self.tx)
                    .is_err()
                {
                    return false;
                }
            }
            None => {
                self.tx.reserve(HEADER_LEN + packet.len());
                self.tx.put_u32(packet.len() as u32);
                self.tx.put_slice(packet);
            }
        }
        self.check_budget(now)
    }

    /// Begins a graceful close (gateway shutdown): client packets are no longer taken, replies to
    /// requests already forwarded are still delivered until they are all in or the drain timeout
    /// passes; then the client gets `SCServerLogout{Server}` and the session closes with
    /// [`CloseReason::Shutdown`]. A session still handshaking closes at once.
    pub fn drain(&mut self, now: Time) {
        match &mut self.state {
            State::Handshaking { .. } => self.close(now, CloseReason::Shutdown),
            State::Established(link) if link.drain_deadline.is_none() => {
                link.drain_deadline = Some(now + self.config.session.drain_timeout);
                self.finish_drain_if_done(now);
            }
            _ => {}
        }
    }

    fn finish_drain_if_done(&mut self, now: Time) {
        if let State::Established(link) = &self.state {
            if link.drain_deadline.is_some() && link.tunnels.iter().all(|t| t.pending.is_empty()) {
                self.close(now, CloseReason::Shutdown);
            }
        }
    }

    /// Closes the session now. When the reason calls for it
    /// ([`CloseReason::logout_code`]) the client is sent `SCServerLogout` first. Closing twice
    /// does nothing.
    pub fn close(&mut self, _now: Time, reason: CloseReason) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        match state {
            State::Closed => return,
            State::Handshaking { .. } => {
                if let Some(code) = reason.logout_code() {
                    let packet = logout(code);
                    write_packet(None, &mut self.tx, &packet, packet.encoded_len());
                }
            }
            State::Established(mut link) => {
                if reason == CloseReason::SlowConsumer {
                    // The client is not reading: nothing queued will reach it.
                    self.tx = BytesMut::new();
                } else if let Some(code) = reason.logout_code() {
                    let packet = logout(code);
                    write_packet(
                        link.sealer.as_mut(),
                        &mut self.tx,
                        &packet,
                        packet.encoded_len(),
                    );
                }
                for tunnel in link.tunnels {
                    self.events.push_back(Event::CloseTunnel(tunnel.key));
                }
            }
        }
        self.rx = BytesMut::new();
        self.events.push_back(Event::Closed(reason));
    }

    /// A deadline passed: call when `now` reaches [`poll_timeout`](Self::poll_timeout). Calling it
    /// early, or more than once, is harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        let reason = match &self.state {
            State::Handshaking { deadline, .. } if now >= *deadline => {
                CloseReason::HandshakeTimeout
            }
            State::Established(link) => match link.drain_deadline {
                Some(drain) if now >= drain => CloseReason::Shutdown,
                Some(_) => return,
                None if now >= link.idle_deadline => CloseReason::IdleTimeout,
                None => return,
            },
            _ => return,
        };
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
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 && self.is_quiet() {
            // Nothing in flight (typically just after login): give the queue's memory back.
            // A busy session keeps it, so forwarding does not allocate per packet.
            self.events = VecDeque::new();
        }
        event
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
        if self.tx.is_empty() {
            return None;
        }
        let out = self.tx.split().freeze();
        self.release_idle_tx();
        Some(out)
    }

    /// The bytes queued for the client, borrowed: write them, then
    /// [`advance_transmit`](Self::advance_transmit) by what was written. The zero-copy
    /// alternative to [`poll_transmit`](Self::poll_transmit); bytes not yet consumed count against
    /// the outbound budget.
    pub fn transmit(&self) -> &[u8] {
        &self.tx
    }

    /// Consumes `written` bytes from the front of [`transmit`](Self::transmit).
    pub fn advance_transmit(&mut self, written: usize) {
        let n = written.min(self.tx.len());
        if n == self.tx.len() {
            self.tx.clear();
            self.release_idle_tx();
        } else {
            bytes::Buf::advance(&mut self.tx, n);
        }
    }

    fn release_idle_tx(&mut self) {
        if self.tx.is_empty() && self.tx.capacity() > IDLE_BUFFER_CAP {
            self.tx = BytesMut::new();
        }
    }

    /// Seals and queues a packet for the client; a packet too large for the client's frame limit
    /// is replaced by `SCServerUnexpectedErr` for the same request. Returns whether the session is
    /// still open.
    fn send(&mut self, now: Time, packet: &Packet) -> bool {
        let State::Established(link) = &mut self.state else {
            return false;
        };
        let overhead = if link.sealer.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        let len = codec::packet_len(packet);
        if len + overhead > self.config.session.max_frame_len {
            let reply = unexpected_err(
                packet.r#mod,
                packet.seq,
                packet.index,
                "reply too large for the client frame limit",
            );
            write_packet(
                link.sealer.as_mut(),
                &mut self.tx,
                &reply,
                reply.encoded_len(),
            );
        } else {
            write_packet(link.sealer.as_mut(), &mut self.tx, packet, len);
        }
        self.check_budget(now)
    }

    fn check_budget(&mut self, now: Time) -> bool {
        if self.tx.len() > self.config.session.outbound_budget {
            self.close(now, CloseReason::SlowConsumer);
            return false;
        }
        true
    }
}

/// Appends one frame holding `packet` (whose encoded length is `len`), sealed when there is a
/// sealer.
fn write_packet(sealer: Option<&mut Sealer>, tx: &mut BytesMut, packet: &Packet, len: usize) {
    match sealer {
        Some(sealer) => {
            let nonce = sealer.nonces.next_nonce();
            // Fails only for packets over 2 GiB, which the frame limit rules out.
            let _ = sealer
                .cipher
                .seal_with(nonce, len, tx, |tx| codec::encode_packet(packet, tx));
        }
        None => {
            tx.reserve(HEADER_LEN + len);
            tx.put_u32(len as u32);
            codec::encode_packet(packet, tx);
        }
    }
}

/// Answers each pending request with `SCServerUnexpectedErr`: its tunnel is gone.
fn fail_pending(mut sealer: Option<&mut Sealer>, tx: &mut BytesMut, pending: &VecDeque<Pending>) {
    for p in pending {
        let reply = unexpected_err(p.module, p.seq, p.index, "backend unavailable");
        let len = codec::packet_len(&reply);
        write_packet(sealer.as_deref_mut(), tx, &reply, len);
    }
}

fn logout(code: LogoutCode) -> Packet {
    let body = ScServerLogout { code: code as i32 };
    Packet {
        data: body.encode_to_vec().into(),
        r#mod: SYSTEM_MODULE,
        seq: LOGOUT_SEQ,
        ..Default::default()
    }
}

/// `SCServerUnexpectedErr` answering request (`module`, `seq`, `index`), as roma sends it.
fn unexpected_err(module: i32, seq: i32, index: i32, msg: &str) -> Packet {
    let body = ScServerUnexpectedErr {
        r#mod: module,
        seq,
        msg: msg.to_owned(),
    };
    Packet {
        data: body.encode_to_vec().into(),
        r#mod: SYSTEM_MODULE,
        seq: UNEXPECTED_ERR_SEQ,
        index,
        ..Default::default()
    }
}
