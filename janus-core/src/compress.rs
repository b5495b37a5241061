//! zlib (RFC 1950) for `Packet.data` (spec §3.4): inflate what the client flagged `compress`,
//! deflate large replies.

use std::io::Write as _;

use bytes::Bytes;
use flate2::{Compression, Decompress, FlushDecompress, Status, write::ZlibEncoder};

/// Replies at least this large are compressed: upstream `compress.weak` (10 KiB).
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 10 * 1024;
/// Replies at least this large use the default level instead of the fastest: upstream
/// `compress.strong` (1000 KiB).
pub const DEFAULT_COMPRESS_STRONG: usize = 1_024_000;
/// Largest inflated `data` accepted from a client. Stops a zlib bomb (a 16 KiB frame can inflate
/// to 16 MiB); upstream has no limit.
pub const DEFAULT_MAX_INFLATED_LEN: usize = 256 * 1024;

/// Why inflating client data failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// Not a valid zlib stream (or truncated).
    #[error("data is not a valid zlib stream")]
    Corrupt,
    /// The stream inflates to more than the limit.
    #[error("data inflates beyond {max} bytes")]
    TooLarge { max: usize },
}

/// Inflates a zlib stream, refusing output beyond `max` bytes without allocating past it.
pub fn inflate(input: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    // One byte of headroom tells "exactly max" from "more than max".
    let limit = max.saturating_add(1);
    let mut z = Decompress::new(true);
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).clamp(64, limit));
    loop {
        let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status = z
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(|_| InflateError::Corrupt)?;
        if out.len() > max {
            return Err(InflateError::TooLarge { max });
        }
        if status == Status::StreamEnd {
            return Ok(out);
        }
        if out.len() == out.capacity() {
            // Grow geometrically, but never past the limit.
            out.reserve(out.capacity().min(limit - out.len()));
        } else if z.total_in() == in_before && z.total_out() == out_before {
            // No progress with room to spare: the input ended before the stream did.
            return Err(InflateError::Corrupt);
        }
    }
}

/// Compresses `data` for a reply when it is at least `threshold` bytes and compression makes it
/// smaller. Returns the bytes to send and whether they are compressed.
#[inline]
pub fn deflate_reply(data: Bytes, threshold: usize, strong: usize) -> (Bytes, bool) {
    if data.is_empty() || data.len() < threshold {
        return (data, false);
    }
    deflate(data, strong)
}

/// [`deflate_reply`] past the threshold check (kept out of line: most replies are small).
#[inline(never)]
fn deflate(data: Bytes, strong: usize) -> (Bytes, bool) {
    let level = if data.len() >= strong {
        Compression::default()
    } else {
        Compression::fast()
    };
    let mut enc = ZlibEncoder::new(Vec::with_capacity(data.len() / 2), level);
    let compressed = enc.write_all(&data).and_then(|()| enc.finish());
    match compressed {
        // Upstream sends the compressed form even when it is larger; we keep the smaller one.
        Ok(out) if out.len() < data.len() => (Bytes::from(out), true),
        _ => (data, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn bomb_is_refused() {
        let bomb = zlib(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 16 * 1024);
        assert_eq!(
            inflate(&bomb, DEFAULT_MAX_INFLATED_LEN),
            Err(InflateError::TooLarge {
                max: DEFAULT_MAX_INFLATED_LEN
            })
        );
    }

    #[test]
    fn exact_limit_is_accepted() {
        let data = vec![7u8; 1000];
        assert_eq!(inflate(&zlib(&data), 1000).unwrap(), data);
        assert_eq!(
            inflate(&zlib(&data), 999),
            Err(InflateError::TooLarge { max: 999 })
        );
    }

    #[test]
    fn corrupt_and_truncated_streams_are_refused() {
        let z = zlib(b"hello hello hello hello");
        assert_eq!(
            inflate(&z[..z.len() - 3], 1 << 20),
            Err(InflateError::Corrupt)
        );
        assert_eq!(
            inflate(b"definitely not zlib", 1 << 20),
            Err(InflateError::Corrupt)
        );
        assert_eq!(inflate(b"", 1 << 20), Err(InflateError::Corrupt));
    }

    #[test]
    fn replies_compress_only_above_threshold_and_when_smaller() {
        let small = Bytes::from(vec![1u8; 100]);
        assert_eq!(deflate_reply(small.clone(), 1024, 1 << 20), (small, false));
        let big = Bytes::from(vec![1u8; 20_000]);
        let (out, compressed) = deflate_reply(big.clone(), 1024, 1 << 20);
        assert!(compressed && out.len() < 1000);
        assert_eq!(inflate(&out, 1 << 20).unwrap(), big.to_vec());
        // incompressible data stays as it is
        let noise: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let noise = Bytes::from(noise);
        let (out, compressed) = deflate_reply(noise.clone(), 1024, 1 << 20);
        if !compressed {
            assert_eq!(out, noise);
        }
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 1..5000)) {
            prop_assert_eq!(inflate(&zlib(&data), 5000).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = inflate(&data, 4096);
        }
    }
}
