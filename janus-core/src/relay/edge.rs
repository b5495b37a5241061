//! The edge's side of a relay session: what its client [`Session`](crate::session::Session)'s
//! events become on the link.

use super::{Outgoing, SessionInfo};
use crate::{
    handshake::Identity,
    session::{ConnectionContext, Event},
};

/// The `SessionOpen` of an authenticated client session.
pub fn session_info(session: u64, identity: Identity, context: &ConnectionContext) -> SessionInfo {
    SessionInfo {
        session,
        identity,
        client_addr: context.peer,
        worker_id: context.worker_id,
    }
}

impl Outgoing {
    /// What a client session's event tells the hub, if anything: `Authenticated` opens the
    /// session (with `session` as its relay id), `OpenTunnel` / `Forward` / `CloseTunnel` become
    /// `TunnelOpen` / `Data` / `TunnelClose`, and `Closed` closes it. The hub builds the tunnel's
    /// metadata itself, so only the kind and the oid travel.
    pub fn from_session_event(
        session: u64,
        event: Event,
        context: &ConnectionContext,
    ) -> Option<Outgoing> {
        Some(match event {
            Event::Authenticated(identity) => {
                Outgoing::Open(Box::new(session_info(session, identity, context)))
            }
            Event::OpenTunnel(open) => Outgoing::TunnelOpen {
                tunnel: open.id,
                kind: open.kind.to_string(),
                oid: open.key.oid,
            },
            Event::Forward { tunnel, message } => Outgoing::Data { tunnel, message },
            Event::CloseTunnel(tunnel) => Outgoing::TunnelClose {
                tunnel,
                failed: false,
            },
            Event::Closed(reason) => Outgoing::SessionClose(reason),
            // Session resume is not offered behind an edge (its sessions have no resume key),
            // so its events never occur here.
            Event::ResumeGranted(_)
            | Event::ResumeRequested(_)
            | Event::Parked
            | Event::Resumed(_)
            | Event::ResumeRefused(_) => return None,
        })
    }
}
