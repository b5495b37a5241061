//! The handshake and packet cryptography of spec §2–§3, byte-compatible with go-pantheon.
//!
//! * X25519 key agreement; the raw 32-byte shared secret is the AES-256-GCM key (no KDF).
//! * Ed25519 signatures over the raw 32-byte X25519 public keys.
//! * Packets: `nonce(12) ‖ ciphertext ‖ tag(16)`, a fresh random nonce per packet, no AAD.
//!
//! Randomness is always passed in (nonces, ephemeral secrets). Builds with `cfg(fuzzing)` skip
//! signature and tag checks so a fuzzer can reach established sessions; those builds must never
//! be deployed.

#[cfg_attr(fuzzing, allow(unused_imports))]
use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce, Tag,
    aead::{AeadInPlace, generic_array::GenericArray},
};
use core::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
#[cfg_attr(fuzzing, allow(unused_imports))]
use ed25519_dalek::{Signer as _, Verifier as _};
use prost::Message;

use crate::{
    codec::{MAX_HEAD, PacketEncoding},
    frame::{self, HEADER_LEN},
};

/// AES-GCM nonce length, prepended to every sealed packet.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length, appended to every sealed packet.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed packet adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// X25519 public key and shared secret length.
pub const KEY_LEN: usize = 32;
/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;

/// Why a cryptographic step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A sealed body shorter than nonce plus tag.
    #[error("sealed packet of {len} bytes is shorter than nonce and tag")]
    Truncated { len: usize },
    /// The tag did not verify: wrong key, corrupted or forged.
    #[error("packet authentication failed")]
    BadTag,
    /// A public key that is not 32 bytes.
    #[error("public key of {len} bytes, expected 32")]
    BadKeyLength { len: usize },
    /// The peer's X25519 key is a low-order point: the shared secret would be predictable.
    #[error("low-order X25519 public key")]
    LowOrderPoint,
    /// A signature that is not 64 bytes or does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A plaintext too large for the int32 length prefix.
    #[error("packet of {len} bytes is too large to frame")]
    TooLarge { len: usize },
}

/// AES-256-GCM under the session key. Both directions share the key, as upstream does; the random
/// 96-bit nonces keep the collision probability negligible for any realistic session length.
#[derive(Clone)]
pub struct PacketCipher {
    aead: Aes256Gcm,
}

impl core::fmt::Debug for PacketCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PacketCipher(..)")
    }
}

impl PacketCipher {
    /// A cipher keyed by a 32-byte X25519 shared secret.
    pub fn new(key: &SharedKey) -> Self {
        Self {
            aead: Aes256Gcm::new(GenericArray::from_slice(&key.0)),
        }
    }

    /// Appends one frame, `len ‖ nonce ‖ AES-GCM(msg) ‖ tag`, to `out`, encoding and encrypting in
    /// place (no intermediate buffer). Returns the frame's total length.
    pub fn seal_message<M: Message>(
        &self,
        nonce: [u8; NONCE_LEN],
        msg: &M,
        out: &mut BytesMut,
    ) -> Result<usize, CryptoError> {
        self.seal_message_with_len(nonce, msg, msg.encoded_len(), out)
    }

    /// [`seal_message`](Self::seal_message) for a caller that already knows
    /// `msg.encoded_len()` (computing it walks every field; the hot path does it once).
    pub fn seal_message_with_len<M: Message>(
        &self,
        nonce: [u8; NONCE_LEN],
        msg: &M,
        encoded_len: usize,
        out: &mut BytesMut,
    ) -> Result<usize, CryptoError> {
        // `encode_raw` skips `encode`'s own `encoded_len` pass; `seal_with` reserved the space and
        // checks that exactly `encoded_len` bytes were written.
        self.seal_with(nonce, encoded_len, out, |out| msg.encode_raw(out))
    }

    /// Like [`seal_message`](Self::seal_message) for an already serialized packet (a broadcast is
    /// serialized once and sealed per session).
    pub fn seal_bytes(
        &self,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
        out: &mut BytesMut,
    ) -> Result<usize, CryptoError> {
        self.seal_with(nonce, plaintext.len(), out, |out| out.put_slice(plaintext))
    }

    /// Appends `len ‖ nonce ‖ AES-GCM(plaintext) ‖ tag`, where `write` appends exactly `len`
    /// plaintext bytes (checked).
    pub(crate) fn seal_with(
        &self,
        nonce: [u8; NONCE_LEN],
        len: usize,
        out: &mut BytesMut,
        write: impl FnOnce(&mut BytesMut),
    ) -> Result<usize, CryptoError> {
        let body_len = len + SEAL_OVERHEAD;
        let header = frame::header(body_len).map_err(|_| CryptoError::TooLarge { len })?;
        let start = out.len();
        out.reserve(HEADER_LEN + body_len);
        // Prefix and nonce in one copy.
        let mut prefix = [0u8; HEADER_LEN + NONCE_LEN];
        let (prefix_len, prefix_nonce) = prefix.split_at_mut(HEADER_LEN);
        prefix_len.copy_from_slice(&header);
        prefix_nonce.copy_from_slice(&nonce);
        out.put_slice(&prefix);
        let text_start = out.len();
        write(out);
        if out.len() - text_start != len {
            // An encoder that wrote a different length than announced would corrupt the frame.
            out.truncate(start);
            return Err(CryptoError::TooLarge { len });
        }
        self.seal_tail(&nonce, out, start, text_start)
    }

    /// Appends one frame holding `packet`, sealed: [`seal_with`](Self::seal_with) with the
    /// length prefix, the nonce and the bytes before `data` written in one copy.
    pub(crate) fn seal_packet(
        &self,
        nonce: [u8; NONCE_LEN],
        packet: &PacketEncoding<'_>,
        out: &mut BytesMut,
    ) -> Result<usize, CryptoError> {
        let len = packet.len();
        let body_len = len + SEAL_OVERHEAD;
        let header = frame::header(body_len).map_err(|_| CryptoError::TooLarge { len })?;
        let start = out.len();
        out.reserve(HEADER_LEN + body_len);
        let mut prefix = [0u8; HEADER_LEN + NONCE_LEN + MAX_HEAD];
        let (prefix_len, rest) = prefix.split_at_mut(HEADER_LEN);
        let (prefix_nonce, prefix_head) = rest.split_at_mut(NONCE_LEN);
        prefix_len.copy_from_slice(&header);
        prefix_nonce.copy_from_slice(&nonce);
        let head = packet.head();
        let prefix_head = prefix_head
            .get_mut(..head.len())
            .ok_or(CryptoError::TooLarge { len })?;
        prefix_head.copy_from_slice(head);
        let prefix = prefix
            .get(..HEADER_LEN + NONCE_LEN + head.len())
            .ok_or(CryptoError::TooLarge { len })?;
        out.put_slice(prefix);
        out.put_slice(packet.data());
        out.put_slice(packet.tail());
        self.seal_tail(&nonce, out, start, start + HEADER_LEN + NONCE_LEN)
    }

    /// Encrypts the plaintext at `out[text_start..]` in place and appends the tag; returns the
    /// length of the frame that starts at `out[start]`. On failure the frame is removed. The one
    /// call of the cipher's seal, wherever the frame's bytes came from.
    fn seal_tail(
        &self,
        nonce: &[u8; NONCE_LEN],
        out: &mut BytesMut,
        start: usize,
        text_start: usize,
    ) -> Result<usize, CryptoError> {
        let len = out.len().saturating_sub(text_start);
        let sealed = match out.get_mut(text_start..) {
            Some(text) => self.encrypt_in_place(nonce, text),
            None => None,
        };
        match sealed {
            Some(tag) => {
                out.put_slice(&tag);
                Ok(out.len() - start)
            }
            None => {
                out.truncate(start);
                Err(CryptoError::TooLarge { len })
            }
        }
    }

    /// Opens a sealed body (`nonce ‖ ciphertext ‖ tag`) in place and returns the plaintext, a view
    /// into the same allocation (no copy, no reference-count traffic beyond the freeze).
    pub fn open(&self, body: BytesMut) -> Result<Bytes, CryptoError> {
        self.open_mut(body).map(BytesMut::freeze)
    }

    /// [`open`](Self::open), leaving the plaintext mutable: the body itself, narrowed.
    pub fn open_mut(&self, mut body: BytesMut) -> Result<BytesMut, CryptoError> {
        let text = self.open_within(&mut body)?;
        body.truncate(text.end);
        body.advance(text.start);
        Ok(body)
    }

    /// Opens the sealed body `body` in place; returns where the plaintext is in it (callers
    /// narrow their buffer once, to what they keep of the plaintext).
    pub(crate) fn open_within(&self, body: &mut [u8]) -> Result<Range<usize>, CryptoError> {
        let len = body.len();
        let text_len = len
            .checked_sub(SEAL_OVERHEAD)
            .ok_or(CryptoError::Truncated { len })?;
        let (nonce, rest) = body.split_at_mut(NONCE_LEN);
        let (text, tag) = rest.split_at_mut(text_len);
        self.open_in_place(nonce, text, tag)?;
        Ok(NONCE_LEN..NONCE_LEN + text_len)
    }

    #[cfg(not(fuzzing))]
    fn encrypt_in_place(&self, nonce: &[u8; NONCE_LEN], text: &mut [u8]) -> Option<[u8; TAG_LEN]> {
        self.aead
            .encrypt_in_place_detached(Nonce::from_slice(nonce), &[], text)
            .ok()
            .map(Into::into)
    }

    /// Fuzzing builds leave the plaintext as the ciphertext (with a zero tag), as their opening
    /// expects, so what one side seals the other reads.
    #[cfg(fuzzing)]
    fn encrypt_in_place(&self, nonce: &[u8; NONCE_LEN], text: &mut [u8]) -> Option<[u8; TAG_LEN]> {
        let _ = (&self.aead, nonce, text);
        Some([0; TAG_LEN])
    }

    #[cfg(not(fuzzing))]
    fn open_in_place(&self, nonce: &[u8], text: &mut [u8], tag: &[u8]) -> Result<(), CryptoError> {
        self.aead
            .decrypt_in_place_detached(Nonce::from_slice(nonce), &[], text, Tag::from_slice(tag))
            .map_err(|_| CryptoError::BadTag)
    }

    /// Fuzzing builds take the ciphertext as plaintext so inputs reach the packet decoder.
    #[cfg(fuzzing)]
    fn open_in_place(
        &self,
        _nonce: &[u8],
        _text: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        let _ = (&self.aead, tag);
        Ok(())
    }
}

/// Nonces for the packets one side seals under a session key: a random 32-bit prefix and a 64-bit
/// counter, so this side never repeats a nonce, without drawing randomness per packet.
///
/// The receiver treats the 12 bytes as opaque, so this is wire-compatible with upstream's random
/// nonces. Both directions share the key (spec §3.2); the peer's random nonces collide with this
/// sequence with probability about 2⁻⁹⁶ per pair, below the birthday bound that random nonces
/// on both sides already accept.
#[derive(Debug, Clone)]
pub struct NonceSequence {
    prefix: [u8; 4],
    counter: u64,
}

impl NonceSequence {
    /// A sequence with a random `prefix`, counting from zero.
    pub fn new(prefix: [u8; 4]) -> Self {
        Self { prefix, counter: 0 }
    }

    /// The next nonce. After 2⁶⁴ packets it would wrap; no session lives that long.
    pub fn next_nonce(&mut self) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        let (prefix, counter) = nonce.split_at_mut(4);
        prefix.copy_from_slice(&self.prefix);
        counter.copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        nonce
    }
}

/// The raw 32-byte X25519 shared secret, used directly as the AES-256 key (spec §2.4 step 6).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKey([u8; KEY_LEN]);

impl SharedKey {
    /// Wraps key bytes (for tests and the unencrypted-mode zero key).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

/// One side's ephemeral X25519 key pair, from 32 caller-supplied random bytes.
pub struct EphemeralKey {
    secret: x25519_dalek::StaticSecret,
    public: [u8; KEY_LEN],
}

impl core::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EphemeralKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl EphemeralKey {
    /// A key pair from 32 random bytes (clamped by X25519, as Go's curve25519 does).
    pub fn from_secret(bytes: [u8; KEY_LEN]) -> Self {
        let secret = x25519_dalek::StaticSecret::from(bytes);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// A fresh key pair drawn from `rng`.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self::from_secret(bytes)
    }

    /// The raw public key, as sent in `CSHandshake.pub` / `SCHandshake.pub`.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// X25519 with the peer's raw public key. Rejects a key that is not 32 bytes and a low-order
    /// point (whose shared secret an attacker could predict); upstream rejects the latter too.
    pub fn agree(&self, peer_public: &[u8]) -> Result<SharedKey, CryptoError> {
        let peer: [u8; KEY_LEN] =
            peer_public
                .try_into()
                .map_err(|_| CryptoError::BadKeyLength {
                    len: peer_public.len(),
                })?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(CryptoError::LowOrderPoint);
        }
        Ok(SharedKey(shared.to_bytes()))
    }
}

/// An Ed25519 signing key: the server certificate key on the gateway, the client certificate key
/// in clients.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("SigningKey")
            .field(&self.verifying_key())
            .finish()
    }
}

impl SigningKey {
    /// From the 32-byte Ed25519 seed (the PKCS#8 private key body).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs `msg` (deterministic, RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(msg).to_bytes()
    }
}

/// An Ed25519 public key: the client certificate's on the gateway, the server's in clients.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl core::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VerifyingKey(")?;
        for b in self.0.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl VerifyingKey {
    /// From the raw 32-byte public key; fails on bytes that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// The raw public key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Verifies `signature` over `msg`. Any signature that is not 64 bytes fails.
    #[cfg(not(fuzzing))]
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| CryptoError::BadSignature)?;
        self.0
            .verify(msg, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Fuzzing builds accept any 64-byte signature.
    #[cfg(fuzzing)]
    pub fn verify(&self, _msg: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        if signature.len() == SIGNATURE_LEN {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests;
