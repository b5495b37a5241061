//! What a session hands to its adapter.

use std::{collections::VecDeque, sync::Arc};

use bytes::Bytes;
use janus_proto::{player, room};

use super::ConnectionContext;
use crate::{
    CloseReason,
    handshake::Identity,
    resume::{ResumeClaim, ResumeRefusal, SessionId},
    route::{OidRule, TunnelKey},
};

/// One packet on a tunnel, in either direction: the union of the player and room
/// `TunnelRequest`/`TunnelResponse` fields (spec §4.4). The conn/frag fields travel on
/// object-kind (room-like) tunnels only; on player tunnels they are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelMessage {
    pub data: Bytes,
    pub data_version: u64,
    pub obj: i64,
    pub module: i32,
    pub seq: i32,
    pub index: i32,
    pub conn_id: i32,
    pub frag_id: i32,
    pub frag_count: i32,
    pub frag_index: i32,
}

/// A tunnel of one session, numbered by the session in the order it opens them and never
/// reused, so an input for a tunnel the session has since closed (a late reply, the close of a
/// stream it already replaced) is recognised as stale and ignored by the core.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TunnelId(pub(crate) u64);

impl TunnelId {
    /// The number, for logs and maps.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The tunnel a relay message numbers `n` (the edge session's own numbering, carried
    /// across the link; test harnesses that play the edge use it too).
    pub const fn from_relay(n: u64) -> Self {
        Self(n)
    }
}

/// Which message types a tunnel carries (spec §4.4): player-like kinds use
/// `player.intra.v1.TunnelRequest/Response`, object kinds (room, ...) the room ones, which add
/// the KCP `conn_id`/`frag_*` fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TunnelLayout {
    /// Fields 1..=6.
    Player,
    /// Fields 1..=10.
    Room,
}

impl TunnelLayout {
    /// The layout of a kind with oid rule `rule`.
    pub const fn of(rule: OidRule) -> Self {
        match rule {
            OidRule::SessionUid => Self::Player,
            OidRule::Object => Self::Room,
        }
    }
}

/// Everything an adapter needs to open a tunnel: which backend service (kind, colour, oid for
/// the sticky route table), the gRPC method, the message layout and the stream metadata.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpenTunnel {
    /// The session's name for this tunnel: [`Event::Forward`], [`Event::CloseTunnel`],
    /// [`Session::handle_tunnel`](super::Session::handle_tunnel) and
    /// [`Session::handle_tunnel_closed`](super::Session::handle_tunnel_closed) use it.
    pub id: TunnelId,
    /// Kind and oid.
    pub key: TunnelKey,
    /// The kind's name (`player`, `room`, ...): which backend set serves it.
    pub kind: Arc<str>,
    /// How the kind derives its oid: player-like kinds may be moved off a dead backend.
    pub rule: OidRule,
    /// The session colour: only backends of this colour may serve it.
    pub color: String,
    /// `/<kind>.intra.v1.TunnelService/Tunnel`.
    pub method: Arc<str>,
    /// Which message types go on the stream.
    pub layout: TunnelLayout,
    /// The stream's request metadata (`x-md-global-*`), see [`metadata`].
    pub metadata: Vec<(&'static str, String)>,
}

/// Something the adapter must act on, drained with [`Session::poll_event`](super::Session::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake succeeded; `SCHandshake` is queued for transmission. The adapter registers
    /// the session (uid → connection, gate route table) and may [`close`](super::Session::close)
    /// it if that fails.
    Authenticated(Identity),
    /// Open a backend stream as described. Always precedes the first [`Forward`](Event::Forward)
    /// on that tunnel.
    OpenTunnel(Box<OpenTunnel>),
    /// Send `message` on tunnel `tunnel`.
    Forward {
        tunnel: TunnelId,
        message: TunnelMessage,
    },
    /// Close the tunnel (half-close the stream); the session has already answered what was
    /// pending on it.
    CloseTunnel(TunnelId),
    /// The session is over: write out what [`poll_transmit`](super::Session::poll_transmit)
    /// still returns, then close the connection. No event follows.
    Closed(CloseReason),
    /// Right after [`Authenticated`](Event::Authenticated): the client asked for session resume
    /// and was given a ticket for this session id. Keep the session findable by it
    /// ([`ResumableSessions`](crate::resume::ResumableSessions)) until it closes.
    ResumeGranted(SessionId),
    /// A handshake carrying a valid resume ticket (instead of `Authenticated`). Find the session
    /// `claim.session` and call [`Session::resume`](super::Session::resume) with it, or
    /// [`Session::refuse_resume`](super::Session::refuse_resume) when there is none.
    ResumeRequested(ResumeClaim),
    /// The connection was lost ([`Session::transport_lost`](super::Session::transport_lost), or
    /// the idle deadline) but the session is kept for its client to resume until
    /// [`poll_timeout`](super::Session::poll_timeout); nothing more goes to the old transport.
    Parked,
    /// This new connection's session took session `0` over: the client is back (the adapter
    /// keeps the old connection's registrations and tunnels, and drops the old session).
    Resumed(SessionId),
    /// A resume was refused, and the client told why (then a normal login follows if the
    /// handshake also carried a token, else [`Closed`](Event::Closed)).
    ResumeRefused(ResumeRefusal),
}

/// The session's events, in the order they happened. A forward, most of the traffic, skips the
/// queue when the queue is empty: it waits in a slot that is polled first. The slot is only
/// filled while the queue is empty, so whatever it holds is older than everything queued.
#[derive(Debug, Default)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Events {
    forward: Option<(TunnelId, TunnelMessage)>,
    queue: VecDeque<Event>,
}

impl Events {
    /// Queues an event.
    pub fn push(&mut self, event: Event) {
        self.queue.push_back(event);
    }

    /// Queues [`Event::Forward`].
    #[inline]
    pub fn forward(&mut self, tunnel: TunnelId, message: TunnelMessage) {
        if self.forward.is_none() && self.queue.is_empty() {
            self.forward = Some((tunnel, message));
        } else {
            self.queue.push_back(Event::Forward { tunnel, message });
        }
    }

    /// The oldest event when it is the forward in the slot.
    #[inline]
    pub fn take_forward(&mut self) -> Option<(TunnelId, TunnelMessage)> {
        self.forward.take()
    }

    /// The oldest event.
    #[inline(never)]
    pub fn pop(&mut self) -> Option<Event> {
        match self.forward.take() {
            Some((tunnel, message)) => Some(Event::Forward { tunnel, message }),
            None => self.queue.pop_front(),
        }
    }

    /// Whether no event is waiting.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.forward.is_none() && self.queue.is_empty()
    }

    /// Whether the queue holds memory that [`release`](Self::release) would give back.
    #[inline]
    pub fn holds_memory(&self) -> bool {
        self.queue.capacity() > 0
    }

    /// Gives the queue's memory back when it is empty.
    #[cold]
    pub fn release(&mut self) {
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
    }
}

/// The `x-md-global-*` request metadata of a tunnel (spec §4.4): built once per tunnel from the
/// session's identity, the tunnel's oid and the connection's context.
pub mod metadata {
    use super::{ConnectionContext, Identity};

    /// The tunnel's oid, decimal.
    pub const OID: &str = "x-md-global-oid";
    /// The session uid (token `account_id`), decimal.
    pub const UID: &str = "x-md-global-uid";
    /// The session's server id, decimal.
    pub const SID: &str = "x-md-global-sid";
    /// The token status (1 = GATE; roma refuses anything else), decimal.
    pub const STATUS: &str = "x-md-global-status";
    /// The token colour.
    pub const COLOR: &str = "x-md-global-color";
    /// The client's `ip:port`.
    pub const CLIENT_IP: &str = "x-md-global-client-ip";
    /// `<gateway endpoint>#<worker id>`.
    pub const REFERER: &str = "x-md-global-referer";
    /// The same as [`REFERER`] (roma compares it to decide whether to reuse an actor).
    pub const GATE_REFERER: &str = "x-md-global-gate-referer";

    /// The eight headers, in upstream's order.
    pub fn build(
        identity: &Identity,
        oid: i64,
        context: &ConnectionContext,
    ) -> Vec<(&'static str, String)> {
        let referer = format!("{}#{}", context.gateway, context.worker_id);
        vec![
            (OID, oid.to_string()),
            (UID, identity.uid.to_string()),
            (SID, identity.sid.to_string()),
            (STATUS, identity.status.to_string()),
            (COLOR, identity.color.clone()),
            (CLIENT_IP, context.peer.to_string()),
            (REFERER, referer.clone()),
            (GATE_REFERER, referer),
        ]
    }
}

/// Player tunnel messages have no conn/frag fields; room ones carry all of them.
macro_rules! convert {
    (player: $($ty:ty),*) => {$(
        impl From<TunnelMessage> for $ty {
            fn from(m: TunnelMessage) -> Self {
                Self { data: m.data, data_version: m.data_version, obj: m.obj, r#mod: m.module, seq: m.seq, index: m.index }
            }
        }
        impl From<$ty> for TunnelMessage {
            fn from(m: $ty) -> Self {
                Self { data: m.data, data_version: m.data_version, obj: m.obj, module: m.r#mod, seq: m.seq, index: m.index, ..Self::default() }
            }
        }
    )*};
    (room: $($ty:ty),*) => {$(
        impl From<TunnelMessage> for $ty {
            fn from(m: TunnelMessage) -> Self {
                Self {
                    data: m.data, data_version: m.data_version, obj: m.obj, r#mod: m.module, seq: m.seq, index: m.index,
                    conn_id: m.conn_id, frag_id: m.frag_id, frag_count: m.frag_count, frag_index: m.frag_index,
                }
            }
        }
        impl From<$ty> for TunnelMessage {
            fn from(m: $ty) -> Self {
                Self {
                    data: m.data, data_version: m.data_version, obj: m.obj, module: m.r#mod, seq: m.seq, index: m.index,
                    conn_id: m.conn_id, frag_id: m.frag_id, frag_count: m.frag_count, frag_index: m.frag_index,
                }
            }
        }
    )*};
}

convert!(player: player::intra::v1::TunnelRequest, player::intra::v1::TunnelResponse);
convert!(room: room::intra::v1::TunnelRequest, room::intra::v1::TunnelResponse);
