//! The server handshake, built with `cfg(fuzzing)`: signatures and token tags are not checked, so
//! the fuzzer reaches every step of `accept` and the established session behind it.
#![no_main]

use std::sync::Arc;

use base64::Engine as _;
use janus_core::{Time, session::Session, testing::test_server_config};
use janus_proto::{gate::intra::v1::AuthToken, message::CsHandshake, packet::Packet};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const NOW: i64 = 1_700_000_000;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Raw first frame instead of a structured one.
    raw: Option<&'a [u8]>,
    seq: i32,
    module: i32,
    conn_id: i32,
    pubkey: &'a [u8],
    sign: &'a [u8],
    token_rand: String,
    token_color: String,
    account_id: i64,
    server_id: i64,
    token_timeout_offset: i32,
    token_status: i32,
    raw_token: Option<String>,
    cs_server_id: i64,
    timestamp_offset: i8,
    encrypted: bool,
    /// Bytes fed after the handshake frame.
    rest: &'a [u8],
}

/// Under `cfg(fuzzing)` a token "opens" to the bytes between its nonce and tag.
fn fuzz_token(t: &AuthToken) -> String {
    let mut raw = vec![0u8; 12];
    raw.extend_from_slice(&t.encode_to_vec());
    raw.extend_from_slice(&[0u8; 16]);
    base64::engine::general_purpose::URL_SAFE.encode(raw)
}

fuzz_target!(|input: Input<'_>| {
    let config = Arc::new(test_server_config(input.encrypted));
    let body = match input.raw {
        Some(raw) => raw.to_vec(),
        None => {
            let token = input.raw_token.clone().unwrap_or_else(|| {
                fuzz_token(&AuthToken {
                    rand: input.token_rand.clone(),
                    color: input.token_color.clone(),
                    account_id: input.account_id,
                    server_id: input.server_id,
                    timeout: NOW + i64::from(input.token_timeout_offset),
                    status: input.token_status,
                    ..Default::default()
                })
            });
            let cs = CsHandshake {
                r#pub: input.pubkey.to_vec().into(),
                sign: input.sign.to_vec().into(),
                token,
                server_id: input.cs_server_id,
                timestamp: NOW + i64::from(input.timestamp_offset),
                cert_version: 0,
            };
            Packet { data: cs.encode_to_vec().into(), r#mod: input.module, seq: input.seq, conn_id: input.conn_id, ..Default::default() }
                .encode_to_vec()
        }
    };
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let now = Time::from_unix_secs(NOW);
    let mut session = Session::new(config, janus_core::testing::test_context(), now, [1; 32]);
    session.handle_bytes(now, &frame);
    session.handle_bytes(now, input.rest);
    let mut closed = false;
    while let Some(event) = session.poll_event() {
        assert!(!closed);
        closed = matches!(event, janus_core::session::Event::Closed(_));
    }
    let _ = session.poll_transmit();
});
