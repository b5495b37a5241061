//! The resume ticket (AES-256-GCM under the gateway's resume key) and the proof of possession
//! (HMAC-SHA256 under a secret derived from the session key).

use aes_gcm::{
    Aes256Gcm, KeyInit as _, Nonce,
    aead::{Aead as _, Payload},
};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::ResumeRefusal;
use crate::crypto::{KEY_LEN, NONCE_LEN, SharedKey, TAG_LEN};

/// Ticket layout version (the first plaintext byte).
const TICKET_VERSION: u8 = 1;
/// version ‖ session id ‖ uid ‖ generation.
const CLAIMS_LEN: usize = 1 + 8 + 8 + 4;
/// nonce ‖ sealed claims ‖ tag.
pub(crate) const TICKET_LEN: usize = NONCE_LEN + CLAIMS_LEN + TAG_LEN;
/// Binds tickets to their purpose: the same key can never open anything else as a ticket.
const TICKET_AAD: &[u8] = b"janus resume ticket v1";
const SECRET_LABEL: &[u8] = b"janus resume secret v1";
const PROOF_LABEL: &[u8] = b"janus resume proof v1";

/// A resumable session's number: random, chosen by the session at login, kept across resumes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SessionId(pub u64);

/// What a ticket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketClaims {
    pub session: SessionId,
    pub uid: i64,
    /// Which ticket of the session (1 at login, +1 per resume).
    pub generation: u32,
}

/// The gateway's ticket key (`secret.resume_key`, or random per process). Only this gateway can
/// mint or open its tickets.
#[derive(Clone)]
pub struct ResumeKey {
    aead: Aes256Gcm,
}

impl core::fmt::Debug for ResumeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ResumeKey(..)")
    }
}

impl ResumeKey {
    /// A key from 32 secret bytes.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            aead: Aes256Gcm::new(key.into()),
        }
    }

    /// A key from a configured secret of any length (its SHA-256).
    pub fn from_secret(secret: &[u8]) -> Self {
        let key: [u8; KEY_LEN] = Sha256::digest(secret).into();
        Self::new(&key)
    }

    /// Mints a ticket; `nonce` must never repeat under this key (12 random bytes).
    pub fn seal(&self, claims: &TicketClaims, nonce: [u8; NONCE_LEN]) -> Bytes {
        let mut plain = [0u8; CLAIMS_LEN];
        let mut w = Writer(&mut plain, 0);
        w.put(&[TICKET_VERSION]);
        w.put(&claims.session.0.to_be_bytes());
        w.put(&claims.uid.to_be_bytes());
        w.put(&claims.generation.to_be_bytes());
        let payload = Payload {
            msg: &plain,
            aad: TICKET_AAD,
        };
        let mut out = Vec::with_capacity(TICKET_LEN);
        out.extend_from_slice(&nonce);
        // Encryption of 21 bytes cannot fail (only inputs over 64 GiB do).
        if let Ok(sealed) = self.aead.encrypt(Nonce::from_slice(&nonce), payload) {
            out.extend_from_slice(&sealed);
        }
        Bytes::from(out)
    }

    /// Opens a ticket minted by [`seal`](Self::seal) under this key.
    pub fn open(&self, ticket: &[u8]) -> Result<TicketClaims, ResumeRefusal> {
        if ticket.len() != TICKET_LEN {
            return Err(ResumeRefusal::Invalid);
        }
        let (nonce, sealed) = ticket.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: TICKET_AAD,
        };
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| ResumeRefusal::Invalid)?;
        let mut r = Reader(&plain);
        if r.take::<1>() != Some([TICKET_VERSION]) {
            return Err(ResumeRefusal::Invalid);
        }
        let (Some(session), Some(uid), Some(generation)) =
            (r.take::<8>(), r.take::<8>(), r.take::<4>())
        else {
            return Err(ResumeRefusal::Invalid);
        };
        Ok(TicketClaims {
            session: SessionId(u64::from_be_bytes(session)),
            uid: i64::from_be_bytes(uid),
            generation: u32::from_be_bytes(generation),
        })
    }
}

struct Writer<'a>(&'a mut [u8], usize);

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.0.get_mut(self.1..self.1 + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.1 += bytes.len();
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
}

/// HMAC-SHA256 (RFC 2104) over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        let digest: [u8; 32] = Sha256::digest(key).into();
        block.iter_mut().zip(digest).for_each(|(b, d)| *b = d);
    } else {
        block.iter_mut().zip(key).for_each(|(b, k)| *b = *k);
    }
    let pad = |byte: u8| {
        let mut p = [byte; BLOCK];
        p.iter_mut().zip(block).for_each(|(p, k)| *p ^= k);
        p
    };
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The secret a resume proves knowledge of: derived from the session key of the connection the
/// ticket was issued on, which only the two ends hold.
pub fn resume_secret(key: &SharedKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SECRET_LABEL);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// The proof a resuming client sends: binds the secret to the new connection's public key and to
/// the ticket, so it cannot be moved to another handshake.
pub fn proof(secret: &[u8; 32], client_pub: &[u8], ticket: &[u8]) -> [u8; 32] {
    hmac_sha256(secret, &[PROOF_LABEL, client_pub, ticket])
}

/// Whether `given` is the proof for `secret`, `client_pub` and `ticket` (constant time).
pub fn verify_proof(secret: &[u8; 32], client_pub: &[u8], ticket: &[u8], given: &[u8]) -> bool {
    let expected = proof(secret, client_pub, ticket);
    given.len() == expected.len()
        && expected
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
