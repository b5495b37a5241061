//! Between the sessions and the links: a session's events go to its hub, a hub's messages go to
//! its sessions, and when a hub goes away its sessions move to another.

use janus_core::{
    CloseReason, Time,
    relay::{LinkEvent, Outgoing, SendError, session_info},
    session::{Event, SessionState, TunnelId},
};

use super::{
    Shared, Worker,
    client::Client,
    hubs::{Hub, pick},
};

/// Replies still unwritten to a client beyond which the relay credit its replies used is kept
/// back: the hub then queues that session's replies (and evicts it past its window), not this
/// edge's memory.
const RELEASE_WATERMARK: usize = 64 * 1024;

/// Carries out a client session's events: opens it on a hub once authenticated, relays tunnels
/// and requests, closes it there. A request that cannot reach a hub fails its tunnel, so the
/// client gets `SCServerUnexpectedErr` for it at once.
pub(super) fn drive(client: &mut Client, hubs: &mut [Hub], shared: &Shared, now: Time) {
    loop {
        let mut failed: Vec<TunnelId> = Vec::new();
        while let Some(event) = client.session.poll_event() {
            let metrics = &shared.metrics;
            match &event {
                Event::Authenticated(_) => {
                    client.authenticated = true;
                    metrics.inc(&metrics.sessions_authenticated);
                    metrics.gauge(&metrics.sessions_open, 1);
                    if let Some(admitted) = &client.admitted {
                        shared.admission().handshake_finished(admitted);
                    }
                    client.home = pick(hubs).and_then(|h| u8::try_from(h).ok());
                }
                Event::Closed(reason) => {
                    metrics.closed(*reason);
                    if client.authenticated {
                        metrics.gauge(&metrics.sessions_open, -1);
                    }
                }
                _ => {}
            }
            let Some(h) = client.home.map(usize::from) else {
                if let Event::OpenTunnel(open) = event {
                    metrics.inc(&metrics.requests_without_hub);
                    failed.push(open.id);
                }
                continue;
            };
            let Some(hub) = hubs.get_mut(h) else {
                continue;
            };
            let tunnel = match &event {
                Event::OpenTunnel(open) => Some(open.id),
                Event::Forward { tunnel, .. } => Some(*tunnel),
                _ => None,
            };
            let opening = matches!(event, Event::Authenticated(_));
            let closing = matches!(event, Event::Closed(_));
            let context = client.session.context().clone();
            let sent = match (
                Outgoing::from_session_event(client.id, event, &context),
                &mut hub.conn,
            ) {
                (Some(out), Some(conn)) => conn.link.send(now, client.id, out),
                _ => Err(SendError::NotEstablished),
            };
            match sent {
                Ok(()) if opening => hub.sessions += 1,
                Ok(()) => {}
                // The hub does not take this session's requests as fast as the client sends.
                Err(SendError::Backlog) => {
                    client.session.close(now, CloseReason::BackendBackpressure);
                }
                Err(_) if opening => client.home = None,
                Err(_) => failed.extend(tunnel),
            }
            if closing && !opening {
                if client.home.is_some() {
                    hub.sessions = hub.sessions.saturating_sub(1);
                }
                client.home = None;
            }
        }
        if failed.is_empty() {
            break;
        }
        for tunnel in failed {
            client.session.handle_tunnel_closed(now, tunnel);
        }
    }
    let stats = client.session.stats();
    shared.metrics.session_moved(&stats.since(&client.exported));
    client.exported = stats;
}

/// Opens an authenticated session that has no hub on the best live one.
pub(super) fn rehome(client: &mut Client, hubs: &mut [Hub], now: Time) -> bool {
    if client.home.is_some() || client.session.state() == SessionState::Closed {
        return false;
    }
    let Some(identity) = client.session.identity().cloned() else {
        return false;
    };
    let Some(h) = pick(hubs) else {
        return false;
    };
    let Some(conn) = hubs.get_mut(h).and_then(|hub| hub.conn.as_mut()) else {
        return false;
    };
    let info = session_info(client.id, identity, client.session.context());
    if conn
        .link
        .send(now, client.id, Outgoing::Open(Box::new(info)))
        .is_ok()
    {
        if let Some(hub) = hubs.get_mut(h) {
            hub.sessions += 1;
        }
        client.home = u8::try_from(h).ok();
        true
    } else {
        false
    }
}

/// The client of relay session `id`, if it is still here.
pub(super) fn client_of(
    clients: &mut slab::Slab<Box<Client>>,
    id: u64,
) -> Option<(usize, &mut Client)> {
    let key = usize::try_from(id & 0xffff_ffff).ok()?;
    let client = clients.get_mut(key)?;
    (client.id == id).then_some((key, &mut **client))
}

impl Worker {
    /// Carries out what hub `h`'s link decoded.
    pub(super) fn on_link_event(&mut self, h: usize, event: LinkEvent, now: Time) {
        let metrics = std::sync::Arc::clone(&self.shared.metrics);
        match event {
            LinkEvent::Established(peer) => {
                tracing::info!(hub = %peer.node, "link to hub authenticated");
                metrics.inc(&metrics.links_connected);
                metrics.gauge(&metrics.links_up, 1);
                if let Some(hub) = self.hubs.get_mut(h) {
                    hub.backoff = self.shared.reconnect.0;
                    if let Some(conn) = &mut hub.conn {
                        conn.up = true;
                    }
                }
                self.rehome_all(now);
            }
            LinkEvent::Data {
                session,
                tunnel,
                message,
                cost,
            } => {
                let mut release = Some(cost);
                if let Some((key, client)) = client_of(&mut self.clients, session) {
                    client.touch(now);
                    client.session.handle_tunnel(now, tunnel, message);
                    if client.session.pending_transmit() > RELEASE_WATERMARK {
                        client.owed = client.owed.saturating_add(cost);
                        release = None;
                    }
                    self.mark_dirty(key);
                }
                if let (Some(cost), Some(conn)) = (
                    release,
                    self.hubs.get_mut(h).and_then(|hub| hub.conn.as_mut()),
                ) {
                    conn.link.release(session, cost);
                }
            }
            LinkEvent::TunnelClosed {
                session, tunnel, ..
            } => {
                if let Some((key, client)) = client_of(&mut self.clients, session) {
                    client.session.handle_tunnel_closed(now, tunnel);
                    self.mark_dirty(key);
                }
            }
            LinkEvent::Push { sessions, packet } => {
                for session in sessions {
                    if let Some((key, client)) = client_of(&mut self.clients, session) {
                        client.touch(now);
                        client.session.push(now, &packet);
                        metrics.inc(&metrics.pushes_delivered);
                        self.mark_dirty(key);
                    }
                }
            }
            LinkEvent::SessionClosed { session, reason } => {
                if let Some(hub) = self.hubs.get_mut(h) {
                    hub.sessions = hub.sessions.saturating_sub(1);
                }
                if let Some((key, client)) = client_of(&mut self.clients, session) {
                    client.home = None;
                    if reason == CloseReason::Shutdown {
                        // A draining hub refused or ended it: move it, do not log it out.
                        if rehome(client, &mut self.hubs, now) {
                            metrics.inc(&metrics.sessions_rehomed);
                        }
                    } else {
                        client.session.close(now, reason);
                    }
                    self.mark_dirty(key);
                }
            }
            // The hub is shutting down: leave it now, so the sessions move while it drains.
            LinkEvent::Drain => {
                if let Some(conn) = self.hubs.get_mut(h).and_then(|hub| hub.conn.as_mut()) {
                    conn.link
                        .close(now, janus_core::relay::LinkCloseReason::Shutdown);
                }
            }
            LinkEvent::Closed(reason) => self.link_lost(h, reason, now),
            _ => {}
        }
    }

    /// Hub `h`'s link ended: its sessions' tunnels fail (their pending requests are answered
    /// with `SCServerUnexpectedErr`), and the sessions move to another hub, or wait for one.
    fn link_lost(&mut self, h: usize, reason: janus_core::relay::LinkCloseReason, now: Time) {
        let metrics = std::sync::Arc::clone(&self.shared.metrics);
        metrics.link_closed(reason);
        let Some(hub) = self.hubs.get_mut(h) else {
            return;
        };
        let Some(mut conn) = hub.conn.take() else {
            return;
        };
        tracing::info!(hub = %hub.addr, reason = reason.as_str(), goodbye = ?conn.link.peer_goodbye(), "link to hub closed");
        if conn.up {
            metrics.gauge(&metrics.links_up, -1);
        }
        // Whatever is still queued is lost with the connection; a goodbye may still fit.
        let _ = std::io::Write::write(&mut conn.stream, conn.link.transmit());
        let _ = self.poll.registry().deregister(&mut conn.stream);
        hub.sessions = 0;
        hub.schedule_retry(now, &mut self.rng, self.shared.reconnect.1);
        for (session, tunnels) in conn.link.take_sessions() {
            let Some((key, client)) = client_of(&mut self.clients, session) else {
                continue;
            };
            client.home = None;
            for tunnel in tunnels {
                metrics.inc(&metrics.tunnels_failed_by_link);
                client.session.handle_tunnel_closed(now, tunnel);
            }
            if rehome(client, &mut self.hubs, now) {
                metrics.inc(&metrics.sessions_rehomed);
            }
            self.mark_dirty(key);
        }
    }

    /// Opens every session that has no hub on a live one (after a link comes up).
    pub(super) fn rehome_all(&mut self, now: Time) {
        let metrics = std::sync::Arc::clone(&self.shared.metrics);
        let mut moved = Vec::new();
        for (key, client) in self.clients.iter_mut() {
            if client.authenticated && rehome(client, &mut self.hubs, now) {
                metrics.inc(&metrics.sessions_rehomed);
                moved.push(key);
            }
        }
        for key in moved {
            self.mark_dirty(key);
        }
    }
}
