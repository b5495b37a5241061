//! What a session hands to its adapter.

use bytes::Bytes;
use janus_proto::{player, room};

use crate::{CloseReason, handshake::Identity, route::TunnelKey};

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

/// Something the adapter must act on, drained with [`Session::poll_event`](super::Session::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake succeeded; `SCHandshake` is queued for transmission. The adapter registers
    /// the session (uid → connection, gate route table) and may [`close`](super::Session::close)
    /// it if that fails.
    Authenticated(Identity),
    /// Open the backend stream for `key` (choose a backend, send the `x-md-global-*` metadata).
    /// Always precedes the first [`Forward`](Event::Forward) on that key.
    OpenTunnel(TunnelKey),
    /// Send `message` on the tunnel `key`.
    Forward {
        key: TunnelKey,
        message: TunnelMessage,
    },
    /// Close the tunnel `key` (half-close the stream).
    CloseTunnel(TunnelKey),
    /// The session is over: write out what [`poll_transmit`](super::Session::poll_transmit)
    /// still returns, then close the connection. No event follows.
    Closed(CloseReason),
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
