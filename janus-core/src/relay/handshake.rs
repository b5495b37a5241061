//! The link handshake: `Hello` both ways, then `Auth` both ways (see the module docs of
//! [`super`] for the transcript).

use std::time::Duration;

use bytes::Bytes;
use janus_proto::janus::relay::v1 as pb;
use prost::Message as _;

use super::{
    CHALLENGE_LEN, LinkCloseReason, LinkConfig, MIN_PEER_FRAME_LEN, MIN_VERSION, Role, VERSION,
};
use crate::crypto::VerifyingKey;

/// Signatures are over this, then the signer's role, so they mean nothing anywhere else.
const DOMAIN: &[u8] = b"janus relay auth\0";

/// What the peer's `Hello` announced, once checked.
#[derive(Debug, Clone)]
pub(super) struct PeerHello {
    pub key: VerifyingKey,
    pub node: String,
    pub version: u32,
    pub max_frame_len: usize,
    pub session_window: u32,
    pub heartbeat: Duration,
    /// The `Hello` exactly as the peer sent it.
    pub raw: Bytes,
}

/// This side's `Hello`, and its encoding (what the transcript signs; a `Frame` embeds exactly
/// these bytes).
pub(super) fn hello(config: &LinkConfig, challenge: [u8; CHALLENGE_LEN]) -> (pb::Hello, Bytes) {
    let hello = pb::Hello {
        min_version: MIN_VERSION,
        max_version: VERSION,
        challenge: Bytes::copy_from_slice(&challenge),
        public_key: Bytes::copy_from_slice(&config.key.verifying_key().to_bytes()),
        node: config.node.clone(),
        max_frame_len: u32::try_from(config.max_frame_len).unwrap_or(u32::MAX),
        session_window: config.session_window,
        heartbeat_ms: u32::try_from(config.heartbeat_interval.as_millis()).unwrap_or(u32::MAX),
    };
    let bytes = hello.encode_to_vec().into();
    (hello, bytes)
}

/// Checks the peer's `Hello` (`raw`, its exact bytes): a version in common, a key this side
/// accepts, a real challenge, usable limits.
pub(super) fn check_hello(config: &LinkConfig, raw: Bytes) -> Result<PeerHello, LinkCloseReason> {
    let hello = pb::Hello::decode(raw.clone()).map_err(|_| LinkCloseReason::MalformedMessage)?;
    let version = hello.max_version.min(VERSION);
    if version < hello.min_version.max(MIN_VERSION) {
        return Err(LinkCloseReason::BadVersion);
    }
    let key_bytes: [u8; 32] = hello
        .public_key
        .as_ref()
        .try_into()
        .map_err(|_| LinkCloseReason::BadHello)?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| LinkCloseReason::BadHello)?;
    if !config.peers.contains(&key) {
        return Err(LinkCloseReason::UnknownKey);
    }
    if hello.challenge.len() != CHALLENGE_LEN
        || hello.max_frame_len < MIN_PEER_FRAME_LEN
        || hello.session_window < MIN_PEER_FRAME_LEN
        || hello.heartbeat_ms == 0
    {
        return Err(LinkCloseReason::BadHello);
    }
    Ok(PeerHello {
        key,
        node: hello.node,
        version,
        max_frame_len: usize::try_from(hello.max_frame_len).unwrap_or(usize::MAX),
        session_window: hello.session_window,
        heartbeat: Duration::from_millis(u64::from(hello.heartbeat_ms)),
        raw,
    })
}

/// What `signer` signs: the domain, its role, the version, then the edge's and the hub's
/// `Hello`, each with its length.
pub(super) fn transcript(signer: Role, version: u32, mine: &[u8], peer: &[u8]) -> Vec<u8> {
    let (edge, hub) = match signer {
        Role::Edge => (mine, peer),
        Role::Hub => (peer, mine),
    };
    let mut t = Vec::with_capacity(DOMAIN.len() + 16 + edge.len() + hub.len());
    t.extend_from_slice(DOMAIN);
    t.extend_from_slice(signer.label());
    t.extend_from_slice(&version.to_be_bytes());
    for part in [edge, hub] {
        t.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        t.extend_from_slice(part);
    }
    t
}

/// This side's `Auth` signature.
pub(super) fn sign(config: &LinkConfig, version: u32, mine: &[u8], peer: &[u8]) -> Bytes {
    let t = transcript(config.role, version, mine, peer);
    Bytes::copy_from_slice(&config.key.sign(&t))
}

/// Verifies the peer's `Auth` signature.
pub(super) fn verify(
    config: &LinkConfig,
    peer: &PeerHello,
    mine: &[u8],
    signature: &[u8],
) -> Result<(), LinkCloseReason> {
    let t = transcript(config.role.peer(), peer.version, &peer.raw, mine);
    peer.key
        .verify(&t, signature)
        .map_err(|_| LinkCloseReason::BadSignature)
}
