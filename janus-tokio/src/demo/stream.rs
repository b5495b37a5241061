//! The two tunnel services and the task behind each open stream.
//!
//! `Tunnel` checks the stream metadata like roma does (status must be GATE, oid and uid must be
//! integers), then spawns one task per stream and returns the receiving end of its reply channel
//! as the response stream. The task owns the inbound `Streaming` and loops over four inputs:
//!
//! * a request → [`respond`] → replies (and pushes) into the channel;
//! * the push ticker (when configured) → `tick <n>` pushes;
//! * the server's graceful stop → one `SCServerLogout{Waiting}` push, then the stream ends OK;
//! * the gateway going away (half-close, reset, or the response stream dropped) → the task ends.
//!
//! The task holds an [`OpenStream`] guard, so the open-stream count drops exactly when it ends.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use janus_proto::player::intra::v1 as player;
use janus_proto::room::intra::v1 as room;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use super::Shared;
use super::observe::{
    HEADER_STATUS, OpenStream, RequestSeen, StreamEnd, StreamMetadata, StreamRejected, TunnelKind,
};
use super::reply::{Reply, TunnelMessage, logout_push, respond, tick_push};

/// Replies queued per stream before the task waits for the gateway to read: a small buffer is
/// enough for request/response traffic and keeps a stalled gateway from growing backend memory.
const STREAM_QUEUE: usize = 64;

/// What every stream of one `serve` call shares.
#[derive(Clone, Debug)]
pub(crate) struct ServeContext {
    pub(crate) shared: Arc<Shared>,
    /// Becomes `true` when the server starts its graceful stop.
    pub(crate) stopping: watch::Receiver<bool>,
}

/// `player.intra.v1.TunnelService`.
#[derive(Debug)]
pub(crate) struct PlayerTunnel(pub(crate) ServeContext);

/// `room.intra.v1.TunnelService`.
#[derive(Debug)]
pub(crate) struct RoomTunnel(pub(crate) ServeContext);

#[tonic::async_trait]
impl player::tunnel_service_server::TunnelService for PlayerTunnel {
    type TunnelStream = ReceiverStream<Result<player::TunnelResponse, Status>>;

    async fn tunnel(
        &self,
        request: Request<Streaming<player::TunnelRequest>>,
    ) -> Result<Response<Self::TunnelStream>, Status> {
        open::<PlayerShape>(&self.0, request)
    }
}

#[tonic::async_trait]
impl room::tunnel_service_server::TunnelService for RoomTunnel {
    type TunnelStream = ReceiverStream<Result<room::TunnelResponse, Status>>;

    async fn tunnel(
        &self,
        request: Request<Streaming<room::TunnelRequest>>,
    ) -> Result<Response<Self::TunnelStream>, Status> {
        open::<RoomShape>(&self.0, request)
    }
}

/// The message types of one tunnel service and their mapping to [`TunnelMessage`].
trait Shape: 'static {
    const KIND: TunnelKind;
    type Request: Send + 'static;
    type Response: Send + 'static;
    fn message(request: Self::Request) -> TunnelMessage;
    fn response(message: TunnelMessage) -> Self::Response;
}

struct PlayerShape;

impl Shape for PlayerShape {
    const KIND: TunnelKind = TunnelKind::Player;
    type Request = player::TunnelRequest;
    type Response = player::TunnelResponse;

    fn message(r: player::TunnelRequest) -> TunnelMessage {
        r.into()
    }

    fn response(m: TunnelMessage) -> player::TunnelResponse {
        m.into()
    }
}

struct RoomShape;

impl Shape for RoomShape {
    const KIND: TunnelKind = TunnelKind::Room;
    type Request = room::TunnelRequest;
    type Response = room::TunnelResponse;

    fn message(r: room::TunnelRequest) -> TunnelMessage {
        r.into()
    }

    fn response(m: TunnelMessage) -> room::TunnelResponse {
        m.into()
    }
}

type Replies<S> = mpsc::Sender<Result<<S as Shape>::Response, Status>>;
type ReplyStream<S> = ReceiverStream<Result<<S as Shape>::Response, Status>>;

fn open<S: Shape>(
    context: &ServeContext,
    request: Request<Streaming<S::Request>>,
) -> Result<Response<ReplyStream<S>>, Status> {
    let shared = &context.shared;
    let metadata = StreamMetadata::from_headers(request.metadata());
    let (oid, uid) = match admit(&metadata) {
        Ok(ids) => ids,
        Err(status) => {
            info!(
                backend = %shared.config.name,
                kind = ?S::KIND,
                code = ?status.code(),
                reason = status.message(),
                "tunnel stream rejected"
            );
            shared.recorder.rejected(StreamRejected {
                kind: S::KIND,
                metadata,
                code: status.code(),
                message: status.message().to_owned(),
            });
            return Err(status);
        }
    };
    info!(
        backend = %shared.config.name,
        kind = ?S::KIND,
        oid,
        uid,
        sid = metadata.sid.as_deref().unwrap_or(""),
        client_ip = metadata.client_ip.as_deref().unwrap_or(""),
        referer = metadata.referer.as_deref().unwrap_or(""),
        "tunnel stream opened"
    );
    let guard = shared.recorder.open(S::KIND, oid, uid, metadata);
    let (replies, rx) = mpsc::channel(STREAM_QUEUE);
    let task = StreamTask::<S> {
        shared: Arc::clone(shared),
        stopping: context.stopping.clone(),
        inbound: request.into_inner(),
        replies,
        guard,
    };
    tokio::spawn(task.run());
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// Roma's admission rule: `status` must be 1 (GATE), then `oid` and `uid` must be integers.
fn admit(metadata: &StreamMetadata) -> Result<(i64, i64), Status> {
    match metadata.status.as_deref() {
        Some("1") => {}
        Some(other) => {
            return Err(Status::permission_denied(format!(
                "{HEADER_STATUS} is {other:?}; the demo backend only accepts 1 (GATE)"
            )));
        }
        None => {
            return Err(Status::permission_denied(format!(
                "{HEADER_STATUS} is missing; the demo backend only accepts 1 (GATE)"
            )));
        }
    }
    let integer = |name: &str, value: &Option<String>| match value.as_deref() {
        Some(text) => text.parse::<i64>().map_err(|_| {
            Status::invalid_argument(format!("{name} is {text:?}, not a decimal int64"))
        }),
        None => Err(Status::invalid_argument(format!("{name} is missing"))),
    };
    Ok((
        integer(super::HEADER_OID, &metadata.oid)?,
        integer(super::HEADER_UID, &metadata.uid)?,
    ))
}

struct StreamTask<S: Shape> {
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
    inbound: Streaming<S::Request>,
    replies: Replies<S>,
    guard: OpenStream,
}

impl<S: Shape> StreamTask<S> {
    async fn run(mut self) {
        let oid = self.guard.oid;
        let mut ticker = self.shared.config.push_interval.map(push_ticker);
        let mut ticks: u64 = 0;
        let end = loop {
            tokio::select! {
                () = stop_requested(&mut self.stopping) => {
                    // Roma's actor pushes SCServerLogout when it stops (§3.6). `try_send`: a
                    // gateway that stopped reading must not hold up the server's shutdown.
                    let _ = self.replies.try_send(Ok(S::response(logout_push(oid))));
                    break StreamEnd::Shutdown;
                }
                () = self.replies.closed() => break StreamEnd::Cancelled,
                next = self.inbound.message() => match next {
                    Ok(Some(request)) => {
                        if let Some(end) = self.handle(S::message(request)).await {
                            break end;
                        }
                    }
                    Ok(None) => break StreamEnd::HalfClosed,
                    Err(status) => {
                        debug!(stream = self.guard.stream_id, %status, "tunnel receive failed");
                        break StreamEnd::Cancelled;
                    }
                },
                () = next_tick(&mut ticker) => {
                    ticks += 1;
                    debug!(stream = self.guard.stream_id, oid, tick = ticks, "periodic push");
                    if !self.send(tick_push(oid, ticks)).await {
                        break StreamEnd::Cancelled;
                    }
                }
            }
        };
        info!(
            backend = %self.shared.config.name,
            kind = ?S::KIND,
            stream = self.guard.stream_id,
            oid,
            ?end,
            "tunnel stream closed"
        );
        self.guard.end = end;
        // Dropping `replies` ends the response stream after the queued replies: with OK, or with
        // the error status already queued by `fail-stream`.
    }

    /// Answers one request; `Some` when the stream must end.
    async fn handle(&mut self, request: TunnelMessage) -> Option<StreamEnd> {
        let stream_id = self.guard.stream_id;
        let oid = self.guard.oid;
        debug!(
            stream = stream_id,
            oid,
            module = request.module,
            seq = request.seq,
            obj = request.obj,
            index = request.index,
            len = request.data.len(),
            "tunnel request"
        );
        self.shared.recorder.request(RequestSeen {
            stream_id,
            kind: S::KIND,
            oid,
            request: request.clone(),
        });
        match respond(&request, oid, unix_now()) {
            Reply::Answer(reply) => (!self.send(reply).await).then_some(StreamEnd::Cancelled),
            Reply::AnswerAfter(delay, reply) => {
                tokio::time::sleep(delay).await;
                (!self.send(reply).await).then_some(StreamEnd::Cancelled)
            }
            Reply::AnswerThenPush(reply, push) => {
                let sent = self.send(reply).await && self.send(push).await;
                (!sent).then_some(StreamEnd::Cancelled)
            }
            Reply::FailStream => {
                let status =
                    Status::internal("fail-stream requested: demo backend ends the tunnel");
                let _ = self.replies.send(Err(status)).await;
                Some(StreamEnd::Failed)
            }
        }
    }

    /// Queues one message; `false` when the gateway no longer reads the stream.
    async fn send(&self, message: TunnelMessage) -> bool {
        self.replies.send(Ok(S::response(message))).await.is_ok()
    }
}

fn push_ticker(period: Duration) -> Interval {
    // The first push comes one period after the stream opens, not immediately.
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

async fn next_tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the server's graceful stop begins. If the server future was dropped without a
/// stop, the connection tasks tonic spawned keep serving, and so does this stream.
async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    let orphaned = stopping.wait_for(|stop| *stop).await.is_err();
    if orphaned {
        std::future::pending::<()>().await;
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
