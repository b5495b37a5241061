//! What a filter sees of a packet, and what it can decide about it.

use std::borrow::Cow;

use bytes::Bytes;

use super::Refusal;
use crate::route::TunnelKind;

/// A client packet on its way to a backend, as the packet hook sees it. The index and `obj` are
/// read-only (the index matches the reply to the request; `obj` is checked against the session
/// by the routing that follows); module, seq, data and the tunnel kind can be changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPacket {
    module: i32,
    seq: i32,
    obj: i64,
    index: i32,
    data: Bytes,
    route: Option<TunnelKind>,
    rewritten: bool,
}

impl ClientPacket {
    /// A packet as the session hands it to the chain (also for testing filters).
    pub fn new(module: i32, seq: i32, obj: i64, index: i32, data: Bytes) -> Self {
        Self {
            module,
            seq,
            obj,
            index,
            data,
            route: None,
            rewritten: false,
        }
    }

    /// `Packet.mod`.
    pub fn module(&self) -> i32 {
        self.module
    }

    /// `Packet.seq`.
    pub fn seq(&self) -> i32 {
        self.seq
    }

    /// `Packet.obj` as the client sent it (0 means the session's own uid).
    pub fn obj(&self) -> i64 {
        self.obj
    }

    /// `Packet.index`: the reply will carry it.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The payload (inflated, when the client compressed it).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The tunnel kind a filter routed the packet to, if any (else the route table decides from
    /// the module).
    pub fn route(&self) -> Option<TunnelKind> {
        self.route
    }

    /// Whether a filter changed anything.
    pub fn is_rewritten(&self) -> bool {
        self.rewritten
    }

    /// Forwards the packet as module `module` (routed by the new module, unless
    /// [`route_to`](Self::route_to) says otherwise). An error the gateway answers the request
    /// with still names the module the client sent.
    pub fn set_module(&mut self, module: i32) {
        self.rewritten |= self.module != module;
        self.module = module;
    }

    /// Forwards the packet as message `seq`.
    pub fn set_seq(&mut self, seq: i32) {
        self.rewritten |= self.seq != seq;
        self.seq = seq;
    }

    /// Forwards `data` instead.
    pub fn set_data(&mut self, data: Bytes) {
        self.rewritten = true;
        self.data = data;
    }

    /// Sends the packet to a tunnel of `kind` (a kind of the gateway's route table) instead of
    /// the module's. The oid follows the kind's rule, as for any packet of that kind.
    pub fn route_to(&mut self, kind: TunnelKind) {
        self.rewritten |= self.route != Some(kind);
        self.route = Some(kind);
    }

    pub(super) fn take_rewritten(&mut self) -> bool {
        std::mem::take(&mut self.rewritten)
    }

    pub(super) fn mark_rewritten(&mut self, rewritten: bool) {
        self.rewritten = rewritten;
    }

    pub(crate) fn into_parts(self) -> (i32, i32, Bytes, Option<TunnelKind>) {
        (self.module, self.seq, self.data, self.route)
    }
}

/// A reply or push on its way to the client, as the outbound hook sees it. Module, seq, obj and
/// data can be changed; the index (the request a reply answers; 0 for a push) cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPacket {
    module: i32,
    seq: i32,
    obj: i64,
    index: i32,
    data: Bytes,
    push: bool,
    rewritten: bool,
}

impl ServerPacket {
    /// A reply (`push == false`) or a push, as the session hands it to the chain.
    pub fn new(module: i32, seq: i32, obj: i64, index: i32, data: Bytes, push: bool) -> Self {
        Self {
            module,
            seq,
            obj,
            index,
            data,
            push,
            rewritten: false,
        }
    }

    /// Whether this is a push (sent to many sessions, index 0) rather than a reply.
    pub fn is_push(&self) -> bool {
        self.push
    }

    /// `Packet.mod`.
    pub fn module(&self) -> i32 {
        self.module
    }

    /// `Packet.seq`.
    pub fn seq(&self) -> i32 {
        self.seq
    }

    /// `Packet.obj`.
    pub fn obj(&self) -> i64 {
        self.obj
    }

    /// `Packet.index`: the request's for a reply, 0 for a push.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// The payload (uncompressed; the gateway compresses after the chain).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Whether a filter changed anything.
    pub fn is_rewritten(&self) -> bool {
        self.rewritten
    }

    /// Sends it as module `module`.
    pub fn set_module(&mut self, module: i32) {
        self.rewritten |= self.module != module;
        self.module = module;
    }

    /// Sends it as message `seq`.
    pub fn set_seq(&mut self, seq: i32) {
        self.rewritten |= self.seq != seq;
        self.seq = seq;
    }

    /// Sends it with `obj`.
    pub fn set_obj(&mut self, obj: i64) {
        self.rewritten |= self.obj != obj;
        self.obj = obj;
    }

    /// Sends `data` instead.
    pub fn set_data(&mut self, data: Bytes) {
        self.rewritten = true;
        self.data = data;
    }

    pub(super) fn take_rewritten(&mut self) -> bool {
        std::mem::take(&mut self.rewritten)
    }

    pub(super) fn mark_rewritten(&mut self, rewritten: bool) {
        self.rewritten = rewritten;
    }

    pub(crate) fn into_parts(self) -> (i32, i32, i64, Bytes) {
        (self.module, self.seq, self.obj, self.data)
    }
}

/// Why a filter dropped a packet: a bounded set, so every reason can be a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Over a rate limit.
    RateLimited,
    /// A module the session may not use.
    Denied,
    /// Larger than allowed.
    TooLarge,
    /// Any other rule of the filter.
    Policy,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 4] = [
        DropReason::RateLimited,
        DropReason::Denied,
        DropReason::TooLarge,
        DropReason::Policy,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::RateLimited => "rate_limited",
            DropReason::Denied => "denied",
            DropReason::TooLarge => "too_large",
            DropReason::Policy => "policy",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// What [`Filter::on_packet`](super::Filter::on_packet) decides.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketVerdict {
    /// On to the next filter, then the backend (with whatever the filter changed).
    Pass,
    /// Answer the request with `SCServerUnexpectedErr{mod, seq, msg}` (same index, the module
    /// and seq the client sent) instead of forwarding it; the session goes on. The client's
    /// request fails at once rather than timing out.
    Reject(Cow<'static, str>),
    /// Forward nothing and answer nothing (the client's request times out); counted with the
    /// reason.
    Drop(DropReason),
    /// End the session.
    Close(Refusal),
}

impl PacketVerdict {
    /// [`Reject`](Self::Reject) with `msg`.
    pub fn reject(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::Reject(msg.into())
    }
}

/// What [`Filter::on_outbound`](super::Filter::on_outbound) decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboundVerdict {
    /// On to the next filter, then the client.
    Pass,
    /// Do not send it; counted with the reason.
    Drop(DropReason),
    /// End the session.
    Close(Refusal),
}
