//! What a client connects to and with which limits.

use core::time::Duration;

use janus_core::{
    client::{
        ClientConfig, DEFAULT_CLIENT_MAX_PENDING, DEFAULT_HEARTBEAT_INTERVAL,
        DEFAULT_REQUEST_TIMEOUT,
    },
    config::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_TIMESTAMP_SKEW},
    crypto::{SigningKey, VerifyingKey},
    frame::DEFAULT_MAX_FRAME_LEN,
    handshake::ClientKeys,
};

use crate::Reconnect;

/// Time to open the socket (TCP connect, and the WebSocket upgrade). A gateway that does not
/// accept within it is unreachable for a player, who should hear so rather than wait.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Events (pushes, heartbeats, connection changes) buffered for the application. When it is
/// full the client stops reading the socket until the application catches up, so a client that
/// does not read its events is eventually closed by the gateway as a slow consumer instead of
/// growing without bound.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// Where the gateway listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// `host:port` of the TCP listener.
    Tcp(String),
    /// `ws://host:port/path` of the WebSocket listener (one frame per binary message).
    WebSocket(String),
}

/// Why an endpoint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// `wss://`: the gateway speaks no TLS of its own (put a TLS terminator in front and use
    /// its plain side, or the TCP listener).
    #[error("TLS (wss://) is not supported: {0}")]
    Tls(String),
    /// Not `tcp://host:port`, `host:port` or `ws://…`.
    #[error("not an endpoint (tcp://host:port or ws://host:port/path): {0}")]
    Invalid(String),
}

impl Endpoint {
    /// `tcp://host:port` or `host:port` (TCP), `ws://host:port/path` (WebSocket).
    pub fn parse(s: &str) -> Result<Self, EndpointError> {
        if s.starts_with("ws://") {
            return Ok(Self::WebSocket(s.to_owned()));
        }
        if s.starts_with("wss://") {
            return Err(EndpointError::Tls(s.to_owned()));
        }
        let addr = s.strip_prefix("tcp://").unwrap_or(s);
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(addr.to_owned()))
            }
            _ => Err(EndpointError::Invalid(s.to_owned())),
        }
    }
}

impl core::str::FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why certificate key bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 32 bytes.
    #[error("a key is 32 bytes, not {0}")]
    Length(usize),
    /// The server certificate key is not a valid Ed25519 public key.
    #[error("the server certificate key is not a valid Ed25519 public key")]
    ServerKey,
}

/// Certificate material from raw bytes, as engines and browsers hold it: the client
/// certificate's Ed25519 private seed (32 bytes, embedded in official client builds) and the
/// server certificate's Ed25519 public key (32 bytes; `None` skips verifying the server, which
/// only a test should do).
pub fn keys_from_bytes(
    client_seed: &[u8],
    server_key: Option<&[u8]>,
) -> Result<ClientKeys, KeyError> {
    let seed: &[u8; 32] = client_seed
        .try_into()
        .map_err(|_| KeyError::Length(client_seed.len()))?;
    let server_cert = match server_key {
        None => None,
        Some(bytes) => {
            let bytes: &[u8; 32] = bytes
                .try_into()
                .map_err(|_| KeyError::Length(bytes.len()))?;
            Some(VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::ServerKey)?)
        }
    };
    Ok(ClientKeys {
        client_cert: SigningKey::from_seed(seed),
        server_cert,
    })
}

/// How a client connects. Start from [`Config::new`] and change the fields you need; each
/// field's doc names its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The gateway.
    pub endpoint: Endpoint,
    /// Certificate material; `None` for a gateway running unencrypted (`label.encrypted: false`).
    pub keys: Option<ClientKeys>,
    /// The WebSocket `Origin` header; `None` (the default) sends none. A Go gateway admits only
    /// the literal `*` (spec §1.3); Janus admits any origin unless configured otherwise.
    pub origin: Option<String>,
    /// `CSHandshake.server_id` (0, the default: the token's).
    pub server_id: i64,
    /// [`DEFAULT_CONNECT_TIMEOUT`] (10 s).
    pub connect_timeout: Duration,
    /// Time from sending `CSHandshake` to a valid `SCHandshake`. Default 10 s (the gateway's).
    pub handshake_timeout: Duration,
    /// Allowed server clock distance. Default 5 s.
    pub max_timestamp_skew: Duration,
    /// Silence after which a heartbeat is sent; `None` sends none (the gateway then closes an
    /// idle client after 60 s). Default 10 s.
    pub heartbeat_interval: Option<Duration>,
    /// Time a request waits for its reply before [`RequestError::Timeout`](crate::RequestError).
    /// Default 30 s.
    pub request_timeout: Duration,
    /// Requests awaiting a reply at once; one more gives up on the oldest (`Timeout`).
    /// Default 1024.
    pub max_pending: usize,
    /// Largest frame body accepted from the gateway, bytes. Default 16384.
    pub max_frame_len: usize,
    /// Reconnect after a lost connection; `None` never does. Default [`Reconnect::default`].
    pub reconnect: Option<Reconnect>,
    /// [`DEFAULT_EVENT_CAPACITY`] (1024).
    pub event_capacity: usize,
    /// Ask the gateway for session resume, and resume the session on reconnect when it was
    /// granted: requests in flight keep their waiters and the replies and pushes sent while the
    /// connection was down arrive after [`Event::Resumed`](crate::Event::Resumed). A gateway
    /// that does not offer it (Go, or Janus with it off) ignores the request. Default `true`.
    pub resume: bool,
}

impl Config {
    /// A configuration with every default.
    pub fn new(endpoint: Endpoint, keys: Option<ClientKeys>) -> Self {
        Self {
            endpoint,
            keys,
            origin: None,
            server_id: 0,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_timestamp_skew: DEFAULT_MAX_TIMESTAMP_SKEW,
            heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_pending: DEFAULT_CLIENT_MAX_PENDING,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            reconnect: Some(Reconnect::default()),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            resume: true,
        }
    }

    /// The core's configuration for one connection made with `token`.
    pub fn session(&self, token: String) -> ClientConfig {
        let mut c = ClientConfig::new(self.keys.clone(), token);
        c.server_id = self.server_id;
        c.max_frame_len = self.max_frame_len;
        c.max_timestamp_skew = self.max_timestamp_skew;
        c.handshake_timeout = self.handshake_timeout;
        c.heartbeat_interval = self.heartbeat_interval;
        c.request_timeout = Some(self.request_timeout);
        c.max_pending = self.max_pending;
        c.resume = self.resume;
        c
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:7001"),
            Ok(Endpoint::Tcp("127.0.0.1:7001".into()))
        );
        assert_eq!(
            Endpoint::parse("gate.example:7001"),
            Ok(Endpoint::Tcp("gate.example:7001".into()))
        );
        assert_eq!(
            "ws://127.0.0.1:7002/ws".parse(),
            Ok(Endpoint::WebSocket("ws://127.0.0.1:7002/ws".into()))
        );
        assert!(matches!(
            Endpoint::parse("wss://x/ws"),
            Err(EndpointError::Tls(_))
        ));
        for bad in ["", "7001", ":7001", "host:", "host:99999", "http://x"] {
            assert!(
                matches!(Endpoint::parse(bad), Err(EndpointError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_come_from_raw_bytes() {
        let server = SigningKey::from_seed(&[0x22; 32])
            .verifying_key()
            .to_bytes();
        let keys = keys_from_bytes(&[0x11; 32], Some(&server)).unwrap();
        assert_eq!(keys.server_cert.map(|k| k.to_bytes()), Some(server));
        assert_eq!(
            keys_from_bytes(&[0; 31], None).err(),
            Some(KeyError::Length(31))
        );
        assert_eq!(
            keys_from_bytes(&[0; 32], Some(&[1; 33])).err(),
            Some(KeyError::Length(33))
        );
    }
}
