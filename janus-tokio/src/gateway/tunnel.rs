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

use std::{sync::Arc, time::Duration};

use janus_core::session::{OpenTunnel, TunnelId, TunnelLayout, TunnelMessage};
use janus_proto::{player, room};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{
    codegen::http::uri::PathAndQuery,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::Channel,
};
use tracing::{debug, info};

use super::{
    Shared,
    command::{ConnCmd, ConnTx},
};

/// Requests queued per tunnel before the session is closed for flooding it (upstream: 1024,
/// blocking).
pub const TUNNEL_QUEUE: usize = 1024;
/// How long opening a stream may take before the tunnel counts as failed.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The stream's request metadata, as the core built it.
fn metadata(open: &OpenTunnel) -> MetadataMap {
    let mut map = MetadataMap::with_capacity(open.metadata.len());
    for (name, value) in &open.metadata {
        // Every value is ASCII (numbers, host:port, a colour from a signed token); one that is
        // not a valid header value is sent empty rather than failing the tunnel.
        let value = AsciiMetadataValue::try_from(value.as_str())
            .unwrap_or_else(|_| AsciiMetadataValue::from_static(""));
        map.insert(*name, value);
    }
    map
}

/// Starts the tunnel task and returns the sender for its requests. The task chooses the backend
/// first (route table, colour, balancer), then opens the stream.
pub fn spawn(shared: Arc<Shared>, open: OpenTunnel, conn: ConnTx) -> mpsc::Sender<TunnelMessage> {
    let (tx, rx) = mpsc::channel(TUNNEL_QUEUE);
    match open.layout {
        TunnelLayout::Player => {
            tokio::spawn(run::<
                player::intra::v1::TunnelRequest,
                player::intra::v1::TunnelResponse,
            >(shared, open, rx, conn));
        }
        TunnelLayout::Room => {
            tokio::spawn(run::<
                room::intra::v1::TunnelRequest,
                room::intra::v1::TunnelResponse,
            >(shared, open, rx, conn));
        }
    }
    tx
}

async fn run<Req, Resp>(
    shared: Arc<Shared>,
    open: OpenTunnel,
    rx: mpsc::Receiver<TunnelMessage>,
    conn: ConnTx,
) where
    Req: prost::Message + From<TunnelMessage> + Send + 'static,
    Resp: prost::Message + Default + Into<TunnelMessage> + Send + 'static,
{
    let oid = open.key.oid;
    let pick = shared
        .backends
        .pick(&open.kind, &open.color, oid, open.rule);
    let picked = tokio::select! {
        picked = tokio::time::timeout(OPEN_TIMEOUT, pick) => picked,
        () = conn.closed() => return,
    };
    let failed = match picked {
        Ok(Ok(mut picked)) => {
            let channel = picked.channel.clone();
            let backends = &shared.backends;
            let on_open = |healthy: bool| backends.report(&mut picked, healthy);
            match stream::<Req, Resp>(channel, &open, rx, &conn, on_open).await {
                Ok(()) => false,
                Err(status) => {
                    info!(kind = %open.kind, oid, backend = %picked.addr, code = ?status.code(), message = status.message(), "tunnel ended with an error");
                    true
                }
            }
        }
        Ok(Err(e)) => {
            info!(kind = %open.kind, oid, color = %open.color, error = %e, "no backend for tunnel");
            shared.metrics.inc(&shared.metrics.tunnel_no_backend);
            true
        }
        Err(_) => {
            info!(kind = %open.kind, oid, "choosing a backend timed out");
            shared.metrics.inc(&shared.metrics.tunnel_no_backend);
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

async fn stream<Req, Resp>(
    channel: Channel,
    open: &OpenTunnel,
    rx: mpsc::Receiver<TunnelMessage>,
    conn: &ConnTx,
    on_open: impl FnOnce(bool),
) -> Result<(), tonic::Status>
where
    Req: prost::Message + From<TunnelMessage> + Send + 'static,
    Resp: prost::Message + Default + Into<TunnelMessage> + Send + 'static,
{
    let path = PathAndQuery::try_from(&*open.method)
        .map_err(|e| tonic::Status::internal(format!("bad tunnel method: {e}")))?;
    let outbound = ReceiverStream::new(rx).map(Req::from);
    let mut request = tonic::Request::new(outbound);
    *request.metadata_mut() = metadata(open);

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
        () = conn.closed() => return Ok(()),
    };
    // The backend's health, for its circuit breaker: an answer, even a refusal, means it is up.
    on_open(match &opened {
        Ok(_) => true,
        Err(status) => !matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
        ),
    });
    let mut inbound = opened?.into_inner();
    let id: TunnelId = open.id;
    debug!(kind = %open.kind, oid = open.key.oid, "tunnel open");
    loop {
        tokio::select! {
            message = inbound.message() => match message? {
                Some(resp) => {
                    if conn.send(ConnCmd::Tunnel { id, message: resp.into() }).await.is_err() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            },
            () = conn.closed() => return Ok(()),
        }
    }
}
