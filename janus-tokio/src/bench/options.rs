//! What a benchmark run does: the target, the workload and the credentials, as plain data with
//! defaults that match a local dev gateway.

use std::time::Duration;

use janus_core::{
    crypto::{SigningKey, VerifyingKey},
    frame::DEFAULT_MAX_FRAME_LEN,
    testing::{TEST_CLIENT_CERT_SEED, TEST_TOKEN_KEY},
};

/// Largest `payload` accepted, bytes: a frame body is at most 16384 bytes, and an encrypted packet
/// adds the AES-GCM nonce and tag (28) and the `Packet` envelope (a few dozen).
pub const MAX_PAYLOAD: usize = DEFAULT_MAX_FRAME_LEN - 128;

/// Default connect, handshake, write and per-request timeout: generous for a loaded gateway, and
/// half the gateway's own 10 s handshake deadline so a bench failure is ours to report.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time requests still in flight at the end of the run get to complete.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(2);

/// Longest `duration`, `ramp`, `timeout` or `drain` accepted: anything longer is a typo, and
/// keeping deadlines this close keeps every `Instant` sum far from overflow.
pub const MAX_TIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Default number of broadcasts the `broadcast` mode keeps in flight: asked for and not yet
/// delivered to every session. Enough to keep the gateway busy, few enough that no session's
/// command queue (256) overflows.
pub const DEFAULT_PUSH_WINDOW: u32 = 8;

/// Default first account id; client `i` is `uid_base + i`.
pub const DEFAULT_UID_BASE: i64 = 1_000_000;

/// The workload.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Connect, handshake, close, repeat.
    Handshake,
    /// Connect once, then send packets and wait for the replies.
    Echo,
    /// Connect once, handshake, then stay silent until the run ends: how much an idle
    /// authenticated connection costs the gateway (with `metrics_url`).
    Idle,
    /// Plain length-prefixed frames of `payload` bytes, no handshake and no encryption,
    /// expected back unchanged: the same traffic shape through a TCP proxy (HAProxy) in front of
    /// an echo server (`janus-bench --echo-server`), the reference the edge is measured against.
    Frames,
    /// Connect once, handshake, stay silent and count the frames the gateway sends, while one
    /// more task asks the gateway's push service (`push_addr`) for broadcasts to every session:
    /// encrypted broadcast deliveries per second. The frames are counted, not decrypted, so the
    /// generator's core is not the limit.
    Broadcast,
    /// Connect, send nothing, stay connected until the run ends (no handshake): what an idle
    /// connection costs a plain TCP relay (HAProxy, nginx), to set beside `idle`.
    IdleFrames,
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A TCP listener, `host:port`.
    Tcp(String),
    /// A WebSocket listener, `ws://host:port/path` (no TLS).
    WebSocket(String),
}

impl Target {
    /// The address as the user wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            Target::Tcp(s) | Target::WebSocket(s) => s,
        }
    }
}

/// Everything a run needs. [`Default`] is a 10-second closed-loop echo run of 10 clients against
/// a local gateway over TCP with the test-vector keys.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Default `Tcp("127.0.0.1:7001")`.
    pub target: Target,
    /// Concurrent clients. Default 10.
    pub clients: u32,
    /// How long new handshakes and requests are started. Default 10 s.
    pub duration: Duration,
    /// Default [`Mode::Echo`].
    pub mode: Mode,
    /// Echo requests per second per client; 0 is closed loop (one request in flight). Default 0.
    pub rate: f64,
    /// Echo request `data` length, bytes. Default 64. Ignored for heartbeats (module 1, seq 2),
    /// which carry a `CSHeartbeat`.
    pub payload: usize,
    /// Echo request module. Default 3 (User).
    pub module: i32,
    /// Echo request seq. Default 1.
    pub seq: i32,
    /// Client starts are spread evenly over this time. Default 0.
    pub ramp: Duration,
    /// Connect, handshake, write and per-request timeout. Default [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Grace for in-flight requests after `duration`. Default [`DEFAULT_DRAIN`].
    pub drain: Duration,
    /// The account service's token key: the raw bytes of its configured string (16, 24 or 32).
    /// Default [`TEST_TOKEN_KEY`].
    pub token_key: Vec<u8>,
    /// Handshake with key agreement and signatures. Default true; false for a gateway running
    /// `encrypted: false`.
    pub encrypted: bool,
    /// The client certificate key. Default the test-vector key ([`TEST_CLIENT_CERT_SEED`]).
    pub client_key: SigningKey,
    /// The server certificate's public key; `None` (the default) skips verifying the server's
    /// signature, which the report says.
    pub server_key: Option<VerifyingKey>,
    /// Account id of client 0. Default [`DEFAULT_UID_BASE`].
    pub uid_base: i64,
    /// Token colour (routing group). Default `"local"`.
    pub color: String,
    /// Draw a progress bar on stderr. Default false.
    pub progress: bool,
    /// The gateway's `/metrics` URL (`http://host:port/metrics`): its
    /// `process_resident_memory_bytes` is read before the clients connect and again at the end of
    /// the run, while they are all still connected. Default `None`.
    pub metrics_url: Option<String>,
    /// After the ramp, requests are made but not measured for this long (connections and
    /// handshakes settle, caches and windows warm up): latencies count requests due after
    /// `ramp + warmup`, and rates are counted from then. Default 0.
    pub warmup: Duration,
    /// Processes whose CPU time is reported over the measured window (the system under test).
    /// Default none.
    pub watch_pids: Vec<u32>,
    /// The gateway's gRPC push service (`host:port`) for [`Mode::Broadcast`]. Default `None`.
    pub push_addr: Option<String>,
    /// Broadcasts in flight in [`Mode::Broadcast`]. Default [`DEFAULT_PUSH_WINDOW`].
    pub push_window: u32,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            target: Target::Tcp("127.0.0.1:7001".into()),
            clients: 10,
            duration: Duration::from_secs(10),
            mode: Mode::Echo,
            rate: 0.0,
            payload: 64,
            module: 3,
            seq: 1,
            ramp: Duration::ZERO,
            timeout: DEFAULT_TIMEOUT,
            drain: DEFAULT_DRAIN,
            token_key: TEST_TOKEN_KEY.to_vec(),
            encrypted: true,
            client_key: SigningKey::from_seed(&TEST_CLIENT_CERT_SEED),
            server_key: None,
            uid_base: DEFAULT_UID_BASE,
            color: "local".into(),
            progress: false,
            metrics_url: None,
            warmup: Duration::ZERO,
            watch_pids: Vec::new(),
            push_addr: None,
            push_window: DEFAULT_PUSH_WINDOW,
        }
    }
}

impl BenchOptions {
    /// Refuses options that cannot run.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.clients > 0, "--clients must be at least 1");
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be positive");
        anyhow::ensure!(!self.timeout.is_zero(), "--timeout must be positive");
        for (name, d) in [
            ("--duration", self.duration),
            ("--ramp", self.ramp),
            ("--timeout", self.timeout),
            ("--drain", self.drain),
            ("--warmup", self.warmup),
        ] {
            anyhow::ensure!(d <= MAX_TIME, "{name} must be at most a year");
        }
        anyhow::ensure!(
            self.rate.is_finite() && self.rate >= 0.0,
            "--rate must be a non-negative number (0 = closed loop)"
        );
        anyhow::ensure!(
            self.payload <= MAX_PAYLOAD,
            "--payload {} does not fit a frame (at most {MAX_PAYLOAD} bytes)",
            self.payload
        );
        anyhow::ensure!(
            matches!(self.token_key.len(), 16 | 24 | 32),
            "the token key must be 16, 24 or 32 bytes, got {}",
            self.token_key.len()
        );
        anyhow::ensure!(self.uid_base > 0, "--uid-base must be positive");
        anyhow::ensure!(
            self.mode != Mode::Broadcast || self.push_addr.is_some(),
            "--mode broadcast needs --push-addr (the gateway's gRPC push service)"
        );
        anyhow::ensure!(self.push_window > 0, "--push-window must be at least 1");
        Ok(())
    }
}
