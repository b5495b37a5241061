//! Per-session state of a link: credit both ways, frames waiting for credit, open tunnels.

use std::collections::VecDeque;

use bytes::Bytes;

use super::MAX_TUNNELS_PER_SESSION;

/// One session on a link.
#[derive(Debug, Default)]
pub(super) struct Flow {
    /// Bytes of `Data` frames this side may still send (the peer's window minus what it has not
    /// yet credited back). Never negative: a frame is sent only when it fits.
    pub credit: u32,
    /// Bytes of `Data` frames received and not yet released by the adapter.
    pub in_flight: u32,
    /// Bytes released and not yet credited back to the peer.
    pub owed: u32,
    /// Encoded `Data` frames waiting for credit, oldest first.
    pub queue: VecDeque<Bytes>,
    /// Their total length.
    pub queued: u32,
    /// Open tunnels (a handful: a Vec beats a set).
    pub tunnels: Vec<u64>,
}

impl Flow {
    pub fn new(credit: u32) -> Self {
        Self {
            credit,
            ..Self::default()
        }
    }

    /// Spends `cost` if it fits and nothing is queued ahead of it.
    pub fn try_spend(&mut self, cost: u32) -> bool {
        if self.queue.is_empty() && cost <= self.credit {
            self.credit -= cost;
            true
        } else {
            false
        }
    }

    /// Queues an encoded frame; `false` when that would exceed `limit` bytes queued.
    pub fn enqueue(&mut self, frame: Bytes, limit: u32) -> bool {
        let cost = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        match self.queued.checked_add(cost) {
            Some(total) if total <= limit => {
                self.queued = total;
                self.queue.push_back(frame);
                true
            }
            _ => false,
        }
    }

    /// Adds credit from the peer; `false` when it exceeds `window` (the peer returned credit it
    /// was never owed).
    pub fn add_credit(&mut self, bytes: u32, window: u32) -> bool {
        match self.credit.checked_add(bytes) {
            Some(c) if c <= window => {
                self.credit = c;
                true
            }
            _ => false,
        }
    }

    /// The next queued frame that the credit now covers, spending it.
    pub fn next_sendable(&mut self) -> Option<Bytes> {
        let cost = u32::try_from(self.queue.front()?.len()).unwrap_or(u32::MAX);
        if cost > self.credit {
            return None;
        }
        self.credit -= cost;
        self.queued = self.queued.saturating_sub(cost);
        self.queue.pop_front()
    }

    /// Counts a received frame against `window`; `false` when the peer overran it.
    pub fn receive(&mut self, cost: u32, window: u32) -> bool {
        match self.in_flight.checked_add(cost) {
            Some(total) if total.saturating_add(self.owed) <= window => {
                self.in_flight = total;
                true
            }
            _ => false,
        }
    }

    /// The adapter consumed `bytes`; returns credit to send back when enough has accumulated
    /// (a quarter window, so credit flows in few messages without starving the sender).
    pub fn release(&mut self, bytes: u32, window: u32) -> Option<u32> {
        let bytes = bytes.min(self.in_flight);
        self.in_flight -= bytes;
        self.owed = self.owed.saturating_add(bytes);
        if self.owed >= (window / 4).max(1) {
            Some(std::mem::take(&mut self.owed))
        } else {
            None
        }
    }

    /// Opens `tunnel`; `false` when the session already has too many.
    pub fn open_tunnel(&mut self, tunnel: u64) -> bool {
        if self.tunnels.contains(&tunnel) {
            return true;
        }
        if self.tunnels.len() >= MAX_TUNNELS_PER_SESSION {
            return false;
        }
        self.tunnels.push(tunnel);
        true
    }

    /// Closes `tunnel`; whether it was open.
    pub fn close_tunnel(&mut self, tunnel: u64) -> bool {
        match self.tunnels.iter().position(|t| *t == tunnel) {
            Some(i) => {
                self.tunnels.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub fn has_tunnel(&self, tunnel: u64) -> bool {
        self.tunnels.contains(&tunnel)
    }
}
