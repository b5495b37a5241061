//! The relay link between a janus-mio edge and a janus-tokio hub: many client sessions over one
//! authenticated TCP connection.
//!
//! The edge runs the client [`Session`](crate::session::Session)s (framing, handshake,
//! decryption, index checks, sealing) and relays what they decide; the hub holds the gRPC
//! tunnels, the registry, Redis and etcd. Both ends drive a [`Link`], a sans-IO state machine in
//! the quinn style; the hub turns each relay session into a [`HubSession`], which produces the
//! same [`Event`](crate::session::Event)s as a local `Session`, so the gateway carries it out
//! with the same code.
//!
//! ```text
//!  edge                                              hub
//!  Session events ─► Outgoing::from_session_event ─► Link ══ TCP ══ Link ─► LinkEvent ─► HubSession ─► Event
//!  Session inputs ◄─ LinkEvent (Data, TunnelClosed,  Link ══ TCP ══ Link ◄─ Outgoing ◄── HubSession ◄── gateway
//!                    Push, SessionClosed, Drain)
//! ```
//!
//! # Call order
//!
//! Create a [`Link`] when the TCP connection is up (it queues its `Hello` at once). Feed it
//! [`handle_bytes`](Link::handle_bytes) and, when [`poll_timeout`](Link::poll_timeout) passes,
//! [`handle_timeout`](Link::handle_timeout); queue messages with [`send`](Link::send). After each
//! input drain [`poll_event`](Link::poll_event), then write [`transmit`](Link::transmit) /
//! [`advance_transmit`](Link::advance_transmit) (or [`poll_transmit`](Link::poll_transmit)),
//! then re-arm the timer. After [`LinkEvent::Closed`] write out what is left and close the socket.
//!
//! # The protocol
//!
//! * **Framing**: every message is one `janus.relay.v1.Frame` (protobuf) in a frame with the
//!   client protocol's int32 big-endian length prefix ([`crate::frame`]), at most
//!   [`LinkConfig::max_frame_len`] bytes.
//! * **Hello**: both sides send `Hello` first (versions, a 32-byte random challenge, their
//!   Ed25519 public key, node name, frame limit, per-session window, heartbeat interval). The link
//!   speaks the highest version both list; none in common closes it ([`LinkCloseReason::BadVersion`]).
//! * **Mutual authentication**: a side whose public key the peer does not list is refused
//!   ([`UnknownKey`](LinkCloseReason::UnknownKey)). Each side then sends `Auth`: an Ed25519
//!   signature over `"janus relay auth\0" ‖ signer role ‖ version ‖ edge Hello ‖ hub Hello` (the
//!   Hello bytes exactly as sent, each length-prefixed), so it covers the peer's challenge and
//!   every negotiated parameter and cannot be replayed on another link or reflected to its
//!   sender. A bad signature closes the link ([`BadSignature`](LinkCloseReason::BadSignature));
//!   anything but `Hello`/`Auth` before both are verified is
//!   [`UnexpectedMessage`](LinkCloseReason::UnexpectedMessage). Every refusal sends a `Goodbye`
//!   naming its reason and has a name for the hub's metric ([`LinkCloseReason::as_str`]).
//! * **Heartbeats**: a side that has sent nothing for its heartbeat interval sends `Heartbeat`; a
//!   side that has received nothing for [`LinkConfig::heartbeat_timeout`] (at least three of the
//!   peer's intervals) closes the link ([`HeartbeatTimeout`](LinkCloseReason::HeartbeatTimeout)).
//! * **Sessions** (edge → hub `SessionOpen` with the identity the handshake established, the
//!   client address and worker id; either way `SessionClose` with a [`CloseReason`] name):
//!   session ids are the edge's and never reused on a link. A message for a session that is not
//!   open is dropped: **a closed session receives nothing**.
//! * **Tunnels** (edge → hub `TunnelOpen` with kind name and oid, numbered by the session's
//!   [`TunnelId`](crate::session::TunnelId); either way `TunnelClose`): the hub builds the
//!   `x-md-global-*` metadata itself, naming itself in the referers.
//! * **Data** both ways: the tunnel-message fields plus session and tunnel. **Push** (hub →
//!   edge): a `PushPacket`'s bytes, encoded once, with the list of sessions it goes to (the hub
//!   coalesces a broadcast into one message per link). **Drain** (hub → edge): move the sessions
//!   to another hub.
//! * **Flow control**, per session and direction, in bytes of `Data` frames (prefix included):
//!   the receiver's `Hello` grants [`LinkConfig::session_window`]; the sender spends credit per
//!   frame and queues frames it has no credit for (at most one window per session; beyond it
//!   [`send`](Link::send) fails with [`SendError::Backlog`] and the adapter closes that session);
//!   the receiver returns credit (`Credit`) as the adapter [`release`](Link::release)s what it
//!   consumed. A peer that overruns its window breaks the protocol
//!   ([`FlowControl`](LinkCloseReason::FlowControl)). Credit is never negative; one slow session
//!   holds only its own window, never the link. Pushes and control messages are not
//!   credit-counted; pushes are dropped (and counted) while the link's unsent bytes exceed
//!   [`LinkConfig::max_buffered`].
//!
//! # Limits
//!
//! | Limit | Default | Unit | Stops |
//! |---|---|---|---|
//! | [`LinkConfig::max_frame_len`] ([`DEFAULT_MAX_FRAME_LEN`]) | 1 MiB | bytes per frame body | a peer making the other buffer huge frames |
//! | [`LinkConfig::session_window`] ([`DEFAULT_SESSION_WINDOW`]) | 1 MiB | bytes of `Data` frames in flight per session and direction | one session's traffic filling the peer's memory or stalling the link |
//! | [`LinkConfig::max_sessions`] ([`DEFAULT_MAX_SESSIONS`]) | 262 144 | sessions per link | a peer growing the session table without bound |
//! | [`MAX_TUNNELS_PER_SESSION`] | 256 (fixed) | tunnels per relay session | a peer growing one session's tunnel list without bound |
//! | [`LinkConfig::max_buffered`] ([`DEFAULT_MAX_BUFFERED`]) | 64 MiB | unsent bytes per link before pushes are dropped | a peer that stops reading growing the sender's buffer through pushes |
//! | [`LinkConfig::handshake_timeout`] ([`DEFAULT_HANDSHAKE_TIMEOUT`]) | 5 s | connect to authenticated | unauthenticated links holding a slot |
//! | [`LinkConfig::heartbeat_interval`] / [`heartbeat_timeout`](LinkConfig::heartbeat_timeout) | 5 s / 15 s | | a dead peer holding sessions (the edge re-homes them) |

mod edge;
mod flow;
mod handshake;
mod hub;
mod link;
mod send;
mod wire;

#[cfg(test)]
mod tests;

use std::{net::SocketAddr, time::Duration};

pub use self::{
    edge::session_info,
    hub::HubSession,
    link::{Link, LinkEvent, LinkState, LinkStats, PeerInfo, SendError},
};
use crate::{
    CloseReason,
    crypto::{SigningKey, VerifyingKey},
    handshake::Identity,
    session::{PushPacket, TunnelId, TunnelMessage},
};

/// The protocol version this build speaks (and the only one so far).
pub const VERSION: u32 = 1;
/// The oldest version this build speaks.
pub const MIN_VERSION: u32 = 1;
/// Length of a `Hello` challenge.
pub const CHALLENGE_LEN: usize = 32;
/// Default [`LinkConfig::max_frame_len`]: room for the largest inflated client request (256 KiB)
/// and backend replies of up to 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1 << 20;
/// Default [`LinkConfig::session_window`]; at least one largest frame, so every frame can be sent.
pub const DEFAULT_SESSION_WINDOW: u32 = 1 << 20;
/// Default [`LinkConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 262_144;
/// Tunnels a relay session may have open on a link (the edge's sessions hold at most
/// `limits.session.max_tunnels`, 16 by default).
pub const MAX_TUNNELS_PER_SESSION: usize = 256;
/// Default [`LinkConfig::max_buffered`].
pub const DEFAULT_MAX_BUFFERED: usize = 64 << 20;
/// Default [`LinkConfig::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`LinkConfig::heartbeat_interval`].
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default [`LinkConfig::heartbeat_timeout`].
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// Smallest frame limit or window a peer may announce: below it not even a `Hello` fits.
pub const MIN_PEER_FRAME_LEN: u32 = 1024;

/// Which end of the link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Holds the client connections; opens sessions and tunnels.
    Edge,
    /// Holds the backend tunnels; pushes, kicks, drains.
    Hub,
}

impl Role {
    /// The other end.
    pub const fn peer(self) -> Role {
        match self {
            Role::Edge => Role::Hub,
            Role::Hub => Role::Edge,
        }
    }

    const fn label(self) -> &'static [u8; 4] {
        match self {
            Role::Edge => b"edge",
            Role::Hub => b"hub\0",
        }
    }
}

/// One end's settings. Every limit has a `DEFAULT_*` constant naming its unit and what it stops.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinkConfig {
    /// Edge or hub.
    pub role: Role,
    /// This side's name in the peer's logs (edge id, hub endpoint).
    pub node: String,
    /// This side's Ed25519 key.
    pub key: SigningKey,
    /// The peers this side accepts (the hubs' keys on an edge, the edges' keys on a hub).
    pub peers: Vec<VerifyingKey>,
    /// Largest frame body accepted, bytes. Default [`DEFAULT_MAX_FRAME_LEN`].
    pub max_frame_len: usize,
    /// Receive window per session, bytes. Default [`DEFAULT_SESSION_WINDOW`].
    pub session_window: u32,
    /// Sessions per link. Default [`DEFAULT_MAX_SESSIONS`].
    pub max_sessions: usize,
    /// Unsent bytes above which pushes are dropped. Default [`DEFAULT_MAX_BUFFERED`].
    pub max_buffered: usize,
    /// Default [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// Default [`DEFAULT_HEARTBEAT_INTERVAL`].
    pub heartbeat_interval: Duration,
    /// Default [`DEFAULT_HEARTBEAT_TIMEOUT`].
    pub heartbeat_timeout: Duration,
}

impl LinkConfig {
    /// Defaults for `role` with `key`, accepting `peers`.
    pub fn new(role: Role, node: String, key: SigningKey, peers: Vec<VerifyingKey>) -> Self {
        Self {
            role,
            node,
            key,
            peers,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            session_window: DEFAULT_SESSION_WINDOW,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_buffered: DEFAULT_MAX_BUFFERED,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
        }
    }
}

/// A session as the edge announces it: who the client is and where it connected from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The edge's id for the session (unique per link).
    pub session: u64,
    /// What the client's handshake established.
    pub identity: Identity,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// The connection's worker id on the edge.
    pub worker_id: u64,
}

/// A message for the peer, about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outgoing {
    /// Edge: a new authenticated session (the session id is the info's).
    Open(Box<SessionInfo>),
    /// Edge: the session opened tunnel `tunnel` for (`kind`, `oid`).
    TunnelOpen {
        tunnel: TunnelId,
        kind: String,
        oid: i64,
    },
    /// Either: a tunnel message (edge: a client request; hub: a backend message).
    Data {
        tunnel: TunnelId,
        message: TunnelMessage,
    },
    /// Either: the tunnel is closed (`failed`: the backend stream failed).
    TunnelClose { tunnel: TunnelId, failed: bool },
    /// Hub: a push for the session.
    Push(PushPacket),
    /// Either: the session is over.
    SessionClose(CloseReason),
}

/// Why a link ended. Refusals (the handshake-stage reasons) are counted by name on the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkCloseReason {
    /// A length prefix that is zero, negative or over the limit.
    MalformedFrame,
    /// A frame that is not a relay `Frame`, or a field out of range.
    MalformedMessage,
    /// A message the peer may not send now (before authentication, or not in its role).
    UnexpectedMessage,
    /// A `Hello` with a bad challenge, key or limits.
    BadHello,
    /// No protocol version in common.
    BadVersion,
    /// The peer's public key is not configured here.
    UnknownKey,
    /// The peer's `Auth` signature does not verify.
    BadSignature,
    /// No authentication within the handshake timeout.
    HandshakeTimeout,
    /// Nothing received within the heartbeat timeout.
    HeartbeatTimeout,
    /// The peer sent more on a session than its window allows, or returned credit it was not owed.
    FlowControl,
    /// The peer broke a session rule (a duplicate session, too many tunnels).
    ProtocolViolation,
    /// The peer said goodbye.
    PeerGoodbye,
    /// The connection ended or failed.
    PeerClosed,
    /// This side is shutting down.
    Shutdown,
}

impl LinkCloseReason {
    /// Every reason, for per-reason metrics.
    pub const ALL: [LinkCloseReason; 14] = {
        use LinkCloseReason::*;
        [
            MalformedFrame,
            MalformedMessage,
            UnexpectedMessage,
            BadHello,
            BadVersion,
            UnknownKey,
            BadSignature,
            HandshakeTimeout,
            HeartbeatTimeout,
            FlowControl,
            ProtocolViolation,
            PeerGoodbye,
            PeerClosed,
            Shutdown,
        ]
    };

    /// A stable snake_case name (metric label, `Goodbye.reason`).
    pub const fn as_str(self) -> &'static str {
        use LinkCloseReason::*;
        match self {
            MalformedFrame => "malformed_frame",
            MalformedMessage => "malformed_message",
            UnexpectedMessage => "unexpected_message",
            BadHello => "bad_hello",
            BadVersion => "bad_version",
            UnknownKey => "unknown_key",
            BadSignature => "bad_signature",
            HandshakeTimeout => "handshake_timeout",
            HeartbeatTimeout => "heartbeat_timeout",
            FlowControl => "flow_control",
            ProtocolViolation => "protocol_violation",
            PeerGoodbye => "peer_goodbye",
            PeerClosed => "peer_closed",
            Shutdown => "shutdown",
        }
    }

    /// The position in [`ALL`](Self::ALL).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for LinkCloseReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}
