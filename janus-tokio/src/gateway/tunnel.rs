//! One backend tunnel: the bidirectional gRPC stream the session described in its
//! [`OpenTunnel`] event (method, message layout, `x-md-global-*` metadata, all decided by the
//! core), carrying one (kind, oid) of one session.
//!
//! The task owns the stream. Requests arrive from the connection task on a bounded channel (the
//! connection never waits on it: a full channel closes the session as `backend_backpressure`);
//! responses go back to the connection with a waiting send, so a client that cannot keep up
//! slows its own backend stream rather than growing memory. When the stream ends, for whatever
//! reason, the connection is told (`ConnCmd::TunnelClosed`) and the session answers every
//! request left pending. Everything is named by the session's [`TunnelId`], so the late end of a
//! stream the session already replaced is ignored by the core.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use janus_core::session::{OpenTunnel, TunnelId, TunnelLayout, TunnelMessage};
use janus_proto::{player, room};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{
    codegen::http::uri::PathAndQuery,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::Channel,
};
use tracing::{Instrument as _, Span, debug, info};

use super::{
    Shared,
    backends::PickError,
    command::{ConnCmd, ConnTx},
    metrics::{BackendCounters, Histogram, RedisOp, TunnelFailure},
};

/// Requests queued per tunnel before the session is closed for flooding it (upstream: 1024,
/// blocking).
pub const TUNNEL_QUEUE: usize = 1024;
/// How long opening a stream may take before the tunnel counts as failed.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests remembered per tunnel for the round-trip histogram; beyond it the oldest is
/// forgotten (a backend that never answers some requests cannot grow it).
const LATENCY_QUEUE: usize = TUNNEL_QUEUE;

/// The stream's request metadata: the core's `x-md-global-*` headers, plus the W3C trace
/// context of the tunnel's span (feature `otel`).
fn metadata(open: &OpenTunnel, span: &Span) -> MetadataMap {
    let mut map = MetadataMap::with_capacity(open.metadata.len() + 2);
    for (name, value) in &open.metadata {
        // Every value is ASCII (numbers, host:port, a colour from a signed token); one that is
        // not a valid header value is sent empty rather than failing the tunnel.
        let value = AsciiMetadataValue::try_from(value.as_str())
            .unwrap_or_else(|_| AsciiMetadataValue::from_static(""));
        map.insert(*name, value);
    }
    crate::telemetry::inject_trace_context(span, &mut map);
    map
}

/// What the connection keeps of a tunnel.
#[derive(Debug)]
pub struct TunnelHandle {
    /// Its requests (dropping it ends the request stream).
    pub tx: mpsc::Sender<TunnelMessage>,
    /// The backend address, once chosen (for the admin API).
    pub backend: Arc<OnceLock<String>>,
}

/// Requests forwarded and not yet answered, by index, with when they were forwarded: the
/// backend round trip is measured from the request leaving to its reply arriving.
#[derive(Debug, Default)]
struct InFlight(Mutex<VecDeque<(i32, Instant)>>);

impl InFlight {
    fn sent(&self, index: i32) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= LATENCY_QUEUE {
            q.pop_front();
        }
        q.push_back((index, Instant::now()));
    }

    /// The time since request `index` left, if it is remembered.
    fn answered(&self, index: i32) -> Option<Duration> {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Replies come in order on a tunnel, so the match is almost always at the front.
        let i = q.iter().position(|(sent, _)| *sent == index)?;
        q.remove(i).map(|(_, at)| at.elapsed())
    }
}

/// Starts the tunnel task (inside `span`) and returns its handle. The task chooses the backend
/// first (route table, colour, balancer), then opens the stream.
pub fn spawn(shared: Arc<Shared>, open: OpenTunnel, conn: ConnTx, span: Span) -> TunnelHandle {
    let (tx, rx) = mpsc::channel(TUNNEL_QUEUE);
    let backend = Arc::new(OnceLock::new());
    let placed = Arc::clone(&backend);
    let task_span = span.clone();
    match open.layout {
        TunnelLayout::Player => {
            tokio::spawn(
                run::<player::intra::v1::TunnelRequest, player::intra::v1::TunnelResponse>(
                    shared, open, rx, conn, placed, span,
                )
                .instrument(task_span),
            );
        }
        TunnelLayout::Room => {
            tokio::spawn(
                run::<room::intra::v1::TunnelRequest, room::intra::v1::TunnelResponse>(
                    shared, open, rx, conn, placed, span,
                )
                .instrument(task_span),
            );
        }
    }
    TunnelHandle { tx, backend }
}

/// How a stream ended.
enum Ended {
    /// Finished by either side, or the session went away.
    Clean,
    /// The backend did not accept it.
    OpenFailed(tonic::Status),
    /// It failed after opening.
    Failed(tonic::Status),
}

async fn run<Req, Resp>(
    shared: Arc<Shared>,
    open: OpenTunnel,
    rx: mpsc::Receiver<TunnelMessage>,
    conn: ConnTx,
    placed: Arc<OnceLock<String>>,
    span: Span,
) where
    Req: prost::Message + From<TunnelMessage> + Send + 'static,
    Resp: prost::Message + Default + Into<TunnelMessage> + Send + 'static,
{
    let oid = open.key.oid;
    let metrics = &shared.metrics;
    let pick = shared
        .backends
        .pick(&open.kind, &open.color, oid, open.rule);
    let picked = tokio::select! {
        picked = tokio::time::timeout(OPEN_TIMEOUT, pick) => picked,
        () = conn.closed() => return,
    };
    let failed = match picked {
        Ok(Ok(mut picked)) => {
            let _ = placed.set(picked.addr.clone());
            span.record("backend", picked.addr.as_str());
            let counters = metrics.backend(&open.kind, &picked.addr);
            let latency = metrics.latency(&open.kind);
            let channel = picked.channel.clone();
            let backends = &shared.backends;
            let on_open = |healthy: bool| backends.report(&mut picked, healthy);
            let io = Io {
                conn: &conn,
                counters: &counters,
                latency: &latency,
                span: &span,
            };
            match stream::<Req, Resp>(channel, &open, rx, io, on_open).await {
                Ended::Clean => false,
                Ended::OpenFailed(status) | Ended::Failed(status) => {
                    info!(backend = %picked.addr, code = ?status.code(), message = status.message(), "tunnel ended with an error");
                    true
                }
            }
        }
        Ok(Err(PickError::Saturated { addr, source })) => {
            info!(backend = %addr, error = %source, "backend saturated: tunnel refused");
            metrics
                .backend(&open.kind, &addr)
                .failed(TunnelFailure::Saturated);
            true
        }
        Ok(Err(e)) => {
            info!(color = %open.color, error = %e, "no backend for tunnel");
            if matches!(e, PickError::Table(_)) {
                metrics.redis_error(RedisOp::RouteTable);
            }
            metrics
                .backend(&open.kind, "none")
                .failed(TunnelFailure::NoBackend);
            true
        }
        Err(_) => {
            info!("choosing a backend timed out");
            metrics
                .backend(&open.kind, "none")
                .failed(TunnelFailure::NoBackend);
            true
        }
    };
    // The connection may be gone already; then there is nobody to tell.
    let _ = conn
        .send(ConnCmd::TunnelClosed {
            id: open.id,
            failed,
        })
        .await;
}

/// What a stream reports to.
struct Io<'a> {
    conn: &'a ConnTx,
    counters: &'a Arc<BackendCounters>,
    latency: &'a Arc<Histogram>,
    span: &'a Span,
}

async fn stream<Req, Resp>(
    channel: Channel,
    open: &OpenTunnel,
    rx: mpsc::Receiver<TunnelMessage>,
    io: Io<'_>,
    on_open: impl FnOnce(bool),
) -> Ended
where
    Req: prost::Message + From<TunnelMessage> + Send + 'static,
    Resp: prost::Message + Default + Into<TunnelMessage> + Send + 'static,
{
    let Io {
        conn,
        counters,
        latency,
        span,
    } = io;
    let path = match PathAndQuery::try_from(&*open.method) {
        Ok(path) => path,
        Err(e) => {
            counters.failed(TunnelFailure::Open);
            return Ended::OpenFailed(tonic::Status::internal(format!("bad tunnel method: {e}")));
        }
    };
    let in_flight = Arc::new(InFlight::default());
    let sent = Arc::clone(&in_flight);
    let outbound = ReceiverStream::new(rx).map(move |m: TunnelMessage| {
        if m.index != 0 {
            sent.sent(m.index);
        }
        Req::from(m)
    });
    let mut request = tonic::Request::new(outbound);
    *request.metadata_mut() = metadata(open, span);

    let mut grpc = tonic::client::Grpc::new(channel);
    let opening = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("backend not ready: {e}")))?;
        grpc.streaming(
            request,
            path,
            tonic_prost::ProstCodec::<Req, Resp>::default(),
        )
        .await
    };
    let opened = tokio::select! {
        r = tokio::time::timeout(OPEN_TIMEOUT, opening) => r.map_err(|_| tonic::Status::deadline_exceeded("opening the tunnel timed out")).and_then(|r| r),
        // The session ended before the stream opened.
        () = conn.closed() => return Ended::Clean,
    };
    // The backend's health, for its circuit breaker: an answer, even a refusal, means it is up.
    on_open(match &opened {
        Ok(_) => true,
        Err(status) => !matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
        ),
    });
    let mut inbound = match opened {
        Ok(response) => response.into_inner(),
        Err(status) => {
            counters.failed(TunnelFailure::Open);
            return Ended::OpenFailed(status);
        }
    };
    counters.opened();
    let id: TunnelId = open.id;
    debug!("tunnel open");
    let ended = loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(resp)) => {
                    let message: TunnelMessage = resp.into();
                    if message.index != 0 {
                        if let Some(took) = in_flight.answered(message.index) {
                            latency.observe(took);
                        }
                    }
                    if conn.send(ConnCmd::Tunnel { id, message }).await.is_err() {
                        break Ended::Clean;
                    }
                }
                Ok(None) => break Ended::Clean,
                Err(status) => {
                    counters.failed(TunnelFailure::Stream);
                    break Ended::Failed(status);
                }
            },
            () = conn.closed() => break Ended::Clean,
        }
    };
    counters.ended();
    ended
}
