//! An event loop's clock duties and its end: timers (lazy, one heap entry per connection),
//! the hubs' deadlines and reconnects, and the drain.

use std::{cmp::Reverse, sync::Arc};

use janus_core::{CloseReason, Time, relay::LinkCloseReason};

use super::Worker;

impl Worker {
    /// Makes sure a timer entry fires by the client's next deadline.
    pub(super) fn arm(&mut self, key: usize, now: Time) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let due = [
            client.session.poll_timeout(),
            client.close_by,
            client.compact_at,
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(due) = due else { return };
        if client.armed.is_none_or(|armed| due < armed || armed < now) {
            client.armed = Some(due);
            self.timers.push(Reverse((due, key, client.id)));
        }
    }

    pub(super) fn fire_timers(&mut self, now: Time) {
        while let Some(Reverse((due, key, id))) = self.timers.peek().copied() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(client) = self.clients.get_mut(key) else {
                continue;
            };
            if client.id != id || client.armed != Some(due) {
                continue;
            }
            client.armed = None;
            if client.compact_at.is_some_and(|t| t <= now) {
                client.compact_at = None;
                client.session.compact();
            }
            client.session.handle_timeout(now);
            self.mark_dirty(key);
        }
        for h in 0..self.hubs.len() {
            self.hub_timer(h, now);
        }
    }

    pub(super) fn hub_timer(&mut self, h: usize, now: Time) {
        let link = Arc::clone(&self.shared.link);
        let max = self.shared.reconnect.1;
        let draining = self.drain_deadline.is_some();
        let Some(hub) = self.hubs.get_mut(h) else {
            return;
        };
        match &mut hub.conn {
            Some(conn) if conn.link.poll_timeout().is_some_and(|t| t <= now) => {
                conn.link.handle_timeout(now);
            }
            Some(_) => {}
            None if !draining && now >= hub.retry_at => {
                hub.connect(self.poll.registry(), &link, now, &mut self.rng, max);
            }
            None => {}
        }
        self.flush_hub(h, now);
    }

    pub(super) fn next_deadline(&self) -> Option<Time> {
        let client = self.timers.peek().map(|Reverse((t, _, _))| *t);
        let hubs = self.hubs.iter().filter_map(|h| match &h.conn {
            Some(c) => c.link.poll_timeout(),
            None => Some(h.retry_at),
        });
        client
            .into_iter()
            .chain(hubs)
            .chain(self.drain_deadline)
            .min()
    }

    pub(super) fn start_drain(&mut self, now: Time) {
        self.drain_deadline = Some(now + self.shared.shutdown_grace);
        // Stop accepting: the listeners close with their sockets.
        self.tcp = None;
        self.ws = None;
        let keys: Vec<usize> = self.clients.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(c) = self.clients.get_mut(key) {
                c.session.drain(now);
            }
            self.mark_dirty(key);
        }
        self.end_turn(now);
    }

    pub(super) fn drained(&self) -> bool {
        self.drain_deadline.is_some() && self.clients.is_empty()
    }

    /// The last turn: close what is left, say goodbye to the hubs.
    pub(super) fn finish(&mut self, now: Time) {
        let keys: Vec<usize> = self.clients.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(c) = self.clients.get_mut(key) {
                c.session.close(now, CloseReason::Shutdown);
                let _ = c.write();
            }
            self.remove(key, now);
        }
        for h in 0..self.hubs.len() {
            if let Some(conn) = self.hubs.get_mut(h).and_then(|hub| hub.conn.as_mut()) {
                conn.link.close(now, LinkCloseReason::Shutdown);
            }
            self.flush_hub(h, now);
        }
    }
}
