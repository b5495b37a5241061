//! WebSocket frames (RFC 6455 §5): the server side's decoder (masked client frames, every
//! protocol violation mapped to its close code) and encoder (unmasked server frames).

use bytes::{Buf, BufMut, BytesMut};

use crate::CloseReason;

/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Largest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    const fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// One decoded (and unmasked) frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: BytesMut,
}

/// Why the peer's bytes are not a valid WebSocket stream; each maps to a close reason (and from
/// there to the close code the peer is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// RSV bits set without a negotiated extension.
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A client frame without a mask (§5.1: the server must close).
    #[error("unmasked client frame")]
    Unmasked,
    /// A control frame over 125 bytes or fragmented.
    #[error("invalid control frame")]
    BadControlFrame,
    /// A continuation frame with no message started, or a new message inside a fragmented one.
    #[error("bad fragmentation")]
    BadFragmentation,
    /// A 64-bit length with its top bit set.
    #[error("invalid payload length")]
    BadLength,
    /// A message larger than allowed.
    #[error("message of {len} bytes exceeds {max}")]
    TooBig { len: u64, max: usize },
    /// A text message or close reason that is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A close frame with a 1-byte payload or a code that may not be sent.
    #[error("invalid close frame")]
    BadClose,
}

impl WsError {
    /// How the session ends.
    pub const fn close_reason(self) -> CloseReason {
        match self {
            Self::TooBig { .. } => CloseReason::WsMessageTooBig,
            Self::InvalidUtf8 => CloseReason::WsInvalidUtf8,
            _ => CloseReason::WsProtocolError,
        }
    }
}

/// Takes the first complete frame off `buf` (unmasking it in place), or `None` until it is all
/// there. `max_payload` bounds a data frame; a header announcing more fails at once, before the
/// payload arrives, so a peer cannot make us buffer it.
pub fn decode(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, WsError> {
    let Some(&[b0, b1]) = buf.first_chunk::<2>() else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::UnknownOpcode(b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(WsError::Unmasked);
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
            Some(bytes) => (u64::from_be_bytes(bytes), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > i64::MAX as u64 {
        return Err(WsError::BadLength);
    }
    if opcode.is_control() && (len > MAX_CONTROL_PAYLOAD as u64 || !fin) {
        return Err(WsError::BadControlFrame);
    }
    if len > max_payload as u64 {
        return Err(WsError::TooBig {
            len,
            max: max_payload,
        });
    }
    let Some(mask) = buf
        .get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
    else {
        return Ok(None);
    };
    at += 4;
    // `len <= max_payload`, a usize.
    let len = usize::try_from(len).map_err(|_| WsError::BadLength)?;
    if buf.len() < at + len {
        return Ok(None);
    }
    buf.advance(at);
    let mut payload = buf.split_to(len);
    unmask(&mut payload, mask);
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

/// XORs the payload with the masking key (RFC 6455 §5.3), eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
        }
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *b ^= m;
    }
}

/// The header of an unmasked server frame carrying `len` bytes.
pub fn put_header(out: &mut impl BufMut, opcode: Opcode, len: usize) {
    out.put_u8(0x80 | opcode.bits());
    if len <= MAX_CONTROL_PAYLOAD {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Appends a whole unmasked server frame.
pub fn encode(out: &mut BytesMut, opcode: Opcode, payload: &[u8]) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    put_header(out, opcode, payload.len());
    out.put_slice(payload);
}

/// The payload of a close frame: the code, then the reason (truncated to fit 125 bytes).
pub fn close_payload(code: u16, reason: &str) -> BytesMut {
    let mut payload = BytesMut::with_capacity(MAX_CONTROL_PAYLOAD);
    payload.put_u16(code);
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.put_slice(reason.as_bytes().get(..end).unwrap_or_default());
    payload
}

/// Checks a peer's close frame payload (§5.5.1, §7.4): empty, or a code that may be sent on the
/// wire and a UTF-8 reason. Returns the code (1005, "no status", for an empty one).
pub fn parse_close(payload: &[u8]) -> Result<u16, WsError> {
    match payload {
        [] => Ok(1005),
        [_] => Err(WsError::BadClose),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed {
                return Err(WsError::BadClose);
            }
            std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(code)
        }
    }
}

#[cfg(test)]
pub(crate) fn masked(opcode_byte: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![opcode_byte];
    let len = payload.len();
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}
