//! An authenticated connection: its key, its index counter, its deadlines and its tunnels.

use std::collections::VecDeque;

use super::{
    Event, OpenTunnel, TunnelId, TunnelLayout, context::ConnectionContext, event::Events,
    event::metadata, outbound::Sealer,
};
use crate::{
    Time,
    config::ServerConfig,
    filter::SessionFilters,
    handshake::Identity,
    limit::Gcra,
    route::{OidRule, TunnelKey},
};

/// An authenticated connection.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Link {
    pub identity: Identity,
    /// `None` in unencrypted mode.
    pub sealer: Option<Sealer>,
    /// The index the next client packet must carry.
    pub next_index: i32,
    pub idle_deadline: Time,
    pub drain_deadline: Option<Time>,
    /// Open tunnels (a handful per session: a linear scan beats a map).
    pub tunnels: Vec<Tunnel>,
    /// The id the next tunnel gets.
    next_tunnel: u64,
    pub rate: Option<Gcra>,
    /// The filters' states for this session; `None` when no filter keeps any (the common case:
    /// nothing to run per packet).
    pub filters: Option<Box<SessionFilters>>,
    /// Set when the client was granted session resume (`crate::resume`).
    pub resume: Option<Box<super::resume::Resumable>>,
}

/// An open tunnel of a session.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Tunnel {
    pub id: TunnelId,
    pub key: TunnelKey,
    /// Whether the kind carries the room fields (conn/frag): its oid rule is `Object`. Looked
    /// up once, at open, instead of for every packet both ways.
    pub object_kind: bool,
    /// For least-recently-used eviction.
    last_used: Time,
    /// Requests forwarded and not yet answered, oldest first, at most `max_pending`: if the
    /// backend stream ends, each gets `SCServerUnexpectedErr` instead of silence.
    pub pending: VecDeque<Pending>,
}

/// A forwarded request awaiting its reply (the reply echoes `index`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub index: i32,
    pub module: i32,
    pub seq: i32,
}

impl Tunnel {
    /// Forgets the request a reply answers. Replies come in order on a tunnel (the backend
    /// serialises an actor's requests), so the match is almost always at the front.
    pub fn answered(&mut self, index: i32) {
        if self.pending.front().is_some_and(|p| p.index == index) {
            self.pending.pop_front();
        } else if let Some(i) = self.pending.iter().position(|p| p.index == index) {
            self.pending.remove(i);
        }
    }
}

impl Link {
    pub fn new(
        identity: Identity,
        sealer: Option<Sealer>,
        now: Time,
        config: &ServerConfig,
    ) -> Self {
        Link {
            identity,
            sealer,
            next_index: crate::handshake::START_INDEX,
            idle_deadline: now + config.session.idle_timeout,
            drain_deadline: None,
            tunnels: Vec::new(),
            next_tunnel: 1,
            rate: config.session.rate_limit.map(Gcra::new),
            filters: None,
            resume: None,
        }
    }

    /// The open tunnel `id`, if it is still open.
    pub fn tunnel_mut(&mut self, id: TunnelId) -> Option<&mut Tunnel> {
        self.tunnels.iter_mut().find(|t| t.id == id)
    }

    /// Removes tunnel `id`, if it is still open.
    pub fn remove(&mut self, id: TunnelId) -> Option<Tunnel> {
        let i = self.tunnels.iter().position(|t| t.id == id)?;
        Some(self.tunnels.swap_remove(i))
    }

    /// Whether every forwarded request has been answered.
    pub fn nothing_pending(&self) -> bool {
        self.tunnels.iter().all(|t| t.pending.is_empty())
    }

    /// The tunnel for `key`, opened (with an [`Event::OpenTunnel`]) if there is none. When the
    /// session already holds `max_tunnels`, the least recently used one (preferring one with
    /// nothing pending) is closed first and returned, so its pending requests can be answered.
    pub fn tunnel_for(
        &mut self,
        key: TunnelKey,
        now: Time,
        config: &ServerConfig,
        context: &ConnectionContext,
        events: &mut Events,
    ) -> (usize, Option<Tunnel>) {
        if let Some(i) = self.tunnels.iter().position(|t| t.key == key) {
            return (i, None);
        }
        let mut evicted = None;
        if self.tunnels.len() >= config.session.max_tunnels.max(1) {
            let lru = self
                .tunnels
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| (!t.pending.is_empty(), t.last_used))
                .map(|(i, _)| i);
            if let Some(i) = lru {
                let tunnel = self.tunnels.swap_remove(i);
                events.push(Event::CloseTunnel(tunnel.id));
                evicted = Some(tunnel);
            }
        }
        let id = TunnelId(self.next_tunnel);
        self.next_tunnel += 1;
        let routes = &config.routes;
        let rule = routes.oid_rule(key.kind);
        let (kind, method) = routes
            .kind_names(key.kind)
            .unwrap_or_else(|| ("".into(), "".into()));
        events.push(Event::OpenTunnel(Box::new(OpenTunnel {
            id,
            key,
            kind,
            rule,
            color: self.identity.color.clone(),
            method,
            layout: TunnelLayout::of(rule),
            metadata: metadata::build(&self.identity, key.oid, context),
        })));
        self.tunnels.push(Tunnel {
            id,
            key,
            object_kind: rule == OidRule::Object,
            last_used: now,
            pending: VecDeque::new(),
        });
        (self.tunnels.len() - 1, evicted)
    }

    /// Records a request forwarded on tunnel `i`, so a failed stream can answer it. Returns the
    /// tunnel's id and whether its kind carries the room fields.
    pub fn forwarded(
        &mut self,
        i: usize,
        now: Time,
        request: Pending,
        max_pending: usize,
    ) -> Option<(TunnelId, bool)> {
        let t = self.tunnels.get_mut(i)?;
        t.last_used = now;
        if t.pending.len() >= max_pending.max(1) {
            // A backend that never answers some requests must not make this grow: forget
            // the oldest (it would most likely never be answered either).
            t.pending.pop_front();
        }
        t.pending.push_back(request);
        Some((t.id, t.object_kind))
    }
}
