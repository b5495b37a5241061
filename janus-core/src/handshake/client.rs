//! Client side of the handshake, as mercury (the go-pantheon client simulator) does it.

use bytes::Bytes;
use janus_proto::{
    message::{CsHandshake, ScHandshake, sc_server_logout::Code as LogoutCode},
    packet::Packet,
};
use prost::Message;

use super::within_skew;
use crate::{
    Time,
    crypto::{EphemeralKey, SharedKey, SigningKey, VerifyingKey},
    system::{HANDSHAKE_SEQ, SYSTEM_MODULE, SystemMessage},
};

/// The client's certificate material.
#[derive(Debug, Clone)]
pub struct ClientKeys {
    /// The client certificate key embedded in official client builds.
    pub client_cert: SigningKey,
    /// The server certificate's public key. `None` skips verifying the server, which only a test
    /// or a trusted-network tool should do.
    pub server_cert: Option<VerifyingKey>,
}

/// Why a client's handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// The reply is not a `Packet` holding an `SCHandshake`.
    #[error("handshake reply is malformed")]
    MalformedReply,
    /// The server refused the handshake and said why.
    #[error("server refused the handshake: {0:?}")]
    Refused(LogoutCode),
    /// The server's signature is missing or does not verify.
    #[error("bad server signature")]
    BadSignature,
    /// The server's clock is too far from ours.
    #[error("server timestamp {timestamp} is too far from {now}")]
    TimestampSkew { timestamp: i64, now: i64 },
    /// The server's public key is unusable.
    #[error("bad server public key")]
    BadKey,
}

/// A completed client handshake.
#[derive(Debug)]
pub struct Established {
    /// The session key; `None` when the server runs unencrypted.
    pub key: Option<SharedKey>,
    /// The index of the first packet to send.
    pub start_index: i32,
    /// The server's clock, unix seconds.
    pub server_time: i64,
}

/// The client half of a handshake in progress.
#[derive(Debug)]
pub struct ClientHandshake {
    ephemeral: EphemeralKey,
    keys: Option<ClientKeys>,
    max_skew_secs: u64,
}

impl ClientHandshake {
    /// Builds the first packet (`Packet{mod=1, seq=1, data=CSHandshake}`). `keys: None` makes an
    /// unencrypted-mode client (no key agreement).
    pub fn start(
        keys: Option<ClientKeys>,
        token: &str,
        server_id: i64,
        conn_id: i32,
        now: Time,
        max_skew_secs: u64,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> (Self, Packet) {
        let ephemeral = EphemeralKey::generate(rng);
        let sign = keys
            .as_ref()
            .map(|k| k.client_cert.sign(ephemeral.public()))
            .map(|s| Bytes::copy_from_slice(&s))
            .unwrap_or_default();
        let cs = CsHandshake {
            r#pub: Bytes::copy_from_slice(ephemeral.public()),
            sign,
            token: token.to_owned(),
            server_id,
            timestamp: now.unix_secs(),
            cert_version: 0,
        };
        let packet = Packet {
            data: cs.encode_to_vec().into(),
            r#mod: SYSTEM_MODULE,
            seq: HANDSHAKE_SEQ,
            conn_id,
            ..Default::default()
        };
        (
            Self {
                ephemeral,
                keys,
                max_skew_secs,
            },
            packet,
        )
    }

    /// Our ephemeral public key.
    pub fn public(&self) -> &[u8; 32] {
        self.ephemeral.public()
    }

    /// Checks the server's reply frame body and derives the session key.
    pub fn finish(self, now: Time, body: &[u8]) -> Result<Established, ClientHandshakeError> {
        let packet = Packet::decode(body).map_err(|_| ClientHandshakeError::MalformedReply)?;
        if let Some(SystemMessage::Logout(code)) = SystemMessage::recognise(&packet) {
            return Err(ClientHandshakeError::Refused(code));
        }
        if packet.seq != HANDSHAKE_SEQ {
            return Err(ClientHandshakeError::MalformedReply);
        }
        let sc =
            ScHandshake::decode(packet.data).map_err(|_| ClientHandshakeError::MalformedReply)?;
        let now_secs = now.unix_secs();
        if !within_skew(sc.timestamp, now_secs, self.max_skew_secs) {
            return Err(ClientHandshakeError::TimestampSkew {
                timestamp: sc.timestamp,
                now: now_secs,
            });
        }
        let key = match &self.keys {
            Some(keys) => {
                if let Some(server_cert) = &keys.server_cert {
                    server_cert
                        .verify(&sc.r#pub, &sc.sign)
                        .map_err(|_| ClientHandshakeError::BadSignature)?;
                }
                Some(
                    self.ephemeral
                        .agree(&sc.r#pub)
                        .map_err(|_| ClientHandshakeError::BadKey)?,
                )
            }
            None => None,
        };
        Ok(Established {
            key,
            start_index: sc.start_index,
            server_time: sc.timestamp,
        })
    }
}
