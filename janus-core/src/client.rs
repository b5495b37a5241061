//! The client side of a session, for SDKs, the bench tool and tests: the same framing, handshake
//! and sealing as the gateway, driven the same sans-IO way.
//!
//! ```text
//! let mut client = ClientSession::new(config, now, seed);   // queues the CSHandshake frame
//! loop {
//!     socket.write(client.poll_transmit());
//!     client.handle_bytes(now, socket.read());
//!     while let Some(event) = client.poll_event() { ... }    // Established, Packet, Closed
//!     client.send(now, Outgoing { .. })?;                     // assigns the next index
//! }
//! ```

use std::collections::VecDeque;
use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compression, write::ZlibEncoder};
use janus_proto::packet::Packet;
use prost::Message;
use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
use rand_core::RngCore;

use crate::{
    Time,
    compress::inflate,
    config::DEFAULT_MAX_TIMESTAMP_SKEW,
    crypto::{NONCE_LEN, PacketCipher},
    frame::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, FrameError, HEADER_LEN},
    handshake::{ClientHandshake, ClientHandshakeError, ClientKeys},
};

/// Largest inflated server `data` the client accepts, bytes (a client is less exposed than the
/// gateway, but a zlib bomb from a compromised server should not take it down).
pub const DEFAULT_CLIENT_MAX_INFLATED_LEN: usize = 16 * 1024 * 1024;

/// How a client connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Certificate material; `None` for a gateway running unencrypted.
    pub keys: Option<ClientKeys>,
    /// The account-service token.
    pub token: String,
    /// `CSHandshake.server_id` (0: take the token's).
    pub server_id: i64,
    /// `Packet.conn_id` of the handshake.
    pub conn_id: i32,
    /// Largest frame body accepted, bytes. Default 16384.
    pub max_frame_len: usize,
    /// Allowed server clock distance. Default 5 s.
    pub max_timestamp_skew: core::time::Duration,
}

impl ClientConfig {
    /// A configuration with default limits.
    pub fn new(keys: Option<ClientKeys>, token: impl Into<String>) -> Self {
        Self {
            keys,
            token: token.into(),
            server_id: 0,
            conn_id: 0,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_timestamp_skew: DEFAULT_MAX_TIMESTAMP_SKEW,
        }
    }
}

/// A packet to send. `obj` 0 means "my own uid".
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub module: i32,
    pub seq: i32,
    pub obj: i64,
    pub data: Bytes,
    pub data_version: u64,
    /// zlib-compress `data` and set the `compress` flag.
    pub compress: bool,
}

/// Why a client session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] ClientHandshakeError),
    /// The server sent a bad length prefix.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// A packet did not authenticate.
    #[error("packet did not decrypt")]
    DecryptFailed,
    /// A packet that is not a `Packet`, or compressed data that does not inflate.
    #[error("malformed packet")]
    MalformedPacket,
    /// `send` before the handshake completed or after the session closed.
    #[error("session is not established")]
    NotEstablished,
    /// The application closed it.
    #[error("closed locally")]
    Local,
}

/// What the client application is told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The handshake completed.
    Established { start_index: i32, server_time: i64 },
    /// A reply (non-zero index) or push (index 0); `data` already inflated.
    Packet(Packet),
    /// The session is over.
    Closed(ClientError),
}

#[derive(Debug)]
enum State {
    Handshaking(Box<ClientHandshake>),
    Established {
        cipher: Option<Box<PacketCipher>>,
        next_index: i32,
    },
    Closed,
}

/// The client side of one connection.
#[derive(Debug)]
pub struct ClientSession {
    state: State,
    frames: FrameDecoder,
    rx: BytesMut,
    tx: BytesMut,
    events: VecDeque<ClientEvent>,
    rng: ChaCha20Rng,
}

impl ClientSession {
    /// Starts a session: the `CSHandshake` frame is queued for [`poll_transmit`](Self::poll_transmit).
    pub fn new(config: &ClientConfig, now: Time, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let (handshake, packet) = ClientHandshake::start(
            config.keys.clone(),
            &config.token,
            config.server_id,
            config.conn_id,
            now,
            config.max_timestamp_skew.as_secs(),
            &mut rng,
        );
        let mut tx = BytesMut::new();
        put_plain(&mut tx, &packet);
        Self {
            state: State::Handshaking(Box::new(handshake)),
            frames: FrameDecoder::new(config.max_frame_len),
            rx: BytesMut::new(),
            tx,
            events: VecDeque::new(),
            rng,
        }
    }

    /// Whether the handshake has completed and the session is open.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established { .. })
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Bytes received from the server, in any split.
    pub fn handle_bytes(&mut self, now: Time, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.rx.extend_from_slice(bytes);
        while !self.is_closed() {
            match self.frames.decode(&mut self.rx) {
                Ok(Some(frame)) => self.handle_frame(now, frame.into_body()),
                Ok(None) => break,
                Err(e) => self.fail(e.into()),
            }
        }
    }

    fn handle_frame(&mut self, now: Time, body: BytesMut) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Handshaking(handshake) => match handshake.finish(now, &body) {
                Ok(done) => {
                    self.state = State::Established {
                        cipher: done.key.as_ref().map(|k| Box::new(PacketCipher::new(k))),
                        next_index: done.start_index,
                    };
                    self.events.push_back(ClientEvent::Established {
                        start_index: done.start_index,
                        server_time: done.server_time,
                    });
                }
                // `self.state` is already Closed: report directly.
                Err(e) => self.events.push_back(ClientEvent::Closed(e.into())),
            },
            State::Established { cipher, next_index } => {
                let text = match &cipher {
                    Some(c) => c.open(body).map_err(|_| ClientError::DecryptFailed),
                    None => Ok(body.freeze()),
                };
                self.state = State::Established { cipher, next_index };
                let packet =
                    text.and_then(|t| Packet::decode(t).map_err(|_| ClientError::MalformedPacket));
                let packet = packet.and_then(|mut p| {
                    if p.compress {
                        p.data = inflate(&p.data, DEFAULT_CLIENT_MAX_INFLATED_LEN)
                            .map_err(|_| ClientError::MalformedPacket)?
                            .into();
                        p.compress = false;
                    }
                    Ok(p)
                });
                match packet {
                    Ok(p) => self.events.push_back(ClientEvent::Packet(p)),
                    Err(e) => self.fail(e),
                }
            }
            State::Closed => {}
        }
    }

    fn fail(&mut self, error: ClientError) {
        if !self.is_closed() {
            self.state = State::Closed;
            self.events.push_back(ClientEvent::Closed(error));
        }
    }

    /// Queues a packet with the next index and returns that index.
    pub fn send(&mut self, _now: Time, out: Outgoing) -> Result<i32, ClientError> {
        let State::Established { cipher, next_index } = &mut self.state else {
            return Err(ClientError::NotEstablished);
        };
        let index = *next_index;
        *next_index = next_index.wrapping_add(1);
        let data = if out.compress {
            let mut enc = ZlibEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(&out.data)
                .and_then(|()| enc.finish())
                .map(Bytes::from)
                .map_err(|_| ClientError::MalformedPacket)?
        } else {
            out.data
        };
        let packet = Packet {
            data,
            data_version: out.data_version,
            obj: out.obj,
            r#mod: out.module,
            seq: out.seq,
            index,
            compress: out.compress,
            ..Default::default()
        };
        match cipher {
            Some(c) => {
                let mut nonce = [0u8; NONCE_LEN];
                self.rng.fill_bytes(&mut nonce);
                c.seal_message(nonce, &packet, &mut self.tx)
                    .map_err(|_| ClientError::MalformedPacket)?;
            }
            None => put_plain(&mut self.tx, &packet),
        }
        Ok(index)
    }

    /// Queues raw bytes as they are (for tests that send malformed or replayed frames).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.tx.extend_from_slice(bytes);
    }

    /// Ends the session locally.
    pub fn close(&mut self) {
        self.fail(ClientError::Local);
    }

    /// Everything queued for the server, as one buffer.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.tx.is_empty()).then(|| self.tx.split().freeze())
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

fn put_plain(tx: &mut BytesMut, packet: &Packet) {
    let len = packet.encoded_len();
    tx.reserve(HEADER_LEN + len);
    tx.put_u32(len as u32);
    let _ = packet.encode(tx);
}
