//! `janus keygen DIR`: the secrets of a new deployment.
//!
//! | file | what | who gets it |
//! |---|---|---|
//! | `token.key` | 32 random ASCII letters and digits: their bytes are the AES-256 token key | the gateway (`secret.account_aes_key`) and the account service (`token_key`) |
//! | `server.key.pem` | PKCS#8 PEM Ed25519 key that signs the server's handshake key | the gateway (`secret.server_cert_private_key`) |
//! | `server.cert.pem` | self-signed X.509 with the server public key | clients, to verify `SCHandshake` signatures |
//! | `client.key.pem` | PKCS#8 PEM Ed25519 key that signs the client's handshake key | official client builds |
//! | `client.cert.pem` | self-signed X.509 with the client public key | the gateway (`secret.client_cert`) |
//! | `secret.yaml` | a `secret:` section with the gateway's three values inlined | paste into the gateway config |
//!
//! The formats are those upstream's Go code writes and reads (`x509.MarshalPKCS8PrivateKey`, an
//! Ed25519 certificate), so the files also work with go-pantheon deployments. Certificates are
//! built from x509-cert's types and signed with the key they certify (id-Ed25519 over the DER of
//! the to-be-signed part), valid from an hour ago (clock skew) for ten years. Nothing is ever
//! overwritten: if any of the files exists, nothing is written. Files holding private material
//! are created with mode 0600 on Unix.

use std::{
    fmt,
    fs::OpenOptions,
    io::Write as _,
    path::{Path, PathBuf},
    str::FromStr as _,
    time::{Duration, SystemTime},
};

use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes};
use janus_core::crypto::SigningKey;
use rand_core::{CryptoRngCore, OsRng};
use x509_cert::{
    Certificate, TbsCertificate, Version,
    der::{
        Encode as _, EncodePem as _,
        asn1::{BitString, GeneralizedTime, UtcTime},
        pem::LineEnding,
    },
    name::Name,
    serial_number::SerialNumber,
    spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned},
    time::{Time, Validity},
};

use super::{ConfigError, secrets::ED25519_OID};

/// How long generated certificates are valid.
pub const CERT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far before "now" generated certificates start, so a host whose clock is a little behind
/// the generating one still accepts them.
pub const CERT_BACKDATE: Duration = Duration::from_secs(3600);
/// Length of the generated token key: 32 ASCII bytes, i.e. AES-256.
pub const TOKEN_KEY_LEN: usize = 32;

/// What [`generate`] wrote. Its `Display` is the report `janus keygen` prints.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Generated {
    /// The directory.
    pub dir: PathBuf,
    /// Every file written, in the order of the table in the module docs.
    pub files: Vec<PathBuf>,
    /// The server certificate's public key.
    pub server_public_key: [u8; 32],
    /// The client certificate's public key.
    pub client_public_key: [u8; 32],
}

impl fmt::Display for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = |name: &str| self.dir.join(name).display().to_string();
        writeln!(
            f,
            "wrote the secrets of a new deployment to {}:",
            self.dir.display()
        )?;
        writeln!(
            f,
            "  {}: secret.account_aes_key; give the same value to the account service (token_key)",
            file(TOKEN_KEY)
        )?;
        writeln!(f, "  {}: secret.server_cert_private_key", file(SERVER_KEY))?;
        writeln!(
            f,
            "  {}: for clients, to verify the server (Ed25519 {})",
            file(SERVER_CERT),
            hex(&self.server_public_key)
        )?;
        writeln!(f, "  {}: embed in official client builds", file(CLIENT_KEY))?;
        writeln!(
            f,
            "  {}: secret.client_cert (Ed25519 {})",
            file(CLIENT_CERT),
            hex(&self.client_public_key)
        )?;
        write!(
            f,
            "  {}: the gateway's `secret:` section, ready to paste (keep it private)",
            file(SECRET_YAML)
        )
    }
}

const TOKEN_KEY: &str = "token.key";
const SERVER_KEY: &str = "server.key.pem";
const SERVER_CERT: &str = "server.cert.pem";
const CLIENT_KEY: &str = "client.key.pem";
const CLIENT_CERT: &str = "client.cert.pem";
const SECRET_YAML: &str = "secret.yaml";

/// Generates the secrets of a new deployment into `dir` (created if needed), with OS randomness.
/// Refuses, writing nothing, if any of the files already exists.
pub fn generate(dir: &Path) -> Result<Generated, ConfigError> {
    let now = SystemTime::now();
    let validity = (
        now.checked_sub(CERT_BACKDATE).unwrap_or(now),
        now.checked_add(CERT_LIFETIME).unwrap_or(now),
    );
    generate_with(dir, &mut OsRng, validity)
}

/// [`generate`] with the randomness and the certificates' validity (not before, not after)
/// passed in.
pub(crate) fn generate_with(
    dir: &Path,
    rng: &mut impl CryptoRngCore,
    validity: (SystemTime, SystemTime),
) -> Result<Generated, ConfigError> {
    let names = [
        TOKEN_KEY,
        SERVER_KEY,
        SERVER_CERT,
        CLIENT_KEY,
        CLIENT_CERT,
        SECRET_YAML,
    ];
    if let Some(existing) = names.iter().map(|n| dir.join(n)).find(|p| p.exists()) {
        return Err(ConfigError::io(
            existing,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; keygen never overwrites key material (choose an empty directory)",
            ),
        ));
    }

    let token_key = token_key(rng)?;
    let server_seed = seed(rng)?;
    let client_seed = seed(rng)?;
    let server_key_pem = private_key_pem(&server_seed)?;
    let client_key_pem = private_key_pem(&client_seed)?;
    let server = SigningKey::from_seed(&server_seed);
    let client = SigningKey::from_seed(&client_seed);
    let server_cert_pem =
        self_signed_certificate(&server, "janus-server", validity, &serial(rng)?)?;
    let client_cert_pem =
        self_signed_certificate(&client, "janus-client", validity, &serial(rng)?)?;
    let secret_yaml = secret_section(&token_key, &server_key_pem, &client_cert_pem);

    std::fs::create_dir_all(dir).map_err(|e| ConfigError::io(dir, e))?;
    let files = [
        (TOKEN_KEY, format!("{token_key}\n"), true),
        (SERVER_KEY, server_key_pem, true),
        (SERVER_CERT, server_cert_pem, false),
        (CLIENT_KEY, client_key_pem, true),
        (CLIENT_CERT, client_cert_pem, false),
        (SECRET_YAML, secret_yaml, true),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, contents, private) in &files {
        let path = dir.join(name);
        write_new(&path, contents, *private)?;
        written.push(path);
    }
    Ok(Generated {
        dir: dir.to_path_buf(),
        files: written,
        server_public_key: server.verifying_key().to_bytes(),
        client_public_key: client.verifying_key().to_bytes(),
    })
}

/// A self-signed X.509 certificate (PEM) for `key`, subject and issuer `CN=<common_name>`, valid
/// over `validity` (not before, not after).
pub(crate) fn self_signed_certificate(
    key: &SigningKey,
    common_name: &str,
    validity: (SystemTime, SystemTime),
    serial: &[u8],
) -> Result<String, ConfigError> {
    let fail = |e: x509_cert::der::Error| {
        ConfigError::secret(
            format!("certificate {common_name}"),
            format!("cannot encode: {e}"),
        )
    };
    let algorithm = AlgorithmIdentifierOwned {
        oid: ED25519_OID,
        parameters: None,
    };
    let name = Name::from_str(&format!("CN={common_name}")).map_err(fail)?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(serial).map_err(fail)?,
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: Validity {
            not_before: cert_time(validity.0).map_err(fail)?,
            not_after: cert_time(validity.1).map_err(fail)?,
        },
        subject: name,
        subject_public_key_info: SubjectPublicKeyInfoOwned {
            algorithm: algorithm.clone(),
            subject_public_key: BitString::from_bytes(&key.verifying_key().to_bytes())
                .map_err(fail)?,
        },
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: None,
    };
    let signature = key.sign(&tbs.to_der().map_err(fail)?);
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature).map_err(fail)?,
    };
    cert.to_pem(LineEnding::LF).map_err(fail)
}

/// UTCTime through 2049 and GeneralizedTime after, as RFC 5280 §4.1.2.5 asks.
fn cert_time(t: SystemTime) -> x509_cert::der::Result<Time> {
    match UtcTime::from_system_time(t) {
        Ok(utc) => Ok(Time::UtcTime(utc)),
        Err(_) => GeneralizedTime::from_system_time(t).map(Time::GeneralTime),
    }
}

/// PKCS#8 v1 without the optional public key: byte for byte what Go's
/// `x509.MarshalPKCS8PrivateKey` writes for an Ed25519 key.
fn private_key_pem(seed: &[u8; 32]) -> Result<String, ConfigError> {
    let bytes = KeypairBytes {
        secret_key: *seed,
        public_key: None,
    };
    bytes
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| ConfigError::secret("private key", format!("cannot encode: {e}")))
}

fn fill(rng: &mut impl CryptoRngCore, buf: &mut [u8]) -> Result<(), ConfigError> {
    rng.try_fill_bytes(buf)
        .map_err(|e| ConfigError::secret("keygen", format!("no randomness from the OS: {e}")))
}

fn seed(rng: &mut impl CryptoRngCore) -> Result<[u8; 32], ConfigError> {
    let mut seed = [0u8; 32];
    fill(rng, &mut seed)?;
    Ok(seed)
}

/// 16 random bytes, positive (top bit clear) and of full length (next bit set).
fn serial(rng: &mut impl CryptoRngCore) -> Result<[u8; 16], ConfigError> {
    let mut serial = [0u8; 16];
    fill(rng, &mut serial)?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial)
}

/// [`TOKEN_KEY_LEN`] characters from `A-Za-z0-9`, uniformly (rejection sampling), as the account
/// service's own key generator makes them.
fn token_key(rng: &mut impl CryptoRngCore) -> Result<String, ConfigError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut key = String::with_capacity(TOKEN_KEY_LEN);
    let mut buf = [0u8; 64];
    while key.len() < TOKEN_KEY_LEN {
        fill(rng, &mut buf)?;
        for b in buf {
            // 248 = 4 × 62: bytes above it would favour the first letters.
            if b < 248 && key.len() < TOKEN_KEY_LEN {
                if let Some(&c) = ALPHABET.get(usize::from(b % 62)) {
                    key.push(char::from(c));
                }
            }
        }
    }
    Ok(key)
}

/// The `secret:` section with the gateway's values inlined as YAML literal blocks.
fn secret_section(token_key: &str, server_key_pem: &str, client_cert_pem: &str) -> String {
    let block = |pem: &str| -> String {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "# Generated by `janus keygen`. PRIVATE: holds the token key and the server key.\n\
         # Paste into the gateway configuration, or feed each value from the environment\n\
         # (account_aes_key: ${{ACCOUNT_AES_KEY}}, ...).\n\
         secret:\n  \
         account_aes_key: \"{token_key}\"\n  \
         server_cert_version: 1\n  \
         server_cert_private_key: |\n{}  \
         client_cert_version: 1\n  \
         client_cert: |\n{}",
        block(server_key_pem),
        block(client_cert_pem)
    )
}

fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), ConfigError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| ConfigError::io(path, e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| ConfigError::io(path, e))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
