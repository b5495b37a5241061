//! Length-prefixed framing (spec §1.1): `int32 big-endian length ‖ body`.
//!
//! The decoder is incremental and stateless apart from the caller's buffer: feed it whatever bytes
//! arrived, in any split, and it yields the same frames. It only looks at a length prefix; it never
//! reserves memory for a body before the body's bytes have arrived, so a peer that announces 16 KiB
//! and sends 4 bytes costs 4 bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Largest frame body accepted from a peer: upstream's `MaxPackSize = 1 << 14`.
///
/// Stops a peer from making the gateway buffer arbitrarily large frames.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024;

/// Why a length prefix was refused. Each variant closes the connection
/// ([`CloseReason::MalformedFrame`](crate::CloseReason::MalformedFrame)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A zero length: upstream rejects `length <= 0`.
    #[error("empty frame")]
    Empty,
    /// The signed prefix was negative.
    #[error("negative frame length {len}")]
    Negative { len: i32 },
    /// Longer than the configured maximum.
    #[error("frame length {len} exceeds the maximum {max}")]
    TooLarge { len: usize, max: usize },
}

/// One frame, complete and within the limits it was decoded with.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame(
    /// The length prefix and the body: the prefix is skipped lazily, so a frame that is decrypted
    /// and decoded in place moves its buffer's start once, to the payload.
    BytesMut,
);

impl Frame {
    /// The body bytes (without the length prefix).
    pub fn body(&self) -> &[u8] {
        self.0.get(HEADER_LEN..).unwrap_or_default()
    }

    /// The body, to decrypt in place or decode.
    pub fn into_body(mut self) -> BytesMut {
        self.0.advance(HEADER_LEN);
        self.0
    }

    /// The frame with its length prefix: the body is `[HEADER_LEN..]`.
    pub(crate) fn into_framed(self) -> BytesMut {
        self.0
    }
}

/// Splits frames off the front of a receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder accepting bodies of `1..=max_len` bytes (`max_len` is clamped to `i32::MAX`).
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len: max_len.min(i32::MAX as usize),
        }
    }

    /// The largest body this decoder accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Checks the length prefix at the front of `buf`, if all four bytes are there.
    ///
    /// Returns the body length, or `None` when fewer than four bytes are buffered.
    pub fn peek_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = i32::from_be_bytes(*header);
        match usize::try_from(len) {
            Err(_) => Err(FrameError::Negative { len }),
            Ok(0) => Err(FrameError::Empty),
            Ok(len) if len > self.max_len => Err(FrameError::TooLarge {
                len,
                max: self.max_len,
            }),
            Ok(len) => Ok(Some(len)),
        }
    }

    /// Removes and returns the first complete frame of `buf`, or `None` when it is not all there yet.
    ///
    /// An error leaves `buf` untouched; the connection is then unusable (there is no way to
    /// resynchronise a length-prefixed stream).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(len) = self.peek_len(buf)? else {
            return Ok(None);
        };
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        Ok(Some(Frame(buf.split_to(HEADER_LEN + len))))
    }

    /// Like [`decode`](Self::decode), but a frame that is all of `buf` takes `buf`'s storage
    /// itself instead of being split off it: no reference count is touched, and `buf` is left
    /// empty, without capacity. For a buffer handed over for good (a socket read), not for one
    /// kept and refilled.
    pub fn decode_owned(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(len) = self.peek_len(buf)? else {
            return Ok(None);
        };
        if buf.len() == HEADER_LEN + len {
            return Ok(Some(Frame(core::mem::take(buf))));
        }
        self.decode(buf)
    }
}

/// The length, prefix included, of the frame at the start of `bytes`, when its prefix is
/// non-negative and its whole body is there.
///
/// For transports that carry one frame per message (WebSocket, spec §1.3: a frame cannot span
/// messages and trailing bytes are ignored), and for splitting a run of frames the session queued
/// into one message each. Body limits are the decoder's business.
pub fn frame_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.first_chunk::<HEADER_LEN>()?;
    let len = usize::try_from(i32::from_be_bytes(*header)).ok()?;
    let end = HEADER_LEN.checked_add(len)?;
    (end <= bytes.len()).then_some(end)
}

/// The bytes a frame with a `body_len`-byte body takes on the wire (prefix included): e.g. the
/// largest WebSocket message a peer may send for the largest frame.
pub const fn wire_len(body_len: usize) -> usize {
    body_len.saturating_add(HEADER_LEN)
}

/// Writes the length prefix of a `len`-byte body (the one place a frame header is written).
///
/// The caller has checked `len` against its frame limit; a body over `i32::MAX` bytes cannot be
/// framed, so it is refused rather than written with a wrapped length.
pub fn put_header(out: &mut impl BufMut, len: usize) -> Result<(), FrameError> {
    out.put_slice(&header(len)?);
    Ok(())
}

/// The length prefix of a `len`-byte body, for a caller that writes it along with other bytes
/// (see [`put_header`]).
#[inline]
pub fn header(len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    let prefix = i32::try_from(len).map_err(|_| FrameError::TooLarge {
        len,
        max: i32::MAX as usize,
    })?;
    if prefix == 0 {
        return Err(FrameError::Empty);
    }
    Ok(prefix.to_be_bytes())
}

/// Appends a frame holding `body` to `out`: the plaintext frames (handshake, unencrypted mode);
/// sealed frames are written by [`crate::crypto::PacketCipher`].
pub fn encode(body: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    out.reserve(HEADER_LEN + body.len());
    put_header(out, body.len())?;
    out.put_slice(body);
    Ok(())
}

/// Splits the first whole frame (prefix included) off a run of frames, such as one
/// [`Session::poll_transmit`](crate::session::Session::poll_transmit) returns; `None` when
/// `bytes` does not start with a whole frame.
///
/// Message transports (WebSocket, spec §1.3) carry one frame per message: this is how an adapter
/// turns a batch into messages.
pub fn split_frame(bytes: &mut Bytes) -> Option<Bytes> {
    frame_len(bytes).map(|end| bytes.split_to(end))
}

/// The frame a message-transport message carries (WebSocket, spec §1.3): the length prefix must
/// fit inside the message, and bytes after the frame are ignored, as upstream ignores them. The
/// frame comes back as a buffer the session can decrypt in place (copied only if `message` is
/// shared).
pub fn frame_of_message(message: Bytes) -> Option<BytesMut> {
    let frame = message.slice(..frame_len(&message)?);
    Some(
        frame
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..])),
    )
}

/// The whole frames of a batch, one at a time (see [`split_frame`]). Trailing bytes that do not
/// form a frame are not yielded.
#[derive(Debug, Clone)]
pub struct Frames(pub Bytes);

impl Iterator for Frames {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        split_frame(&mut self.0)
    }
}

#[cfg(test)]
mod tests;
