//! What a [`Link`] sends about sessions: the rules of [`Link::send`] (who may send what, credit,
//! queues, coalesced pushes) and the credit it returns.

use bytes::BytesMut;
use janus_proto::janus::relay::v1::{self as pb, frame::Body};

use super::{
    Outgoing, Role,
    flow::Flow,
    link::{Link, LinkState, PendingPush, SendError},
    wire,
};
use crate::{
    Time,
    session::{PushPacket, TunnelId, TunnelMessage},
};

impl Link {
    /// Queues a message about `session` for the peer. Data frames spend the session's credit or
    /// wait for it; see [`SendError`] for what is refused.
    pub fn send(&mut self, now: Time, session: u64, msg: Outgoing) -> Result<(), SendError> {
        if self.state != LinkState::Established {
            return Err(SendError::NotEstablished);
        }
        let role = self.config.role;
        match (role, msg) {
            (Role::Edge, Outgoing::Open(info)) => {
                if self.sessions.contains_key(&session) || info.session != session {
                    return Err(SendError::Invalid);
                }
                let window = self.peer_window();
                self.sessions.insert(session, Flow::new(window));
                let info = *info;
                let id = info.identity;
                self.encode(
                    now,
                    Body::SessionOpen(pb::SessionOpen {
                        session,
                        uid: id.uid,
                        sid: id.sid,
                        color: id.color,
                        status: id.status,
                        client_addr: info.client_addr.to_string(),
                        worker_id: info.worker_id,
                        conn_id: id.conn_id,
                        token_expiry: id.token_expiry,
                    }),
                );
            }
            (_, Outgoing::SessionClose(reason)) => {
                if self.sessions.remove(&session).is_none() {
                    return Err(SendError::UnknownSession);
                }
                self.encode(
                    now,
                    Body::SessionClose(pb::SessionClose {
                        session,
                        reason: reason.as_str().into(),
                    }),
                );
            }
            (Role::Edge, Outgoing::TunnelOpen { tunnel, kind, oid }) => {
                let flow = self
                    .sessions
                    .get_mut(&session)
                    .ok_or(SendError::UnknownSession)?;
                if !flow.open_tunnel(tunnel.0) {
                    return Err(SendError::Backlog);
                }
                self.encode(
                    now,
                    Body::TunnelOpen(pb::TunnelOpen {
                        session,
                        tunnel: tunnel.0,
                        kind,
                        oid,
                    }),
                );
            }
            (_, Outgoing::TunnelClose { tunnel, failed }) => {
                let flow = self
                    .sessions
                    .get_mut(&session)
                    .ok_or(SendError::UnknownSession)?;
                if flow.close_tunnel(tunnel.0) {
                    self.encode(
                        now,
                        Body::TunnelClose(pb::TunnelClose {
                            session,
                            tunnel: tunnel.0,
                            failed,
                        }),
                    );
                }
            }
            (_, Outgoing::Data { tunnel, message }) => {
                return self.send_data(now, session, tunnel, message);
            }
            (Role::Hub, Outgoing::Push(packet)) => return self.push(now, session, packet),
            _ => return Err(SendError::Invalid),
        }
        Ok(())
    }

    fn send_data(
        &mut self,
        now: Time,
        session: u64,
        tunnel: TunnelId,
        message: TunnelMessage,
    ) -> Result<(), SendError> {
        let max = self
            .peer
            .as_ref()
            .map_or(0, |p| p.max_frame_len)
            .min(usize::try_from(self.peer_window()).unwrap_or(usize::MAX));
        let flow = self
            .sessions
            .get_mut(&session)
            .ok_or(SendError::UnknownSession)?;
        if !flow.has_tunnel(tunnel.0) {
            return Err(SendError::UnknownSession);
        }
        let body = wire::data(session, tunnel.0, message);
        let cost = wire::frame_len(&body);
        if cost > max.saturating_add(crate::frame::HEADER_LEN) {
            return Err(SendError::TooLarge);
        }
        let cost32 = u32::try_from(cost).unwrap_or(u32::MAX);
        if flow.try_spend(cost32) {
            self.encode(now, body);
            return Ok(());
        }
        let mut frame = BytesMut::new();
        wire::encode(body, &mut frame);
        let window = self.peer_window();
        let flow = self
            .sessions
            .get_mut(&session)
            .ok_or(SendError::UnknownSession)?;
        if flow.enqueue(frame.freeze(), window) {
            Ok(())
        } else {
            Err(SendError::Backlog)
        }
    }

    fn push(&mut self, now: Time, session: u64, packet: PushPacket) -> Result<(), SendError> {
        if !self.sessions.contains_key(&session) {
            return Err(SendError::UnknownSession);
        }
        if self.tx.len() > self.config.max_buffered {
            return Err(SendError::Backlog);
        }
        // A broadcast reaches the sessions one by one: the same encoded packet, consecutively.
        let max_sessions = self.max_push_sessions(&packet);
        if let Some(p) = &mut self.pending_push {
            if p.packet.same_encoding(&packet) && p.sessions.len() < max_sessions {
                p.sessions.push(session);
                return Ok(());
            }
        }
        self.flush_push(now);
        self.pending_push = Some(PendingPush {
            packet,
            sessions: vec![session],
        });
        Ok(())
    }

    /// Session ids that fit one push frame next to the packet (10 bytes each at most).
    fn max_push_sessions(&self, packet: &PushPacket) -> usize {
        let max = self.peer.as_ref().map_or(0, |p| p.max_frame_len);
        (max.saturating_sub(packet.as_bytes().len() + 32) / 11).max(1)
    }

    pub(super) fn flush_push(&mut self, now: Time) {
        if let Some(p) = self.pending_push.take() {
            let compressed = p.packet.is_compressed();
            self.encode_now(
                now,
                Body::Push(pb::Push {
                    sessions: p.sessions,
                    packet: p.packet.into_bytes(),
                    compressed,
                }),
            );
        }
    }

    pub(super) fn flush_queue(&mut self, now: Time, session: u64) {
        while let Some(frame) = self
            .sessions
            .get_mut(&session)
            .and_then(Flow::next_sendable)
        {
            self.flush_push(now);
            self.stats.frames_out += 1;
            self.stats.bytes_out += frame.len() as u64;
            self.tx.extend_from_slice(&frame);
            self.last_sent = now;
        }
    }

    /// The adapter consumed a `Data` message of `cost` bytes on `session` (from
    /// [`LinkEvent::Data`]); credit goes back to the peer once enough has accumulated.
    pub fn release(&mut self, session: u64, cost: u32) {
        let window = self.config.session_window;
        let credit = self
            .sessions
            .get_mut(&session)
            .and_then(|f| f.release(cost, window));
        if let Some(bytes) = credit {
            let now = self.last_sent;
            self.encode(now, Body::Credit(pb::Credit { session, bytes }));
        }
    }
}
