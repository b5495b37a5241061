//! `broadcaster.service.push.v1.PushService` on the gateway's gRPC port, and the delivery shared
//! with the Redis subscriber: backends push to one uid, a list of uids, or everyone of a colour
//! and sid. Every body is encoded once by janus-core's one push rule
//! ([`PushPacket::encode`]) and only sealed per session, whichever path delivered it.

use std::sync::Arc;

use janus_core::session::PushPacket;
use janus_proto::broadcaster::service::push::v1::{
    BroadcastRequest, BroadcastResponse, MulticastRequest, MulticastResponse, PushBody,
    PushRequest, PushResponse, push_service_server::PushService,
};
use tonic::{Request, Response, Status};
use tracing::debug;

use super::{
    Shared,
    command::ConnCmd,
    metrics::{PushKind, PushOutcome},
    registry::{Delivery, Registry},
};

/// The push service.
#[derive(Debug, Clone)]
pub struct Pusher {
    pub(crate) shared: Arc<Shared>,
}

/// Encodes each body once; a body no client could receive is counted and left out.
pub(crate) fn encode(shared: &Shared, kind: PushKind, bodies: &[PushBody]) -> Vec<PushPacket> {
    let core = shared.core();
    bodies
        .iter()
        .filter_map(|body| match PushPacket::encode(body, &core) {
            Ok(push) => Some(push),
            Err(e) => {
                debug!(module = body.r#mod, seq = body.seq, error = %e, "push not sent");
                shared.metrics.push(kind, PushOutcome::TooLarge, 1);
                None
            }
        })
        .collect()
}

/// Hands `pushes` to `uid`'s session, counting the outcome. Whether the uid has a session here.
pub(crate) fn deliver_to_uid(
    shared: &Shared,
    kind: PushKind,
    uid: i64,
    pushes: &[PushPacket],
) -> bool {
    let metrics = &shared.metrics;
    let Some(handle) = shared.registry.get(uid) else {
        metrics.push(kind, PushOutcome::UnknownUid, pushes.len().max(1) as u64);
        return false;
    };
    for push in pushes {
        match Registry::offer(&handle, ConnCmd::Push(push.clone())) {
            Delivery::Delivered => metrics.push(kind, PushOutcome::Delivered, 1),
            Delivery::Dropped => {
                metrics.push(kind, PushOutcome::Dropped, 1);
                metrics.dropped(super::metrics::DropCause::QueueFull);
            }
            Delivery::Unknown => {
                metrics.push(kind, PushOutcome::UnknownUid, 1);
                return false;
            }
        }
    }
    true
}

/// Hands `pushes` to every session of `color` and `sid` (0: any sid).
pub(crate) fn broadcast(shared: &Shared, color: &str, sid: i64, pushes: &[PushPacket]) {
    let metrics = &shared.metrics;
    let kind = PushKind::Broadcast;
    for push in pushes {
        let (delivered, dropped) = shared
            .registry
            .broadcast(push, |h| h.color == color && (sid == 0 || h.sid == sid));
        metrics.push(kind, PushOutcome::Delivered, delivered as u64);
        if dropped > 0 {
            metrics.push(kind, PushOutcome::Dropped, dropped as u64);
            for _ in 0..dropped {
                metrics.dropped(super::metrics::DropCause::QueueFull);
            }
        }
    }
}

#[tonic::async_trait]
impl PushService for Pusher {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let req = request.into_inner();
        let kind = PushKind::Push;
        self.shared.metrics.push_requested(kind);
        let pushes = encode(&self.shared, kind, &req.bodies);
        let pushed = deliver_to_uid(&self.shared, kind, req.uid, &pushes);
        Ok(Response::new(PushResponse { pushed }))
    }

    async fn multicast(
        &self,
        request: Request<MulticastRequest>,
    ) -> Result<Response<MulticastResponse>, Status> {
        let req = request.into_inner();
        let kind = PushKind::Multicast;
        self.shared.metrics.push_requested(kind);
        let pushes = encode(&self.shared, kind, &req.bodies);
        let pushed_uids = req
            .uids
            .iter()
            .copied()
            .filter(|uid| deliver_to_uid(&self.shared, kind, *uid, &pushes))
            .collect();
        Ok(Response::new(MulticastResponse { pushed_uids }))
    }

    /// Everyone whose session colour equals `color` and whose sid equals `sid` (sid 0: any sid).
    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<Response<BroadcastResponse>, Status> {
        let req = request.into_inner();
        self.shared.metrics.push_requested(PushKind::Broadcast);
        let pushes = encode(&self.shared, PushKind::Broadcast, &req.bodies);
        broadcast(&self.shared, &req.color, req.sid, &pushes);
        Ok(Response::new(BroadcastResponse {}))
    }
}
