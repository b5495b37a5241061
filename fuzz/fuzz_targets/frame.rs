//! Frame decoding: never panics, never yields a frame outside the limits, and every split of the
//! same bytes yields the same frames and the same error.
#![no_main]

use bytes::BytesMut;
use janus_core::frame::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fn decode_all(decoder: &FrameDecoder, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => {
                    assert!(!f.body().is_empty() && f.body().len() <= decoder.max_len());
                    frames.push(f.body().to_vec());
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|input: (u16, u8, &[u8])| {
    let (max, step, data) = input;
    let decoder = FrameDecoder::new(usize::from(max).max(1));
    let whole = decode_all(&decoder, &[data]);
    let step = usize::from(step).max(1);
    let chunks: Vec<&[u8]> = data.chunks(step).collect();
    assert_eq!(decode_all(&decoder, &chunks), whole);
});
