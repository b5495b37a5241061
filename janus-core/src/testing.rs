//! Deterministic helpers for tests, benchmarks and fuzzing. Not for production use.

/// An "RNG" that yields consecutive bytes `start, start+1, ...` (wrapping): the spec's test
/// vectors use such keys. It claims to be cryptographic only so tests can pass it where the core
/// wants one.
#[derive(Debug, Clone)]
pub struct SeqRng(u8);

impl SeqRng {
    /// Starts at `start`.
    pub fn new(start: u8) -> Self {
        Self(start)
    }
}

impl rand_core::RngCore for SeqRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for SeqRng {}

use std::sync::Arc;

use janus_proto::gate::intra::v1::AuthToken;

use crate::{
    Time,
    client::{ClientConfig, ClientEvent, ClientSession},
    config::{ServerConfig, ServerCredentials},
    crypto::SigningKey,
    handshake::ClientKeys,
    session::{ConnectionContext, Event, Session},
    token::TokenKey,
};

/// The token key of the spec's test vectors (V4). Test use only.
pub const TEST_TOKEN_KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
/// Seed of the client certificate key of the spec's test vectors (V3).
pub const TEST_CLIENT_CERT_SEED: [u8; 32] = [0x11; 32];
/// Seed of the server certificate key of the spec's test vectors (V3).
pub const TEST_SERVER_CERT_SEED: [u8; 32] = [0x22; 32];

/// A server configuration with the test-vector keys, encrypted or not.
pub fn test_server_config(encrypted: bool) -> ServerConfig {
    let creds = encrypted.then(|| ServerCredentials {
        server_key: SigningKey::from_seed(&TEST_SERVER_CERT_SEED),
        client_cert: SigningKey::from_seed(&TEST_CLIENT_CERT_SEED).verifying_key(),
    });
    // The key is a constant of the right length.
    match TokenKey::new(TEST_TOKEN_KEY) {
        Ok(key) => ServerConfig::new(key, creds),
        Err(_) => unreachable!("32-byte key"),
    }
}

/// A fresh token for `uid` with colour "local", valid for ten minutes from `now`; `rand` makes it
/// unique (the gateway refuses a token twice).
pub fn test_token(uid: i64, now: Time, rand: u64) -> String {
    let token = AuthToken {
        rand: format!("{rand:08}"),
        color: "local".into(),
        account_id: uid,
        server_id: 1,
        timeout: now.unix_secs() + 600,
        status: 1,
        ..Default::default()
    };
    let nonce: [u8; 12] = {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&rand.to_le_bytes());
        n[8..].copy_from_slice(&(uid as u32).to_le_bytes());
        n
    };
    match TokenKey::new(TEST_TOKEN_KEY) {
        Ok(key) => key.seal(&token, nonce),
        Err(_) => unreachable!("32-byte key"),
    }
}

/// A client configuration matching [`test_server_config`].
pub fn test_client_config(encrypted: bool, token: String) -> ClientConfig {
    let keys = encrypted.then(|| ClientKeys {
        client_cert: SigningKey::from_seed(&TEST_CLIENT_CERT_SEED),
        server_cert: Some(SigningKey::from_seed(&TEST_SERVER_CERT_SEED).verifying_key()),
    });
    ClientConfig::new(keys, token)
}

/// A connection context for tests: client `192.0.2.7:40001` (a documentation address),
/// gateway `10.0.0.1:9100`, worker id 16 (the first TCP connection).
pub fn test_context() -> ConnectionContext {
    ConnectionContext {
        peer: std::net::SocketAddr::from(([192, 0, 2, 7], 40001)),
        gateway: "10.0.0.1:9100".into(),
        worker_id: 16,
    }
}

/// A client and a server session wired back to back on virtual time (quinn's `Pair`).
#[derive(Debug)]
pub struct Pair {
    pub server: Session,
    pub client: ClientSession,
    pub now: Time,
    /// Server events, in order, as drained so far.
    pub server_events: Vec<Event>,
    /// Client events, in order, as drained so far.
    pub client_events: Vec<ClientEvent>,
    /// Total bytes the server transmitted.
    pub server_sent: usize,
}

impl Pair {
    /// Connects at `now`; nothing is exchanged until [`drive`](Self::drive).
    pub fn new(config: Arc<ServerConfig>, client: &ClientConfig, now: Time) -> Self {
        Self {
            server: Session::new(config, test_context(), now, [7; 32]),
            client: ClientSession::new(client, now, [9; 32]),
            now,
            server_events: Vec::new(),
            client_events: Vec::new(),
            server_sent: 0,
        }
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub fn drive(&mut self) {
        loop {
            let mut moved = false;
            if let Some(bytes) = self.client.poll_transmit() {
                self.server.handle_bytes(self.now, &bytes);
                moved = true;
            }
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
            if let Some(bytes) = self.server.poll_transmit() {
                self.server_sent += bytes.len();
                self.client.handle_bytes(self.now, &bytes);
                moved = true;
            }
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
            if !moved {
                break;
            }
        }
    }

    /// Advances virtual time, firing the server's deadline if it is due, then drives. The client's
    /// timers are left alone: it neither heartbeats nor times requests out, as session tests
    /// want. [`advance_both`](Self::advance_both) runs them too.
    pub fn advance(&mut self, by: core::time::Duration) {
        self.now = self.now + by;
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        self.drive();
    }

    /// Advances virtual time by `by`, firing every deadline of either side at the moment it falls
    /// due, earliest first, and driving after each: a heartbeat due halfway through goes out
    /// halfway through.
    pub fn advance_both(&mut self, by: core::time::Duration) {
        /// Both sides promise a deadline after `now` once it has fired; this only stops a broken
        /// promise from hanging the test.
        const MAX_ROUNDS: usize = 1_000_000;
        let end = self.now + by;
        for _ in 0..MAX_ROUNDS {
            let next = match (self.server.poll_timeout(), self.client.poll_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
                self.server.handle_timeout(self.now);
            }
            if self.client.poll_timeout().is_some_and(|t| t <= self.now) {
                self.client.handle_timeout(self.now);
            }
            self.drive();
        }
        self.now = end;
        self.drive();
    }

    /// The server's open tunnel for `key` (what an adapter remembers from `OpenTunnel`).
    pub fn server_tunnel(&self, key: crate::route::TunnelKey) -> Option<crate::session::TunnelId> {
        self.server.tunnel_of(key)
    }

    /// Takes the server events collected so far.
    pub fn take_server_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.server_events)
    }

    /// Takes the client events collected so far.
    pub fn take_client_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events)
    }
}
