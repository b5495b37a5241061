use std::sync::Arc;

use bytes::BytesMut;
use janus_proto::{gate::intra::v1::AuthToken, message::CsHandshake, packet::Packet};
use prost::Message;

use super::*;
use crate::{
    Time,
    config::{ServerConfig, ServerCredentials},
    crypto::{SigningKey, VerifyingKey},
    frame,
    testing::SeqRng,
    token::TokenKey,
};

const NOW: i64 = 1_700_000_001;

fn client_priv() -> [u8; 32] {
    core::array::from_fn(|i| 1 + i as u8)
}

fn server_rng() -> SeqRng {
    SeqRng::new(33)
}

fn v4_token() -> String {
    let t = AuthToken {
        rand: "abcdefgh".into(),
        color: "local".into(),
        account_id: 10001,
        timeout: 1_700_000_600,
        status: 1,
        ..Default::default()
    };
    TokenKey::new(b"0123456789abcdef0123456789abcdef")
        .unwrap()
        .seal(&t, core::array::from_fn(|i| i as u8))
}

fn config() -> ServerConfig {
    let creds = ServerCredentials {
        server_key: SigningKey::from_seed(&[0x22; 32]),
        client_cert: SigningKey::from_seed(&[0x11; 32]).verifying_key(),
    };
    ServerConfig::new(
        TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap(),
        Some(creds),
    )
}

fn keys() -> ClientKeys {
    ClientKeys {
        client_cert: SigningKey::from_seed(&[0x11; 32]),
        server_cert: Some(
            VerifyingKey::from_bytes(
                &SigningKey::from_seed(&[0x22; 32])
                    .verifying_key()
                    .to_bytes(),
            )
            .unwrap(),
        ),
    }
}

fn v5_client_packet() -> (ClientHandshake, Packet) {
    ClientHandshake::start(
        Some(keys()),
        &v4_token(),
        1,
        0,
        Time::from_unix_secs(1_700_000_000),
        5,
        &mut SeqRng::new(1),
    )
}

fn framed(p: &impl Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode(&p.encode_to_vec(), &mut out).unwrap();
    out.to_vec()
}

/// spec §9 V5, the client frame.
#[test]
fn v5_client_frame() {
    let (_, packet) = v5_client_packet();
    let cs = CsHandshake::decode(packet.data.clone()).unwrap();
    assert_eq!(cs.encoded_len(), 186);
    let f = hex::encode(framed(&packet));
    assert_eq!(f.len() / 2, 4 + 193);
    assert!(f.starts_with("000000c10aba010a2007a37cbc"), "{f}");
    assert!(f.ends_with("20012880e2cfaa0620012801"), "{f}");
}

/// spec §9 V5, the server frame, and the client finishing with the same key as the server.
#[test]
fn v5_server_frame_and_key_agreement() {
    let (client, packet) = v5_client_packet();
    let cfg = config();
    let accepted = accept(
        &cfg,
        Time::from_unix_secs(NOW),
        &packet.encode_to_vec(),
        &mut server_rng(),
    )
    .unwrap();
    let f = hex::encode(framed(&accepted.reply));
    assert_eq!(
        f,
        "000000720a6c0a205869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b\
         124079eed2886fbc642e6c45837a285fb450224d1a4e31a117109c5749601198e96259ade34b4122d50b69cd535d5789affe5c4510ba3978c01236745cbee3779704\
         1881e2cfaa06280120012801"
    );
    assert_eq!(
        accepted.identity,
        Identity {
            uid: 10001,
            sid: 1,
            color: "local".into(),
            status: 1,
            conn_id: 0,
            token_expiry: 1_700_000_600
        }
    );
    let done = client
        .finish(Time::from_unix_secs(NOW), &accepted.reply.encode_to_vec())
        .unwrap();
    assert_eq!(done.start_index, 1);
    assert_eq!(
        done.key.unwrap().as_bytes(),
        accepted.key.unwrap().as_bytes()
    );
    assert_eq!(
        hex::encode(client_priv()),
        "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
    );
}

fn with_cs(edit: impl FnOnce(&mut CsHandshake)) -> Vec<u8> {
    let (_, mut packet) = v5_client_packet();
    let mut cs = CsHandshake::decode(packet.data.clone()).unwrap();
    edit(&mut cs);
    packet.data = cs.encode_to_vec().into();
    packet.encode_to_vec()
}

fn refuse(cfg: &ServerConfig, body: &[u8]) -> HandshakeError {
    accept(cfg, Time::from_unix_secs(NOW), body, &mut server_rng()).unwrap_err()
}

#[test]
fn every_failure_has_its_own_error_and_close_reason() {
    let cfg = config();
    let key = TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
    let token = |edit: &dyn Fn(&mut AuthToken)| {
        let mut t = AuthToken {
            rand: "r".into(),
            account_id: 7,
            timeout: NOW + 60,
            status: 1,
            ..Default::default()
        };
        edit(&mut t);
        key.seal(&t, [9; 12])
    };
    let cases: Vec<(Vec<u8>, HandshakeError, CloseReason)> = vec![
        (
            vec![0xff, 0xff],
            HandshakeError::MalformedPacket,
            CloseReason::MalformedPacket,
        ),
        (
            Packet {
                seq: 2,
                ..Default::default()
            }
            .encode_to_vec(),
            HandshakeError::UnexpectedSeq { seq: 2 },
            CloseReason::UnexpectedHandshakeSeq,
        ),
        (
            Packet {
                seq: 1,
                data: vec![0xff].into(),
                ..Default::default()
            }
            .encode_to_vec(),
            HandshakeError::MalformedHandshake,
            CloseReason::MalformedPacket,
        ),
        (
            with_cs(|cs| cs.token.clear()),
            HandshakeError::EmptyToken,
            CloseReason::EmptyToken,
        ),
        (
            with_cs(|cs| cs.timestamp = NOW - 6),
            HandshakeError::TimestampSkew {
                timestamp: NOW - 6,
                now: NOW,
                max_skew_secs: 5,
            },
            CloseReason::TimestampSkew,
        ),
        (
            with_cs(|cs| cs.timestamp = NOW + 6),
            HandshakeError::TimestampSkew {
                timestamp: NOW + 6,
                now: NOW,
                max_skew_secs: 5,
            },
            CloseReason::TimestampSkew,
        ),
        (
            with_cs(|cs| cs.token = "!!".into()),
            HandshakeError::Token(crate::token::TokenError::Base64),
            CloseReason::InvalidToken,
        ),
        (
            with_cs(|cs| {
                cs.token = TokenKey::new(&[b'x'; 32])
                    .unwrap()
                    .seal(&AuthToken::default(), [0; 12])
            }),
            HandshakeError::Token(crate::token::TokenError::Decrypt),
            CloseReason::InvalidToken,
        ),
        (
            with_cs(|cs| cs.token = token(&|t| t.timeout = NOW - 1)),
            HandshakeError::TokenExpired {
                timeout: NOW - 1,
                now: NOW,
            },
            CloseReason::TokenExpired,
        ),
        (
            with_cs(|cs| cs.token = token(&|t| t.timeout = 0)),
            HandshakeError::TokenExpired {
                timeout: 0,
                now: NOW,
            },
            CloseReason::TokenExpired,
        ),
        (
            with_cs(|cs| cs.sign = vec![0; 64].into()),
            HandshakeError::BadSignature,
            CloseReason::BadSignature,
        ),
        (
            with_cs(|cs| cs.sign = bytes::Bytes::new()),
            HandshakeError::BadSignature,
            CloseReason::BadSignature,
        ),
        (
            with_cs(|cs| {
                cs.r#pub = vec![7; 31].into();
                cs.sign = SigningKey::from_seed(&[0x11; 32])
                    .sign(&cs.r#pub)
                    .to_vec()
                    .into();
            }),
            HandshakeError::BadKeyLength { len: 31 },
            CloseReason::BadKeyLength,
        ),
        (
            with_cs(|cs| {
                cs.r#pub = vec![0; 32].into();
                cs.sign = SigningKey::from_seed(&[0x11; 32])
                    .sign(&cs.r#pub)
                    .to_vec()
                    .into();
            }),
            HandshakeError::LowOrderPoint,
            CloseReason::LowOrderPoint,
        ),
    ];
    for (i, (body, err, reason)) in cases.into_iter().enumerate() {
        let got = refuse(&cfg, &body);
        assert_eq!(got, err, "case {i}");
        assert_eq!(got.close_reason(), reason, "case {i}");
    }
    assert!(cfg.replay.is_empty(), "no failed attempt burns a token");
}

#[test]
fn skew_bounds_are_inclusive() {
    let cfg = config();
    for ts in [NOW - 5, NOW + 5] {
        let cfg2 = ServerConfig::new(
            TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap(),
            cfg.credentials.clone(),
        );
        assert!(
            accept(
                &cfg2,
                Time::from_unix_secs(NOW),
                &with_cs(|cs| cs.timestamp = ts),
                &mut server_rng()
            )
            .is_ok(),
            "ts {ts}"
        );
    }
}

#[test]
fn a_token_opens_one_session() {
    let cfg = config();
    let body = v5_client_packet().1.encode_to_vec();
    assert!(accept(&cfg, Time::from_unix_secs(NOW), &body, &mut server_rng()).is_ok());
    assert_eq!(refuse(&cfg, &body), HandshakeError::TokenReplayed);
    assert_eq!(
        HandshakeError::TokenReplayed.close_reason(),
        CloseReason::TokenReplayed
    );
}

#[test]
fn unencrypted_mode_sends_zero_key_and_no_signature() {
    let cfg = ServerConfig::new(
        TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap(),
        None,
    );
    let (client, packet) = ClientHandshake::start(
        None,
        &v4_token(),
        0,
        5,
        Time::from_unix_secs(NOW),
        5,
        &mut SeqRng::new(1),
    );
    let accepted = accept(
        &cfg,
        Time::from_unix_secs(NOW),
        &packet.encode_to_vec(),
        &mut server_rng(),
    )
    .unwrap();
    assert!(accepted.key.is_none());
    assert_eq!(
        accepted.identity.sid, 0,
        "token server_id when the client sends none"
    );
    assert_eq!(accepted.identity.conn_id, 5);
    let sc = janus_proto::message::ScHandshake::decode(accepted.reply.data.clone()).unwrap();
    assert_eq!(&sc.r#pub[..], &[0; 32]);
    assert!(sc.sign.is_empty());
    let done = client
        .finish(Time::from_unix_secs(NOW), &accepted.reply.encode_to_vec())
        .unwrap();
    assert!(done.key.is_none());
}

#[test]
fn client_rejects_forged_server_and_reads_refusals() {
    let (client, packet) = v5_client_packet();
    // a server with the wrong certificate key
    let mut cfg = config();
    cfg.credentials = Some(ServerCredentials {
        server_key: SigningKey::from_seed(&[0x33; 32]),
        client_cert: SigningKey::from_seed(&[0x11; 32]).verifying_key(),
    });
    let accepted = accept(
        &cfg,
        Time::from_unix_secs(NOW),
        &packet.encode_to_vec(),
        &mut server_rng(),
    )
    .unwrap();
    assert_eq!(
        client
            .finish(Time::from_unix_secs(NOW), &accepted.reply.encode_to_vec())
            .unwrap_err(),
        ClientHandshakeError::BadSignature
    );

    let (client, _) = v5_client_packet();
    let logout = Packet {
        r#mod: 1,
        seq: 4,
        data: janus_proto::message::ScServerLogout { code: 2 }
            .encode_to_vec()
            .into(),
        ..Default::default()
    };
    assert_eq!(
        client
            .finish(Time::from_unix_secs(NOW), &logout.encode_to_vec())
            .unwrap_err(),
        ClientHandshakeError::Refused(janus_proto::message::sc_server_logout::Code::Unauthorized)
    );
    let _ = Arc::new(0);
}
