//! A specialised codec for `packet.Packet`, the one message on the per-packet path.
//!
//! prost's generic decode and encode cost about as much as everything else on the path outside
//! the cipher (callgrind: ~520 and ~250 instructions per packet). This codec handles the common
//! shape directly: known fields with their proper wire types, well-formed varints and lengths.
//! Anything else (unknown fields, groups, a wrong wire type, a malformed varint, truncation) is
//! handed to prost, so the result — value or error — is prost's by construction. A proptest and
//! the `proto` fuzz target check the fast path against prost on arbitrary input.

use core::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use janus_proto::packet::Packet;
use prost::Message;

/// Decodes a `Packet`, borrowing `data` from `buf`.
pub fn decode_packet(buf: Bytes) -> Result<Packet, prost::DecodeError> {
    let mut packet = Packet::default();
    match decode_fast(&buf, &mut packet) {
        Some(data) => {
            packet.data = narrow(buf, data);
            Ok(packet)
        }
        None => Packet::decode(buf),
    }
}

/// [`decode_packet`] for a buffer just opened in place: `data` becomes `buf` itself, narrowed to
/// the field, so no reference count is touched (the session's per-packet path).
pub fn decode_packet_mut(buf: BytesMut) -> Result<Packet, prost::DecodeError> {
    let len = buf.len();
    decode_packet_within(buf, 0..len)
}

/// [`decode_packet_mut`] for the packet encoded at `buf[within]` (a frame opened in place, with
/// its prefix, nonce and tag still around it).
pub fn decode_packet_within(
    buf: BytesMut,
    within: Range<usize>,
) -> Result<Packet, prost::DecodeError> {
    let mut packet = Packet::default();
    decode_packet_into(buf, within, &mut packet)?;
    Ok(packet)
}

/// [`decode_packet_within`] into a `Packet` the caller holds (all at their defaults): the
/// session's per-packet path, where returning a `Packet` by value costs a copy of it.
#[inline(always)]
pub(crate) fn decode_packet_into(
    mut buf: BytesMut,
    within: Range<usize>,
    packet: &mut Packet,
) -> Result<(), prost::DecodeError> {
    let encoded = buf.get(within.clone()).unwrap_or_default();
    match decode_fast(encoded, packet) {
        Some(Some(data)) => {
            buf.truncate(within.start + data.end);
            buf.advance(within.start + data.start);
            packet.data = buf.freeze();
            Ok(())
        }
        Some(None) => Ok(()),
        None => {
            buf.truncate(within.end);
            buf.advance(within.start);
            *packet = Packet::decode(buf.freeze())?;
            Ok(())
        }
    }
}

/// `buf[range]`, or empty.
fn narrow(buf: Bytes, range: Option<Range<usize>>) -> Bytes {
    match range {
        Some(range) => buf.slice(range),
        None => Bytes::new(),
    }
}

/// A varint at `buf[*pos..]`, or `None` when it is not one prost would read the same way.
#[inline(always)]
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    // Keys, lengths under 128 and small field values are one byte: the common case by far.
    let byte = *buf.get(*pos)?;
    if byte < 0x80 {
        *pos += 1;
        return Some(u64::from(byte));
    }
    // Two bytes: indexes, uids and lengths under 16384.
    if let Some(&next) = buf.get(*pos + 1) {
        if next < 0x80 {
            *pos += 2;
            return Some(u64::from(byte & 0x7f) | u64::from(next) << 7);
        }
    }
    varint_long(buf, pos)
}

#[inline(never)]
fn varint_long(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        if i == 9 && byte > 1 {
            return None; // overflows 64 bits: prost's error
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// Decodes `buf` into `p` (at its defaults), all but `data`, and returns where `data` is in
/// `buf` (the last occurrence wins, as in prost); `None` for anything the fast path does not
/// handle (then `p` holds garbage).
///
/// One loop with no per-field branches: every varint field lands in a slot of an array (the
/// last occurrence wins, as in prost), read out once at the end.
#[inline(always)]
fn decode_fast(buf: &[u8], p: &mut Packet) -> Option<Option<Range<usize>>> {
    // [_, data_version, obj, mod, seq, ver, index, conn_id, frag_id, frag_count, frag_index,
    //  compress]: fields 2..=11 by number, field 20 last.
    let mut fields = [0u64; 12];
    let mut data = None;
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        if key == 0x0a {
            // field 1 (data), length-delimited
            let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
            let end = pos.checked_add(len).filter(|&end| end <= buf.len())?;
            data = Some(pos..end);
            pos = end;
            continue;
        }
        // fields 2..=11 and 20, varint wire type
        let slot = match key {
            0x10..=0x58 if key & 7 == 0 => (key >> 3) as usize - 1,
            0xa0 => 11,
            _ => return None,
        };
        let v = varint(buf, &mut pos)?;
        *fields.get_mut(slot)? = v;
    }
    let [
        _,
        data_version,
        obj,
        module,
        seq,
        ver,
        index,
        conn_id,
        frag_id,
        frag_count,
        frag_index,
        compress,
    ] = fields;
    p.data_version = data_version;
    p.obj = obj as i64;
    p.r#mod = module as i32;
    p.seq = seq as i32;
    p.ver = ver as i32;
    p.index = index as i32;
    p.conn_id = conn_id as i32;
    p.frag_id = frag_id as i32;
    p.frag_count = frag_count as i32;
    p.frag_index = frag_index as i32;
    p.compress = compress != 0;
    Some(data)
}

#[inline]
fn varint_len(v: u64) -> usize {
    // prost's formula: ceil(bits / 7) via the index of the highest set bit
    (((v | 1).leading_zeros() ^ 63) as usize * 9 + 73) / 64
}

/// Most bytes of a `Packet` encoding around `data`: field 1's key and length before it; fields
/// 2, 3 (10-byte varints), 4..=11 (up to 10 bytes each: negative values) and 20 after it.
pub(crate) const MAX_HEAD: usize = 1 + 10;
const MAX_TAIL: usize = 2 * 11 + 8 * 11 + 3;

/// A small encoding buffer on the stack; its capacity covers the worst case, so a byte is never
/// dropped.
#[derive(Clone, Copy)]
struct Scratch<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Scratch<N> {
    const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    #[inline(always)]
    fn put(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put((v as u8) | 0x80);
            v >>= 7;
        }
        self.put(v as u8);
    }

    #[inline(always)]
    fn field(&mut self, key: u8, v: u64) {
        if v != 0 {
            self.put(key);
            self.varint(v);
        }
    }

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// A `Packet`'s encoding, computed once: the bytes before `data`, `data` itself (borrowed, not
/// copied), and the bytes after it. Its length is `encoded_len()`; writing it out is three copies.
pub struct PacketEncoding<'a> {
    head: Scratch<MAX_HEAD>,
    data: &'a [u8],
    tail: Scratch<MAX_TAIL>,
}

impl core::fmt::Debug for PacketEncoding<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketEncoding")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<'a> PacketEncoding<'a> {
    /// Encodes `p` as prost would (fields in number order, defaults omitted).
    #[inline(always)]
    pub fn new(p: &'a Packet) -> Self {
        let mut head = Scratch::new();
        if !p.data.is_empty() {
            head.put(0x0a);
            head.varint(p.data.len() as u64);
        }
        let mut tail = Scratch::new();
        tail.field(0x10, p.data_version);
        tail.field(0x18, p.obj as u64);
        tail.field(0x20, i64::from(p.r#mod) as u64);
        tail.field(0x28, i64::from(p.seq) as u64);
        tail.field(0x30, i64::from(p.ver) as u64);
        tail.field(0x38, i64::from(p.index) as u64);
        tail.field(0x40, i64::from(p.conn_id) as u64);
        tail.field(0x48, i64::from(p.frag_id) as u64);
        tail.field(0x50, i64::from(p.frag_count) as u64);
        tail.field(0x58, i64::from(p.frag_index) as u64);
        if p.compress {
            tail.put(0xa0);
            tail.put(0x01);
            tail.put(0x01);
        }
        Self {
            head,
            data: &p.data,
            tail,
        }
    }

    /// The encoded length, `packet.encoded_len()`.
    #[inline]
    pub fn len(&self) -> usize {
        self.head.len + self.data.len() + self.tail.len
    }

    /// Whether the packet encodes to nothing (every field at its default).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes before `data`: field 1's key and length (empty when `data` is).
    pub(crate) fn head(&self) -> &[u8] {
        self.head.as_slice()
    }

    /// `data`, borrowed from the packet.
    pub(crate) fn data(&self) -> &[u8] {
        self.data
    }

    /// The bytes after `data`: fields 2 and up.
    pub(crate) fn tail(&self) -> &[u8] {
        self.tail.as_slice()
    }

    /// Appends the encoding to `out`.
    #[inline]
    pub fn write(&self, out: &mut impl BufMut) {
        out.put_slice(self.head.as_slice());
        out.put_slice(self.data);
        out.put_slice(self.tail.as_slice());
    }
}

/// `packet.encoded_len()`, the same number prost computes.
pub fn packet_len(p: &Packet) -> usize {
    let mut len = 0;
    if !p.data.is_empty() {
        len += 1 + varint_len(p.data.len() as u64) + p.data.len();
    }
    if p.data_version != 0 {
        len += 1 + varint_len(p.data_version);
    }
    if p.obj != 0 {
        len += 1 + varint_len(p.obj as u64);
    }
    for v in [
        p.r#mod,
        p.seq,
        p.ver,
        p.index,
        p.conn_id,
        p.frag_id,
        p.frag_count,
        p.frag_index,
    ] {
        if v != 0 {
            len += 1 + varint_len(i64::from(v) as u64);
        }
    }
    if p.compress {
        len += 3;
    }
    len
}

/// Appends `packet` as prost would encode it (fields in number order, defaults omitted).
pub fn encode_packet(p: &Packet, out: &mut impl BufMut) {
    PacketEncoding::new(p).write(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet() -> impl Strategy<Value = Packet> {
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<u64>(),
            any::<i64>(),
            proptest::array::uniform8(prop_oneof![Just(0i32), any::<i32>(), 1i32..200]),
            any::<bool>(),
        )
            .prop_map(|(data, data_version, obj, ints, compress)| Packet {
                data: data.into(),
                data_version,
                obj,
                r#mod: ints[0],
                seq: ints[1],
                ver: ints[2],
                index: ints[3],
                conn_id: ints[4],
                frag_id: ints[5],
                frag_count: ints[6],
                frag_index: ints[7],
                compress,
            })
    }

    proptest! {
        #[test]
        fn encoding_matches_prost(p in packet()) {
            let mut ours = Vec::new();
            encode_packet(&p, &mut ours);
            prop_assert_eq!(&ours, &p.encode_to_vec());
            prop_assert_eq!(packet_len(&p), p.encoded_len());
            prop_assert_eq!(PacketEncoding::new(&p).len(), p.encoded_len());
        }

        #[test]
        fn decoding_matches_prost_on_valid_packets(p in packet()) {
            let bytes = Bytes::from(p.encode_to_vec());
            prop_assert!(decode_fast(&bytes, &mut Packet::default()).is_some(), "the common shape takes the fast path");
            prop_assert_eq!(&decode_packet_mut(BytesMut::from(&bytes[..])).unwrap(), &p);
            prop_assert_eq!(decode_packet(bytes).unwrap(), p);
        }

        #[test]
        fn decoding_matches_prost_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let ours = decode_packet(Bytes::from(bytes.clone())).ok();
            let ours_mut = decode_packet_mut(BytesMut::from(&bytes[..])).ok();
            let prost = Packet::decode(bytes.as_slice()).ok();
            prop_assert_eq!(&ours_mut, &prost);
            // Inside a larger buffer, as a frame opened in place leaves it.
            let framed = [&[0xff; 5][..], &bytes, &[0x0a; 3]].concat();
            let ours_within = decode_packet_within(BytesMut::from(&framed[..]), 5..5 + bytes.len()).ok();
            prop_assert_eq!(&ours_within, &prost);
            prop_assert_eq!(ours, prost);
        }

        #[test]
        fn decoding_matches_prost_on_mutated_packets(p in packet(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let mut bytes = p.encode_to_vec();
            if !bytes.is_empty() {
                for (at, value) in flips {
                    let i = at % bytes.len();
                    bytes[i] = value;
                }
            }
            let ours = decode_packet(Bytes::from(bytes.clone())).ok();
            let ours_mut = decode_packet_mut(BytesMut::from(&bytes[..])).ok();
            let prost = Packet::decode(bytes.as_slice()).ok();
            prop_assert_eq!(&ours_mut, &prost);
            prop_assert_eq!(ours, prost);
        }
    }

    #[test]
    fn odd_but_valid_encodings() {
        for bytes in [
            &[0x20, 0x80, 0x00][..],         // non-minimal varint
            &[0x20, 0x01, 0x20, 0x02],       // repeated field: last wins
            &[0x0a, 0x01, 0x61, 0x0a, 0x00], // bytes replaced by empty
            &[
                0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // 10-byte varint
            &[
                0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ], // overflow
            &[0xa0, 0x01, 0x02],             // bool from 2
            &[0x0a, 0x05, 0x61],             // truncated bytes
            &[0x98, 0x01, 0x01],             // unknown field 19
            &[0x22, 0x00],                   // known field, wrong wire type
        ] {
            let ours = decode_packet(Bytes::copy_from_slice(bytes)).ok();
            assert_eq!(ours, Packet::decode(bytes).ok(), "{bytes:02x?}");
            let ours_mut = decode_packet_mut(BytesMut::from(bytes)).ok();
            assert_eq!(ours_mut, Packet::decode(bytes).ok(), "{bytes:02x?}");
        }
    }
}
