//! Key material from PEM: the PKCS#8 Ed25519 private keys and the X.509 certificates that carry
//! Ed25519 public keys, in the formats upstream's Go code reads and writes
//! (`x509.MarshalPKCS8PrivateKey`, `x509.ParseCertificate`, spec §2.4).
//!
//! Errors name the key (`secret.client_cert`) and say what was found instead of what was
//! expected (an RSA key, an expired certificate, a certificate where a private key belongs), since
//! pasting the wrong file into the wrong key is the usual mistake.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::{ObjectIdentifier, PrivateKeyInfo};
use janus_core::crypto::{SigningKey, VerifyingKey};
use x509_cert::{
    Certificate,
    der::{self, Decode as _},
};

use super::ConfigError;

/// id-Ed25519 (RFC 8410).
pub(crate) const ED25519_OID: ObjectIdentifier = ed25519_dalek::pkcs8::ALGORITHM_OID;

/// Reads a PKCS#8 PEM Ed25519 private key (`-----BEGIN PRIVATE KEY-----`), such as the client
/// certificate key embedded in official clients (`client.key.pem` from `janus keygen`).
pub fn load_client_signing_key(pem: &str) -> Result<SigningKey, ConfigError> {
    parse_private_key("client key", pem)
}

/// Reads the Ed25519 public key of an X.509 PEM certificate (`-----BEGIN CERTIFICATE-----`),
/// such as `server.cert.pem` from `janus keygen`, which clients use to verify the server's
/// handshake signature. The certificate must be within its validity period now.
pub fn load_certificate_key(pem: &str) -> Result<VerifyingKey, ConfigError> {
    parse_certificate_key("certificate", pem, SystemTime::now())
}

/// A PKCS#8 PEM Ed25519 private key; `which` names it in errors.
pub(crate) fn parse_private_key(which: &str, pem: &str) -> Result<SigningKey, ConfigError> {
    let fail = |reason: String| ConfigError::secret(which, reason);
    let der = pem_block(which, pem, "PRIVATE KEY")?;
    let info = PrivateKeyInfo::try_from(der.as_slice())
        .map_err(|e| fail(format!("not a PKCS#8 private key: {e}")))?;
    if info.algorithm.oid != ED25519_OID {
        return Err(fail(format!(
            "the key is {}, expected Ed25519 (OID {ED25519_OID})",
            algorithm_name(&info.algorithm.oid)
        )));
    }
    let key = ed25519_dalek::SigningKey::try_from(info)
        .map_err(|e| fail(format!("malformed Ed25519 private key: {e}")))?;
    Ok(SigningKey::from_seed(&key.to_bytes()))
}

/// The Ed25519 key of an X.509 PEM certificate that is valid at `now`; `which` names it in
/// errors.
pub(crate) fn parse_certificate_key(
    which: &str,
    pem: &str,
    now: SystemTime,
) -> Result<VerifyingKey, ConfigError> {
    let fail = |reason: String| ConfigError::secret(which, reason);
    let der = pem_block(which, pem, "CERTIFICATE")?;
    let cert =
        Certificate::from_der(&der).map_err(|e| fail(format!("not an X.509 certificate: {e}")))?;
    let tbs = &cert.tbs_certificate;
    let spki = &tbs.subject_public_key_info;
    if spki.algorithm.oid != ED25519_OID {
        return Err(fail(format!(
            "the certificate's key is {}, expected Ed25519 (OID {ED25519_OID})",
            algorithm_name(&spki.algorithm.oid)
        )));
    }
    let validity = tbs.validity;
    let (not_before, not_after) = (
        validity.not_before.to_system_time(),
        validity.not_after.to_system_time(),
    );
    if now < not_before {
        return Err(fail(format!(
            "the certificate is not valid yet (NotBefore {}, now {})",
            validity.not_before,
            display_time(now)
        )));
    }
    if now > not_after {
        return Err(fail(format!(
            "the certificate expired (NotAfter {}, now {}); make a new one with `janus keygen`",
            validity.not_after,
            display_time(now)
        )));
    }
    let raw: [u8; 32] = spki
        .subject_public_key
        .as_bytes()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| fail("the certificate's Ed25519 key is not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&raw)
        .map_err(|_| fail("the certificate's Ed25519 key is not a curve point".into()))
}

/// The DER bytes of the first PEM block of `text`, which must be labelled `label`. Text around
/// the block is ignored, as Go's `pem.Decode` does.
fn pem_block(which: &str, text: &str, label: &str) -> Result<Vec<u8>, ConfigError> {
    let fail = |reason: String| ConfigError::secret(which, reason);
    if text.trim().is_empty() {
        return Err(fail(format!(
            "is empty; expected a PEM block \"-----BEGIN {label}-----\" (`janus keygen` makes one)"
        )));
    }
    let block = first_block(text).ok_or_else(|| {
        fail(format!(
            "is not PEM; expected \"-----BEGIN {label}-----\" ... \"-----END {label}-----\""
        ))
    })?;
    let (found, der) =
        der::pem::decode_vec(block.as_bytes()).map_err(|e| fail(format!("malformed PEM: {e}")))?;
    if found != label {
        let hint = match found {
            "CERTIFICATE" => " (a certificate where a private key belongs?)",
            "PRIVATE KEY" => " (a private key where a certificate belongs?)",
            "OPENSSH PRIVATE KEY" => " (OpenSSH format; convert with `ssh-keygen -p -m PKCS8`)",
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PUBLIC KEY" => " (Janus needs Ed25519)",
            _ => "",
        };
        return Err(fail(format!(
            "found a PEM block \"{found}\", expected \"{label}\"{hint}"
        )));
    }
    Ok(der)
}

/// `-----BEGIN ...` through the end of its `-----END ...-----` line.
fn first_block(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")?;
    let from_start = text.get(start..)?;
    let end_marker = from_start.find("-----END ")?;
    let after_marker = from_start.get(end_marker + "-----END ".len()..)?;
    let close = after_marker.find("-----")?;
    let len = end_marker + "-----END ".len() + close + "-----".len();
    from_start.get(..len)
}

fn algorithm_name(oid: &ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.2.840.10045.2.1" => "ECDSA (id-ecPublicKey)",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.3.101.113" => "Ed448",
        _ => "",
    };
    if name.is_empty() {
        format!("OID {oid}")
    } else {
        format!("{name} (OID {oid})")
    }
}

/// `2026-11-23T20:00:54Z`, via der's calendar arithmetic.
fn display_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let whole = Duration::from_secs(since.as_secs());
    match der::DateTime::from_unix_duration(whole) {
        Ok(dt) => dt.to_string(),
        Err(_) => format!("{} s after the epoch", since.as_secs()),
    }
}
