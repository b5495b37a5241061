//! What a connection drives: a janus-core [`Session`] over plain TCP, or the same session behind
//! janus-core's WebSocket layer ([`WsSession`]). Both take socket bytes and give socket bytes, so
//! one driver and one pair of IO halves serve both transports.

use bytes::BytesMut;
use janus_core::{
    Time,
    session::{Event, Session},
    ws::WsSession,
};

/// A connection's protocol state.
#[allow(clippy::large_enum_variant)] // deliberate: the common (TCP) case stays inline
#[derive(Debug)]
pub(super) enum Endpoint {
    Tcp(Session),
    /// Boxed: TCP connections, the many, should not pay for the WebSocket state.
    Ws(Box<WsSession>),
}

impl Endpoint {
    pub fn session(&self) -> &Session {
        match self {
            Self::Tcp(s) => s,
            Self::Ws(ws) => ws.session(),
        }
    }

    pub fn session_mut(&mut self) -> &mut Session {
        match self {
            Self::Tcp(s) => s,
            Self::Ws(ws) => ws.session_mut(),
        }
    }

    pub fn handle_buf(&mut self, now: Time, buf: BytesMut) {
        match self {
            Self::Tcp(s) => s.handle_buf(now, buf),
            Self::Ws(ws) => ws.handle_buf(now, buf),
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        match self {
            Self::Tcp(s) => s.handle_timeout(now),
            Self::Ws(ws) => ws.handle_timeout(now),
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        match self {
            Self::Tcp(s) => s.poll_event(),
            Self::Ws(ws) => ws.poll_event(),
        }
    }

    /// Gives back the idle session's memory (key schedule, empty buffers).
    pub fn compact(&mut self) {
        match self {
            Self::Tcp(s) => s.compact(),
            Self::Ws(ws) => ws.compact(),
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.session().poll_timeout()
    }

    /// Bytes waiting to be written.
    pub fn pending_transmit(&self) -> usize {
        match self {
            Self::Tcp(s) => s.pending_transmit(),
            Self::Ws(ws) => ws.pending_transmit(),
        }
    }

    /// The bytes to write next.
    pub fn transmit(&mut self) -> &[u8] {
        match self {
            Self::Tcp(s) => s.transmit(),
            Self::Ws(ws) => ws.transmit(),
        }
    }

    pub fn advance_transmit(&mut self, written: usize) {
        match self {
            Self::Tcp(s) => s.advance_transmit(written),
            Self::Ws(ws) => ws.advance_transmit(written),
        }
    }

    /// Every byte received on the socket (a handshake's progress, for admission).
    pub fn bytes_received(&self) -> u64 {
        match self {
            Self::Tcp(s) => s.stats().bytes_in,
            Self::Ws(ws) => ws.bytes_received(),
        }
    }
}
