//! The `janus-bench` command line, and turning it into [`BenchOptions`]: reading the token key,
//! the client certificate key and, optionally, the server's public key from where the user points.

use std::{path::PathBuf, time::Duration};

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use janus_core::{
    crypto::{SigningKey, VerifyingKey},
    testing::TEST_TOKEN_KEY,
};
use x509_cert::der::{DecodePem as _, Encode as _};

use super::options::{BenchOptions, Mode, Target};

/// Where the dev deployment keeps its token key, relative to the repository root.
pub const DEV_TOKEN_KEY_PATH: &str = "configs/dev/token.key";
/// The dev deployment's client certificate key (what `configs/local.yaml` expects clients to sign with).
pub const DEV_CLIENT_KEY_PATH: &str = "configs/dev/client.key.pem";
/// The dev deployment's server certificate (to verify `SCHandshake` signatures).
pub const DEV_SERVER_CERT_PATH: &str = "configs/dev/server.cert.pem";

/// Load generator for the Janus gateway: handshake storms and echo traffic over TCP or
/// WebSocket, speaking the real client protocol.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "janus-bench", version)]
pub struct BenchArgs {
    /// Gateway TCP address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub addr: String,
    /// Connect over WebSocket to this URL instead of TCP to --addr (e.g. ws://127.0.0.1:7002/ws).
    #[arg(long, value_name = "URL")]
    pub ws: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    pub clients: u32,
    /// How long to start new handshakes and requests (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// handshake: connect, handshake, close, repeat. echo: connect once, exchange packets.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Echo requests per second per client; 0 = closed loop (one request in flight per client).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Echo request payload, bytes (module 1 seq 2 sends a CSHeartbeat instead).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Echo request module.
    #[arg(long, default_value_t = 3)]
    pub module: i32,
    /// Echo request seq.
    #[arg(long, default_value_t = 1)]
    pub seq: i32,
    /// Spread client starts over this time; rates are measured after it.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// Connect, handshake, write and per-request timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Grace for requests still in flight after --duration.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The gateway runs with `encrypted: false`.
    #[arg(long)]
    pub unencrypted: bool,
    /// Token key, the raw string shared with the account service [default: the contents of
    /// configs/dev/token.key if present, else the test-vector key].
    #[arg(long, value_name = "KEY", conflicts_with = "token_key_file")]
    pub token_key: Option<String>,
    /// Read the token key from this file (trailing newline ignored).
    #[arg(long, value_name = "FILE")]
    pub token_key_file: Option<PathBuf>,
    /// Client certificate private key, PKCS#8 PEM (Ed25519) [default: the test-vector key].
    #[arg(long, value_name = "PEM")]
    pub client_key: Option<PathBuf>,
    /// Verify the server's handshake signature with this key: a PEM file (X.509 certificate,
    /// public key, or the server's private key) or 64 hex digits [default: not verified].
    #[arg(long, value_name = "CERT|HEX")]
    pub server_key_pub: Option<String>,
    /// Account id of client 0 (underscores allowed).
    #[arg(long, default_value = "1_000_000", value_parser = parse_integer)]
    pub uid_base: i64,
    /// Token colour (routing group).
    #[arg(long, default_value = "local")]
    pub color: String,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// The gateway's metrics URL (e.g. http://127.0.0.1:8100/metrics): report its resident memory
    /// per connection (read before connecting and at the end, while connected; see --mode idle).
    #[arg(long)]
    pub metrics: Option<String>,
    /// Runtime worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Requests made after the ramp but not measured (latencies and rates start after it).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Report the CPU time of this process over the measured window (repeatable: the system
    /// under test), next to the generator's own. In --mode idle without --metrics, their summed
    /// resident memory (VmRSS) is the memory per connection's measure.
    #[arg(long = "watch-pid", value_name = "PID")]
    pub watch_pids: Vec<u32>,
    /// The gateway's gRPC push service, for --mode broadcast (e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "HOST:PORT")]
    pub push_addr: Option<String>,
    /// Broadcasts in flight (asked for, not yet delivered everywhere) in --mode broadcast.
    #[arg(long, default_value_t = super::options::DEFAULT_PUSH_WINDOW)]
    pub push_window: u32,
    /// Do not benchmark: time the server's handshake primitives (token open, Ed25519 verify,
    /// X25519 keygen and agreement, Ed25519 sign) on this core for about two seconds and print
    /// the handshakes per second they allow, as JSON.
    #[arg(long)]
    pub crypto_bound: bool,
    /// Do not benchmark: serve TCP echo on ADDR (the backend behind a TCP proxy for
    /// `--mode frames`), until killed.
    #[arg(long, value_name = "ADDR")]
    pub echo_server: Option<String>,
}

impl BenchArgs {
    /// The options these arguments describe, plus notes for the user about the defaults taken
    /// (which token key, whether the server is verified). `progress` is left off: the binary
    /// decides it from `--quiet` and whether stderr is a terminal.
    pub fn to_options(&self) -> anyhow::Result<(BenchOptions, Vec<String>)> {
        let mut notes = Vec::new();
        let defaults = BenchOptions::default();
        // With no keys given, the dev key set (configs/dev, what configs/local.yaml uses) when it
        // is there, else the test vectors' keys.
        let mut dev_set = false;
        let token_key = match (&self.token_key, &self.token_key_file) {
            (Some(key), _) => key.as_bytes().to_vec(),
            (None, Some(path)) => read_key_file(path)?,
            (None, None) => match std::fs::read(DEV_TOKEN_KEY_PATH) {
                Ok(raw) => {
                    notes.push(format!("token key: {DEV_TOKEN_KEY_PATH}"));
                    dev_set = true;
                    trim_line_end(raw)
                }
                Err(_) => {
                    notes.push("token key: the test-vector key (janus_core::testing)".into());
                    TEST_TOKEN_KEY.to_vec()
                }
            },
        };
        let client_key = match &self.client_key {
            Some(path) => load_client_key(path)?,
            None if dev_set && std::path::Path::new(DEV_CLIENT_KEY_PATH).exists() => {
                notes.push(format!("client key: {DEV_CLIENT_KEY_PATH}"));
                load_client_key(std::path::Path::new(DEV_CLIENT_KEY_PATH))?
            }
            None => defaults.client_key,
        };
        let server_key = match &self.server_key_pub {
            Some(spec) => Some(load_server_key(spec)?),
            None if dev_set && std::path::Path::new(DEV_SERVER_CERT_PATH).exists() => {
                notes.push(format!(
                    "server signatures verified with {DEV_SERVER_CERT_PATH}"
                ));
                Some(load_server_key(DEV_SERVER_CERT_PATH)?)
            }
            None => {
                if !self.unencrypted {
                    notes.push(
                        "server signatures are NOT verified (pass --server-key-pub to verify)"
                            .into(),
                    );
                }
                None
            }
        };
        let target = match &self.ws {
            Some(url) => Target::WebSocket(url.clone()),
            None => Target::Tcp(self.addr.clone()),
        };
        let options = BenchOptions {
            target,
            clients: self.clients,
            duration: self.duration,
            mode: self.mode,
            rate: self.rate,
            payload: self.payload,
            module: self.module,
            seq: self.seq,
            ramp: self.ramp,
            timeout: self.timeout,
            drain: self.drain,
            token_key,
            encrypted: !self.unencrypted,
            client_key,
            server_key,
            uid_base: self.uid_base,
            color: self.color.clone(),
            progress: false,
            metrics_url: self.metrics.clone(),
            warmup: self.warmup,
            watch_pids: self.watch_pids.clone(),
            push_addr: self.push_addr.clone(),
            push_window: self.push_window,
        };
        options.validate()?;
        Ok((options, notes))
    }
}

/// Parses `10s`, `1.5s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Parses an integer that may contain `_` separators.
fn parse_integer(s: &str) -> Result<i64, String> {
    s.replace('_', "")
        .parse()
        .map_err(|e| format!("{s:?}: {e}"))
}

fn trim_line_end(mut raw: Vec<u8>) -> Vec<u8> {
    while raw.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        raw.pop();
    }
    raw
}

fn read_key_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let raw =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(trim_line_end(raw))
}

fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// A PKCS#8 PEM Ed25519 private key (or its 32-byte seed in hex).
fn load_client_key(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    let text = read_text(path)?;
    if let Some(seed) = parse_hex32(text.trim()) {
        return Ok(SigningKey::from_seed(&seed));
    }
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a PKCS#8 PEM Ed25519 private key: {e}",
            path.display()
        )
    })?;
    Ok(SigningKey::from_seed(&key.to_bytes()))
}

/// 64 hex digits, or a PEM file holding an X.509 certificate, a public key or a private key.
fn load_server_key(spec: &str) -> anyhow::Result<VerifyingKey> {
    let raw = match parse_hex32(spec.trim()) {
        Some(raw) => raw,
        None => {
            let path = std::path::Path::new(spec);
            let text = read_text(path)?;
            let bad = |e: &dyn std::fmt::Display| {
                anyhow::anyhow!("{}: no Ed25519 key found: {e}", path.display())
            };
            if let Some(raw) = parse_hex32(text.trim()) {
                raw
            } else if text.contains("BEGIN CERTIFICATE") {
                let cert =
                    x509_cert::Certificate::from_pem(text.as_bytes()).map_err(|e| bad(&e))?;
                let spki = cert
                    .tbs_certificate
                    .subject_public_key_info
                    .to_der()
                    .map_err(|e| bad(&e))?;
                ed25519_dalek::VerifyingKey::from_public_key_der(&spki)
                    .map_err(|e| bad(&e))?
                    .to_bytes()
            } else if text.contains("BEGIN PUBLIC KEY") {
                ed25519_dalek::VerifyingKey::from_public_key_pem(&text)
                    .map_err(|e| bad(&e))?
                    .to_bytes()
            } else if text.contains("BEGIN PRIVATE KEY") {
                ed25519_dalek::SigningKey::from_pkcs8_pem(&text)
                    .map_err(|e| bad(&e))?
                    .verifying_key()
                    .to_bytes()
            } else {
                return Err(bad(&"expected a PEM certificate or key, or 64 hex digits"));
            }
        }
    };
    VerifyingKey::from_bytes(&raw).map_err(|_| anyhow::anyhow!("{spec}: not an Ed25519 public key"))
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::bench::options::{DEFAULT_DRAIN, DEFAULT_TIMEOUT};

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn arguments_become_options() {
        let args = BenchArgs::try_parse_from([
            "janus-bench",
            "--ws",
            "ws://127.0.0.1:7002/ws",
            "--clients",
            "7",
            "--mode",
            "handshake",
            "--uid-base",
            "2_000_000",
            "--token-key",
            "fedcba9876543210fedcba9876543210",
            "--server-key-pub",
            &"ab".repeat(32),
        ])
        .unwrap();
        // Not every 32-byte string is a curve point; a real key must be.
        assert!(args.to_options().is_err());

        let server = SigningKey::from_seed(&janus_core::testing::TEST_SERVER_CERT_SEED);
        let hex: String = server
            .verifying_key()
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let args = BenchArgs {
            server_key_pub: Some(hex),
            ..args
        };
        let (opts, notes) = args.to_options().unwrap();
        assert_eq!(
            opts.target,
            Target::WebSocket("ws://127.0.0.1:7002/ws".into())
        );
        assert_eq!(opts.clients, 7);
        assert_eq!(opts.mode, Mode::Handshake);
        assert_eq!(opts.uid_base, 2_000_000);
        assert_eq!(opts.token_key, b"fedcba9876543210fedcba9876543210");
        assert_eq!(opts.server_key, Some(server.verifying_key()));
        // The CLI's literal defaults are the library's.
        assert_eq!(opts.timeout, DEFAULT_TIMEOUT);
        assert_eq!(opts.drain, DEFAULT_DRAIN);
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn bad_arguments_are_refused() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["janus-bench", "--token-key", "0123456789abcdef"];
            argv.extend_from_slice(extra);
            BenchArgs::try_parse_from(argv).map(|a| a.to_options())
        };
        assert!(parse(&[]).unwrap().is_ok());
        assert!(parse(&["--clients", "0"]).unwrap().is_err());
        assert!(parse(&["--payload", "100000"]).unwrap().is_err());
        assert!(parse(&["--rate=-1"]).unwrap().is_err());
        assert!(parse(&["--mode", "flood"]).is_err());
        let short_key = BenchArgs::try_parse_from(["janus-bench", "--token-key", "short"]).unwrap();
        assert!(short_key.to_options().is_err());
    }

    #[test]
    fn key_files_load() {
        use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
        let dir = tempfile::tempdir().unwrap();
        let dalek = ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]);
        let private = dir.path().join("client.pem");
        let pem = dalek.to_pkcs8_pem(Default::default()).unwrap();
        std::fs::write(&private, pem.as_bytes()).unwrap();
        let public = dir.path().join("server.pub.pem");
        let pub_pem = dalek
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        std::fs::write(&public, pub_pem).unwrap();

        let expected = SigningKey::from_seed(&[0x33; 32]).verifying_key();
        assert_eq!(load_client_key(&private).unwrap().verifying_key(), expected);
        assert_eq!(load_server_key(public.to_str().unwrap()).unwrap(), expected);
        assert_eq!(
            load_server_key(private.to_str().unwrap()).unwrap(),
            expected
        );
        assert!(load_server_key("/nonexistent/key.pem").is_err());
    }
}
