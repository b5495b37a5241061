//! The handshake (spec §2): the client's first frame is a plaintext `Packet{seq=1,
//! data=CSHandshake}`; the server answers `Packet{data=SCHandshake}`; both then derive the
//! AES-256-GCM session key from X25519.
//!
//! [`accept`] is the server side, a pure function of the configuration, the time, the frame and
//! the randomness; [`ClientHandshake`] is the client side. Every failure of spec §2.6 is its own
//! [`HandshakeError`] variant with its own [`CloseReason`].

mod client;
mod server;

pub use client::{
    ClientHandshake, ClientHandshakeError, ClientKeys, Established, ResumeGrant, ResumeRequest,
};
pub(crate) use server::agree;
pub use server::{Accepted, Identity, accept};

use crate::{CloseReason, crypto::CryptoError, token::TokenError};

pub use crate::system::{HANDSHAKE_SEQ, SYSTEM_MODULE};

/// The index of the client's first post-handshake packet (`SCHandshake.start_index`).
pub const START_INDEX: i32 = 1;

/// Why the server refused a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The frame is not a `Packet`.
    #[error("first frame is not a Packet")]
    MalformedPacket,
    /// The packet's `seq` is not 1.
    #[error("handshake packet has seq {seq}, expected 1")]
    UnexpectedSeq { seq: i32 },
    /// `Packet.data` is not a `CSHandshake`.
    #[error("handshake data is not a CSHandshake")]
    MalformedHandshake,
    /// The token is empty.
    #[error("empty token")]
    EmptyToken,
    /// The client clock is too far from ours.
    #[error("handshake timestamp {timestamp} is more than {max_skew_secs}s from server time {now}")]
    TimestampSkew {
        timestamp: i64,
        now: i64,
        max_skew_secs: u64,
    },
    /// The token does not open.
    #[error("token: {0}")]
    Token(TokenError),
    /// The token's lifetime is over.
    #[error("token expired at {timeout}, server time {now}")]
    TokenExpired { timeout: i64, now: i64 },
    /// The token already opened a session.
    #[error("token already used")]
    TokenReplayed,
    /// The client signature over its public key does not verify.
    #[error("bad client signature")]
    BadSignature,
    /// The client public key is not 32 bytes.
    #[error("client public key of {len} bytes, expected 32")]
    BadKeyLength { len: usize },
    /// The client public key is a low-order point.
    #[error("low-order client public key")]
    LowOrderPoint,
}

impl HandshakeError {
    /// How the connection ends.
    pub const fn close_reason(self) -> CloseReason {
        match self {
            Self::MalformedPacket | Self::MalformedHandshake => CloseReason::MalformedPacket,
            Self::UnexpectedSeq { .. } => CloseReason::UnexpectedHandshakeSeq,
            Self::EmptyToken => CloseReason::EmptyToken,
            Self::TimestampSkew { .. } => CloseReason::TimestampSkew,
            Self::Token(_) => CloseReason::InvalidToken,
            Self::TokenExpired { .. } => CloseReason::TokenExpired,
            Self::TokenReplayed => CloseReason::TokenReplayed,
            Self::BadSignature => CloseReason::BadSignature,
            Self::BadKeyLength { .. } => CloseReason::BadKeyLength,
            Self::LowOrderPoint => CloseReason::LowOrderPoint,
        }
    }
}

impl From<CryptoError> for HandshakeError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::BadKeyLength { len } => Self::BadKeyLength { len },
            CryptoError::LowOrderPoint => Self::LowOrderPoint,
            _ => Self::BadSignature,
        }
    }
}

/// Whether `timestamp` (unix seconds) is within `max_skew` of `now` (both bounds inclusive, as
/// upstream's `now-5s <= timestamp <= now+5s`).
pub(crate) fn within_skew(timestamp: i64, now: i64, max_skew_secs: u64) -> bool {
    let skew = i64::try_from(max_skew_secs).unwrap_or(i64::MAX);
    timestamp >= now.saturating_sub(skew) && timestamp <= now.saturating_add(skew)
}

#[cfg(test)]
mod tests;
