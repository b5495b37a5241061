//! Protobuf decoding of every message the gateway takes from a peer: never panics, and what
//! decodes re-encodes to something that decodes to the same value.
#![no_main]

use janus_proto::{
    broadcaster::service::push::v1 as push,
    gate::intra::v1::AuthToken,
    message::{CsHandshake, CsHeartbeat, ScHandshake},
    packet::Packet,
    player, room,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn check<M: Message + Default + PartialEq + core::fmt::Debug>(data: &[u8]) {
    if let Ok(m) = M::decode(data) {
        let again = M::decode(m.encode_to_vec().as_slice()).expect("re-encoded message decodes");
        assert_eq!(m, again);
    }
}

fuzz_target!(|input: (u8, &[u8])| {
    let (which, data) = input;
    match which % 12 {
        0 => check::<Packet>(data),
        1 => check::<CsHandshake>(data),
        2 => check::<ScHandshake>(data),
        3 => check::<CsHeartbeat>(data),
        4 => check::<AuthToken>(data),
        5 => check::<player::intra::v1::TunnelResponse>(data),
        6 => check::<room::intra::v1::TunnelResponse>(data),
        7 => check::<push::PushMessage>(data),
        8 => check::<push::PushRequest>(data),
        9 => check::<push::MulticastRequest>(data),
        10 => check::<push::BroadcastRequest>(data),
        _ => {
            // The hot-path codec must agree with prost on every input: same value or both errors,
            // and the same bytes when re-encoding.
            let ours = janus_core::codec::decode_packet(bytes::Bytes::copy_from_slice(data)).ok();
            let prost = Packet::decode(data).ok();
            assert_eq!(ours, prost);
            if let Some(p) = prost {
                let mut out = Vec::new();
                janus_core::codec::encode_packet(&p, &mut out);
                assert_eq!(out, p.encode_to_vec());
                assert_eq!(janus_core::codec::packet_len(&p), p.encoded_len());
            }
        }
    }
});
