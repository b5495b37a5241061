//! Extension points: a chain of filters over handshakes, client packets, replies, pushes and
//! session ends, run by the core so the gateway (janus-tokio) and the edge (janus-mio) apply the
//! same decisions.
//!
//! # Where filters run
//!
//! A [`FilterChain`] lives in the gateway's [`ServerConfig`](crate::config::ServerConfig); every
//! [`Session`](crate::session::Session) runs it at five points, each filter in chain order:
//!
//! ```text
//!  CSHandshake ─► token opened, signature checked ─► on_handshake ─► Refuse: SCServerLogout{code}, close
//!                                                        │ Accept(state): SCHandshake, Authenticated
//!  client frame ─► decrypt ─► decode ─► rate ─► index ─► inflate ─► on_packet ─► route ─► Forward
//!                                                        ├ Reject(msg): SCServerUnexpectedErr{mod, seq, msg}, same index
//!                                                        ├ Drop(reason): nothing sent, counted
//!                                                        ├ Close(refusal): SCServerLogout{code}, close
//!                                                        └ rewrite: module, seq, data, tunnel kind
//!  backend reply ─► on_outbound (is_push() = false) ─► deflate ─► seal ─► client
//!  push          ─► on_outbound (is_push() = true)  ─► (re-encoded only if rewritten) ─► seal
//!  session end   ─► on_close(state, reason)
//!  reload / ban-list update ─► recheck ─► Some(refusal): the live session closes
//! ```
//!
//! The packet hook runs after the index check, so a dropped or rejected packet still consumed
//! its index (the client's counter and the session's stay in step), and after inflation, so a
//! filter sees the data the backend would see. System messages the gateway makes itself
//! (`SCHandshake`, `SCServerLogout`, `SCServerUnexpectedErr`) are not filtered.
//!
//! Where the session runs is where the chain runs: on the gateway for direct clients, on the
//! edge for clients of an edge (its sessions are core `Session`s too). A hub does not run its
//! chain again for sessions an edge relays, except [`recheck`](Filter::recheck) after its own
//! reload, so a ban on the hub also reaches players connected through edges.
//!
//! # Writing a filter
//!
//! Implement [`Filter`]: a name (its metric label), the hooks it uses, and per-session state as an
//! associated type (`()` when it needs none: a zero-sized state costs no allocation). Filters are
//! shared by every session of a gateway (`Send + Sync`); the state is the session's own and is
//! handed back by `&mut` on every hook, so it needs no locking.
//!
//! ```
//! use janus_core::{
//!     Time,
//!     filter::{Admit, ClientPacket, Filter, FilterChain, FilterError, Hooks, PacketVerdict, SessionView},
//! };
//!
//! /// Lets a session send at most `max` requests of module 9 (a trial account, say).
//! #[derive(Debug)]
//! struct Quota { max: u32 }
//!
//! impl Filter for Quota {
//!     type State = u32; // requests of module 9 so far
//!     fn name(&self) -> &str { "quota" }
//!     fn hooks(&self) -> Hooks { Hooks::PACKET }
//!     fn on_handshake(&self, _: &SessionView<'_>, _: Time) -> Result<Admit<u32>, FilterError> {
//!         Ok(Admit::Accept(0))
//!     }
//!     fn on_packet(&self, sent: &mut u32, _: &SessionView<'_>, p: &mut ClientPacket, _: Time)
//!         -> Result<PacketVerdict, FilterError> {
//!         if p.module() != 9 { return Ok(PacketVerdict::Pass) }
//!         *sent += 1;
//!         Ok(if *sent > self.max { PacketVerdict::reject("quota used up") } else { PacketVerdict::Pass })
//!     }
//! }
//!
//! let mut chain = FilterChain::new();
//! chain.push(Quota { max: 100 }).unwrap();
//! ```
//!
//! Game teams compile their filters in: a crate with the filter (see `janus-filter-example` in the
//! repository), registered under a name by a cargo feature of the gateway (janus-tokio), and
//! configured under `filters.custom.<name>` (the README walks through it). The edge
//! (janus-mio) runs the built-in filters of its configuration.
//!
//! # Decisions that need IO
//!
//! Hooks run on the connection's task or event loop and must not block: the core has no IO, and
//! a hook that waited on the network would stall every packet of the session (on the edge, of
//! the whole event loop). A decision that needs an outside service is made without waiting:
//!
//! * **Cached: decided ahead, read at the hook.** The adapter keeps a snapshot up to date from
//!   its IO tasks and the hook reads the snapshot. [`builtin::BanFeed`] is the shape of it: a
//!   task of the embedding program refreshes the feed (say, every few seconds from a Redis set
//!   of banned uids) and, when [`BanFeed::replace`](builtin::BanFeed::replace) says it changed,
//!   asks every live session to [`recheck`](Filter::recheck) (janus-tokio:
//!   `Gateway::recheck_sessions`), so a new ban also closes sessions already open; the
//!   [`Ban`](builtin::Ban) filter reads it at the handshake. A lookup that fails leaves the last
//!   snapshot in force (the decision fails open or closed as the feed's owner decides, never by
//!   stalling). The configuration's own ban list (`filters.ban`) is the same pattern with the
//!   configuration file as the source: a reload rechecks every session.
//! * **Per session: decided once, kept in the state.** What a hook learns (an entitlement
//!   fetched before the connection, a counter) lives in the filter's state for the session's
//!   life; the handshake hook is the place to decide what a session may do.
//!
//! A per-packet round trip to a remote service (an "async check with a bounded wait") is
//! deliberately not offered: it would reorder or stall the packets behind it and give the
//! session an unbounded queue; make the decision ahead of the packet instead.
//!
//! # Failures
//!
//! A hook that returns `Err(FilterError)` or panics cannot take the gateway down: the panic is
//! caught (`catch_unwind`), both are counted per filter ([`FilterStats`]), the filter's state for
//! that session is dropped (it cannot be trusted after a panic), and [`Filter::on_failure`]
//! decides what happens to that session only:
//!
//! * [`FailurePolicy::CloseSession`] (the default): the session is closed with
//!   [`CloseReason::FilterFailed`] and the client is told
//!   `SCServerLogout{Server}` (a failing handshake hook refuses the session the same way);
//! * [`FailurePolicy::Bypass`]: the filter is skipped for the rest of that session and the
//!   packet goes on through the rest of the chain (fail open).
//!
//! Catching needs the default `panic = "unwind"`. A binary built with `panic = "abort"` aborts
//! the whole process on a filter panic, like on any other panic; Janus's profiles never set it,
//! and a deployment that does must accept that one panicking filter ends every session.
//!
//! # Cost
//!
//! An empty chain costs one branch per packet, reply and push (the session holds no filter state
//! at all). With filters, each hook a filter declares in [`Filter::hooks`] is one virtual call,
//! one `catch_unwind` frame (free unless it unwinds) and one relaxed atomic add on the filter's
//! counters; one call in [`TIMING_SAMPLE`] also reads the adapter's [`Stopwatch`] around each
//! filter. Nothing on the per-packet path allocates unless a filter does (a rewrite that builds
//! new data, say). `cargo bench -p janus-core --bench core` measures the packet path with an
//! empty chain, with a pass-through filter and with the built-in filters.

pub mod builtin;
mod chain;
mod packet;
mod stats;
#[cfg(test)]
mod tests;

use std::{borrow::Cow, fmt, net::SocketAddr, ops::BitOr};

use janus_proto::message::sc_server_logout::Code as LogoutCode;

pub(crate) use self::chain::{InboundStep, OutboundStep, SessionFilters};
pub use self::{
    chain::{FilterChain, FilterConfigError, MAX_FILTER_NAME_LEN, MAX_FILTERS},
    packet::{ClientPacket, DropReason, OutboundVerdict, PacketVerdict, ServerPacket},
    stats::{
        Decision, FilterStats, Hook, Stopwatch, TIMING_SAMPLE, render_prometheus as render_metrics,
    },
};
use crate::{CloseReason, Time, handshake::Identity, session::ConnectionContext};

/// One filter of a [`FilterChain`]. See the [module documentation](self) for where each hook
/// runs; every hook has a default that lets everything through, and [`hooks`](Self::hooks) says
/// which ones the chain should call at all.
pub trait Filter: Send + Sync + 'static {
    /// Per-session state, made by [`on_handshake`](Self::on_handshake) and handed back to every
    /// later hook of that session. `()` when the filter keeps none.
    type State: Send + 'static;

    /// The filter's name: its metric label and its name in logs and configuration. 1 to
    /// [`MAX_FILTER_NAME_LEN`] bytes of `a-z`, `0-9` and `_`, unique in a chain.
    fn name(&self) -> &str;

    /// The hooks the chain calls besides [`on_handshake`](Self::on_handshake), which always
    /// runs; the others are skipped (and not counted). Default: all.
    fn hooks(&self) -> Hooks {
        Hooks::ALL
    }

    /// The session has authenticated (token opened, signature checked) and is not yet
    /// accepted: accept it with this filter's state for it, or refuse it. A refused client is
    /// told `SCServerLogout` with the refusal's code before the connection closes; later
    /// filters do not run.
    fn on_handshake(
        &self,
        session: &SessionView<'_>,
        now: Time,
    ) -> Result<Admit<Self::State>, FilterError>;

    /// A client packet, decrypted, index-checked and inflated. Change it through the setters of
    /// [`ClientPacket`] (later filters see the change), or stop it with the verdict.
    fn on_packet(
        &self,
        state: &mut Self::State,
        session: &SessionView<'_>,
        packet: &mut ClientPacket,
        now: Time,
    ) -> Result<PacketVerdict, FilterError> {
        let _ = (state, session, packet, now);
        Ok(PacketVerdict::Pass)
    }

    /// A reply from a backend ([`ServerPacket::is_push`] false) or a push (true), before it is
    /// compressed and sealed for the client. Dropping a reply leaves its request unanswered
    /// (the client's request times out); prefer rewriting it.
    fn on_outbound(
        &self,
        state: &mut Self::State,
        session: &SessionView<'_>,
        packet: &mut ServerPacket,
        now: Time,
    ) -> Result<OutboundVerdict, FilterError> {
        let _ = (state, session, packet, now);
        Ok(OutboundVerdict::Pass)
    }

    /// The session ended for `reason`; the state is handed over for the last time.
    fn on_close(
        &self,
        state: Self::State,
        session: &SessionView<'_>,
        reason: CloseReason,
        now: Time,
    ) {
        let _ = (state, session, reason, now);
    }

    /// Asked of a live session after the filter's inputs changed (a configuration reload, a
    /// ban-list refresh): `Some` closes the session with that refusal. The filter asked is the
    /// one of the *new* configuration, and it has no state for the session (it may not have
    /// existed when the session started).
    fn recheck(&self, session: &SessionView<'_>, now: Time) -> Option<Refusal> {
        let _ = (session, now);
        None
    }

    /// What a failure (an `Err` from a hook, or a panic) does to the session. Default:
    /// [`FailurePolicy::CloseSession`].
    fn on_failure(&self) -> FailurePolicy {
        FailurePolicy::CloseSession
    }
}

/// Who a filter is looking at: the authenticated identity and the connection.
#[derive(Clone, Copy, Debug)]
pub struct SessionView<'a> {
    identity: &'a Identity,
    context: &'a ConnectionContext,
}

impl<'a> SessionView<'a> {
    /// The view of a session with this identity on this connection.
    pub fn new(identity: &'a Identity, context: &'a ConnectionContext) -> Self {
        Self { identity, context }
    }

    /// The account id (`token.account_id`).
    pub fn uid(&self) -> i64 {
        self.identity.uid
    }

    /// The server id the session plays on.
    pub fn sid(&self) -> i64 {
        self.identity.sid
    }

    /// The routing colour from the token.
    pub fn color(&self) -> &'a str {
        &self.identity.color
    }

    /// The token status (1 = GATE).
    pub fn status(&self) -> i32 {
        self.identity.status
    }

    /// The client's address (after a PROXY header, if any).
    pub fn peer(&self) -> SocketAddr {
        self.context.peer
    }

    /// The connection's worker id (spec §1.5; its low bits name the transport).
    pub fn worker_id(&self) -> u64 {
        self.context.worker_id
    }

    /// Everything the handshake established.
    pub fn identity(&self) -> &'a Identity {
        self.identity
    }
}

/// What [`Filter::on_handshake`] decides.
#[derive(Debug)]
pub enum Admit<S> {
    /// Accept the session (as far as this filter is concerned) with this state.
    Accept(S),
    /// Refuse it.
    Refuse(Refusal),
}

/// How a filter ends a session, and what the client is told (`SCServerLogout{code}` before the
/// connection closes, or nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// `Banned`: the account or device is banned. Closes with [`CloseReason::Banned`].
    Banned,
    /// `Unauthorized`: the client should log in again (fetch a new token).
    Unauthorized,
    /// `AdminKickOut`: an operator's decision.
    Kicked,
    /// `Waiting`: come back later (maintenance, a full server); clients reconnect.
    Waiting,
    /// `Server`: the gateway cannot serve the session.
    Server,
    /// No logout packet: the connection just closes (for clients that should learn nothing).
    Silent,
}

impl Refusal {
    /// The logout code the client is sent, if any.
    pub const fn logout_code(self) -> Option<LogoutCode> {
        match self {
            Refusal::Banned => Some(LogoutCode::Banned),
            Refusal::Unauthorized => Some(LogoutCode::Unauthorized),
            Refusal::Kicked => Some(LogoutCode::AdminKickOut),
            Refusal::Waiting => Some(LogoutCode::Waiting),
            Refusal::Server => Some(LogoutCode::Server),
            Refusal::Silent => None,
        }
    }

    /// The close reason of a session this refusal ends: [`CloseReason::Banned`] for a ban, else
    /// `established ? FilterClosed : FilterRefused`.
    pub(crate) const fn close_reason(self, established: bool) -> CloseReason {
        match (self, established) {
            (Refusal::Banned, _) => CloseReason::Banned,
            (_, true) => CloseReason::FilterClosed,
            (_, false) => CloseReason::FilterRefused,
        }
    }
}

/// What a filter failure (an error or a panic in a hook) does to the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Close the session ([`CloseReason::FilterFailed`], `SCServerLogout{Server}`): fail closed.
    #[default]
    CloseSession,
    /// Skip the filter for the rest of this session: fail open.
    Bypass,
}

/// A hook could not decide (its own bug, a missing input). See [`Filter::on_failure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError(Cow<'static, str>);

impl FilterError {
    /// An error saying `why`.
    pub fn new(why: impl Into<Cow<'static, str>>) -> Self {
        Self(why.into())
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

/// The hooks a filter takes part in besides the handshake (a bit set: `Hooks::PACKET |
/// Hooks::CLOSE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hooks(u8);

impl Hooks {
    /// Nothing but the handshake ([`Filter::on_handshake`] always runs: it makes the state).
    pub const NONE: Hooks = Hooks(0);
    /// [`Filter::on_packet`].
    pub const PACKET: Hooks = Hooks(1);
    /// [`Filter::on_outbound`] for replies.
    pub const REPLY: Hooks = Hooks(2);
    /// [`Filter::on_outbound`] for pushes.
    pub const PUSH: Hooks = Hooks(4);
    /// [`Filter::on_close`].
    pub const CLOSE: Hooks = Hooks(8);
    /// [`Filter::recheck`].
    pub const RECHECK: Hooks = Hooks(16);
    /// Every hook.
    pub const ALL: Hooks = Hooks(31);
    /// The hooks that need per-session state: a chain none of whose filters has one of these
    /// keeps nothing per session.
    pub(crate) const PER_SESSION: Hooks = Hooks(15);

    /// The bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The hooks of `bits` (unknown bits are ignored).
    pub const fn from_bits(bits: u8) -> Hooks {
        Hooks(bits & Hooks::ALL.0)
    }

    /// Whether every hook of `other` is in `self`.
    pub const fn contains(self, other: Hooks) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any hook of `other` is in `self`.
    pub const fn intersects(self, other: Hooks) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for Hooks {
    type Output = Hooks;

    fn bitor(self, rhs: Hooks) -> Hooks {
        Hooks(self.0 | rhs.0)
    }
}
