//! The account-service (Lares) token: `base64url_padded(nonce(12) ‖ AES-GCM(AuthToken) ‖ tag(16))`
//! under the shared token key (spec §2.1, §2.4).

#[cfg_attr(fuzzing, allow(unused_imports))]
use aes_gcm::{
    Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce, Tag,
    aead::{AeadInPlace, consts::U12},
    aes::Aes192,
};
use base64::Engine as _;
use janus_proto::gate::intra::v1::AuthToken;
use prost::Message;

use crate::crypto::{NONCE_LEN, SEAL_OVERHEAD, TAG_LEN};

/// Longest token string accepted. A Lares token is about 80 characters; this stops a peer from
/// making the gateway base64-decode and decrypt megabytes (the frame limit bounds it anyway).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The configured key is not 16, 24 or 32 bytes.
    #[error("token key of {len} bytes; AES needs 16, 24 or 32")]
    BadKeyLength { len: usize },
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token of {len} characters is too long")]
    TooLong { len: usize },
    /// Not base64 URL-safe with padding.
    #[error("token is not base64url")]
    Base64,
    /// Too short, or the AES-GCM tag did not verify (wrong key, tampered).
    #[error("token does not decrypt under the token key")]
    Decrypt,
    /// Decrypted, but not an `AuthToken`.
    #[error("token plaintext is not an AuthToken")]
    Decode,
}

// Fuzzing builds neither seal nor open tokens, so the keys go unread there.
#[cfg_attr(fuzzing, allow(dead_code))]
enum Cipher {
    Aes128(Aes128Gcm),
    Aes192(AesGcm<Aes192, U12>),
    Aes256(Aes256Gcm),
}

/// The token key shared with the account service (`secret.account_aes_key`): the raw bytes of the
/// configured string, 16, 24 or 32 of them (AES-128/192/256-GCM).
pub struct TokenKey(Cipher);

impl core::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let bits = match self.0 {
            Cipher::Aes128(_) => 128,
            Cipher::Aes192(_) => 192,
            Cipher::Aes256(_) => 256,
        };
        write!(f, "TokenKey(AES-{bits}-GCM)")
    }
}

impl TokenKey {
    /// A key from the raw bytes of the configured string.
    pub fn new(key: &[u8]) -> Result<Self, TokenError> {
        let bad = |_| TokenError::BadKeyLength { len: key.len() };
        Ok(Self(match key.len() {
            16 => Cipher::Aes128(Aes128Gcm::new_from_slice(key).map_err(bad)?),
            24 => Cipher::Aes192(AesGcm::new_from_slice(key).map_err(bad)?),
            32 => Cipher::Aes256(Aes256Gcm::new_from_slice(key).map_err(bad)?),
            len => return Err(TokenError::BadKeyLength { len }),
        }))
    }

    /// Decodes, decrypts and parses a token. Expiry and replay are the handshake's business.
    pub fn open(&self, token: &str) -> Result<AuthToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong { len: token.len() });
        }
        let mut raw = base64::engine::general_purpose::URL_SAFE
            .decode(token)
            .map_err(|_| TokenError::Base64)?;
        if raw.len() < SEAL_OVERHEAD {
            return Err(TokenError::Decrypt);
        }
        let (nonce, rest) = raw.split_at_mut(NONCE_LEN);
        let (text, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        self.open_in_place(nonce, text, tag)?;
        AuthToken::decode(&*text).map_err(|_| TokenError::Decode)
    }

    #[cfg(not(fuzzing))]
    fn open_in_place(&self, nonce: &[u8], text: &mut [u8], tag: &[u8]) -> Result<(), TokenError> {
        let (nonce, tag) = (Nonce::from_slice(nonce), Tag::from_slice(tag));
        match &self.0 {
            Cipher::Aes128(c) => c.decrypt_in_place_detached(nonce, &[], text, tag),
            Cipher::Aes192(c) => c.decrypt_in_place_detached(nonce, &[], text, tag),
            Cipher::Aes256(c) => c.decrypt_in_place_detached(nonce, &[], text, tag),
        }
        .map_err(|_| TokenError::Decrypt)
    }

    /// Fuzzing builds take the ciphertext as the plaintext.
    #[cfg(fuzzing)]
    fn open_in_place(&self, nonce: &[u8], _text: &mut [u8], tag: &[u8]) -> Result<(), TokenError> {
        let _ = (nonce, tag, &self.0);
        Ok(())
    }

    #[cfg(not(fuzzing))]
    fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], buf: &mut [u8]) -> Vec<u8> {
        let n = Nonce::from_slice(nonce);
        let tag = match &self.0 {
            Cipher::Aes128(c) => c.encrypt_in_place_detached(n, &[], buf),
            Cipher::Aes192(c) => c.encrypt_in_place_detached(n, &[], buf),
            Cipher::Aes256(c) => c.encrypt_in_place_detached(n, &[], buf),
        };
        // Encryption fails only for plaintexts over 64 GiB; a token is a few dozen bytes.
        tag.map(|t| t.to_vec()).unwrap_or_default()
    }

    /// Fuzzing builds leave the token in clear, as their [`open`](Self::open) expects it.
    #[cfg(fuzzing)]
    fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], _buf: &mut [u8]) -> Vec<u8> {
        let _ = (nonce, &self.0);
        vec![0; TAG_LEN]
    }

    /// Seals a token as the account service does (for tests, tools and dev deployments). The
    /// nonce must be random and never reused with the same key.
    pub fn seal(&self, token: &AuthToken, nonce: [u8; NONCE_LEN]) -> String {
        let mut buf = token.encode_to_vec();
        let tag = self.seal_in_place(&nonce, &mut buf);
        let mut raw = Vec::with_capacity(SEAL_OVERHEAD + buf.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&buf);
        raw.extend_from_slice(&tag);
        base64::engine::general_purpose::URL_SAFE.encode(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_token() -> AuthToken {
        AuthToken {
            rand: "abcdefgh".into(),
            color: "local".into(),
            account_id: 10001,
            timeout: 1_700_000_600,
            status: 1,
            ..Default::default()
        }
    }

    const V4: &str = "AAECAwQFBgcICQoLJ-3aHrp8t8rPtGO7HaCyZYoQkskUZJJEitqDtZNXb_tdhmvqcdmbGhV4veM=";

    /// spec §9 V4, both directions.
    #[test]
    fn v4_token_vector() {
        assert_eq!(
            hex::encode(v4_token().encode_to_vec()),
            "0a08616263646566676812056c6f63616c18914e28d8e6cfaa063801"
        );
        let key = TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let nonce: [u8; 12] = core::array::from_fn(|i| i as u8);
        assert_eq!(key.seal(&v4_token(), nonce), V4);
        assert_eq!(key.open(V4).unwrap(), v4_token());
    }

    #[test]
    fn every_aes_key_size_round_trips() {
        for len in [16, 24, 32] {
            let key = TokenKey::new(&vec![b'k'; len]).unwrap();
            let sealed = key.seal(&v4_token(), [5; 12]);
            assert_eq!(key.open(&sealed).unwrap(), v4_token());
        }
        assert_eq!(
            TokenKey::new(b"short").err(),
            Some(TokenError::BadKeyLength { len: 5 })
        );
    }

    #[test]
    fn refusals_are_typed() {
        let key = TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let other = TokenKey::new(b"fedcba9876543210fedcba9876543210").unwrap();
        assert_eq!(other.open(V4), Err(TokenError::Decrypt));
        assert_eq!(key.open("not base64 !"), Err(TokenError::Base64));
        // standard (non URL-safe) alphabet is refused, as Go's URLEncoding does
        assert_eq!(
            key.open(&V4.replace('-', "+").replace('_', "/")),
            Err(TokenError::Base64)
        );
        assert_eq!(key.open("AAAA"), Err(TokenError::Decrypt));
        assert_eq!(
            key.open(&"A".repeat(MAX_TOKEN_LEN + 4)),
            Err(TokenError::TooLong {
                len: MAX_TOKEN_LEN + 4
            })
        );
        // a well-formed seal of something that is not an AuthToken
        let garbage = {
            let mut t = v4_token();
            t.rand = String::new();
            let s = key.seal(&t, [0; 12]);
            let mut raw = base64::engine::general_purpose::URL_SAFE.decode(s).unwrap();
            raw.truncate(12);
            // seal 0xff bytes directly
            let c = Aes256Gcm::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
            let mut text = vec![0xff; 8];
            let tag = c
                .encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), &[], &mut text)
                .unwrap();
            raw.extend_from_slice(&text);
            raw.extend_from_slice(&tag);
            base64::engine::general_purpose::URL_SAFE.encode(raw)
        };
        assert_eq!(key.open(&garbage), Err(TokenError::Decode));
    }
}
