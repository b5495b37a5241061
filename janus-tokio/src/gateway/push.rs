//! `broadcaster.service.push.v1.PushService` on the gateway's gRPC port: backends push to one
//! uid, a list of uids, or everyone of a colour and sid. Pushes carry index 0; a broadcast is
//! serialized once and only sealed per session.

use std::sync::Arc;

use bytes::Bytes;
use janus_proto::{
    broadcaster::service::push::v1::{
        BroadcastRequest, BroadcastResponse, MulticastRequest, MulticastResponse, PushBody,
        PushRequest, PushResponse, push_service_server::PushService,
    },
    packet::Packet,
};
use prost::Message as _;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

use super::{
    Shared,
    connection::ConnCmd,
    registry::{Delivery, Registry},
};

/// The push service.
#[derive(Debug, Clone)]
pub struct Pusher {
    pub(crate) shared: Arc<Shared>,
}

/// Hands `bodies` to `uid`'s session, counting the outcome. Whether the uid has a session here.
/// Shared by the gRPC push service and the Redis subscriber.
pub(crate) fn deliver_to_uid(shared: &Shared, uid: i64, bodies: &[PushBody]) -> bool {
    let metrics = &shared.metrics;
    let Some(handle) = shared.registry.get(uid) else {
        metrics.inc(&metrics.push_unknown_uid);
        return false;
    };
    for body in bodies {
        match Registry::offer(&handle, ConnCmd::Push(body.clone())) {
            Delivery::Delivered => metrics.inc(&metrics.push_delivered),
            Delivery::Dropped => metrics.inc(&metrics.push_dropped),
            Delivery::Unknown => {
                metrics.inc(&metrics.push_unknown_uid);
                return false;
            }
        }
    }
    true
}

/// Hands `bodies` to every session of `color` and `sid` (0: any sid), each body serialized once
/// and only sealed per session. Shared by the gRPC push service and the Redis subscriber.
pub(crate) fn broadcast(shared: &Shared, color: &str, sid: i64, bodies: &[PushBody]) {
    let metrics = &shared.metrics;
    metrics.inc(&metrics.broadcasts);
    for body in bodies {
        let packet = push_packet(body);
        let (delivered, dropped) = shared
            .registry
            .broadcast(&packet, |h| h.color == color && (sid == 0 || h.sid == sid));
        metrics
            .push_delivered
            .fetch_add(delivered as u64, Ordering::Relaxed);
        metrics
            .push_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }
}

/// The `Packet` a push body becomes: index 0, no compression (spec §5.2).
pub fn push_packet(body: &PushBody) -> Bytes {
    Packet {
        data: body.data.clone(),
        data_version: body.data_version,
        obj: body.obj,
        r#mod: body.r#mod,
        seq: body.seq,
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

#[tonic::async_trait]
impl PushService for Pusher {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let req = request.into_inner();
        self.shared.metrics.inc(&self.shared.metrics.pushes);
        let pushed = deliver_to_uid(&self.shared, req.uid, &req.bodies);
        Ok(Response::new(PushResponse { pushed }))
    }

    async fn multicast(
        &self,
        request: Request<MulticastRequest>,
    ) -> Result<Response<MulticastResponse>, Status> {
        let req = request.into_inner();
        self.shared.metrics.inc(&self.shared.metrics.multicasts);
        let pushed_uids = req
            .uids
            .iter()
            .copied()
            .filter(|uid| deliver_to_uid(&self.shared, *uid, &req.bodies))
            .collect();
        Ok(Response::new(MulticastResponse { pushed_uids }))
    }

    /// Everyone whose session colour equals `color` and whose sid equals `sid` (sid 0: any sid).
    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<Response<BroadcastResponse>, Status> {
        let req = request.into_inner();
        broadcast(&self.shared, &req.color, req.sid, &req.bodies);
        Ok(Response::new(BroadcastResponse {}))
    }
}
