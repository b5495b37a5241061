//! The bytes a session queues for its client: frames, sealed under the session key once there is
//! one, appended to one buffer that the adapter writes out in as few writes as it can.

use bytes::{Bytes, BytesMut};
use janus_proto::packet::Packet;

use crate::{
    codec::PacketEncoding,
    crypto::{NonceSequence, PacketCipher, SEAL_OVERHEAD, SharedKey},
    frame::{self, HEADER_LEN},
    resume::ReplayBuffer,
};

/// A transmit buffer larger than this is freed once empty, so an idle session holds no large
/// buffer after a burst.
const IDLE_BUFFER_CAP: usize = 4096;

/// The session key with the nonces this side seals under it.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Sealer {
    /// The 32-byte session key.
    key: SharedKey,
    /// Its expanded AES and GHASH key schedule: most of an idle session's memory, so
    /// [`compact`](Self::compact) drops it and the next packet rebuilds it from `key`.
    expanded: Option<Box<PacketCipher>>,
    pub nonces: NonceSequence,
}

impl Sealer {
    pub fn new(key: &SharedKey, nonces: NonceSequence) -> Self {
        Self {
            key: key.clone(),
            expanded: Some(Box::new(PacketCipher::new(key))),
            nonces,
        }
    }

    /// The cipher, expanded again if it was compacted.
    pub fn cipher(&mut self) -> &PacketCipher {
        let key = &self.key;
        self.expanded
            .get_or_insert_with(|| Box::new(PacketCipher::new(key)))
    }

    /// Drops the expanded key schedule (rebuilt on the next use).
    pub fn compact(&mut self) {
        self.expanded = None;
    }
}

/// Frames waiting for the client, and what has gone out so far.
#[derive(Debug, Default)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Outbound {
    buf: BytesMut,
    /// Frames queued.
    pub packets: u64,
    /// Bytes the adapter has taken.
    pub bytes: u64,
    /// Every packet queued since login, kept until the client acknowledges it, when the client
    /// was granted session resume (`crate::resume`). While it is parked, packets go only there.
    pub replay: Option<Box<ReplayBuffer>>,
}

impl Outbound {
    /// Bytes queued and not yet taken.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The queued bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Appends one frame holding `packet`, sealed when there is a sealer.
    pub fn packet(&mut self, sealer: Option<&mut Sealer>, packet: &Packet) {
        self.encoding(sealer, &PacketEncoding::new(packet));
    }

    /// [`packet`](Self::packet) when the frame body stays within `max_body` bytes; returns
    /// whether it did.
    pub fn packet_within(
        &mut self,
        sealer: Option<&mut Sealer>,
        packet: &Packet,
        max_body: usize,
    ) -> bool {
        let encoding = PacketEncoding::new(packet);
        let overhead = if sealer.is_some() { SEAL_OVERHEAD } else { 0 };
        if encoding.len() + overhead > max_body {
            return false;
        }
        self.encoding(sealer, &encoding);
        true
    }

    #[inline(always)]
    fn encoding(&mut self, sealer: Option<&mut Sealer>, packet: &PacketEncoding<'_>) {
        if self.replay.is_some() && self.record(|buf| packet.write(buf), packet.len()) {
            return;
        }
        let len = packet.len();
        let written = match sealer {
            Some(sealer) => {
                let nonce = sealer.nonces.next_nonce();
                sealer
                    .cipher()
                    .seal_packet(nonce, packet, &mut self.buf)
                    .is_ok()
            }
            None => {
                self.buf.reserve(HEADER_LEN + len);
                let ok = frame::put_header(&mut self.buf, len).is_ok();
                if ok {
                    packet.write(&mut self.buf);
                }
                ok
            }
        };
        // Sealing fails only for packets over 2 GiB, which the frame limit rules out.
        if written {
            self.packets += 1;
        }
    }

    /// Appends one frame holding an already encoded packet (a push encoded once for many
    /// sessions). Returns whether it was queued.
    pub fn encoded(&mut self, sealer: Option<&mut Sealer>, packet: &[u8]) -> bool {
        if self.replay.is_some() && self.record(|buf| buf.extend_from_slice(packet), packet.len()) {
            return true;
        }
        self.resend(sealer, packet)
    }

    /// Keeps a copy of a packet for a resumable session's replay buffer; returns whether the
    /// client is away (the packet then goes nowhere else).
    #[cold]
    fn record(&mut self, write: impl FnOnce(&mut BytesMut), len: usize) -> bool {
        let Some(replay) = self.replay.as_mut() else {
            return false;
        };
        let mut copy = BytesMut::with_capacity(len);
        write(&mut copy);
        replay.record(copy.freeze());
        replay.is_parked()
    }

    /// Whether a parked session's replay buffer lost a packet its client had not seen.
    pub fn replay_overflowed(&self) -> bool {
        self.replay.as_ref().is_some_and(|r| r.overflowed())
    }

    /// Appends one frame holding an encoded packet without recording it (a packet the replay
    /// buffer already holds, sent again to a resumed client). Returns whether it was queued.
    pub fn resend(&mut self, sealer: Option<&mut Sealer>, packet: &[u8]) -> bool {
        let written = match sealer {
            Some(sealer) => {
                let nonce = sealer.nonces.next_nonce();
                sealer
                    .cipher()
                    .seal_bytes(nonce, packet, &mut self.buf)
                    .is_ok()
            }
            None => frame::encode(packet, &mut self.buf).is_ok(),
        };
        if written {
            self.packets += 1;
        }
        written
    }

    /// Frees the buffer if nothing is queued in it.
    pub fn compact(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Drops everything queued (a client that does not read will not read it).
    pub fn discard(&mut self) {
        self.buf = BytesMut::new();
    }

    /// Everything queued, as one buffer.
    pub fn take(&mut self) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        let out = self.buf.split().freeze();
        self.bytes += out.len() as u64;
        self.release_idle();
        Some(out)
    }

    /// Consumes `written` bytes from the front.
    pub fn advance(&mut self, written: usize) {
        let n = written.min(self.buf.len());
        self.bytes += n as u64;
        if n == self.buf.len() {
            self.buf.clear();
            self.release_idle();
        } else {
            bytes::Buf::advance(&mut self.buf, n);
        }
    }

    fn release_idle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > IDLE_BUFFER_CAP {
            self.buf = BytesMut::new();
        }
    }
}
