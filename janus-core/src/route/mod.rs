//! Routing as pure decisions: the tunnel a packet goes on, the backend a new tunnel goes to.
//!
//! Two questions, asked at different times:
//!
//! * **Per packet** (in the session): [`RouteTable::route`] maps `(mod, obj, uid)` to a
//!   [`TunnelKey`] and the `obj` to forward. Module 6 goes to the room kind, everything else to the
//!   player kind (spec §4.2), and player tunnels are always keyed by the session's own uid.
//! * **Per new tunnel** (in the adapter, when the session asks to open a key): choose a backend of
//!   the kind's service.
//!
//! ```text
//! BackendSet::candidates_for(color)        colour filter (upstream's node filter)
//!   .retain(|i, _| breakers[i].allows(now)) drop backends that keep failing
//! place(GET r_<svc>_{color}_{oid}, &candidates, |c| wrr.pick(c))
//!   Sticky(i) ─────────────────────────────────────────────► dial i
//!   New(i) ─► route_write(..) ─► SETNX / SET ─► settle(i, won, stored_now, ..) ─► dial
//! breakers[i].try_acquire(now) … on_success / on_failure(permit, now)
//! ```
//!
//! The adapter does the Redis and gRPC IO between the steps; everything that decides is here and
//! tested with plain values.
//!
//! # Sticky placement
//!
//! Every gateway places oids on backends and all of them must agree, so the first placement is
//! published in the shared Redis route table (`r_<svc>_{<color>}_{<oid>}`, spec §4.3) with `SETNX`,
//! and the backend renews the entry while it holds the object. [`place`] reuses a stored address
//! that is an available candidate; otherwise the picker chooses, [`route_write`] says how to write
//! the choice, and [`settle`] turns the write's outcome into the backend to dial.
//!
//! # The dead-backend entry
//!
//! Upstream only ever writes with `SETNX`. When the stored backend dies, its entry stays until its
//! TTL runs out (600 s by default): `SETNX` loses, the stored address is not an available node, and
//! every tunnel for that oid fails with "the existed address in routeTable is not found". The
//! player is locked out for up to ten minutes.
//!
//! We overwrite the entry (`SET`) only when this gateway's [`CircuitBreaker`] for the stored
//! backend is [`Open`](BreakerState::Open) (it has failed repeatedly, recently) and the kind is
//! player-like ([`OidRule::SessionUid`]). For a player the only client of the oid is this session,
//! and a newer login wins anyway (roma kicks the older one with ConflictingLogin), so moving the
//! player cannot strand anyone; if the old backend was merely unreachable from here, its renewal
//! (`ExpireIfSame`) fails and it stops its copy of the actor. A room's other members may reach the
//! stored backend from other gateways, so room-like kinds keep upstream's wait rather than split a
//! room in two.
//!
//! A dead backend soon leaves discovery too (its etcd lease expires), so the adapter should keep
//! the breaker of a departed address while it is open: that verdict is what allows the overwrite.
//! An address that left discovery without ever failing here has no verdict and is waited for, as
//! upstream does; it may be alive behind an etcd hiccup.

mod balance;
mod breaker;
mod keys;
mod sticky;
mod table;
#[cfg(test)]
mod tests;

pub use balance::{
    Backend, BackendSet, BackendSetError, Candidates, SmoothWrr, pick_less_loaded,
    power_of_two_choices,
};
pub use breaker::{
    BreakerConfig, BreakerOpen, BreakerState, CircuitBreaker, DEFAULT_COOL_DOWN,
    DEFAULT_FAILURE_THRESHOLD, DEFAULT_MAX_COOL_DOWN, DEFAULT_PROBE_TIMEOUT, Permit,
};
pub use keys::{default_service, route_key, tunnel_method};
pub use sticky::{Placement, RouteWrite, place, route_write, settle};
pub use table::{
    MAX_KIND_NAME_LEN, MAX_TUNNEL_KINDS, OidRule, RouteConfigError, RouteTable, Routed, TunnelKey,
    TunnelKind,
};

/// Why a packet could not be routed or a tunnel could not be placed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// A player-kind packet named another object than the session's own uid. A client bug or an
    /// attempt to act as another player (spec §4.2); the packet must not be forwarded.
    #[error("obj {obj} is not the session uid {uid}")]
    ObjectNotOwned {
        /// The `obj` the client sent.
        obj: i64,
        /// The session uid.
        uid: i64,
    },
    /// No backend of the service serves this colour and is available (or all have weight 0).
    #[error("no available backend for colour {color:?}")]
    NoBackend {
        /// The session colour.
        color: String,
    },
    /// Another gateway placed the oid first, on a backend that is not available here. Retry later:
    /// the entry expires, or our breaker for it opens.
    #[error("the route table places this oid on {addr}, which is not available")]
    StoredBackendUnavailable {
        /// The stored backend address.
        addr: String,
    },
    /// `SETNX` lost, yet the entry was gone when read back (it expired in between). Place again.
    #[error("route table entry changed during placement")]
    PlacementRace,
}
