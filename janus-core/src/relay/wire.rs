//! Relay frames on the wire: the length prefix of [`crate::frame`] around one
//! `janus.relay.v1.Frame`, and the conversions between its messages and the core's types.

use bytes::{Bytes, BytesMut};
use janus_proto::janus::relay::v1::{self as pb, frame::Body};
use prost::Message as _;

use crate::{
    frame::{self, HEADER_LEN},
    session::TunnelMessage,
};

/// Appends `body` as one frame to `out`; returns the frame's length on the wire (its cost).
pub(super) fn encode(body: Body, out: &mut BytesMut) -> usize {
    let msg = pb::Frame { body: Some(body) };
    let len = msg.encoded_len();
    out.reserve(HEADER_LEN + len);
    // Every frame this module builds is non-empty (a oneof field always has a tag) and far
    // below 2 GiB, so the header cannot fail.
    if frame::put_header(out, len).is_ok() {
        msg.encode_raw(out);
    }
    HEADER_LEN + len
}

/// The wire length of a frame holding `body`, without encoding it.
pub(super) fn frame_len(body: &Body) -> usize {
    let msg = pb::Frame {
        body: Some(body.clone()),
    };
    HEADER_LEN + msg.encoded_len()
}

/// Decodes one frame body; `None` when it is not a `Frame` or carries no message.
pub(super) fn decode(body: Bytes) -> Option<Body> {
    pb::Frame::decode(body).ok()?.body
}

/// The raw bytes of the `Hello` inside a frame body holding `Frame{hello}` (field 1, length
/// delimited): what the transcript signs, exactly as sent.
pub(super) fn hello_bytes(body: &[u8]) -> Option<&[u8]> {
    let (&key, mut rest) = body.split_first()?;
    if key != 0x0a {
        return None;
    }
    let len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
    (rest.len() == len).then_some(rest)
}

/// A `Data` message for `session` and `tunnel`.
pub(super) fn data(session: u64, tunnel: u64, m: TunnelMessage) -> Body {
    Body::Data(pb::Data {
        session,
        tunnel,
        data: m.data,
        data_version: m.data_version,
        obj: m.obj,
        r#mod: m.module,
        seq: m.seq,
        index: m.index,
        conn_id: m.conn_id,
        frag_id: m.frag_id,
        frag_count: m.frag_count,
        frag_index: m.frag_index,
    })
}

/// The tunnel message a `Data` carries.
pub(super) fn message_of(d: pb::Data) -> TunnelMessage {
    TunnelMessage {
        data: d.data,
        data_version: d.data_version,
        obj: d.obj,
        module: d.r#mod,
        seq: d.seq,
        index: d.index,
        conn_id: d.conn_id,
        frag_id: d.frag_id,
        frag_count: d.frag_count,
        frag_index: d.frag_index,
    }
}
