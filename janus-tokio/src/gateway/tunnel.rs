//! One backend tunnel: a bidirectional gRPC stream `/<kind>.intra.v1.TunnelService/Tunnel`
//! carrying one (kind, oid) of one session, with the `x-md-global-*` metadata of spec §4.4.
//!
//! The task owns the stream. Requests arrive from the connection task on a bounded channel (the
//! connection never waits on it: a full channel closes the session); responses go back to the
//! connection with a waiting send, so a client that cannot keep up slows its own backend stream
//! rather than growing memory. When the stream ends, for whatever reason, the connection is told
//! (`ConnCmd::TunnelClosed`), and the session answers every request left pending.

use std::time::Duration;

use janus_core::{
    route::{OidRule, TunnelKey},
    session::TunnelMessage,
};
use janus_proto::{player, room};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{
    codegen::http::uri::PathAndQuery,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::Channel,
};
use tracing::{debug, info};

use std::sync::Arc;

use super::{Shared, connection::ConnCmd, mailbox};

/// Requests queued per tunnel before the session is closed for flooding it (upstream: 1024,
/// blocking).
pub const TUNNEL_QUEUE: usize = 1024;
/// How long opening a stream may take before the tunnel counts as failed.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `x-md-global-*` headers of a tunnel.
#[derive(Debug, Clone)]
pub struct TunnelMeta {
    pub oid: i64,
    pub uid: i64,
    pub sid: i64,
    pub status: i32,
    pub color: String,
    /// The client's `ip:port`.
    pub client_ip: String,
    /// `<gate gRPC host:port>#<wid>`.
    pub referer: String,
}

impl TunnelMeta {
    fn to_metadata(&self) -> MetadataMap {
        let mut map = MetadataMap::new();
        let mut put = |name: &'static str, value: String| {
            // Every value here is ASCII (numbers, host:port, a colour from a signed token);
            // a colour that is not a valid header value is sent empty.
            let value = AsciiMetadataValue::try_from(value)
                .unwrap_or_else(|_| AsciiMetadataValue::from_static(""));
            map.insert(name, value);
        };
        put("x-md-global-oid", self.oid.to_string());
        put("x-md-global-uid", self.uid.to_string());
        put("x-md-global-sid", self.sid.to_string());
        put("x-md-global-status", self.status.to_string());
        put("x-md-global-color", self.color.clone());
        put("x-md-global-client-ip", self.client_ip.clone());
        put("x-md-global-referer", self.referer.clone());
        put("x-md-global-gate-referer", self.referer.clone());
        map
    }
}

/// The gRPC method path of a tunnel kind.
pub fn tunnel_path(kind: &str) -> String {
    format!("/{kind}.intra.v1.TunnelService/Tunnel")
}

/// Which tunnel a task serves.
#[derive(Debug, Clone)]
pub struct TunnelId {
    /// The kind's name (`player`, `room`, ...): the gRPC path and the backend set.
    pub kind: String,
    pub rule: OidRule,
    pub key: TunnelKey,
    /// Tells this tunnel from an earlier one with the same key on the same connection.
    pub generation: u64,
}

/// Starts the tunnel task and returns the sender for its requests. The task chooses the backend
/// first (route table, colour, round-robin), then opens the stream.
pub fn spawn(
    shared: Arc<Shared>,
    id: TunnelId,
    meta: TunnelMeta,
    conn: mailbox::Sender<ConnCmd>,
) -> mpsc::Sender<TunnelMessage> {
    let (tx, rx) = mpsc::channel(TUNNEL_QUEUE);
    // Player-like kinds use the player message layout; object kinds (room, ...) the room one,
    // which carries the KCP conn/frag fields.
    match id.rule {
        OidRule::SessionUid => {
            tokio::spawn(run::<
                player::intra::v1::TunnelRequest,
                player::intra::v1::TunnelResponse,
            >(shared, id, meta, rx, conn));
        }
        _ => {
            tokio::spawn(run::<
                room::intra::v1::TunnelRequest,
                room::intra::v1::TunnelResponse,
            >(shared, id, meta, rx, conn));
        }
    }
    tx
}

async fn run<Req, Resp>(
    shared: Arc<Shared>,
    id: TunnelId,
    meta: TunnelMeta,
    rx: mpsc::Receiver<TunnelMessage>,
    conn: mailbox::Sender<ConnCmd>,
) where
    Req: prost::Message + From<TunnelMessage> + Send + 'static,
    Resp: prost::Message + Default + Into<TunnelMessage> + Send + 'static,
{
    let picked = tokio::select! {
        picked = tokio::time::timeout(OPEN_TIMEOUT, shared.backends.pick(&id.kind, &meta.color, id.key.oid, id.rule)) => picked,
        () = conn.closed() => return,
    };
    let failed = match picked {
        Ok(Ok(mut picked)) => {
            let channel = picked.channel.clone();
            let backends = &shared.backends;
            let on_open = |healthy: bool| backends.report(&mut picked, healthy);
            match stream::<Req, Resp>(channel, &id, &meta, rx, &conn, on_open).await {
                Ok(()) => false,
                Err(status) => {
                    info!(key = ?id.key, backend = %picked.addr, code = ?status.code(), message = status.message(), "tunnel ended with an error");
                    true
                }
            }
        }
        Ok(Err(e)) => {
            info!(uid = meta.uid, kind = %id.kind, oid = id.key.oid, error = %e, "no backend for tunnel");
            shared.metrics.inc(&shared.metrics.tunnel_no_backend);
            true
        }
        Err(_) => {
            info!(uid = meta.uid, kind = %id.kind, oid = id.key.oid, "choosing a backend timed out");
            shared.metrics.inc(&shared.metrics.tunnel_no_backend);
            true
        }
    };
    // The connection may be gone already; then there is nobody to tell.
    let _ = conn
        .send(ConnCmd::TunnelClosed {
            key: id.key,
            generation: id.generation,
            failed,
        })
        .await;
}

async fn stream<Req, Resp>(
    channel: Channel,
    id: &TunnelId,
    meta: &TunnelMeta,
    rx: mpsc::Receiver<TunnelMessage>,
    conn: &mailbox::Sender<ConnCmd>,
    on_open: impl FnOnce(bool),
) -> Result<(), tonic::Status>
where
    Req: prost::Message + From<TunnelMessage> + Send + 'static,
    Resp: prost::Message + Default + Into<TunnelMessage> + Send + 'static,
{
    let path = PathAndQuery::try_from(tunnel_path(&id.kind))
        .map_err(|e| tonic::Status::internal(format!("bad tunnel path: {e}")))?;
    let outbound = ReceiverStream::new(rx).map(Req::from);
    let mut request = tonic::Request::new(outbound);
    *request.metadata_mut() = meta.to_metadata();

    let mut grpc = tonic::client::Grpc::new(channel);
    let open = async {
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
        r = tokio::time::timeout(OPEN_TIMEOUT, open) => r.map_err(|_| tonic::Status::deadline_exceeded("opening the tunnel timed out")).and_then(|r| r),
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
    let response = opened?;
    let mut inbound = response.into_inner();
    debug!(key = ?id.key, "tunnel open");
    loop {
        tokio::select! {
            message = inbound.message() => match message? {
                Some(resp) => {
                    let cmd = ConnCmd::Tunnel { key: id.key, generation: id.generation, message: resp.into() };
                    if conn.send(cmd).await.is_err() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            },
            () = conn.closed() => return Ok(()),
        }
    }
}
