use super::*;
use proptest::prelude::*;

fn frames_of(decoder: &FrameDecoder, chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buf)? {
            out.push(frame.body().to_vec());
        }
    }
    Ok(out)
}

#[test]
fn v1_heartbeat_frame() {
    // spec §9 V1
    let body = hex::decode("0a0608 80e2cfaa06 2001 2802 3801".replace(' ', "")).unwrap();
    let mut out = BytesMut::new();
    encode(&body, &mut out).unwrap();
    assert_eq!(hex::encode(&out), "0000000e0a060880e2cfaa06200128023801");
    let frames = frames_of(&FrameDecoder::default(), &[&out]).unwrap();
    assert_eq!(frames, vec![body]);
}

#[test]
fn rejects_bad_lengths_without_consuming() {
    let d = FrameDecoder::default();
    for (prefix, err) in [
        ([0, 0, 0, 0], FrameError::Empty),
        ([0xff, 0xff, 0xff, 0xff], FrameError::Negative { len: -1 }),
        (
            [0, 0, 0x40, 0x01],
            FrameError::TooLarge {
                len: 16385,
                max: 16384,
            },
        ),
    ] {
        let mut buf = BytesMut::from(&prefix[..]);
        assert_eq!(d.decode(&mut buf), Err(err));
        assert_eq!(buf.len(), 4);
    }
    let mut buf = BytesMut::from(&[0u8, 0, 0x40, 0x00][..]);
    assert_eq!(
        d.decode(&mut buf),
        Ok(None),
        "exactly the maximum waits for its body"
    );
}

#[test]
fn announced_length_reserves_nothing() {
    let d = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(8);
    buf.extend_from_slice(&[0, 0, 0x40, 0x00, 1, 2]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert!(
        buf.capacity() < 64,
        "capacity {} grew for an announced length",
        buf.capacity()
    );
}

#[test]
fn encode_rejects_empty_body() {
    assert_eq!(encode(&[], &mut BytesMut::new()), Err(FrameError::Empty));
}

proptest! {
    #[test]
    fn round_trip_under_any_chunking(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut stream = BytesMut::new();
        for body in &bodies {
            encode(body, &mut stream).unwrap();
        }
        let stream = stream.to_vec();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&stream[last..p]);
            last = p;
        }
        chunks.push(&stream[last..]);
        let decoded = frames_of(&FrameDecoder::new(300), &chunks).unwrap();
        prop_assert_eq!(decoded, bodies);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 1usize..100) {
        let mut buf = BytesMut::from(&bytes[..]);
        let d = FrameDecoder::new(max);
        while let Ok(Some(frame)) = d.decode(&mut buf) {
            prop_assert!(!frame.body().is_empty() && frame.body().len() <= max);
        }
    }
}

#[test]
fn frame_len_finds_whole_frames_only() {
    assert_eq!(
        frame_len(&[0, 0, 0, 2, 7, 8, 9, 9]),
        Some(6),
        "trailing bytes are not part of it"
    );
    assert_eq!(frame_len(&[0, 0, 0, 5, 1]), None, "body not all there");
    assert_eq!(frame_len(&[0, 0]), None);
    assert_eq!(frame_len(&[0xff, 0xff, 0xff, 0xff]), None, "negative");
}

#[test]
fn batches_split_into_whole_frames_and_messages_carry_one() {
    let mut batch = BytesMut::new();
    encode(&[1], &mut batch).unwrap();
    encode(&[2, 2], &mut batch).unwrap();
    batch.extend_from_slice(&[0, 0, 0, 9, 1]); // a partial frame is not yielded
    let frames: Vec<Bytes> = Frames(batch.freeze()).collect();
    assert_eq!(frames.len(), 2);
    assert_eq!(&frames[1][..], &[0, 0, 0, 2, 2, 2]);

    let msg = Bytes::from_static(&[0, 0, 0, 2, 7, 8, 9, 9]);
    assert_eq!(&frame_of_message(msg).unwrap()[..], &[0, 0, 0, 2, 7, 8]);
    assert!(
        frame_of_message(Bytes::from_static(&[0, 0, 0, 5, 1])).is_none(),
        "a frame cannot span messages"
    );
    assert!(frame_of_message(Bytes::from_static(&[0, 0])).is_none());
    assert!(frame_of_message(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1])).is_none());
}

#[test]
fn headers_refuse_what_cannot_be_framed() {
    let mut out = BytesMut::new();
    assert_eq!(put_header(&mut out, 0), Err(FrameError::Empty));
    assert!(matches!(
        put_header(&mut out, i32::MAX as usize + 1),
        Err(FrameError::TooLarge { .. })
    ));
    put_header(&mut out, 258).unwrap();
    assert_eq!(&out[..], &[0, 0, 1, 2]);
}

proptest! {
    /// Splitting a batch gives back exactly the frames that were written, in order.
    #[test]
    fn frames_round_trip(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..16)) {
        let mut batch = BytesMut::new();
        for b in &bodies {
            encode(b, &mut batch).unwrap();
        }
        let back: Vec<Vec<u8>> = Frames(batch.freeze()).map(|f| f[HEADER_LEN..].to_vec()).collect();
        prop_assert_eq!(back, bodies);
    }
}
