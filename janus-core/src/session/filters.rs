//! The session's side of the filter chain ([`crate::filter`]): the hooks run from the handshake,
//! packet, reply, push and close paths, and what each decision does to the session. Kept here so
//! those paths carry one branch each, taken only when the chain gives the session state.

use bytes::{Bytes, BytesMut};
use janus_proto::message::sc_server_logout::Code as LogoutCode;

use super::{PushOutcome, PushPacket, Session, State, TunnelMessage};
use crate::{
    CloseReason, Time, codec,
    compress::{deflate_reply, inflate},
    config::ServerConfig,
    crypto::SEAL_OVERHEAD,
    filter::{
        ClientPacket, FilterChain, Hooks, InboundStep, OutboundStep, ServerPacket, SessionFilters,
        SessionView,
    },
    handshake::Identity,
    route::TunnelKind,
    session::ConnectionContext,
    system,
};

/// Why the chain stopped a packet.
#[derive(Debug)]
pub(super) enum Stopped {
    /// Answer the request with this error.
    Reject(std::borrow::Cow<'static, str>),
    /// Nothing more to do.
    Drop,
    /// Close the session.
    Close(CloseReason, Option<LogoutCode>),
}

/// What a client packet becomes after the chain: module, seq, data and the tunnel kind a filter
/// chose (if any).
pub(super) type Forward = (i32, i32, Bytes, Option<TunnelKind>);

/// A client packet as it was sent: module, seq, obj, index.
pub(super) type Asked = (i32, i32, i64, i32);

/// The packet hooks for a decoded, index-checked client packet whose (inflated) payload is
/// `data`.
pub(super) fn inbound(
    config: &ServerConfig,
    context: &ConnectionContext,
    identity: &Identity,
    filters: &mut SessionFilters,
    (module, seq, obj, index): Asked,
    data: Bytes,
    now: Time,
) -> Result<Forward, Stopped> {
    let view = SessionView::new(identity, context);
    let client = ClientPacket::new(module, seq, obj, index, data);
    match config.filters.inbound(filters, &view, client, now) {
        InboundStep::Forward(p) => Ok(p.into_parts()),
        InboundStep::Reject(msg) => Err(Stopped::Reject(msg)),
        InboundStep::Drop => Err(Stopped::Drop),
        InboundStep::Close(e) => Err(Stopped::Close(e.reason, e.code)),
    }
}

/// The reply hooks for a backend message (before compression and sealing), changing it in
/// place.
pub(super) fn reply(
    config: &ServerConfig,
    context: &ConnectionContext,
    identity: &Identity,
    filters: &mut SessionFilters,
    message: &mut TunnelMessage,
    now: Time,
) -> Result<(), Stopped> {
    if !config.filters.wants(Hooks::REPLY) {
        return Ok(());
    }
    let view = SessionView::new(identity, context);
    let data = std::mem::take(&mut message.data);
    let server = ServerPacket::new(
        message.module,
        message.seq,
        message.obj,
        message.index,
        data,
        false,
    );
    match config.filters.outbound(filters, &view, server, now) {
        OutboundStep::Send(p) => {
            (message.module, message.seq, message.obj, message.data) = p.into_parts();
            Ok(())
        }
        OutboundStep::Drop => Err(Stopped::Drop),
        OutboundStep::Close(e) => Err(Stopped::Close(e.reason, e.code)),
    }
}

impl Session {
    /// The handshake hooks of an authenticated client: its filter states, or `Err` once the
    /// session has been closed as the chain decided.
    pub(super) fn admit(
        &mut self,
        now: Time,
        identity: &Identity,
    ) -> Result<Option<Box<SessionFilters>>, ()> {
        let view = SessionView::new(identity, &self.context);
        match self.config.filters.start(&view, now) {
            Ok(filters) => Ok(filters),
            Err(e) => {
                self.close_as(now, e.reason, e.code);
                Err(())
            }
        }
    }

    /// Carries out a stopped client packet (`asked`: as the client sent it).
    #[cold]
    pub(super) fn stopped(&mut self, now: Time, asked: Asked, stopped: Stopped) {
        let (module, seq, _, index) = asked;
        match stopped {
            Stopped::Reject(msg) => {
                // The module and seq the client sent: it matches the error to its request.
                let reply = system::unexpected_err(module, seq, index, &msg);
                self.send(now, &reply);
            }
            Stopped::Drop => {}
            Stopped::Close(reason, code) => self.close_as(now, reason, code),
        }
    }

    /// Carries out a stopped reply: a dropped one still answered its request.
    #[cold]
    pub(super) fn stopped_reply(&mut self, now: Time, stopped: Stopped) {
        match stopped {
            Stopped::Close(reason, code) => self.close_as(now, reason, code),
            Stopped::Reject(_) | Stopped::Drop => self.finish_drain_if_done(now),
        }
    }

    /// [`push`](Session::push) through the push hooks: a push the chain leaves unchanged is
    /// sealed as encoded for every session; one it changes is encoded again for this session.
    pub(super) fn push_filtered(&mut self, now: Time, push: &PushPacket) -> PushOutcome {
        let Self {
            config,
            context,
            state,
            tx,
            ..
        } = self;
        let State::Established(link) = state else {
            return PushOutcome::NotEstablished;
        };
        let Some(filters) = link.filters.as_deref_mut() else {
            return PushOutcome::NotEstablished;
        };
        // The core encoded it (or a hub did, by the same rule): it decodes. Filters see the
        // payload uncompressed, as for a reply.
        let Ok(mut packet) = codec::decode_packet(push.shared()) else {
            return PushOutcome::Dropped;
        };
        if packet.compress {
            match inflate(&packet.data, config.session.max_inflated_len) {
                Ok(data) => packet.data = Bytes::from(data),
                Err(_) => return PushOutcome::Dropped,
            }
        }
        let view = SessionView::new(&link.identity, context);
        let server = ServerPacket::new(
            packet.r#mod,
            packet.seq,
            packet.obj,
            0,
            std::mem::take(&mut packet.data),
            true,
        );
        match config.filters.outbound(filters, &view, server, now) {
            OutboundStep::Send(p) if !p.is_rewritten() => {
                tx.encoded(link.sealer.as_mut(), push.as_bytes());
            }
            OutboundStep::Send(p) => {
                let (module, seq, obj, data) = p.into_parts();
                let session = &config.session;
                let (data, compress) =
                    deflate_reply(data, session.compress_threshold, session.compress_strong);
                (packet.r#mod, packet.seq, packet.obj) = (module, seq, obj);
                (packet.data, packet.compress) = (data, compress);
                // Encoded here rather than by `Outbound::packet_within`, whose every caller
                // weighs on how the reply path is compiled.
                let encoding = codec::PacketEncoding::new(&packet);
                let mut encoded = BytesMut::with_capacity(encoding.len());
                encoding.write(&mut encoded);
                let overhead = if link.sealer.is_some() {
                    SEAL_OVERHEAD
                } else {
                    0
                };
                if encoded.len() + overhead > session.max_frame_len {
                    // Rewritten past the frame limit: a push answers no request, so it goes.
                    return PushOutcome::Dropped;
                }
                tx.encoded(link.sealer.as_mut(), &encoded);
            }
            OutboundStep::Drop => return PushOutcome::Dropped,
            OutboundStep::Close(e) => {
                self.close_as(now, e.reason, e.code);
                return PushOutcome::Dropped;
            }
        }
        if self.check_budget(now) {
            PushOutcome::Queued
        } else {
            PushOutcome::Evicted
        }
    }

    /// Asks the filters of `chain` (the gateway's configuration now, which may be newer than the
    /// one the session started with) whether this live session may go on, after a reload or a
    /// ban-list refresh; closes it if not ([`Filter::recheck`](crate::filter::Filter::recheck)).
    /// Returns whether it is still open.
    pub fn recheck(&mut self, now: Time, chain: &FilterChain) -> bool {
        let State::Established(link) = &self.state else {
            return !matches!(self.state, State::Closed);
        };
        let view = SessionView::new(&link.identity, &self.context);
        match chain.recheck(&view, now) {
            Some(e) => {
                self.close_as(now, e.reason, e.code);
                false
            }
            None => true,
        }
    }
}

/// The close hooks: each filter gets its state back with the reason.
pub(super) fn closed(
    config: &ServerConfig,
    context: &ConnectionContext,
    identity: &Identity,
    filters: &mut SessionFilters,
    reason: CloseReason,
    now: Time,
) {
    let view = SessionView::new(identity, context);
    config.filters.close(filters, &view, reason, now);
}
