//! Known-answer self-test: the wire-protocol spec's golden vectors (§9 V1–V5), recomputed by the
//! client code as this build compiled it.
//!
//! Every binding exposes it (`janus_client::known_answers::check`, `janus_self_test` in the C
//! ABI, `selfTest()` in the browser build), so a game engine can check on its own toolchain and
//! target (a console SDK, a phone, wasm32) that the client frames, seals, signs and handshakes
//! byte for byte as the gateway expects. V1 goes through the client's real send path: an
//! unencrypted session's first heartbeat.

use bytes::BytesMut;
use core::time::Duration;
use janus_core::{
    Time,
    client::{ClientConfig, ClientEvent, ClientSession},
    crypto::{EphemeralKey, PacketCipher, SigningKey},
    frame,
    handshake::{self, ClientHandshake, ClientKeys},
    testing::{SeqRng, test_server_config, test_token},
    token::TokenKey,
};
use janus_proto::gate::intra::v1::AuthToken;
use prost::Message as _;

/// V1: the heartbeat `Packet{data=CSHeartbeat{1700000000}, mod=1, seq=2, index=1}`, framed.
pub const V1_FRAME: &str = "0000000e0a060880e2cfaa06200128023801";
/// V2: the client and server X25519 public keys and their shared secret (the AES-256 key).
pub const V2_CLIENT_PUB: &str = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";
pub const V2_SERVER_PUB: &str = "5869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b";
pub const V2_SHARED: &str = "a84dc7c3c8f058b1b2dc4cd1e9b5dc0a7987f88b6a9564cde3391fc421159e77";
/// V2: V1's packet sealed with the shared key and a zero nonce, framed.
pub const V2_FRAME: &str =
    "0000002a0000000000000000000000008be9d03ac7f21a02d882177c8177d2edafcfbc339c84eccc47e5f2fc386a";
/// V3: the client certificate (seed `11×32`) and its signature over the client X25519 key.
pub const V3_CLIENT_CERT: &str = "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";
pub const V3_CLIENT_SIGN: &str = "ae94bdd4e111a556c221df19b2304a302650458bd87bf5bf04963efad6095e09111bc926cf9796124b4adeffb09be68d61382726ba9f00941e4fbe9f1ce08709";
/// V3: the server certificate (seed `22×32`) and its signature over the server X25519 key.
pub const V3_SERVER_CERT: &str = "a09aa5f47a6759802ff955f8dc2d2a14a5c99d23be97f864127ff9383455a4f0";
pub const V3_SERVER_SIGN: &str = "79eed2886fbc642e6c45837a285fb450224d1a4e31a117109c5749601198e96259ade34b4122d50b69cd535d5789affe5c4510ba3978c01236745cbee3779704";
/// V4: the token.
pub const V4_TOKEN: &str =
    "AAECAwQFBgcICQoLJ-3aHrp8t8rPtGO7HaCyZYoQkskUZJJEitqDtZNXb_tdhmvqcdmbGhV4veM=";
/// V5: the start and end of the 197-byte client handshake frame.
pub const V5_CLIENT_FRAME_START: &str = "000000c10aba010a2007a37cbc";
pub const V5_CLIENT_FRAME_END: &str = "20012880e2cfaa0620012801";
/// V5: the whole server handshake frame.
pub const V5_SERVER_FRAME: &str = "000000720a6c0a205869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b124079eed2886fbc642e6c45837a285fb450224d1a4e31a117109c5749601198e96259ade34b4122d50b69cd535d5789affe5c4510ba3978c01236745cbee37797041881e2cfaa06280120012801";

/// How many vectors [`check`] compares.
pub const COUNT: usize = 12;

/// A vector this build does not reproduce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("known answer {name} differs: expected {expected}, got {actual}")]
pub struct Mismatch {
    pub name: &'static str,
    pub expected: String,
    pub actual: String,
}

/// Recomputes every vector; the number compared ([`COUNT`]), or the first that differs.
pub fn check() -> Result<usize, Mismatch> {
    let mut checked = 0;
    let mut expect = |name: &'static str, expected: &str, actual: String| {
        checked += 1;
        if expected == actual {
            Ok(())
        } else {
            Err(Mismatch {
                name,
                expected: expected.to_owned(),
                actual,
            })
        }
    };

    // V1, through the session: an unencrypted client's first heartbeat.
    expect("V1 heartbeat frame", V1_FRAME, v1_heartbeat_frame())?;

    // V2
    let client = EphemeralKey::from_secret(core::array::from_fn(|i| 1 + i as u8));
    let server = EphemeralKey::from_secret(core::array::from_fn(|i| 33 + i as u8));
    expect("V2 client public key", V2_CLIENT_PUB, hex(client.public()))?;
    expect("V2 server public key", V2_SERVER_PUB, hex(server.public()))?;
    let shared = client
        .agree(server.public())
        .map(|k| hex(k.as_bytes()))
        .unwrap_or_default();
    expect("V2 shared key", V2_SHARED, shared)?;
    let sealed = client
        .agree(server.public())
        .ok()
        .and_then(|key| {
            let mut out = BytesMut::new();
            let plaintext = unhex(V1_FRAME).get(frame::HEADER_LEN..)?.to_vec();
            PacketCipher::new(&key)
                .seal_bytes([0; 12], &plaintext, &mut out)
                .ok()?;
            Some(hex(&out))
        })
        .unwrap_or_default();
    expect("V2 sealed heartbeat frame", V2_FRAME, sealed)?;

    // V3
    let client_cert = SigningKey::from_seed(&[0x11; 32]);
    let server_cert = SigningKey::from_seed(&[0x22; 32]);
    expect(
        "V3 client certificate",
        V3_CLIENT_CERT,
        hex(&client_cert.verifying_key().to_bytes()),
    )?;
    expect(
        "V3 client signature",
        V3_CLIENT_SIGN,
        hex(&client_cert.sign(client.public())),
    )?;
    expect(
        "V3 server certificate",
        V3_SERVER_CERT,
        hex(&server_cert.verifying_key().to_bytes()),
    )?;
    expect(
        "V3 server signature",
        V3_SERVER_SIGN,
        hex(&server_cert.sign(server.public())),
    )?;

    // V4
    let token = v4_token();
    expect("V4 token", V4_TOKEN, token.clone())?;

    // V5: the client's frame, and the client accepting the server's frame with V2's key.
    let keys = ClientKeys {
        client_cert,
        server_cert: Some(server_cert.verifying_key()),
    };
    let (handshake, packet) = ClientHandshake::start(
        Some(keys),
        &token,
        1,
        0,
        Time::from_unix_secs(1_700_000_000),
        5,
        &mut SeqRng::new(1),
    );
    let mut framed = BytesMut::new();
    let client_frame = frame::encode(&packet.encode_to_vec(), &mut framed)
        .map(|()| hex(&framed))
        .unwrap_or_default();
    let summary = |f: &str| {
        let start = f.get(..V5_CLIENT_FRAME_START.len()).unwrap_or(f);
        let end = f
            .get(f.len().saturating_sub(V5_CLIENT_FRAME_END.len())..)
            .unwrap_or(f);
        format!("{} bytes, {start}…{end}", f.len() / 2)
    };
    expect(
        "V5 client frame",
        &format!("197 bytes, {V5_CLIENT_FRAME_START}…{V5_CLIENT_FRAME_END}"),
        summary(&client_frame),
    )?;
    let server_frame = unhex(V5_SERVER_FRAME);
    let agreed = handshake
        .finish(
            Time::from_unix_secs(1_700_000_001),
            server_frame.get(frame::HEADER_LEN..).unwrap_or_default(),
        )
        .ok()
        .and_then(|done| done.key)
        .map(|k| hex(k.as_bytes()))
        .unwrap_or_else(|| "refused".into());
    expect("V5 server frame accepted, V2 key agreed", V2_SHARED, agreed)?;
    Ok(checked)
}

fn v4_token() -> String {
    let token = AuthToken {
        rand: "abcdefgh".into(),
        color: "local".into(),
        account_id: 10001,
        timeout: 1_700_000_600,
        status: 1,
        ..Default::default()
    };
    TokenKey::new(b"0123456789abcdef0123456789abcdef")
        .map(|key| key.seal(&token, core::array::from_fn(|i| i as u8)))
        .unwrap_or_default()
}

/// An unencrypted session established 10 s before 1700000000, so its first heartbeat is V1.
fn v1_heartbeat_frame() -> String {
    let start = Time::from_unix_secs(1_699_999_990);
    let mut config = ClientConfig::new(None, test_token(10001, start, 1));
    config.heartbeat_interval = Some(Duration::from_secs(10));
    let mut client = ClientSession::new(&config, start, [1; 32]);
    let Some(hello) = client.poll_transmit() else {
        return "no handshake".into();
    };
    let server = test_server_config(false);
    let Some(reply) = hello
        .get(frame::HEADER_LEN..)
        .and_then(|body| handshake::accept(&server, start, body, &mut SeqRng::new(33)).ok())
    else {
        return "handshake refused".into();
    };
    let mut framed = BytesMut::new();
    if frame::encode(&reply.reply.encode_to_vec(), &mut framed).is_err() {
        return "handshake reply not framed".into();
    }
    client.handle_bytes(start, &framed);
    if !matches!(client.poll_event(), Some(ClientEvent::Established { .. })) {
        return "not established".into();
    }
    client.handle_timeout(Time::from_unix_secs(1_700_000_000));
    client
        .poll_transmit()
        .map(|b| hex(&b))
        .unwrap_or_else(|| "no heartbeat".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .filter_map(|c| char::from(c).to_digit(16))
        .filter_map(|d| u8::try_from(d).ok())
        .collect();
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => hi << 4 | lo,
            _ => 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_build_reproduces_the_spec_vectors() {
        assert_eq!(super::check(), Ok(super::COUNT));
    }
}
