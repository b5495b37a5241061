//! Sticky placement against the shared Redis route table (spec §4.3), as pure decisions.
//!
//! Opening a tunnel goes:
//!
//! 1. the adapter `GET`s the entry and builds the [`Candidates`] (colour, breakers);
//! 2. [`place`]: the stored address if it is a candidate ([`Placement::Sticky`], nothing to write),
//!    else a fresh pick ([`Placement::New`]);
//! 3. for `New`, [`route_write`] says how to write it: `SETNX` (which may lose to another gateway)
//!    or, for a dead backend's entry, `SET`;
//! 4. [`settle`] turns the write's outcome into the backend to dial.
//!
//! Why we sometimes overwrite an entry: see "The dead-backend entry" in the [parent module](super).

use super::{BreakerState, Candidates, OidRule, RouteError};

/// Where a new tunnel goes, before the route table is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// The route table already names this available candidate: dial it, write nothing.
    Sticky(usize),
    /// The picker chose this candidate: write it with [`route_write`]'s verb, then [`settle`].
    New(usize),
}

impl Placement {
    /// The chosen set index.
    pub fn index(self) -> usize {
        match self {
            Placement::Sticky(i) | Placement::New(i) => i,
        }
    }
}

/// How to publish a [`Placement::New`] in the route table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RouteWrite {
    /// `SET key addr NX EX ttl`: another gateway may have placed the oid first.
    SetIfAbsent,
    /// `SET key addr EX ttl`: replace a dead backend's entry. Always counts as won in [`settle`].
    Overwrite,
}

/// Step 2: the stored address `sticky` if it is among `candidates`, otherwise `pick(candidates)`
/// (a [`SmoothWrr`](super::SmoothWrr), [`pick_less_loaded`](super::pick_less_loaded), ...).
///
/// [`RouteError::NoBackend`] when there is no candidate or the picker declines (all weights 0).
pub fn place(
    sticky: Option<&str>,
    candidates: &Candidates<'_>,
    pick: impl FnOnce(&Candidates<'_>) -> Option<usize>,
) -> Result<Placement, RouteError> {
    if let Some(index) = sticky.and_then(|addr| candidates.position(addr)) {
        return Ok(Placement::Sticky(index));
    }
    match pick(candidates) {
        Some(index) if candidates.contains(index) => Ok(Placement::New(index)),
        _ => Err(RouteError::NoBackend {
            color: candidates.color().to_owned(),
        }),
    }
}

/// Step 3: how to write a [`Placement::New`], given the value `stored` that `place` saw, this
/// gateway's breaker state for the stored backend (`None` when it has none) and the kind's rule.
/// See the module docs for why only an open breaker of a player-like kind allows an overwrite.
pub fn route_write(
    stored: Option<&str>,
    stored_backend: Option<BreakerState>,
    rule: OidRule,
) -> RouteWrite {
    match (stored, stored_backend, rule) {
        (Some(_), Some(BreakerState::Open { .. }), OidRule::SessionUid) => RouteWrite::Overwrite,
        _ => RouteWrite::SetIfAbsent,
    }
}

/// Step 4: the backend to dial after writing `chosen`. `won` is whether the write took (always for
/// [`RouteWrite::Overwrite`]); when it did not, `stored_now` is the value that beat it, which is
/// used if it is a candidate (as upstream).
///
/// [`RouteError::StoredBackendUnavailable`] when the winner is not a candidate here;
/// [`RouteError::PlacementRace`] when the write lost but no value could be read back.
pub fn settle(
    chosen: usize,
    won: bool,
    stored_now: Option<&str>,
    candidates: &Candidates<'_>,
) -> Result<usize, RouteError> {
    if won {
        return Ok(chosen);
    }
    let addr = stored_now.ok_or(RouteError::PlacementRace)?;
    candidates
        .position(addr)
        .ok_or_else(|| RouteError::StoredBackendUnavailable {
            addr: addr.to_owned(),
        })
}
