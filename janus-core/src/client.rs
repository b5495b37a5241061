//! The client side of a session, for SDKs, the bench tool and tests: the same framing, handshake
//! and sealing as the gateway, driven the same sans-IO way, plus what only a client does on its
//! own clock: give up on a silent handshake, heartbeat, and time requests out.
//!
//! A [`ClientSession`] owns no socket and no clock. The application feeds it:
//!
//! * [`handle_bytes`](ClientSession::handle_bytes): bytes read from the connection, in any split;
//! * [`handle_timeout`](ClientSession::handle_timeout): when
//!   [`poll_timeout`](ClientSession::poll_timeout)'s deadline has passed;
//! * [`send`](ClientSession::send) and [`close`](ClientSession::close): its own decisions.
//!
//! After **every** input, drain the outputs in this order:
//!
//! 1. [`poll_event`](ClientSession::poll_event) until `None`;
//! 2. [`poll_transmit`](ClientSession::poll_transmit), and write all of it (a timeout may have
//!    queued a heartbeat);
//! 3. [`poll_timeout`](ClientSession::poll_timeout) to re-arm the timer.
//!
//! ```text
//! let mut client = ClientSession::new(&config, now, seed);   // queues the CSHandshake frame
//! loop {
//!     socket.write(client.poll_transmit());
//!     select! {
//!         bytes = socket.read()                 => client.handle_bytes(now, bytes),
//!         _ = sleep_until(client.poll_timeout()) => client.handle_timeout(now),
//!     }
//!     while let Some(event) = client.poll_event() { ... }     // see ClientEvent
//!     client.send(now, Outgoing { .. })?;                      // assigns the next index
//! }
//! ```
//!
//! # Events
//!
//! [`Established`](ClientEvent::Established) once, then any number of
//! [`Packet`](ClientEvent::Packet) (replies and pushes), [`Heartbeat`](ClientEvent::Heartbeat),
//! [`RequestFailed`](ClientEvent::RequestFailed) and
//! [`RequestTimeout`](ClientEvent::RequestTimeout), and last [`Closed`](ClientEvent::Closed),
//! right after [`Logout`](ClientEvent::Logout) when the server logged the session out. System
//! messages are recognised by [`SystemMessage::recognise`] and nowhere else.
//!
//! # Requests
//!
//! With a [`request_timeout`](ClientConfig::request_timeout) (the default), every request sent
//! gets exactly one outcome: its reply (a `Packet`, or a `Heartbeat` for the client's own
//! heartbeats), `RequestFailed`, or `RequestTimeout`. A reply that comes after its
//! `RequestTimeout` is dropped. At most [`max_pending`](ClientConfig::max_pending) requests are
//! remembered; sending one more gives up on the oldest at once (`RequestTimeout`). Without a
//! request timeout the client remembers only its own heartbeats, and reports every other server
//! packet as it comes.

mod pending;
mod resume;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::Write as _;

use bytes::{Bytes, BytesMut};
use core::time::Duration;
use flate2::{Compression, write::ZlibEncoder};
pub use janus_proto::message::{
    sc_heartbeat::Code as HeartbeatCode, sc_server_logout::Code as LogoutCode,
};
use janus_proto::packet::Packet;
use prost::Message;
use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
use rand_core::RngCore;

pub use self::resume::{ClientResume, DEFAULT_MAX_UNCONFIRMED};
use self::{
    pending::{Answered, Pending, Request},
    resume::ResumeLink,
};
use crate::{
    Time,
    compress::inflate,
    config::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_TIMESTAMP_SKEW},
    crypto::{NONCE_LEN, PacketCipher},
    frame::{self, DEFAULT_MAX_FRAME_LEN, FrameDecoder, FrameError, HEADER_LEN},
    handshake::{ClientHandshake, ClientHandshakeError, ClientKeys, ResumeRequest},
    resume::ResumeRefusal,
    system::{self, HEARTBEAT_SEQ, SYSTEM_MODULE, SystemMessage},
};

/// Largest inflated server `data` the client accepts, bytes (a client is less exposed than the
/// gateway, but a zlib bomb from a compromised server should not take it down).
pub const DEFAULT_CLIENT_MAX_INFLATED_LEN: usize = 16 * 1024 * 1024;
/// Silence after which an established client sends a heartbeat: a sixth of the gateway's 60 s
/// idle timeout ([`DEFAULT_IDLE_TIMEOUT`](crate::config::DEFAULT_IDLE_TIMEOUT)), so a quiet player
/// is not disconnected even if a few heartbeats are lost or late (mercury uses 5 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Time a request waits for its reply. A live backend answers in milliseconds and a failed one is
/// answered with an error at once, so 30 s of silence means the reply is lost; the application
/// hears so instead of waiting forever.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests remembered while they await a reply. A game client has a handful in flight; the bound
/// keeps a server that stops answering from growing the client's memory.
pub const DEFAULT_CLIENT_MAX_PENDING: usize = 1024;

/// How a client connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Certificate material; `None` for a gateway running unencrypted.
    pub keys: Option<ClientKeys>,
    /// The account-service token.
    pub token: String,
    /// `CSHandshake.server_id` (0: take the token's).
    pub server_id: i64,
    /// `Packet.conn_id` of the handshake.
    pub conn_id: i32,
    /// Largest frame body accepted, bytes. Default 16384.
    pub max_frame_len: usize,
    /// Allowed server clock distance. Default 5 s.
    pub max_timestamp_skew: Duration,
    /// Time from [`ClientSession::new`] to a valid `SCHandshake`, after which the session closes
    /// with [`ClientError::HandshakeTimeout`]. Default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`] (10 s, the
    /// gateway's own deadline: waiting longer is pointless).
    pub handshake_timeout: Duration,
    /// Silence after which a heartbeat is sent; `None` never sends one. Default
    /// [`DEFAULT_HEARTBEAT_INTERVAL`] (10 s). Zero counts as one millisecond.
    pub heartbeat_interval: Option<Duration>,
    /// Time a request waits for its reply before [`ClientEvent::RequestTimeout`]; `None` turns
    /// request tracking off (see the [module docs](self#requests)). Default
    /// [`DEFAULT_REQUEST_TIMEOUT`] (30 s).
    pub request_timeout: Option<Duration>,
    /// Requests remembered at once (at least one); beyond it the oldest is given up on. Default
    /// [`DEFAULT_CLIENT_MAX_PENDING`] (1024).
    pub max_pending: usize,
    /// Ask the gateway for session resume (`janus.resume.v1`, docs/resume.md): a dropped
    /// connection can then be carried on ([`ClientSession::into_resume`],
    /// [`ClientSession::resume`]). Default `false`: the handshake is exactly upstream's.
    pub resume: bool,
}

impl ClientConfig {
    /// A configuration with default limits.
    pub fn new(keys: Option<ClientKeys>, token: impl Into<String>) -> Self {
        Self {
            keys,
            token: token.into(),
            server_id: 0,
            conn_id: 0,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_timestamp_skew: DEFAULT_MAX_TIMESTAMP_SKEW,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_pending: DEFAULT_CLIENT_MAX_PENDING,
            resume: false,
        }
    }
}

/// A packet to send. `obj` 0 means "my own uid".
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub module: i32,
    pub seq: i32,
    pub obj: i64,
    pub data: Bytes,
    pub data_version: u64,
    /// zlib-compress `data` and set the `compress` flag.
    pub compress: bool,
}

/// Why a client session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] ClientHandshakeError),
    /// No `SCHandshake` within [`ClientConfig::handshake_timeout`].
    #[error("no handshake reply in time")]
    HandshakeTimeout,
    /// The server sent a bad length prefix.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// A packet did not authenticate.
    #[error("packet did not decrypt")]
    DecryptFailed,
    /// A packet that is not a `Packet`, or compressed data that does not inflate.
    #[error("malformed packet")]
    MalformedPacket,
    /// The server logged the session out (`SCServerLogout`), saying why.
    #[error("logged out by the server: {0:?}")]
    LoggedOut(LogoutCode),
    /// `send` before the handshake completed or after the session closed.
    #[error("session is not established")]
    NotEstablished,
    /// The application closed it.
    #[error("closed locally")]
    Local,
    /// A resume went wrong on the client's side: the server's `start_index` does not match the
    /// requests the client still holds (it sent more than it could keep).
    #[error("cannot resume: the server lacks requests the client no longer holds")]
    ResumeGap,
}

/// What the client application is told (the order is in the [module docs](self#events)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The handshake completed.
    Established { start_index: i32, server_time: i64 },
    /// A reply (non-zero index) or push (index 0); `data` already inflated.
    Packet(Packet),
    /// The answer to one of the client's own heartbeats (`SCHeartbeat`): the server's clock, unix
    /// seconds, and whether it accepted ours.
    Heartbeat {
        server_time: i64,
        code: HeartbeatCode,
    },
    /// The server could not serve the request at `index` (`SCServerUnexpectedErr`); `module` and
    /// `seq` are the failed request's, as the server names them.
    RequestFailed {
        index: i32,
        module: i32,
        seq: i32,
        message: String,
    },
    /// The request at `index` got no reply in time, or was given up on to stay within
    /// [`ClientConfig::max_pending`]. A reply arriving later is dropped.
    RequestTimeout { index: i32, module: i32, seq: i32 },
    /// The server logged the session out (`SCServerLogout`) and said why;
    /// `Closed(ClientError::LoggedOut(code))` follows.
    Logout(LogoutCode),
    /// The session is over. Always the last event.
    Closed(ClientError),
    /// A resumed session ([`ClientSession::resume`]) continues: requests the server had not
    /// received were sent again, and the packets the client missed follow, in order.
    Resumed { start_index: i32, server_time: i64 },
    /// The gateway would not resume the session and logged the client in afresh with its token
    /// (an [`Established`](ClientEvent::Established) follows; the old session's requests got
    /// their `RequestTimeout` first).
    ResumeRefused(ResumeRefusal),
}

#[derive(Debug)]
enum State {
    Handshaking {
        handshake: Box<ClientHandshake>,
        deadline: Time,
        /// The session being resumed, if this handshake resumes one.
        resuming: Option<Box<ClientResume>>,
    },
    Established(Link),
    Closed,
}

/// Fuzz targets copy an established pair instead of repeating the handshake per input; a
/// handshake in progress holds an ephemeral secret that must never be copied, so it cannot be.
#[cfg(fuzzing)]
impl Clone for State {
    fn clone(&self) -> Self {
        match self {
            Self::Established(link) => Self::Established(link.clone()),
            Self::Handshaking { .. } | Self::Closed => Self::Closed,
        }
    }
}

/// An established session.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
struct Link {
    cipher: Option<Box<PacketCipher>>,
    next_index: i32,
    pending: Pending,
    /// When the last packet was queued: heartbeats fill the silences.
    last_sent: Time,
    /// Set when the server granted session resume.
    resume: Option<Box<ResumeLink>>,
}

/// The client side of one connection. Feed it bytes, timeouts and requests; after each, drain
/// [`poll_event`](Self::poll_event), then [`poll_transmit`](Self::poll_transmit), then re-arm
/// the timer with [`poll_timeout`](Self::poll_timeout) (see the [module docs](self)).
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct ClientSession {
    state: State,
    frames: FrameDecoder,
    rx: BytesMut,
    tx: BytesMut,
    events: VecDeque<ClientEvent>,
    rng: ChaCha20Rng,
    heartbeat_interval: Option<Duration>,
    request_timeout: Option<Duration>,
    max_pending: usize,
}

impl ClientSession {
    /// Starts a session: the `CSHandshake` frame is queued for [`poll_transmit`](Self::poll_transmit)
    /// and the handshake deadline is armed.
    pub fn new(config: &ClientConfig, now: Time, seed: [u8; 32]) -> Self {
        Self::start(config, now, seed, None)
    }

    /// Starts a session that resumes `previous` (from [`into_resume`](Self::into_resume)) on a
    /// new connection: the handshake carries its ticket, what was received and the proof. Then
    /// [`ClientEvent::Resumed`], or [`ClientEvent::ResumeRefused`] and a fresh login (when
    /// `config` has a token), or `Closed(Handshake(ResumeRefused))`.
    pub fn resume(
        config: &ClientConfig,
        now: Time,
        seed: [u8; 32],
        previous: ClientResume,
    ) -> Self {
        Self::start(config, now, seed, Some(Box::new(previous)))
    }

    fn start(
        config: &ClientConfig,
        now: Time,
        seed: [u8; 32],
        resuming: Option<Box<ClientResume>>,
    ) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let request = match &resuming {
            Some(previous) => Some(previous.request()),
            None if config.resume => Some(ResumeRequest {
                request: true,
                ..Default::default()
            }),
            None => None,
        };
        let (handshake, packet) = ClientHandshake::start_with(
            config.keys.clone(),
            &config.token,
            config.server_id,
            config.conn_id,
            now,
            config.max_timestamp_skew.as_secs(),
            request.as_ref(),
            &mut rng,
        );
        let mut session = Self {
            state: State::Handshaking {
                handshake: Box::new(handshake),
                deadline: now + config.handshake_timeout,
                resuming,
            },
            frames: FrameDecoder::new(config.max_frame_len),
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            events: VecDeque::new(),
            rng,
            heartbeat_interval: config
                .heartbeat_interval
                .map(|i| i.max(Duration::from_millis(1))),
            request_timeout: config.request_timeout,
            max_pending: config.max_pending,
        };
        // The handshake goes out in plaintext; only a token over 2 GiB cannot be framed, and the
        // session then starts out closed.
        if let Err(e) = queue(&mut session.tx, None, &mut session.rng, &packet) {
            session.fail(e);
        }
        session
    }

    /// Whether the handshake has completed and the session is open.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Requests awaiting their reply (see the [module docs](self#requests)).
    pub fn pending_requests(&self) -> usize {
        match &self.state {
            State::Established(link) => link.pending.len(),
            _ => 0,
        }
    }

    /// Bytes received from the server, in any split.
    pub fn handle_bytes(&mut self, now: Time, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.rx.extend_from_slice(bytes);
        while !self.is_closed() {
            match self.frames.decode(&mut self.rx) {
                Ok(Some(frame)) => self.handle_frame(now, frame.into_body()),
                Ok(None) => break,
                Err(e) => self.fail(e.into()),
            }
        }
    }

    fn handle_frame(&mut self, now: Time, body: BytesMut) {
        match &mut self.state {
            State::Handshaking { .. } => {
                let State::Handshaking {
                    handshake,
                    resuming,
                    ..
                } = std::mem::replace(&mut self.state, State::Closed)
                else {
                    return;
                };
                match handshake.finish(now, &body) {
                    Ok(done) => self.established(now, done, resuming),
                    // `self.state` is already Closed: report directly.
                    Err(e) => {
                        if let Some(mut previous) = resuming {
                            self.give_up_all(&mut previous.pending);
                        }
                        self.events.push_back(ClientEvent::Closed(e.into()));
                    }
                }
            }
            State::Established(link) => {
                let text = match &link.cipher {
                    Some(c) => c.open(body).map_err(|_| ClientError::DecryptFailed),
                    None => Ok(body.freeze()),
                };
                let packet =
                    text.and_then(|t| Packet::decode(t).map_err(|_| ClientError::MalformedPacket));
                let packet = packet.and_then(|mut p| {
                    if p.compress {
                        p.data = inflate(&p.data, DEFAULT_CLIENT_MAX_INFLATED_LEN)
                            .map_err(|_| ClientError::MalformedPacket)?
                            .into();
                        p.compress = false;
                    }
                    Ok(p)
                });
                match packet {
                    Ok(p) => {
                        if let Some(resume) = link.resume.as_mut() {
                            resume.received(now, &p);
                        }
                        self.handle_packet(p);
                        self.ack_if_due(now, false);
                    }
                    Err(e) => self.fail(e),
                }
            }
            State::Closed => {}
        }
    }

    /// One server packet of an established session: the single place where system messages
    /// become events.
    fn handle_packet(&mut self, packet: Packet) {
        let system = SystemMessage::recognise(&packet);
        if let Some(SystemMessage::Logout(code)) = system {
            self.events.push_back(ClientEvent::Logout(code));
            self.fail(ClientError::LoggedOut(code));
            return;
        }
        let State::Established(link) = &mut self.state else {
            return;
        };
        if packet.index == 0 {
            self.events.push_back(ClientEvent::Packet(packet));
            return;
        }
        let request = match link.pending.answer(packet.index) {
            Answered::Request(request) => Some(request),
            // Already reported (timed out or given up on): one outcome per request.
            Answered::Stale => return,
            Answered::Unknown => None,
        };
        let event = match system {
            Some(SystemMessage::UnexpectedErr(err)) => ClientEvent::RequestFailed {
                index: packet.index,
                module: err.r#mod,
                seq: err.seq,
                message: err.msg,
            },
            Some(SystemMessage::Heartbeat(beat)) if request.is_some_and(|r| r.heartbeat) => {
                ClientEvent::Heartbeat {
                    server_time: beat.server_time,
                    code: beat.code(),
                }
            }
            _ => ClientEvent::Packet(packet),
        };
        self.events.push_back(event);
    }

    fn fail(&mut self, error: ClientError) {
        if !self.is_closed() {
            self.state = State::Closed;
            self.events.push_back(ClientEvent::Closed(error));
        }
    }

    /// Queues a packet with the next index and returns that index. With a request timeout the
    /// request is remembered until its outcome (see the [module docs](self#requests)).
    pub fn send(&mut self, now: Time, out: Outgoing) -> Result<i32, ClientError> {
        self.send_request(now, out, self.request_timeout.is_some(), false)
    }

    fn send_request(
        &mut self,
        now: Time,
        out: Outgoing,
        track: bool,
        heartbeat: bool,
    ) -> Result<i32, ClientError> {
        let State::Established(link) = &mut self.state else {
            return Err(ClientError::NotEstablished);
        };
        let index = link.next_index;
        let data = if out.compress {
            let mut enc = ZlibEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(&out.data)
                .and_then(|()| enc.finish())
                .map(Bytes::from)
                .map_err(|_| ClientError::MalformedPacket)?
        } else {
            out.data
        };
        let packet = Packet {
            data,
            data_version: out.data_version,
            obj: out.obj,
            r#mod: out.module,
            seq: out.seq,
            index,
            compress: out.compress,
            ..Default::default()
        };
        queue(&mut self.tx, link.cipher.as_deref(), &mut self.rng, &packet)?;
        if let Some(resume) = link.resume.as_mut() {
            resume.sent(packet);
        }
        // Only a packet that was queued uses up its index: the server expects them without gaps.
        link.next_index = index.wrapping_add(1);
        link.last_sent = link.last_sent.max(now);
        if track {
            let request = Request {
                index,
                module: out.module,
                seq: out.seq,
                deadline: self.request_timeout.map(|t| now + t),
                heartbeat,
            };
            if let Some(oldest) = link.pending.insert(request) {
                self.events.push_back(timed_out(oldest));
            }
        }
        Ok(index)
    }

    /// Queues raw bytes as they are (for tests that send malformed or replayed frames).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.tx.extend_from_slice(bytes);
    }

    /// Ends the session locally.
    pub fn close(&mut self) {
        self.fail(ClientError::Local);
    }

    /// A deadline passed: call when `now` reaches [`poll_timeout`](Self::poll_timeout). Closes a
    /// session whose handshake is overdue, reports overdue requests, and queues a heartbeat after
    /// a silence. Calling it early, or twice, does nothing more.
    pub fn handle_timeout(&mut self, now: Time) {
        let heartbeat_due = match &mut self.state {
            State::Handshaking {
                deadline, resuming, ..
            } => {
                if now >= *deadline {
                    if let Some(mut previous) = resuming.take() {
                        self.give_up_all(&mut previous.pending);
                    }
                    self.fail(ClientError::HandshakeTimeout);
                }
                return;
            }
            State::Established(link) => {
                while let Some(request) = link.pending.expire(now) {
                    self.events.push_back(timed_out(request));
                }
                self.heartbeat_interval
                    .is_some_and(|interval| now >= link.last_sent + interval)
            }
            State::Closed => return,
        };
        self.ack_if_due(now, true);
        if heartbeat_due {
            let beat = Outgoing {
                module: SYSTEM_MODULE,
                seq: HEARTBEAT_SEQ,
                data: system::heartbeat_body(now.unix_secs()),
                ..Default::default()
            };
            // Always tracked, so its answer can be told from a reply to the application.
            if let Err(e) = self.send_request(now, beat, true, true) {
                self.fail(e);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the handshake deadline, the next
    /// heartbeat or the oldest request's deadline, whichever is first; `None` when nothing is.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        match &self.state {
            State::Handshaking { deadline, .. } => Some(*deadline),
            State::Established(link) => {
                let heartbeat = self.heartbeat_interval.map(|i| link.last_sent + i);
                let ack = link.resume.as_ref().and_then(|r| r.ack_due());
                [heartbeat, link.pending.next_deadline(), ack]
                    .into_iter()
                    .flatten()
                    .min()
            }
            State::Closed => None,
        }
    }

    /// Everything queued for the server, as one buffer.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.tx.is_empty()).then(|| self.tx.split().freeze())
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

fn timed_out(request: Request) -> ClientEvent {
    ClientEvent::RequestTimeout {
        index: request.index,
        module: request.module,
        seq: request.seq,
    }
}

/// Appends one frame holding `packet`: sealed under `cipher`, or plaintext (the handshake, and
/// unencrypted mode) behind the one header writer, [`frame::put_header`].
fn queue(
    tx: &mut BytesMut,
    cipher: Option<&PacketCipher>,
    rng: &mut ChaCha20Rng,
    packet: &Packet,
) -> Result<(), ClientError> {
    match cipher {
        Some(c) => {
            let mut nonce = [0u8; NONCE_LEN];
            rng.fill_bytes(&mut nonce);
            c.seal_message(nonce, packet, tx)
                .map(|_| ())
                .map_err(|_| ClientError::MalformedPacket)
        }
        None => {
            let len = packet.encoded_len();
            tx.reserve(HEADER_LEN + len);
            frame::put_header(tx, len)?;
            packet.encode_raw(tx);
            Ok(())
        }
    }
}
