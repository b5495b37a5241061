//! The packets a resumable session sent and its client has not acknowledged, kept as plaintext
//! so a new connection can get them again under its own key.

use std::collections::VecDeque;

use bytes::Bytes;

use super::ResumeConfig;

/// The client lacks packets the buffer no longer holds (or claims packets never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client has {received} packets, buffer holds {first}..={sent}")]
pub struct ReplayGap {
    pub received: u64,
    pub first: u64,
    pub sent: u64,
}

/// Unacknowledged packets, oldest first, numbered 1, 2, 3 … over the session's whole life (a
/// resume continues the count). See the [module documentation](super) for the bounds.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct ReplayBuffer {
    packets: VecDeque<Bytes>,
    bytes: usize,
    /// Packets recorded so far: the number of the newest.
    sent: u64,
    max_bytes: usize,
    max_packets: usize,
    parked: bool,
    overflowed: bool,
}

impl ReplayBuffer {
    /// An empty buffer with `config`'s bounds.
    pub fn new(config: &ResumeConfig) -> Self {
        Self {
            packets: VecDeque::new(),
            bytes: 0,
            sent: 0,
            max_bytes: config.max_buffered_bytes,
            max_packets: config.max_buffered_packets.max(1),
            parked: false,
            overflowed: false,
        }
    }

    /// Records the next packet sent (its encoded `Packet`). Over a bound, the oldest is forgotten;
    /// while parked that loses a packet the client has not seen, so the buffer is marked
    /// [`overflowed`](Self::overflowed) and its session must end.
    pub fn record(&mut self, packet: Bytes) {
        self.sent += 1;
        self.bytes += packet.len();
        self.packets.push_back(packet);
        while self.packets.len() > self.max_packets || self.bytes > self.max_bytes {
            let Some(oldest) = self.packets.pop_front() else {
                break;
            };
            self.bytes -= oldest.len();
            if self.parked {
                self.overflowed = true;
            }
        }
    }

    /// The client has the first `received` packets: forget them. A count beyond what was sent
    /// is ignored (returns `false`).
    pub fn ack(&mut self, received: u64) -> bool {
        if received > self.sent {
            return false;
        }
        while self.first() <= received {
            match self.packets.pop_front() {
                Some(p) => self.bytes -= p.len(),
                None => break,
            }
        }
        true
    }

    /// The packets after the first `received`, in order: what a resuming client lacks.
    pub fn since(&self, received: u64) -> Result<impl Iterator<Item = &Bytes>, ReplayGap> {
        let first = self.first();
        if received > self.sent || received.saturating_add(1) < first {
            return Err(ReplayGap {
                received,
                first,
                sent: self.sent,
            });
        }
        let skip = usize::try_from(received.saturating_add(1) - first).unwrap_or(usize::MAX);
        Ok(self.packets.iter().skip(skip))
    }

    /// The number of the oldest packet held (`sent + 1` when empty).
    fn first(&self) -> u64 {
        self.sent + 1 - self.packets.len() as u64
    }

    /// Packets recorded over the session's life.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The client is away: from now on packets are only recorded.
    pub fn park(&mut self) {
        self.parked = true;
    }

    /// The client is back.
    pub fn unpark(&mut self) {
        self.parked = false;
    }

    /// Whether the client is away.
    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// Whether a packet the parked client had not seen was forgotten.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}
