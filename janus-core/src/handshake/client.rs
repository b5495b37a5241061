//! Client side of the handshake, as mercury (the go-pantheon client simulator) does it.

use bytes::{Bytes, BytesMut};
use janus_proto::{
    janus::resume::v1::{CsHandshakeResume, ResumeStatus, ScHandshakeResume},
    message::{CsHandshake, ScHandshake, sc_server_logout::Code as LogoutCode},
    packet::Packet,
};
use prost::Message;

use super::within_skew;
use crate::{
    Time,
    crypto::{EphemeralKey, SharedKey, SigningKey, VerifyingKey},
    resume::ResumeRefusal,
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
    /// The client asked to resume a session without a token to fall back on, and the server
    /// refused (`SCHandshakeResume.resume_status`); the connection is closed.
    #[error("server refused to resume the session: {0}")]
    ResumeRefused(ResumeRefusal),
}

/// What a client adds to its handshake for session resume (`janus.resume.v1`, docs/resume.md).
#[derive(Debug, Clone, Default)]
pub struct ResumeRequest {
    /// Ask for a ticket (`resume_request`).
    pub request: bool,
    /// The ticket of the session to resume; empty for a plain login.
    pub ticket: Bytes,
    /// Server packets received on that session.
    pub received: u64,
    /// The resume secret of the connection the ticket came on (`None` when unencrypted).
    pub secret: Option<[u8; 32]>,
}

/// The resume part of a server's `SCHandshake`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResumeGrant {
    /// The ticket for the next reconnect; empty when none was granted.
    pub ticket: Bytes,
    /// How long the server keeps the session after a drop.
    pub window_secs: u32,
    /// What became of the resume asked for (`None` when none was asked for).
    pub status: ResumeStatus,
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
    /// The resume extension of the reply (all defaults from a server that sent none).
    pub resume: ResumeGrant,
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
        Self::start_with(
            keys,
            token,
            server_id,
            conn_id,
            now,
            max_skew_secs,
            None,
            rng,
        )
    }

    /// [`start`](Self::start) with the session-resume extension appended to the `CSHandshake`
    /// (`None`, or a request asking for nothing, gives exactly `start`'s bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        keys: Option<ClientKeys>,
        token: &str,
        server_id: i64,
        conn_id: i32,
        now: Time,
        max_skew_secs: u64,
        resume: Option<&ResumeRequest>,
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
        let mut data = BytesMut::from(&cs.encode_to_vec()[..]);
        if let Some(resume) = resume {
            let proof = match (&resume.secret, resume.ticket.is_empty()) {
                (Some(secret), false) => Bytes::copy_from_slice(&crate::resume::proof(
                    secret,
                    ephemeral.public(),
                    &resume.ticket,
                )),
                _ => Bytes::new(),
            };
            let has_ticket = !resume.ticket.is_empty();
            CsHandshakeResume {
                resume_request: resume.request,
                resume_ticket: resume.ticket.clone(),
                resume_received: if has_ticket { resume.received } else { 0 },
                resume_proof: proof,
            }
            .encode_raw(&mut data);
        }
        let packet = Packet {
            data: data.freeze(),
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
        let ext = ScHandshakeResume::decode(packet.data.clone())
            .map_err(|_| ClientHandshakeError::MalformedReply)?;
        let sc =
            ScHandshake::decode(packet.data).map_err(|_| ClientHandshakeError::MalformedReply)?;
        let status = ResumeStatus::try_from(ext.resume_status).unwrap_or(ResumeStatus::None);
        if sc.r#pub.is_empty() && sc.start_index == 0 {
            // A refusal without a login (the resume handshake carried no token).
            if let Some(refusal) = ResumeRefusal::from_status(status) {
                return Err(ClientHandshakeError::ResumeRefused(refusal));
            }
        }
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
            resume: ResumeGrant {
                ticket: ext.resume_ticket,
                window_secs: ext.resume_window_secs,
                status,
            },
        })
    }
}
