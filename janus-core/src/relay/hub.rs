//! [`HubSession`]: a relay session on the hub, standing in for a client
//! [`Session`](crate::session::Session). It produces the same [`Event`]s (so the gateway
//! carries it out with the same code as a local connection) and takes the same inputs, which it
//! turns into [`Outgoing`] messages for the edge.

use std::{collections::VecDeque, sync::Arc};

use super::{Outgoing, SessionInfo};
use crate::{
    CloseReason, Time,
    config::ServerConfig,
    filter::{FilterChain, SessionView},
    handshake::Identity,
    route::{OidRule, TunnelKey},
    session::{
        ConnectionContext, Event, OpenTunnel, PushOutcome, PushPacket, SessionStats, TunnelId,
        TunnelLayout, TunnelMessage, metadata,
    },
};

/// One relay session on the hub.
#[derive(Debug)]
pub struct HubSession {
    config: Arc<ServerConfig>,
    id: u64,
    identity: Identity,
    context: ConnectionContext,
    tunnels: Vec<TunnelId>,
    events: VecDeque<Event>,
    outgoing: VecDeque<Outgoing>,
    closed: bool,
    stats: SessionStats,
}

impl HubSession {
    /// The session the edge announced; `gateway` is this hub's endpoint (the referer the
    /// backends see). Queues [`Event::Authenticated`].
    pub fn new(config: Arc<ServerConfig>, info: &SessionInfo, gateway: Arc<str>) -> Self {
        let context = ConnectionContext {
            peer: info.client_addr,
            gateway,
            worker_id: info.worker_id,
        };
        let mut events = VecDeque::new();
        events.push_back(Event::Authenticated(info.identity.clone()));
        Self {
            config,
            id: info.session,
            identity: info.identity.clone(),
            context,
            tunnels: Vec::new(),
            events,
            outgoing: VecDeque::new(),
            closed: false,
            stats: SessionStats::default(),
        }
    }

    /// The edge's id for the session.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The client's address, this hub's endpoint, the edge's worker id.
    pub fn context(&self) -> &ConnectionContext {
        &self.context
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Messages moved (relay `Data` in, messages out).
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The edge opened tunnel `tunnel` for (`kind`, `oid`): [`Event::OpenTunnel`] with the
    /// metadata built here, naming this hub. A kind this hub does not know, or a player-kind oid
    /// that is not the session's uid, is refused with a failed `TunnelClose`.
    pub fn handle_tunnel_opened(&mut self, tunnel: TunnelId, kind: &str, oid: i64) {
        if self.closed {
            return;
        }
        let routes = &self.config.routes;
        let known = routes.kind_by_name(kind).and_then(|k| {
            let rule = routes.oid_rule(k);
            let owned = rule == OidRule::Object || oid == self.identity.uid;
            owned.then(|| (k, rule, routes.kind_names(k)))
        });
        let Some((kind, rule, Some((name, method)))) = known else {
            self.outgoing.push_back(Outgoing::TunnelClose {
                tunnel,
                failed: true,
            });
            return;
        };
        self.tunnels.push(tunnel);
        self.events
            .push_back(Event::OpenTunnel(Box::new(OpenTunnel {
                id: tunnel,
                key: TunnelKey { kind, oid },
                kind: name,
                rule,
                color: self.identity.color.clone(),
                method,
                layout: TunnelLayout::of(rule),
                metadata: metadata::build(&self.identity, oid, &self.context),
            })));
    }

    /// A client request from the edge: [`Event::Forward`] if its tunnel is open here.
    pub fn handle_data(&mut self, tunnel: TunnelId, message: TunnelMessage) {
        if self.closed || !self.tunnels.contains(&tunnel) {
            return;
        }
        self.stats.packets_in += 1;
        self.stats.bytes_in += message.data.len() as u64;
        self.events.push_back(Event::Forward { tunnel, message });
    }

    /// The edge's session closed the tunnel: [`Event::CloseTunnel`].
    pub fn handle_tunnel_released(&mut self, tunnel: TunnelId) {
        if let Some(i) = self.tunnels.iter().position(|t| *t == tunnel) {
            self.tunnels.swap_remove(i);
            self.events.push_back(Event::CloseTunnel(tunnel));
        }
    }

    /// The edge closed the session (the client left, or it moved to another hub): every tunnel
    /// closes, then [`Event::Closed`]. Nothing is sent back.
    pub fn handle_closed_by_edge(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.end(reason);
        self.outgoing.clear();
    }

    /// A backend message on `tunnel` (as [`Session::handle_tunnel`](crate::session::Session::handle_tunnel)).
    pub fn handle_tunnel(&mut self, _now: Time, tunnel: TunnelId, message: TunnelMessage) {
        if self.closed || !self.tunnels.contains(&tunnel) {
            return;
        }
        self.stats.packets_out += 1;
        self.stats.bytes_out += message.data.len() as u64;
        self.outgoing.push_back(Outgoing::Data { tunnel, message });
    }

    /// The backend stream of `tunnel` ended: the edge's session answers what was pending on it.
    pub fn handle_tunnel_closed(&mut self, _now: Time, tunnel: TunnelId) {
        if let Some(i) = self.tunnels.iter().position(|t| *t == tunnel) {
            self.tunnels.swap_remove(i);
            self.outgoing.push_back(Outgoing::TunnelClose {
                tunnel,
                failed: true,
            });
        }
    }

    /// A push for this session (sealed on the edge).
    pub fn push(&mut self, _now: Time, push: &PushPacket) -> PushOutcome {
        if self.closed {
            return PushOutcome::NotEstablished;
        }
        self.stats.packets_out += 1;
        self.outgoing.push_back(Outgoing::Push(push.clone()));
        PushOutcome::Queued
    }

    /// The gateway closes the session (a kick, a newer login, a slow session): the edge is told
    /// (it logs the client out as the reason says), every tunnel closes, [`Event::Closed`].
    pub fn close(&mut self, _now: Time, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.end(reason);
        self.outgoing.clear();
        self.outgoing.push_back(Outgoing::SessionClose(reason));
    }

    /// [`Session::recheck`](crate::session::Session::recheck) for a relayed session: the hub's
    /// filters of `chain`, asked after the hub's reload (the edge runs its own chain for
    /// everything else); a refusal closes the session as [`close`](Self::close) does. Returns
    /// whether it is still open.
    pub fn recheck(&mut self, now: Time, chain: &FilterChain) -> bool {
        if self.closed {
            return false;
        }
        let view = SessionView::new(&self.identity, &self.context);
        match chain.recheck(&view, now) {
            Some(ending) => {
                self.close(now, ending.reason);
                false
            }
            None => true,
        }
    }

    fn end(&mut self, reason: CloseReason) {
        self.closed = true;
        for tunnel in self.tunnels.drain(..) {
            self.events.push_back(Event::CloseTunnel(tunnel));
        }
        self.events.push_back(Event::Closed(reason));
    }

    /// The next event for the gateway.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next message for the edge.
    #[must_use]
    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.outgoing.pop_front()
    }
}
