//! One client connection on an event loop: its socket (TCP, or WebSocket through tungstenite on
//! the non-blocking stream), its janus-core [`Session`], and where that session lives on the hubs.

use std::{
    io::{self, Read as _, Write as _},
    sync::Arc,
};

use bytes::BytesMut;
use janus_core::{
    CloseReason, Time,
    frame::{Frames, frame_of_message},
    limit::Admitted,
    session::{Session, SessionStats},
};
use mio::net::TcpStream;
use tungstenite::{
    HandshakeError, Message, WebSocket,
    handshake::{
        MidHandshake,
        server::{Callback, ErrorResponse, Request, Response, ServerHandshake},
    },
    http::StatusCode,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

/// Bytes read from one connection per turn at most, so one busy client cannot starve the rest
/// of its event loop; the rest is read on the next turn.
pub const READ_BUDGET: usize = 64 * 1024;
/// Quiet time after which a session gives back its key schedule and buffers
/// ([`Session::compact`]): an idle connection then costs a few hundred bytes, and a busy one
/// never pays the key expansion more than once a second.
pub const COMPACT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The WebSocket upgrade's checks: the one path, and the allowed origins (empty: any).
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub path: Arc<str>,
    pub origins: Arc<[String]>,
}

fn reject(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

impl Callback for Upgrade {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        if request.uri().path() != &*self.path {
            return Err(reject(StatusCode::NOT_FOUND, "no such path"));
        }
        if self.origins.is_empty() || self.origins.iter().any(|o| o == "*") {
            return Ok(response);
        }
        let origin = request
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok());
        match origin {
            Some(o) if self.origins.iter().any(|a| a == o) => Ok(response),
            _ => Err(reject(StatusCode::FORBIDDEN, "origin not allowed")),
        }
    }
}

type Upgrading = MidHandshake<ServerHandshake<TcpStream, Upgrade>>;

/// The connection's transport.
pub enum Io {
    Tcp(TcpStream),
    /// The HTTP upgrade is in progress (boxed: rare, and large).
    Upgrading(Box<Option<Upgrading>>),
    Ws(Box<WebSocket<TcpStream>>),
}

/// What a read turn found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Everything available was read.
    Drained,
    /// The budget ran out with bytes left: read again next turn.
    More,
    /// The peer is gone (or broke the transport's protocol); the session has been told.
    Closed,
}

/// One client.
pub struct Client {
    pub io: Io,
    pub session: Session,
    /// The session's id on the relay links: `generation << 32 | slab key`.
    pub id: u64,
    /// The hub (index) the session is open on.
    pub home: Option<u8>,
    pub admitted: Option<Admitted>,
    /// The deadline a timer entry is armed for.
    pub armed: Option<Time>,
    /// Closed: the last bytes must be out by then.
    pub close_by: Option<Time>,
    /// Quiet until then: the session is compacted (no key schedule, no buffers).
    pub compact_at: Option<Time>,
    /// Relay credit consumed and not yet returned (returned once the client reads its bytes).
    pub owed: u32,
    pub exported: SessionStats,
    pub authenticated: bool,
    /// Reading is paused (the client does not read what it is sent).
    pub paused: bool,
    /// Queued for a write and a settle at the end of the turn.
    pub dirty: bool,
    /// The peer closed its side, or the socket failed.
    pub eof: bool,
    /// Listed in its loop's handshaking clients (evictable).
    pub evictable: bool,
}

impl Client {
    pub fn new(io: Io, session: Session, id: u64, admitted: Admitted) -> Self {
        Self {
            io,
            session,
            id,
            home: None,
            admitted: Some(admitted),
            armed: None,
            close_by: None,
            compact_at: None,
            owed: 0,
            exported: SessionStats::default(),
            authenticated: false,
            paused: false,
            dirty: false,
            eof: false,
            evictable: true,
        }
    }

    /// Reads what the socket has (up to [`READ_BUDGET`]) into the session. `buf` is the event
    /// loop's one read buffer: an idle connection owns none.
    pub fn read(&mut self, now: Time, buf: &mut [u8]) -> ReadOutcome {
        if self.eof {
            return ReadOutcome::Closed;
        }
        let mut total = 0;
        let outcome = match &mut self.io {
            Io::Tcp(stream) => loop {
                match stream.read(buf) {
                    Ok(0) => break ReadOutcome::Closed,
                    Ok(n) => {
                        total += n;
                        // The session takes the chunk as its receive buffer and splits frames
                        // off it without copying; nothing stays allocated once they are used.
                        let chunk = BytesMut::from(buf.get(..n).unwrap_or_default());
                        self.session.handle_buf(now, chunk);
                        if total >= READ_BUDGET {
                            break ReadOutcome::More;
                        }
                        // A short read took everything the socket had; bytes arriving later
                        // raise a new edge, so the read that would only say WouldBlock is
                        // saved (one system call per message).
                        if n < buf.len() {
                            break ReadOutcome::Drained;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadOutcome::Drained,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break ReadOutcome::Closed,
                }
            },
            Io::Ws(ws) => loop {
                match ws.read() {
                    Ok(Message::Binary(payload)) => {
                        total += payload.len();
                        match frame_of_message(payload) {
                            Some(frame) => self.session.handle_buf(now, frame),
                            None => self.session.close(now, CloseReason::MalformedFrame),
                        }
                        if total >= READ_BUDGET {
                            break ReadOutcome::More;
                        }
                    }
                    Ok(Message::Text(_)) => {
                        self.session.close(now, CloseReason::MalformedFrame);
                        break ReadOutcome::Drained;
                    }
                    Ok(Message::Close(_)) => break ReadOutcome::Closed,
                    // Pings are answered by tungstenite (the pong goes out with the next flush).
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break ReadOutcome::Drained;
                    }
                    Err(_) => break ReadOutcome::Closed,
                }
            },
            Io::Upgrading(_) => ReadOutcome::Drained,
        };
        if outcome == ReadOutcome::Closed {
            self.eof = true;
            self.session.close(now, CloseReason::PeerClosed);
        }
        outcome
    }

    /// Advances a WebSocket upgrade; `Err` when it failed (the connection is to be dropped).
    pub fn upgrade(&mut self) -> Result<(), ()> {
        let Io::Upgrading(mid) = &mut self.io else {
            return Ok(());
        };
        let Some(m) = mid.take() else {
            return Err(());
        };
        match m.handshake() {
            Ok(ws) => {
                self.io = Io::Ws(Box::new(ws));
                Ok(())
            }
            Err(HandshakeError::Interrupted(m)) => {
                **mid = Some(m);
                Ok(())
            }
            Err(HandshakeError::Failure(_)) => Err(()),
        }
    }

    /// Writes what the session has queued, as far as the socket takes it. `Err` when the socket
    /// failed.
    pub fn write(&mut self) -> io::Result<()> {
        match &mut self.io {
            Io::Tcp(stream) => {
                while !self.session.transmit().is_empty() {
                    match stream.write(self.session.transmit()) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => self.session.advance_transmit(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Io::Ws(ws) => {
                // What tungstenite holds goes first; the session keeps the rest (and its budget
                // counts it) until the socket takes that.
                if !ws_flush(ws)? {
                    return Ok(());
                }
                if let Some(bytes) = self.session.poll_transmit() {
                    for frame in Frames(bytes) {
                        match ws.write(Message::Binary(frame)) {
                            // Buffered; it goes out with the flush.
                            Ok(()) => {}
                            Err(tungstenite::Error::Io(e))
                                if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(ws_error(e)),
                        }
                    }
                    ws_flush(ws)?;
                }
                Ok(())
            }
            Io::Upgrading(_) => Ok(()),
        }
    }

    /// Something happened on the session: compact it only after [`COMPACT_AFTER`] of quiet.
    pub fn touch(&mut self, now: Time) {
        self.compact_at = Some(now + COMPACT_AFTER);
    }

    /// Whether bytes are still waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.session.pending_transmit() > 0
    }

    /// The last goodbye of a WebSocket (a close frame with the reason's code), best effort.
    pub fn finish(&mut self, reason: CloseReason) {
        if let Io::Ws(ws) = &mut self.io {
            let frame = CloseFrame {
                code: CloseCode::from(reason.ws_close_code()),
                reason: reason.as_str().into(),
            };
            let _ = ws.close(Some(frame));
            let _ = ws.flush();
        }
    }

    /// The socket, for (re)registration.
    pub fn stream(&mut self) -> Option<&mut TcpStream> {
        match &mut self.io {
            Io::Tcp(s) => Some(s),
            Io::Ws(ws) => Some(ws.get_mut()),
            Io::Upgrading(mid) => mid.as_mut().as_mut().map(|m| m.get_mut().get_mut()),
        }
    }
}

/// Flushes tungstenite's buffer: `Ok(true)` when all of it went out.
fn ws_flush(ws: &mut WebSocket<TcpStream>) -> io::Result<bool> {
    match ws.flush() {
        Ok(()) => Ok(true),
        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(ws_error(e)),
    }
}

fn ws_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
