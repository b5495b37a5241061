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
use tonic::{Request, Response, Status};

use super::{Shared, registry::Delivery};

/// The push service.
#[derive(Debug, Clone)]
pub struct Pusher {
    pub(crate) shared: Arc<Shared>,
}

impl Pusher {
    fn deliver(&self, uid: i64, bodies: &[PushBody]) -> bool {
        let metrics = &self.shared.metrics;
        let Some(handle) = self.shared.registry.get(uid) else {
            metrics.inc(&metrics.push_unknown_uid);
            return false;
        };
        for body in bodies {
            match super::registry::Registry::offer(
                &handle,
                super::connection::ConnCmd::Push(body.clone()),
            ) {
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
        let pushed = self.deliver(req.uid, &req.bodies);
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
            .filter(|uid| self.deliver(*uid, &req.bodies))
            .collect();
        Ok(Response::new(MulticastResponse { pushed_uids }))
    }

    /// Everyone whose session colour equals `color` and whose sid equals `sid` (sid 0: any sid).
    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<Response<BroadcastResponse>, Status> {
        let req = request.into_inner();
        let metrics = &self.shared.metrics;
        metrics.inc(&metrics.broadcasts);
        for body in &req.bodies {
            let packet = push_packet(body);
            let (delivered, dropped) = self.shared.registry.broadcast(&packet, |h| {
                h.color == req.color && (req.sid == 0 || h.sid == req.sid)
            });
            metrics
                .push_delivered
                .fetch_add(delivered as u64, std::sync::atomic::Ordering::Relaxed);
            metrics
                .push_dropped
                .fetch_add(dropped as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Response::new(BroadcastResponse {}))
    }
}
