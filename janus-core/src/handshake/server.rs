//! Server side of the handshake (spec §2.4–§2.5).

use bytes::Bytes;
use janus_proto::{
    message::{CsHandshake, ScHandshake},
    packet::Packet,
};
use prost::Message;

use super::{HandshakeError, START_INDEX, within_skew};
use crate::{
    Time,
    config::ServerConfig,
    crypto::{EphemeralKey, KEY_LEN, SharedKey},
    system::HANDSHAKE_SEQ,
};

/// Who the client is, from its token (spec §2.4 step 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `token.account_id`.
    pub uid: i64,
    /// `CSHandshake.server_id` when non-zero, else `token.server_id`.
    pub sid: i64,
    /// `token.color`: the routing colour.
    pub color: String,
    /// `token.status` (1 = GATE), forwarded as `x-md-global-status`.
    pub status: i32,
    /// `Packet.conn_id` of the handshake (logs only).
    pub conn_id: i32,
    /// `token.timeout`, unix seconds.
    pub token_expiry: i64,
}

/// A verified handshake.
#[derive(Debug)]
pub struct Accepted {
    /// The client's identity.
    pub identity: Identity,
    /// The session key; `None` in unencrypted mode.
    pub key: Option<SharedKey>,
    /// The reply, `Packet{mod, seq, data=SCHandshake}`, to send in plaintext.
    pub reply: Packet,
}

/// Verifies a client's first frame body and builds the reply.
///
/// The checks run in upstream's order, so the same input fails for the same reason; the token
/// is marked used only when everything else passed, so a failed attempt does not burn it.
pub fn accept(
    config: &ServerConfig,
    now: Time,
    body: &[u8],
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<Accepted, HandshakeError> {
    let packet = Packet::decode(body).map_err(|_| HandshakeError::MalformedPacket)?;
    if packet.seq != HANDSHAKE_SEQ {
        return Err(HandshakeError::UnexpectedSeq { seq: packet.seq });
    }
    let cs =
        CsHandshake::decode(packet.data.clone()).map_err(|_| HandshakeError::MalformedHandshake)?;
    if cs.token.is_empty() {
        return Err(HandshakeError::EmptyToken);
    }
    let now_secs = now.unix_secs();
    let max_skew_secs = config.session.max_timestamp_skew.as_secs();
    if !within_skew(cs.timestamp, now_secs, max_skew_secs) {
        return Err(HandshakeError::TimestampSkew {
            timestamp: cs.timestamp,
            now: now_secs,
            max_skew_secs,
        });
    }
    let token = config
        .token_key
        .open(&cs.token)
        .map_err(HandshakeError::Token)?;
    // Upstream: reject when now > timeout; a zero timeout is the zero time and always rejects.
    if token.timeout <= 0 || now_secs > token.timeout {
        return Err(HandshakeError::TokenExpired {
            timeout: token.timeout,
            now: now_secs,
        });
    }

    let (sc, key) = agree(config, &cs, now_secs, rng)?;

    if !config
        .replay
        .first_use(token.account_id, &token.rand, token.timeout, now_secs)
    {
        return Err(HandshakeError::TokenReplayed);
    }

    let identity = Identity {
        uid: token.account_id,
        sid: if cs.server_id != 0 {
            cs.server_id
        } else {
            token.server_id
        },
        color: token.color,
        status: token.status,
        conn_id: packet.conn_id,
        token_expiry: token.timeout,
    };
    let reply = Packet {
        data: sc.encode_to_vec().into(),
        r#mod: packet.r#mod,
        seq: packet.seq,
        ..Default::default()
    };
    Ok(Accepted {
        identity,
        key,
        reply,
    })
}

/// The key agreement of a handshake whose other checks passed: the client certificate's
/// signature over its X25519 key, our ephemeral key, the shared key and our signature (spec §2.4
/// step 6), or the unencrypted-mode answer. Returns the `SCHandshake` to send (`start_index` 1)
/// and the session key. Shared by a login ([`accept`]) and a resume.
pub(crate) fn agree(
    config: &ServerConfig,
    cs: &CsHandshake,
    now_secs: i64,
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<(ScHandshake, Option<SharedKey>), HandshakeError> {
    Ok(match &config.credentials {
        Some(creds) => {
            creds
                .client_cert
                .verify(&cs.r#pub, &cs.sign)
                .map_err(|_| HandshakeError::BadSignature)?;
            if cs.r#pub.len() != KEY_LEN {
                return Err(HandshakeError::BadKeyLength {
                    len: cs.r#pub.len(),
                });
            }
            let ephemeral = EphemeralKey::generate(rng);
            let key = ephemeral.agree(&cs.r#pub)?;
            let sign = creds.server_key.sign(ephemeral.public());
            let sc = ScHandshake {
                r#pub: Bytes::copy_from_slice(ephemeral.public()),
                sign: Bytes::copy_from_slice(&sign),
                timestamp: now_secs,
                cert_version: 0,
                start_index: START_INDEX,
            };
            (sc, Some(key))
        }
        None => {
            // Unencrypted mode: 32 zero bytes as the key, no signature (spec §2.5).
            let sc = ScHandshake {
                r#pub: Bytes::from_static(&[0; KEY_LEN]),
                sign: Bytes::new(),
                timestamp: now_secs,
                cert_version: 0,
                start_index: START_INDEX,
            };
            (sc, None)
        }
    })
}
