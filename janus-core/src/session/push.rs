//! Server pushes: one encoding rule for push, multicast and broadcast.
//!
//! The Go gateway turns every pushed body into `Packet{mod, seq, obj, data, data_version}`,
//! index 0, **uncompressed**, whichever path delivered it (spec §3.4, §5.2), and sends it even
//! when it is larger than the client's frame limit, which breaks the client's decoder. The rule
//! here, decided once per body by [`PushPacket::encode`] and applied to every session:
//!
//! 1. the packet as the Go gateway builds it, when it fits the client's frame limit (sealing
//!    overhead included);
//! 2. otherwise the same packet with `data` zlib-compressed and `compress` set (clients already
//!    inflate compressed replies), when that fits;
//! 3. otherwise it is not sent: [`PushError::TooLarge`], which the adapter counts. A push has no
//!    request to answer, so there is no error packet to send instead.
//!
//! A broadcast is encoded once and only sealed per session ([`Session::push`](super::Session::push)).

use bytes::Bytes;
use janus_proto::{broadcaster::service::push::v1::PushBody, packet::Packet};
use prost::Message as _;

use crate::{compress::deflate_reply, config::ServerConfig, crypto::SEAL_OVERHEAD};

/// A push encoded for every session of a gateway: a serialized `Packet`, index 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPacket {
    packet: Bytes,
    compressed: bool,
}

/// Why a push cannot be delivered to any session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// An empty packet (no module, seq, obj or data): nothing to send, and the Go client's
    /// cipher refuses to seal empty input.
    #[error("empty push")]
    Empty,
    /// Even compressed, the packet does not fit the client's frame limit.
    #[error("push of {len} bytes does not fit the {max}-byte frame limit, even compressed")]
    TooLarge {
        /// The smallest encoding's frame body, bytes.
        len: usize,
        /// The frame limit.
        max: usize,
    },
}

/// What became of a push handed to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Queued for the client.
    Queued,
    /// The session is not authenticated yet, or already closed: nothing was queued.
    NotEstablished,
    /// Queuing it took the session over its outbound budget: the session is now closed as a
    /// slow consumer.
    Evicted,
    /// A filter dropped it for this session, or closed the session
    /// ([`crate::filter`]).
    Dropped,
}

impl PushPacket {
    /// Encodes `body` by the rule in the [module documentation](self).
    pub fn encode(body: &PushBody, config: &ServerConfig) -> Result<Self, PushError> {
        let overhead = if config.credentials.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        let max = config.session.max_frame_len;
        let mut packet = Packet {
            data: body.data.clone(),
            data_version: body.data_version,
            obj: body.obj,
            r#mod: body.r#mod,
            seq: body.seq,
            ..Default::default()
        };
        let fits = |len: usize| len + overhead <= max;
        let len = packet.encoded_len();
        if len == 0 {
            return Err(PushError::Empty);
        }
        if fits(len) {
            return Ok(Self {
                packet: packet.encode_to_vec().into(),
                compressed: false,
            });
        }
        // Encoded once for every session: worth the better (default) level.
        let (data, compressed) = deflate_reply(packet.data.clone(), 1, 0);
        if compressed {
            packet.data = data;
            packet.compress = true;
            let len = packet.encoded_len();
            if fits(len) {
                return Ok(Self {
                    packet: packet.encode_to_vec().into(),
                    compressed: true,
                });
            }
            return Err(PushError::TooLarge {
                len: len + overhead,
                max,
            });
        }
        Err(PushError::TooLarge {
            len: len + overhead,
            max,
        })
    }

    /// The serialized `Packet`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.packet
    }

    /// Whether `data` went out compressed (rule 2).
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// The serialized `Packet`, shared (for the push hooks to decode without copying).
    pub(crate) fn shared(&self) -> Bytes {
        self.packet.clone()
    }

    /// The serialized `Packet`, owned (to carry it on a relay link).
    pub fn into_bytes(self) -> Bytes {
        self.packet
    }

    /// Whether `other` is this very encoding (the same buffer), as a broadcast hands one
    /// packet to every session: a relay link then carries it once for all of them.
    pub fn same_encoding(&self, other: &PushPacket) -> bool {
        self.packet.as_ptr() == other.packet.as_ptr() && self.packet.len() == other.packet.len()
    }

    /// A push a hub encoded by [`encode`](Self::encode) and relayed to an edge (an authenticated
    /// peer applying the same rule for the same clients).
    pub(crate) fn from_relay(packet: Bytes, compressed: bool) -> Self {
        Self { packet, compressed }
    }
}
