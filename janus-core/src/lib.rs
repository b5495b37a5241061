//! The sans-IO protocol core of Janus, the go-pantheon-compatible game gateway.
//!
//! Everything that decides something lives here, as deterministic state machines that take bytes,
//! time and randomness in and hand bytes and events out. There are no sockets, threads, clocks or
//! OS randomness in this crate: adapters (`janus-tokio`, `janus-mio`, client SDKs, the bench tool)
//! move the bytes and run the timers.
//!
//! ```text
//!  client bytes ─► Session::handle_bytes ─► frame ─► handshake::accept ─► Event::Authenticated
//!                                               └──► PacketCipher::open ─► index, rate, inflate
//!                                                    ─► filter::FilterChain ─► route::RouteTable
//!                                                    ─► Event::OpenTunnel / Forward
//!  backend reply ─► Session::handle_tunnel ─► deflate ─► PacketCipher::seal ─► poll_transmit
//!  push          ─► Session::push / push_packet ───────────────────────────► poll_transmit
//!  timer         ─► Session::handle_timeout (handshake, idle, drain deadlines; poll_timeout)
//! ```
//!
//! * [`frame`]: the int32 big-endian length prefix.
//! * [`crypto`], [`token`]: X25519, Ed25519, AES-256-GCM packets, the account-service token.
//! * [`handshake`]: both sides of `CSHandshake` → `SCHandshake`.
//! * [`session`]: one connection's state machine, and [`client`] its client-side twin.
//! * [`route`]: module → tunnel kind, tunnel keys, backend choice, circuit breaking.
//! * [`filter`]: the filter chain over handshakes, packets, replies and pushes, and the built-in
//!   filters (bans, module allow/deny lists, payload sizes, per-module rate limits, routing).
//! * [`limit`]: admission control, rate limiting, and the list of every limit.
//! * [`relay`]: the edge ↔ hub link (sans-IO both ends) and the hub's stand-in session.
//! * [`resume`]: session resume (tickets, the replay buffer, resumable sessions).
//! * [`testing`]: deterministic keys, tokens and a virtual-time client/server [`testing::Pair`].
//!
//! The wire format is go-pantheon's, byte for byte (see `spec/wire-protocol.md`), with its
//! defects fixed: player packets cannot name another player, tokens open one session, the
//! gateway says why it closes a session when the client can act on it, and `data_version`
//! survives replies.
#![forbid(unsafe_code)]

pub mod client;
pub mod close;
pub mod codec;
pub mod compress;
pub mod config;
pub mod crypto;
pub mod filter;
pub mod frame;
pub mod handshake;
pub mod limit;
pub mod login;
pub mod proxy;
pub mod relay;
pub mod replay;
pub mod resume;
pub mod route;
pub mod session;
pub mod system;
pub mod testing;
pub mod time;
pub mod token;
pub mod ws;

pub use close::CloseReason;
pub use time::Time;
