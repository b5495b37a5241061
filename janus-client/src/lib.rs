//! The Rust client SDK of the Janus game gateway: connect over TCP or WebSocket, handshake,
//! requests correlated by index with a timeout, pushes as a stream of events, heartbeats, and
//! reconnection with jittered exponential backoff and a fresh token per connection.
//!
//! The protocol is janus-core's [`ClientSession`](janus_core::client::ClientSession): this crate
//! frames, seals and handshakes exactly as the gateway does because it is the same code. What it
//! adds is the part a sans-IO core cannot do: sockets, a clock, a task or thread per connection,
//! and the bookkeeping that turns the session's events into one answer per request.
//!
//! # Runtimes
//!
//! Picked at build time, by feature; both may be enabled together.
//!
//! | feature | module | what runs |
//! |---|---|---|
//! | `tokio` (default) | [`tokio`](crate::tokio) | one task per client; `async` requests |
//! | `blocking` | [`blocking`](crate::blocking) | one std thread per client; blocking requests; no async runtime in the dependency tree |
//!
//! With neither, the crate is the runtime-free part every binding shares (the C ABI in
//! `janus-ffi` and the browser build in `janus-wasm` use it): [`Engine`], [`Config`],
//! [`Reconnect`], the errors and events, and the [`known_answers`] self-test.
//!
//! # Data flow
//!
//! ```text
//!  app ─ request(Outgoing) ─► Engine::send ─► ClientSession::send ─► poll_transmit ─► socket
//!  socket ─► Engine::handle_bytes ─► ClientSession events ─► Engine::poll:
//!        Answer(waiter, reply | Failed | Timeout)  ─► the request's future / handle
//!        Event(Push | Heartbeat | Connected)       ─► the events channel
//!        Ended(why)                                ─► every waiter ConnectionClosed; reconnect
//!  timer (Engine::poll_timeout) ─► Engine::handle_timeout ─► heartbeats, request timeouts
//! ```
//!
//! # Example (tokio)
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use janus_client::{Config, Endpoint, Outgoing, tokio::Client};
//! let config = Config::new(Endpoint::parse("tcp://127.0.0.1:7001")?, None);
//! // Each connection (the first and every reconnect) takes a fresh, single-use token.
//! let tokens = || async { Ok::<_, janus_client::TokenError>(String::from("token from the account service")) };
//! let (client, mut events) = Client::connect(config, tokens).await?;
//! let reply = client
//!     .request(Outgoing { module: 3, seq: 1, data: "hello".into(), ..Default::default() })
//!     .await?;
//! println!("reply at index {}: {:?}", reply.index, reply.data);
//! while let Some(event) = events.recv().await {
//!     println!("{event:?}"); // pushes, heartbeats, disconnects and reconnects
//! }
//! # Ok(()) }
//! ```
//!
//! # Session resume
//!
//! On by default ([`Config::resume`]): the handshake asks the gateway for a resume ticket, and a
//! reconnect within the gateway's window (30 s by default) continues the same session instead of
//! logging in again ([`Event::Resumed`] instead of [`Event::Connected`]). Requests in flight when
//! the connection dropped keep waiting and get their replies, and pushes sent meanwhile arrive,
//! each exactly once and in order. A gateway that refuses (window passed, a newer login) or does
//! not offer it (Go, or Janus with it off) logs the client in afresh with the reconnect's token;
//! the requests in flight then end with [`RequestError::ConnectionClosed`]. See `docs/resume.md`.

#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(feature = "std-runtime")]
mod clock;
mod config;
mod engine;
mod error;
pub mod known_answers;
mod reconnect;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use self::config::{
    Config, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EVENT_CAPACITY, Endpoint, EndpointError, KeyError,
    keys_from_bytes,
};
pub use self::engine::{Engine, Output};
pub use self::error::{ConnectError, Disconnect, Event, RequestError, TokenError};
pub use self::reconnect::{
    Backoff, DEFAULT_RECONNECT_INITIAL_DELAY, DEFAULT_RECONNECT_MAX_DELAY, Reconnect,
};
pub use janus_core::client::{HeartbeatCode, LogoutCode, Outgoing};
pub use janus_core::handshake::ClientKeys;
pub use janus_proto::packet::Packet;
