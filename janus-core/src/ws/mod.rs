//! WebSocket transport (RFC 6455), sans-IO: the opening handshake and the frames around a
//! [`Session`], so a WebSocket connection is driven exactly like a TCP one (bytes in, bytes out)
//! and every byte on its wire is decided here.
//!
//! ```text
//! socket bytes ─► WsSession::handle_buf ─► upgrade (101, or an HTTP refusal)
//!                                        └► frames: binary message ─► one Janus frame ─► Session
//!                                                   ping ─► pong, close ─► close, violations ─► close code
//! Session::poll_transmit ─► one binary message per frame ─► WsSession::transmit ─► socket
//! ```
//!
//! Spec §1.3: each binary message carries exactly one length-prefixed frame (trailing bytes
//! ignored); a frame cannot span messages. Every protocol violation closes the session with its
//! own [`CloseReason`] and the matching close code (1002 protocol error, 1003 text data, 1007
//! invalid UTF-8, 1009 too big). Control frames are metered (a ping flood is rate limited) and
//! the pongs they cause count against the session's outbound budget (a client that pings without
//! reading is a slow consumer), so neither can make the gateway buffer without bound or drop a
//! reply silently.

mod frame;
#[cfg(test)]
mod tests;
mod upgrade;

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use self::frame::{Opcode, close_payload, decode, encode, parse_close, put_header};
pub use self::{
    frame::{MAX_CONTROL_PAYLOAD, WsError},
    upgrade::{MAX_REQUEST_LEN, UpgradeError, UpgradePolicy},
};
use crate::{
    CloseReason, Time,
    frame::{Frames, frame_len, wire_len},
    limit::{Gcra, RateLimit},
    session::{Event, Session, SessionStats},
};

/// Control frames (pings, pongs) a client may send: 50 back to back, then 20 per second. Stops a
/// ping flood from costing the gateway a pong per ping without end; heartbeats need one every few
/// seconds at most.
pub const DEFAULT_CONTROL_RATE: RateLimit = RateLimit {
    per_second: 20,
    burst: 50,
};

/// A WebSocket listener's settings, shared by its connections.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Path and origins of the upgrade.
    pub upgrade: UpgradePolicy,
    /// Pings and pongs accepted from a client ([`DEFAULT_CONTROL_RATE`]).
    pub control_rate: RateLimit,
}

impl WsConfig {
    /// Serves `path`, any origin, default control rate.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            upgrade: UpgradePolicy {
                path: path.into(),
                allowed_origins: Vec::new(),
            },
            control_rate: DEFAULT_CONTROL_RATE,
        }
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for the HTTP upgrade request.
    Upgrading,
    /// Frames flow. `message` holds a fragmented binary message being assembled.
    Open {
        message: Option<BytesMut>,
        control: Gcra,
    },
    /// Nothing more is read; what is queued is the last of it.
    Done,
}

/// A [`Session`] behind the WebSocket protocol. Drive it like a session: feed socket bytes to
/// [`handle_buf`](Self::handle_buf), drain [`poll_event`](Self::poll_event), write
/// [`transmit`](Self::transmit) and [`advance_transmit`](Self::advance_transmit) by what was
/// written, re-arm with [`poll_timeout`](Self::poll_timeout); reach the session's other inputs
/// (tunnels, pushes, drain, close) through [`session_mut`](Self::session_mut).
#[derive(Debug)]
pub struct WsSession {
    session: Session,
    config: Arc<WsConfig>,
    state: State,
    rx: BytesMut,
    /// WebSocket-framed bytes for the socket.
    tx: BytesMut,
    /// Every byte received, the upgrade included (a handshake's progress, for admission).
    received: u64,
    /// Why the session closed, once it has: the close frame still to send.
    closing: Option<CloseReason>,
    close_sent: bool,
    /// Why the upgrade was refused, if it was.
    refused: Option<UpgradeError>,
}

impl WsSession {
    /// A connection that starts with the upgrade request. The session's handshake deadline
    /// (from accept) bounds the upgrade too.
    pub fn new(session: Session, config: Arc<WsConfig>) -> Self {
        Self {
            session,
            config,
            state: State::Upgrading,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            received: 0,
            closing: None,
            close_sent: false,
            refused: None,
        }
    }

    /// Why the upgrade was refused (for metrics by cause), once it has been.
    pub fn upgrade_error(&self) -> Option<UpgradeError> {
        self.refused
    }

    /// The session inside.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session inside, for its other inputs (tunnel messages, pushes, drain, close).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Gives back what an idle connection does not need: the session's (see
    /// [`Session::compact`]) and the WebSocket layer's empty receive and transmit buffers.
    /// Nothing observable changes; the next bytes allocate again.
    pub fn compact(&mut self) {
        self.session.compact();
        if self.rx.is_empty() {
            self.rx = BytesMut::new();
        }
        if self.tx.is_empty() {
            self.tx = BytesMut::new();
        }
    }

    /// The session's counters (Janus frames and their bytes; WebSocket framing not included).
    pub fn stats(&self) -> SessionStats {
        self.session.stats()
    }

    /// Bytes received on the socket so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Bytes received from the socket, in any split.
    pub fn handle_buf(&mut self, now: Time, buf: BytesMut) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.received += buf.len() as u64;
        if self.rx.is_empty() {
            self.rx = buf;
        } else {
            self.rx.extend_from_slice(&buf);
        }
        if matches!(self.state, State::Upgrading) {
            match upgrade::accept(&self.rx, &self.config.upgrade) {
                Ok(None) => return,
                Ok(Some((response, consumed))) => {
                    self.tx.put_slice(response.as_bytes());
                    self.rx.advance(consumed);
                    self.state = State::Open {
                        message: None,
                        control: Gcra::new(self.config.control_rate),
                    };
                }
                Err(e) => {
                    self.refused = Some(e);
                    self.tx.put_slice(e.response().as_bytes());
                    self.state = State::Done;
                    self.close_sent = true;
                    self.session.close(now, CloseReason::WsUpgradeRejected);
                    return;
                }
            }
        }
        self.read_frames(now);
        if self.rx.is_empty() && self.rx.capacity() > 1024 {
            self.rx = BytesMut::new();
        }
    }

    fn read_frames(&mut self, now: Time) {
        let max = wire_len(self.session_max_frame());
        loop {
            if !matches!(self.state, State::Open { .. }) || self.closing.is_some() {
                return;
            }
            let frame = match decode(&mut self.rx, max) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => return self.fail(now, e.close_reason()),
            };
            let State::Open { message, control } = &mut self.state else {
                return;
            };
            match frame.opcode {
                Opcode::Binary | Opcode::Continuation => {
                    let assembled = match (frame.opcode, message.take()) {
                        (Opcode::Binary, None) => frame.payload,
                        (Opcode::Continuation, Some(mut started)) => {
                            if started.len() + frame.payload.len() > max {
                                return self.fail(now, CloseReason::WsMessageTooBig);
                            }
                            started.extend_from_slice(&frame.payload);
                            started
                        }
                        _ => return self.fail(now, CloseReason::WsProtocolError),
                    };
                    if frame.fin {
                        self.deliver(now, assembled);
                    } else {
                        *message = Some(assembled);
                    }
                }
                Opcode::Text => {
                    // The protocol is binary (spec §1.3): text is refused, as upstream does.
                    let reason = match std::str::from_utf8(&frame.payload) {
                        Ok(_) => CloseReason::WsTextMessage,
                        Err(_) => CloseReason::WsInvalidUtf8,
                    };
                    return self.fail(now, reason);
                }
                Opcode::Ping | Opcode::Pong => {
                    if control.check(now).is_err() {
                        return self.fail(now, CloseReason::RateLimited);
                    }
                    if frame.opcode == Opcode::Ping {
                        encode(&mut self.tx, Opcode::Pong, &frame.payload);
                        self.check_budget(now);
                    }
                }
                Opcode::Close => {
                    let code = match parse_close(&frame.payload) {
                        Ok(code) => code,
                        Err(e) => return self.fail(now, e.close_reason()),
                    };
                    // Echo the peer's code (RFC 6455 §5.5.1); "no status" is answered 1000.
                    let echo = if code == 1005 { 1000 } else { code };
                    encode(&mut self.tx, Opcode::Close, &close_payload(echo, ""));
                    self.close_sent = true;
                    self.state = State::Done;
                    self.session.close(now, CloseReason::PeerClosed);
                    return;
                }
            }
        }
    }

    fn session_max_frame(&self) -> usize {
        self.session.config().session.max_frame_len
    }

    /// One complete binary message: the Janus frame at its start goes to the session.
    fn deliver(&mut self, now: Time, mut message: BytesMut) {
        match frame_len(&message) {
            Some(end) => {
                message.truncate(end);
                self.session.handle_buf(now, message);
            }
            None => self.fail(now, CloseReason::MalformedFrame),
        }
    }

    fn fail(&mut self, now: Time, reason: CloseReason) {
        self.state = State::Done;
        self.session.close(now, reason);
    }

    /// Pongs count against the outbound budget like everything else queued for the client.
    fn check_budget(&mut self, now: Time) {
        let queued = self.tx.len() + self.session.pending_transmit();
        if queued > self.session.config().session.outbound_budget {
            self.tx.clear();
            self.fail(now, CloseReason::SlowConsumer);
        }
    }

    /// A deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        self.session.handle_timeout(now);
    }

    /// The next deadline (the session's, which covers the upgrade).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.session.poll_timeout()
    }

    /// The next event of the session. Its `Closed` also decides the close frame.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.session.poll_event();
        if let Some(Event::Closed(reason)) = &event {
            self.closing = Some(*reason);
            if *reason == CloseReason::SlowConsumer {
                // The client is not reading: what is queued will not reach it.
                self.tx.clear();
            }
            self.state = State::Done;
        }
        event
    }

    /// Bytes queued for the socket and not yet written (for deciding to wait for writability).
    pub fn pending_transmit(&self) -> usize {
        let close = usize::from(self.closing.is_some() && !self.close_sent);
        self.tx.len() + self.session.pending_transmit() + close
    }

    /// The bytes to write next. The session's frames are wrapped one per binary message only
    /// when the previous batch is out, so what the client does not read stays in the session,
    /// where its outbound budget sees it.
    pub fn transmit(&mut self) -> &[u8] {
        if self.tx.is_empty() {
            if let Some(batch) = self.session.poll_transmit() {
                self.wrap(batch);
            }
            if let Some(reason) = self.closing {
                if !self.close_sent && self.session.pending_transmit() == 0 {
                    self.close_sent = true;
                    let code = reason.ws_close_code();
                    encode(
                        &mut self.tx,
                        Opcode::Close,
                        &close_payload(code, reason.as_str()),
                    );
                }
            }
        }
        &self.tx
    }

    fn wrap(&mut self, batch: Bytes) {
        self.tx.reserve(batch.len() + 16);
        let mut frames = Frames(batch);
        for frame in frames.by_ref() {
            put_header(&mut self.tx, Opcode::Binary, frame.len());
            self.tx.put_slice(&frame);
        }
    }

    /// Consumes `written` bytes of [`transmit`](Self::transmit).
    pub fn advance_transmit(&mut self, written: usize) {
        let n = written.min(self.tx.len());
        self.tx.advance(n);
        if self.tx.is_empty() && self.tx.capacity() > 4096 {
            self.tx = BytesMut::new();
        }
    }
}
