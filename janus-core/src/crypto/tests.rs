use super::*;

fn seq(from: u8) -> [u8; 32] {
    core::array::from_fn(|i| from + i as u8)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

/// spec §9 V2: keys, shared secret and the sealed heartbeat.
#[test]
fn v2_key_agreement_and_sealed_heartbeat() {
    let client = EphemeralKey::from_secret(seq(1));
    let server = EphemeralKey::from_secret(seq(33));
    assert_eq!(
        hex::encode(client.public()),
        "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
    );
    assert_eq!(
        hex::encode(server.public()),
        "5869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b"
    );
    let key = client.agree(server.public()).unwrap();
    assert_eq!(key, server.agree(client.public()).unwrap());
    assert_eq!(
        hex::encode(key.as_bytes()),
        "a84dc7c3c8f058b1b2dc4cd1e9b5dc0a7987f88b6a9564cde3391fc421159e77"
    );

    let plaintext = h("0a060880e2cfaa06200128023801");
    let cipher = PacketCipher::new(&key);
    let mut out = BytesMut::new();
    let n = cipher.seal_bytes([0; 12], &plaintext, &mut out).unwrap();
    let expected = h(
        "0000002a 000000000000000000000000 8be9d03ac7f21a02d882177c8177 d2edafcfbc339c84eccc47e5f2fc386a",
    );
    assert_eq!(n, expected.len());
    assert_eq!(out.to_vec(), expected);

    // and back
    let opened = cipher.open(BytesMut::from(&expected[4..])).unwrap();
    assert_eq!(opened.to_vec(), plaintext);
}

#[test]
fn seal_message_matches_seal_bytes() {
    let cipher = PacketCipher::new(&SharedKey::from_bytes([7; 32]));
    let packet = janus_proto::packet::Packet {
        r#mod: 1,
        seq: 2,
        index: 9,
        ..Default::default()
    };
    let mut a = BytesMut::new();
    let mut b = BytesMut::new();
    cipher.seal_message([3; 12], &packet, &mut a).unwrap();
    cipher
        .seal_bytes([3; 12], &packet.encode_to_vec(), &mut b)
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn open_rejects_tampering_and_truncation() {
    let cipher = PacketCipher::new(&SharedKey::from_bytes([7; 32]));
    let mut out = BytesMut::new();
    cipher.seal_bytes([1; 12], b"hello", &mut out).unwrap();
    let body = out.split_off(4);
    for i in 0..body.len() {
        let mut bad = body.clone();
        bad[i] ^= 0x80;
        assert_eq!(cipher.open(bad), Err(CryptoError::BadTag), "flip at {i}");
    }
    assert_eq!(
        cipher.open(BytesMut::from(&body[..27])),
        Err(CryptoError::Truncated { len: 27 })
    );
    // an empty plaintext still authenticates
    let mut empty = BytesMut::new();
    cipher.seal_bytes([1; 12], b"", &mut empty).unwrap();
    assert_eq!(cipher.open(empty.split_off(4)).unwrap().len(), 0);
}

/// spec §9 V3: deterministic Ed25519 signatures over the X25519 public keys.
#[test]
fn v3_signatures() {
    let client_cert = SigningKey::from_seed(&[0x11; 32]);
    let server_cert = SigningKey::from_seed(&[0x22; 32]);
    assert_eq!(
        hex::encode(client_cert.verifying_key().to_bytes()),
        "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737"
    );
    assert_eq!(
        hex::encode(server_cert.verifying_key().to_bytes()),
        "a09aa5f47a6759802ff955f8dc2d2a14a5c99d23be97f864127ff9383455a4f0"
    );
    let client_pub = EphemeralKey::from_secret(seq(1)).public;
    let server_pub = EphemeralKey::from_secret(seq(33)).public;
    let cs = client_cert.sign(&client_pub);
    let ss = server_cert.sign(&server_pub);
    assert_eq!(
        hex::encode(cs),
        "ae94bdd4e111a556c221df19b2304a302650458bd87bf5bf04963efad6095e09111bc926cf9796124b4adeffb09be68d61382726ba9f00941e4fbe9f1ce08709"
    );
    assert_eq!(
        hex::encode(ss),
        "79eed2886fbc642e6c45837a285fb450224d1a4e31a117109c5749601198e96259ade34b4122d50b69cd535d5789affe5c4510ba3978c01236745cbee3779704"
    );
    let vk = client_cert.verifying_key();
    assert!(vk.verify(&client_pub, &cs).is_ok());
    assert_eq!(vk.verify(&server_pub, &cs), Err(CryptoError::BadSignature));
    assert_eq!(
        vk.verify(&client_pub, &cs[..63]),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn agreement_rejects_bad_peers() {
    let key = EphemeralKey::from_secret([9; 32]);
    assert_eq!(
        key.agree(&[1; 31]),
        Err(CryptoError::BadKeyLength { len: 31 })
    );
    // the identity point and the all-zero key are low order
    let mut one = [0u8; 32];
    one[0] = 1;
    assert_eq!(key.agree(&one), Err(CryptoError::LowOrderPoint));
    assert_eq!(key.agree(&[0; 32]), Err(CryptoError::LowOrderPoint));
}

#[test]
fn nonce_sequences_never_repeat_and_keep_their_prefix() {
    let mut seq = NonceSequence::new([0xaa, 0xbb, 0xcc, 0xdd]);
    let a = seq.next_nonce();
    let b = seq.next_nonce();
    assert_ne!(a, b);
    assert_eq!(a[..4], [0xaa, 0xbb, 0xcc, 0xdd]);
    assert_eq!(u64::from_be_bytes(b[4..].try_into().unwrap()), 1);
}
