//! A message from the backend on its way to the client: the pending request it answers, zlib for
//! large replies, the frame limit, sealing.

use janus_proto::packet::Packet;

use super::{
    Session, State, TunnelId, TunnelMessage, filters,
    outbound::{Outbound, Sealer},
};
use crate::{Time, compress::deflate_reply, system};

impl Session {
    /// A message from the backend on tunnel `tunnel`: a reply (non-zero index) or a push (index
    /// 0). Replies at least `compress_threshold` bytes go out zlib-compressed; one too large for
    /// the client's frame limit is replaced by `SCServerUnexpectedErr` for the same request. A
    /// message for a tunnel the session has closed is ignored: its requests were answered then.
    pub fn handle_tunnel(&mut self, now: Time, tunnel: TunnelId, mut message: TunnelMessage) {
        let Self {
            config,
            context,
            state,
            tx,
            ..
        } = self;
        let State::Established(link) = state else {
            return;
        };
        let Some(t) = link.tunnel_mut(tunnel) else {
            return;
        };
        if message.index != 0 {
            t.answered(message.index);
        }
        let object_kind = t.object_kind;
        // Filters (`crate::filter`): before compression and sealing.
        if let Some(filters) = link.filters.as_deref_mut() {
            let id = &link.identity;
            if let Err(stopped) = filters::reply(config, context, id, filters, &mut message, now) {
                return self.stopped_reply(now, stopped);
            }
        }
        let session = &config.session;
        let (data, compress) = deflate_reply(
            message.data,
            session.compress_threshold,
            session.compress_strong,
        );
        let packet = Packet {
            data,
            // Upstream drops data_version on replies (spec §3.1); the client cache needs it.
            data_version: message.data_version,
            obj: message.obj,
            r#mod: message.module,
            seq: message.seq,
            ver: 0,
            index: message.index,
            conn_id: if object_kind { message.conn_id } else { 0 },
            frag_id: if object_kind { message.frag_id } else { 0 },
            frag_count: if object_kind { message.frag_count } else { 0 },
            frag_index: if object_kind { message.frag_index } else { 0 },
            compress,
        };
        if !tx.packet_within(link.sealer.as_mut(), &packet, session.max_frame_len) {
            too_large(tx, link.sealer.as_mut(), &packet);
        }
        if self.check_budget(now) {
            self.finish_drain_if_done(now);
        }
    }

    /// Seals and queues a packet for the client; a packet too large for the client's frame limit
    /// is replaced by `SCServerUnexpectedErr` for the same request. Returns whether the session is
    /// still open.
    pub(super) fn send(&mut self, now: Time, packet: &Packet) -> bool {
        let State::Established(link) = &mut self.state else {
            return false;
        };
        let max = self.config.session.max_frame_len;
        if !self.tx.packet_within(link.sealer.as_mut(), packet, max) {
            too_large(&mut self.tx, link.sealer.as_mut(), packet);
        }
        self.check_budget(now)
    }
}

/// Answers a packet too large for the client's frame limit with `SCServerUnexpectedErr` for the
/// same request.
#[cold]
fn too_large(tx: &mut Outbound, sealer: Option<&mut Sealer>, packet: &Packet) {
    let reply = system::unexpected_err(
        packet.r#mod,
        packet.seq,
        packet.index,
        "reply too large for the client frame limit",
    );
    tx.packet(sealer, &reply);
}
