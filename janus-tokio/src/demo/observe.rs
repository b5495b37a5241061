//! What the demo backend has seen, for tests: opened, rejected and closed streams with their
//! `x-md-global-*` metadata, every request, and the number of streams open right now.
//!
//! The history is a bounded ring per event type ([`DemoConfig::observe_capacity`]) so a demo
//! backend that runs for days next to a gateway does not grow without bound; live events also go
//! to [`DemoBackend::subscribe`] receivers.
//!
//! [`DemoConfig::observe_capacity`]: super::DemoConfig::observe_capacity
//! [`DemoBackend::subscribe`]: super::DemoBackend::subscribe

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{broadcast, watch};
use tonic::metadata::MetadataMap;

use super::reply::TunnelMessage;

/// The stream metadata headers, named where the gateway builds them (janus-core).
pub use janus_core::session::metadata::{
    CLIENT_IP as HEADER_CLIENT_IP, COLOR as HEADER_COLOR, GATE_REFERER as HEADER_GATE_REFERER,
    OID as HEADER_OID, REFERER as HEADER_REFERER, SID as HEADER_SID, STATUS as HEADER_STATUS,
    UID as HEADER_UID,
};

/// Capacity of the live event channel behind [`DemoBackend::subscribe`](super::DemoBackend::subscribe):
/// a receiver that falls further behind than this many events gets `RecvError::Lagged`.
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// Which tunnel service a stream was opened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// `player.intra.v1.TunnelService/Tunnel`.
    Player,
    /// `room.intra.v1.TunnelService/Tunnel`.
    Room,
}

/// The `x-md-global-*` headers of a stream, as sent (`None` when a header is absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamMetadata {
    /// `x-md-global-oid`.
    pub oid: Option<String>,
    /// `x-md-global-uid`.
    pub uid: Option<String>,
    /// `x-md-global-sid`.
    pub sid: Option<String>,
    /// `x-md-global-status`.
    pub status: Option<String>,
    /// `x-md-global-color`.
    pub color: Option<String>,
    /// `x-md-global-client-ip`.
    pub client_ip: Option<String>,
    /// `x-md-global-referer`.
    pub referer: Option<String>,
    /// `x-md-global-gate-referer`.
    pub gate_referer: Option<String>,
    /// W3C `traceparent` (the gateway's tunnel span, with the `otel` feature).
    pub traceparent: Option<String>,
}

impl StreamMetadata {
    pub(crate) fn from_headers(headers: &MetadataMap) -> Self {
        // Non-ASCII bytes are kept (lossily) rather than dropped, so a test sees what was sent.
        let header = |name: &str| {
            headers
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        Self {
            oid: header(HEADER_OID),
            uid: header(HEADER_UID),
            sid: header(HEADER_SID),
            status: header(HEADER_STATUS),
            color: header(HEADER_COLOR),
            client_ip: header(HEADER_CLIENT_IP),
            referer: header(HEADER_REFERER),
            gate_referer: header(HEADER_GATE_REFERER),
            traceparent: header("traceparent"),
        }
    }
}

/// A stream the backend accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamOpened {
    /// Backend-wide stream number, from 1.
    pub stream_id: u64,
    /// Player or room.
    pub kind: TunnelKind,
    /// The parsed `x-md-global-oid`.
    pub oid: i64,
    /// The parsed `x-md-global-uid`.
    pub uid: i64,
    /// Every `x-md-global-*` header as sent.
    pub metadata: StreamMetadata,
}

/// A stream the backend refused before it opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRejected {
    /// Player or room.
    pub kind: TunnelKind,
    /// Every `x-md-global-*` header as sent.
    pub metadata: StreamMetadata,
    /// The gRPC code returned (`PermissionDenied` or `InvalidArgument`).
    pub code: tonic::Code,
    /// The status message returned.
    pub message: String,
}

/// A request received on an open stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSeen {
    /// The stream it arrived on.
    pub stream_id: u64,
    /// Player or room.
    pub kind: TunnelKind,
    /// The stream's oid.
    pub oid: i64,
    /// The request, field by field (room fields are 0 on player streams).
    pub request: TunnelMessage,
}

/// Why a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The gateway half-closed (`CloseSend`); the backend ended the stream with OK.
    HalfClosed,
    /// The gateway dropped the stream, or its connection went away.
    Cancelled,
    /// A `fail-stream` request ended it with `Status::internal`.
    Failed,
    /// The backend shut down gracefully (after pushing `SCServerLogout{Waiting}`).
    Shutdown,
}

/// A stream that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamClosed {
    /// The stream that ended.
    pub stream_id: u64,
    /// Player or room.
    pub kind: TunnelKind,
    /// The stream's oid.
    pub oid: i64,
    /// Why it ended.
    pub end: StreamEnd,
}

/// One thing the backend saw, as delivered to [`DemoBackend::subscribe`](super::DemoBackend::subscribe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DemoEvent {
    /// A stream was accepted.
    Opened(StreamOpened),
    /// A stream was refused.
    Rejected(StreamRejected),
    /// A request arrived.
    Request(RequestSeen),
    /// A stream ended.
    Closed(StreamClosed),
}

/// A snapshot of what the backend has seen (each list oldest first, at most
/// [`DemoConfig::observe_capacity`](super::DemoConfig::observe_capacity) long).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Accepted streams.
    pub opened: Vec<StreamOpened>,
    /// Refused streams.
    pub rejected: Vec<StreamRejected>,
    /// Requests on accepted streams.
    pub requests: Vec<RequestSeen>,
    /// Ended streams.
    pub closed: Vec<StreamClosed>,
    /// Streams open at the time of the snapshot.
    pub open_streams: usize,
}

#[derive(Debug, Default)]
struct History {
    opened: VecDeque<StreamOpened>,
    rejected: VecDeque<StreamRejected>,
    requests: VecDeque<RequestSeen>,
    closed: VecDeque<StreamClosed>,
}

/// Records events into the history and the live channel, and counts open streams.
#[derive(Debug)]
pub(crate) struct Recorder {
    capacity: usize,
    history: Mutex<History>,
    events: broadcast::Sender<DemoEvent>,
    open_streams: watch::Sender<usize>,
    next_stream_id: AtomicU64,
}

impl Recorder {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            history: Mutex::new(History::default()),
            events: broadcast::channel(EVENT_CHANNEL_CAPACITY).0,
            open_streams: watch::Sender::new(0),
            next_stream_id: AtomicU64::new(1),
        }
    }

    /// Records an accepted stream and returns the guard that counts it as open until dropped.
    pub(crate) fn open(
        self: &Arc<Self>,
        kind: TunnelKind,
        oid: i64,
        uid: i64,
        metadata: StreamMetadata,
    ) -> OpenStream {
        let stream_id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        self.open_streams.send_modify(|open| *open += 1);
        let opened = StreamOpened {
            stream_id,
            kind,
            oid,
            uid,
            metadata,
        };
        self.record(opened, |h| &mut h.opened, DemoEvent::Opened);
        OpenStream {
            recorder: Arc::clone(self),
            stream_id,
            kind,
            oid,
            end: StreamEnd::Cancelled,
        }
    }

    pub(crate) fn rejected(&self, rejected: StreamRejected) {
        self.record(rejected, |h| &mut h.rejected, DemoEvent::Rejected);
    }

    pub(crate) fn request(&self, seen: RequestSeen) {
        self.record(seen, |h| &mut h.requests, DemoEvent::Request);
    }

    pub(crate) fn snapshot(&self) -> Observed {
        let history = self.history();
        Observed {
            opened: history.opened.iter().cloned().collect(),
            rejected: history.rejected.iter().cloned().collect(),
            requests: history.requests.iter().cloned().collect(),
            closed: history.closed.iter().cloned().collect(),
            open_streams: *self.open_streams.borrow(),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<DemoEvent> {
        self.events.subscribe()
    }

    pub(crate) fn open_streams(&self) -> usize {
        *self.open_streams.borrow()
    }

    pub(crate) fn watch_open_streams(&self) -> watch::Receiver<usize> {
        self.open_streams.subscribe()
    }

    fn record<T: Clone>(
        &self,
        item: T,
        list: impl FnOnce(&mut History) -> &mut VecDeque<T>,
        event: impl FnOnce(T) -> DemoEvent,
    ) {
        if self.events.receiver_count() > 0 {
            // An error only means every receiver went away in the meantime.
            let _ = self.events.send(event(item.clone()));
        }
        if self.capacity == 0 {
            return;
        }
        let mut history = self.history();
        let list = list(&mut history);
        if list.len() >= self.capacity {
            list.pop_front();
        }
        list.push_back(item);
    }

    fn history(&self) -> MutexGuard<'_, History> {
        // The history stays consistent even if a holder panicked: every update is one push/pop.
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts one stream as open; dropping it records the close with [`OpenStream::end`].
#[derive(Debug)]
pub(crate) struct OpenStream {
    recorder: Arc<Recorder>,
    pub(crate) stream_id: u64,
    pub(crate) kind: TunnelKind,
    pub(crate) oid: i64,
    /// Why the stream ended; `Cancelled` unless the task says otherwise before dropping.
    pub(crate) end: StreamEnd,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let closed = StreamClosed {
            stream_id: self.stream_id,
            kind: self.kind,
            oid: self.oid,
            end: self.end,
        };
        self.recorder
            .record(closed, |h| &mut h.closed, DemoEvent::Closed);
        self.recorder
            .open_streams
            .send_modify(|open| *open = open.saturating_sub(1));
    }
}
