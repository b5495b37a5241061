//! A client packet on an established session: open, decode, check, route, forward.

use bytes::Bytes;
use janus_proto::packet::Packet;

use super::{Session, State, TunnelMessage, fail_pending, filters, link::Pending};
use crate::{
    CloseReason, Time, codec,
    compress::inflate,
    frame::{Frame, HEADER_LEN},
    route::RouteError,
    system,
};

impl Session {
    /// One frame from an authenticated client. Every failure closes the session with its own
    /// reason, except a request the routing cannot serve, which is answered with an error.
    pub(super) fn handle_packet(&mut self, now: Time, frame: Frame) {
        let Self {
            config,
            context,
            state,
            events,
            tx,
            ..
        } = self;
        let State::Established(link) = state else {
            return;
        };
        // Opened and decoded in place; the buffer is narrowed once, to the payload.
        let mut framed = frame.into_framed();
        let body = framed.get_mut(HEADER_LEN..).unwrap_or_default();
        let text = match &mut link.sealer {
            Some(sealer) => match sealer.cipher().open_within(body) {
                Ok(text) => text,
                Err(_) => return self.close(now, CloseReason::DecryptFailed),
            },
            None => 0..body.len(),
        };
        let text = HEADER_LEN + text.start..HEADER_LEN + text.end;
        let mut packet = Packet::default();
        if codec::decode_packet_into(framed, text, &mut packet).is_err() {
            return self.close(now, CloseReason::MalformedPacket);
        }
        if let Some(rate) = &mut link.rate {
            if rate.check(now).is_err() {
                return self.close(now, CloseReason::RateLimited);
            }
        }
        if config.session.check_index && packet.index != link.next_index {
            return self.close(now, CloseReason::IndexMismatch);
        }
        link.next_index = link.next_index.wrapping_add(1);
        link.idle_deadline = now + config.session.idle_timeout;
        if tx.replay.is_some() && super::resume::consume_ack(tx, &packet) {
            return;
        }

        let data = if packet.compress {
            match inflate(&packet.data, config.session.max_inflated_len) {
                Ok(data) => Bytes::from(data),
                Err(_) => return self.close(now, CloseReason::DecompressFailed),
            }
        } else {
            packet.data
        };

        // Filters (`crate::filter`): after the index check and inflation, before routing. The
        // path without filters is the one without this block.
        let (mut module, mut seq, mut kind) = (packet.r#mod, packet.seq, None);
        let data = match link.filters.as_deref_mut() {
            None => data,
            Some(filters) => {
                let id = &link.identity;
                let asked = (packet.r#mod, packet.seq, packet.obj, packet.index);
                match filters::inbound(config, context, id, filters, asked, data, now) {
                    Ok((m, s, data, k)) => {
                        (module, seq, kind) = (m, s, k);
                        data
                    }
                    Err(stopped) => return self.stopped(now, asked, stopped),
                }
            }
        };

        let uid = link.identity.uid;
        let routed = match kind {
            None => config.routes.route(module, packet.obj, uid),
            Some(kind) => config.routes.route_to(kind, packet.obj, uid),
        };
        let routed = match routed {
            Ok(routed) => routed,
            Err(RouteError::ObjectNotOwned { .. }) => {
                return self.close(now, CloseReason::ObjectNotOwned);
            }
            Err(e) => {
                // A client mistake, not an attack: answer this request with an error and go on.
                let reply =
                    system::unexpected_err(packet.r#mod, packet.seq, packet.index, &e.to_string());
                self.send(now, &reply);
                return;
            }
        };
        let key = routed.key;
        let (slot, evicted) = link.tunnel_for(key, now, config, context, events);
        if let Some(evicted) = evicted {
            fail_pending(tx, link.sealer.as_mut(), &evicted.pending);
        }
        let pending = Pending {
            index: packet.index,
            module: packet.r#mod,
            seq: packet.seq,
        };
        let Some((tunnel, object_kind)) =
            link.forwarded(slot, now, pending, config.session.max_pending)
        else {
            return;
        };
        let message = TunnelMessage {
            data,
            data_version: packet.data_version,
            obj: routed.obj,
            module,
            seq,
            index: packet.index,
            conn_id: if object_kind { packet.conn_id } else { 0 },
            frag_id: if object_kind { packet.frag_id } else { 0 },
            frag_count: if object_kind { packet.frag_count } else { 0 },
            frag_index: if object_kind { packet.frag_index } else { 0 },
        };
        events.forward(tunnel, message);
        // Answers to an evicted tunnel's requests count against the budget like any reply.
        self.check_budget(now);
    }
}
