//! What the clients count: shared live counters (read by the progress bar and the rate window
//! while the run goes on) and per-client histograms and failures (merged once at the end, so the
//! hot path never shares a lock).

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use hdrhistogram::Histogram;
use janus_core::{client::ClientError, handshake::ClientHandshakeError};
use janus_proto::message::sc_server_logout::Code as LogoutCode;

/// Highest latency the histograms hold, microseconds (one hour; larger values saturate).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// An empty latency histogram in microseconds, three significant digits.
pub(crate) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?)
}

/// Counters every client task adds to as it goes.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Connections currently open, handshaking or established (a gauge).
    pub connections: AtomicU64,
    pub handshakes: AtomicU64,
    pub requests: AtomicU64,
    pub replies: AtomicU64,
    pub pushes: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub errors: AtomicU64,
}

/// The monotonic counters of [`Live`] at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub handshakes: u64,
    pub requests: u64,
    pub replies: u64,
    pub pushes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Snapshot {
    /// Counts between `earlier` and `self`.
    pub fn since(self, earlier: Snapshot) -> Snapshot {
        Snapshot {
            handshakes: self.handshakes.saturating_sub(earlier.handshakes),
            requests: self.requests.saturating_sub(earlier.requests),
            replies: self.replies.saturating_sub(earlier.replies),
            pushes: self.pushes.saturating_sub(earlier.pushes),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
        }
    }
}

impl Live {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            handshakes: self.handshakes.load(Relaxed),
            requests: self.requests.load(Relaxed),
            replies: self.replies.load(Relaxed),
            pushes: self.pushes.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// Holds one [`Live::connections`] slot while a connection is open.
#[derive(Debug)]
pub(crate) struct ConnectionGauge<'a>(&'a AtomicU64);

impl<'a> ConnectionGauge<'a> {
    pub fn up(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Relaxed);
        Self(gauge)
    }
}

impl Drop for ConnectionGauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Why a connection, handshake or request did not succeed. The report counts them by
/// [`key`](Failure::key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nothing listens on the address.
    ConnectRefused,
    /// TCP connect did not complete within the timeout.
    ConnectTimeout,
    /// Any other connect error (unreachable, out of ports, ...).
    ConnectError(std::io::ErrorKind),
    /// The HTTP upgrade was answered with this status, or failed before one (`None`).
    WsUpgrade(Option<u16>),
    /// The server answered the handshake with `SCServerLogout`.
    HandshakeRefused(LogoutCode),
    /// The connection closed before `SCHandshake` (the gateway closes silently on most errors).
    HandshakeClosed,
    /// No `SCHandshake` within the timeout.
    HandshakeTimeout,
    /// `SCHandshake` arrived but did not check out.
    HandshakeInvalid(ClientHandshakeError),
    /// A frame or packet from the server that the client could not read.
    Protocol(ClientError),
    /// A read or write failed (reset, broken pipe).
    Io(std::io::ErrorKind),
    /// A write did not complete within the timeout.
    WriteTimeout,
    /// The server closed an established session without saying why.
    ClosedByServer,
    /// The server closed an established session with `SCServerLogout`.
    Logout(LogoutCode),
    /// A WebSocket message that is not binary.
    WsTextMessage,
    /// The WebSocket layer broke its protocol.
    WsProtocol,
    /// No reply within the timeout.
    RequestTimeout,
    /// Requests in flight when their connection ended.
    RequestLost,
    /// The gateway answered a request with `SCServerUnexpectedErr`.
    ServerUnexpectedErr,
    /// The OS random number generator failed (no token or key could be made).
    Entropy,
    /// A client task did not finish in time and was abandoned (a bench bug).
    ClientAbandoned,
}

impl Failure {
    /// The name the report counts this failure under.
    pub fn key(&self) -> String {
        match self {
            Failure::ConnectRefused => "connect_refused".into(),
            Failure::ConnectTimeout => "connect_timeout".into(),
            Failure::ConnectError(kind) => format!("connect_error({kind})"),
            Failure::WsUpgrade(Some(status)) => format!("ws_upgrade({status})"),
            Failure::WsUpgrade(None) => "ws_upgrade".into(),
            Failure::HandshakeRefused(code) => {
                format!("handshake_refused({})", code.as_str_name())
            }
            Failure::HandshakeClosed => "handshake_closed".into(),
            Failure::HandshakeTimeout => "handshake_timeout".into(),
            Failure::HandshakeInvalid(e) => format!("handshake_invalid({e})"),
            Failure::Protocol(e) => format!("protocol({e})"),
            Failure::Io(kind) => format!("io({kind})"),
            Failure::WriteTimeout => "write_timeout".into(),
            Failure::ClosedByServer => "closed_by_server".into(),
            Failure::Logout(code) => format!("logout({})", code.as_str_name()),
            Failure::WsTextMessage => "ws_text_message".into(),
            Failure::WsProtocol => "ws_protocol".into(),
            Failure::RequestTimeout => "request_timeout".into(),
            Failure::RequestLost => "request_lost".into(),
            Failure::ServerUnexpectedErr => "server_unexpected_err".into(),
            Failure::Entropy => "entropy".into(),
            Failure::ClientAbandoned => "client_abandoned".into(),
        }
    }

    /// The failure a client session's `Closed` event stands for.
    pub fn from_client_error(error: ClientError) -> Self {
        match error {
            ClientError::Handshake(ClientHandshakeError::Refused(code)) => {
                Failure::HandshakeRefused(code)
            }
            ClientError::Handshake(e) => Failure::HandshakeInvalid(e),
            ClientError::HandshakeTimeout => Failure::HandshakeTimeout,
            ClientError::LoggedOut(code) => Failure::Logout(code),
            other => Failure::Protocol(other),
        }
    }
}

/// What one client task measured.
#[derive(Debug, Clone)]
pub(crate) struct ClientStats {
    /// Connect start to verified `SCHandshake`, microseconds.
    pub handshake_us: Histogram<u64>,
    /// Request due to reply, microseconds.
    pub request_us: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// Replies whose request had already timed out, or that answer nothing we sent.
    pub late_replies: u64,
    /// Requests still unanswered when the drain grace ended.
    pub unanswered: u64,
}

impl ClientStats {
    pub fn new(template: &Histogram<u64>) -> Self {
        Self {
            handshake_us: template.clone(),
            request_us: template.clone(),
            errors: BTreeMap::new(),
            late_replies: 0,
            unanswered: 0,
        }
    }

    pub fn count(&mut self, failure: Failure) {
        self.count_n(failure, 1);
    }

    pub fn count_n(&mut self, failure: Failure, n: u64) {
        if n > 0 {
            *self.errors.entry(failure.key()).or_default() += n;
        }
    }

    pub fn merge(&mut self, other: ClientStats) -> anyhow::Result<()> {
        self.handshake_us.add(&other.handshake_us)?;
        self.request_us.add(&other.request_us)?;
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
        self.late_replies += other.late_replies;
        self.unanswered += other.unanswered;
        Ok(())
    }
}

/// Microseconds in `d`, at least 1 (the histograms' lowest value).
pub(crate) fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
