//! The chain: filters in order, their counters, and how a session runs them (state per session,
//! failures caught, time sampled).

use std::{
    any::Any,
    borrow::Cow,
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use janus_proto::message::sc_server_logout::Code as LogoutCode;

use super::{
    Admit, ClientPacket, Decision, FailurePolicy, Filter, FilterError, FilterStats, Hook, Hooks,
    OutboundVerdict, PacketVerdict, Refusal, ServerPacket, SessionView, Stopwatch, TIMING_SAMPLE,
};
use crate::{CloseReason, Time};

/// Most filters in one chain: every filter is a metric label value, and a chain is a handful of
/// rules a person configured.
pub const MAX_FILTERS: usize = 32;
/// Longest filter name, bytes.
pub const MAX_FILTER_NAME_LEN: usize = 32;

/// Why a filter could not be added to a chain (a configuration error, raised at start-up or
/// reload).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterConfigError {
    /// Names are 1..=[`MAX_FILTER_NAME_LEN`] bytes of `a-z`, `0-9` and `_`: metric labels.
    #[error("invalid filter name {name:?} (1 to {MAX_FILTER_NAME_LEN} bytes of a-z, 0-9, _)")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// Two filters with one name would share their counters.
    #[error("filter {name:?} is already in the chain")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// The chain holds [`MAX_FILTERS`] already.
    #[error("too many filters (at most {max})")]
    TooMany {
        /// [`MAX_FILTERS`].
        max: usize,
    },
}

/// A filter's state for one session, type-erased (a zero-sized state is not allocated).
type State = Box<dyn Any + Send>;

/// [`Filter`] with its state type erased, so one chain holds filters of any state type.
trait ErasedFilter: Send + Sync {
    fn handshake(&self, s: &SessionView<'_>, now: Time) -> Result<Admit<State>, FilterError>;
    fn packet(
        &self,
        state: &mut State,
        s: &SessionView<'_>,
        p: &mut ClientPacket,
        now: Time,
    ) -> Result<PacketVerdict, FilterError>;
    fn outbound(
        &self,
        state: &mut State,
        s: &SessionView<'_>,
        p: &mut ServerPacket,
        now: Time,
    ) -> Result<OutboundVerdict, FilterError>;
    fn close(&self, state: State, s: &SessionView<'_>, reason: CloseReason, now: Time);
    fn recheck(&self, s: &SessionView<'_>, now: Time) -> Option<Refusal>;
}

fn foreign_state() -> FilterError {
    FilterError::new("filter state of another type")
}

impl<F: Filter> ErasedFilter for F {
    fn handshake(&self, s: &SessionView<'_>, now: Time) -> Result<Admit<State>, FilterError> {
        Ok(match self.on_handshake(s, now)? {
            Admit::Accept(state) => Admit::Accept(Box::new(state)),
            Admit::Refuse(r) => Admit::Refuse(r),
        })
    }

    fn packet(
        &self,
        state: &mut State,
        s: &SessionView<'_>,
        p: &mut ClientPacket,
        now: Time,
    ) -> Result<PacketVerdict, FilterError> {
        let state = state.downcast_mut::<F::State>().ok_or_else(foreign_state)?;
        self.on_packet(state, s, p, now)
    }

    fn outbound(
        &self,
        state: &mut State,
        s: &SessionView<'_>,
        p: &mut ServerPacket,
        now: Time,
    ) -> Result<OutboundVerdict, FilterError> {
        let state = state.downcast_mut::<F::State>().ok_or_else(foreign_state)?;
        self.on_outbound(state, s, p, now)
    }

    fn close(&self, state: State, s: &SessionView<'_>, reason: CloseReason, now: Time) {
        if let Ok(state) = state.downcast::<F::State>() {
            self.on_close(*state, s, reason, now);
        }
    }

    fn recheck(&self, s: &SessionView<'_>, now: Time) -> Option<Refusal> {
        Filter::recheck(self, s, now)
    }
}

struct Entry {
    filter: Box<dyn ErasedFilter>,
    name: Arc<str>,
    hooks: Hooks,
    failure: FailurePolicy,
    stats: Arc<FilterStats>,
}

/// Filters in the order they run, shared by every session of a gateway (it lives in the
/// [`ServerConfig`](crate::config::ServerConfig)). Empty by default: no filter, no cost.
#[derive(Default)]
pub struct FilterChain {
    entries: Vec<Entry>,
    /// Every hook some filter declared.
    hooks: Hooks,
    stopwatch: Option<Arc<dyn Stopwatch>>,
}

impl fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterChain")
            .field("filters", &self.names().collect::<Vec<_>>())
            .field("timed", &self.stopwatch.is_some())
            .finish()
    }
}

/// How a session ends when the chain says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ending {
    pub reason: CloseReason,
    pub code: Option<LogoutCode>,
}

impl Ending {
    fn refused(refusal: Refusal, established: bool) -> Self {
        Self {
            reason: refusal.close_reason(established),
            code: refusal.logout_code(),
        }
    }

    fn failed() -> Self {
        Self {
            reason: CloseReason::FilterFailed,
            code: CloseReason::FilterFailed.logout_code(),
        }
    }
}

/// What the chain decided about a client packet.
#[derive(Debug)]
pub(crate) enum InboundStep {
    /// Forward it (as the filters left it).
    Forward(ClientPacket),
    /// Answer the request with this error.
    Reject(Cow<'static, str>),
    /// Nothing to do.
    Drop,
    /// End the session.
    Close(Ending),
}

/// What the chain decided about a reply or push.
#[derive(Debug)]
pub(crate) enum OutboundStep {
    /// Send it (as the filters left it).
    Send(ServerPacket),
    /// Nothing to send.
    Drop,
    /// End the session.
    Close(Ending),
}

/// One session's filter states, index-aligned with the chain's filters (`None`: the filter
/// failed and is bypassed for this session), and its call counter for timing samples.
pub(crate) struct SessionFilters {
    slots: Box<[Option<State>]>,
    tick: u32,
}

/// Fuzz builds clone established sessions (`fuzz/fuzz_targets/session.rs` makes one and copies
/// it per input). Filter states are opaque and not cloneable, so a copy starts with every filter
/// bypassed; the fuzz targets configure no filters, so nothing is lost there.
#[cfg(fuzzing)]
impl Clone for SessionFilters {
    fn clone(&self) -> Self {
        Self {
            slots: self.slots.iter().map(|_| None).collect(),
            tick: self.tick,
        }
    }
}

impl fmt::Debug for SessionFilters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionFilters")
            .field("filters", &self.slots.len())
            .finish()
    }
}

/// Runs one hook, catching a panic. `Err(true)`: it panicked; `Err(false)`: it returned an
/// error.
fn guarded<T>(hook: impl FnOnce() -> Result<T, FilterError>) -> Result<T, bool> {
    match catch_unwind(AssertUnwindSafe(hook)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(false),
        Err(payload) => {
            // A payload whose destructor panics too must not escape.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Err(true)
        }
    }
}

/// Drops a state that a failed hook may have left half-updated (its destructor may panic too).
fn discard(state: Option<State>) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(state)));
}

/// Laps of the adapter's stopwatch around each filter of one pass along the chain, when this
/// pass is sampled.
struct Laps<'a> {
    watch: Option<&'a dyn Stopwatch>,
    last: u64,
}

impl<'a> Laps<'a> {
    fn new(watch: Option<&'a Arc<dyn Stopwatch>>, sampled: bool) -> Self {
        let watch = watch.filter(|_| sampled).map(|w| &**w);
        Self {
            last: watch.map_or(0, |w| w.nanos()),
            watch,
        }
    }

    fn sampled(watch: Option<&'a Arc<dyn Stopwatch>>, tick: &mut u32) -> Self {
        let sampled = *tick % TIMING_SAMPLE == 0;
        *tick = tick.wrapping_add(1);
        Self::new(watch, sampled)
    }

    #[inline]
    fn lap(&mut self, stats: &FilterStats) {
        if let Some(watch) = self.watch {
            let now = watch.nanos();
            stats.timed(now.saturating_sub(self.last));
            self.last = now;
        }
    }
}

impl FilterChain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `filter`: it runs after those already in the chain.
    pub fn push<F: Filter>(&mut self, filter: F) -> Result<(), FilterConfigError> {
        let name = filter.name();
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if name.is_empty() || name.len() > MAX_FILTER_NAME_LEN || !name.chars().all(valid) {
            return Err(FilterConfigError::InvalidName { name: name.into() });
        }
        if self.names().any(|n| n == name) {
            return Err(FilterConfigError::DuplicateName { name: name.into() });
        }
        if self.entries.len() >= MAX_FILTERS {
            return Err(FilterConfigError::TooMany { max: MAX_FILTERS });
        }
        let hooks = filter.hooks();
        self.hooks = self.hooks | hooks;
        self.entries.push(Entry {
            name: name.into(),
            hooks,
            failure: filter.on_failure(),
            stats: Arc::new(FilterStats::with_hooks(hooks)),
            filter: Box::new(filter),
        });
        Ok(())
    }

    /// Whether the chain has no filter.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many filters it has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The filters' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|e| &*e.name)
    }

    /// Times one call in [`TIMING_SAMPLE`] with `stopwatch` (the adapter's monotonic clock).
    /// Without one, nothing is timed.
    pub fn set_stopwatch(&mut self, stopwatch: Arc<dyn Stopwatch>) {
        self.stopwatch = Some(stopwatch);
    }

    /// Each filter's name and counters, in order (for metrics).
    pub fn stats(&self) -> Vec<(Arc<str>, Arc<FilterStats>)> {
        self.entries
            .iter()
            .map(|e| (Arc::clone(&e.name), Arc::clone(&e.stats)))
            .collect()
    }

    /// Keeps counting where `old` left off: each filter of this chain named as one of `old`
    /// takes over its counters (a reload builds a new chain; sessions that started before it
    /// keep running the old one and count into the same counters).
    pub fn carry_stats_from(&mut self, old: &FilterChain) {
        for entry in &mut self.entries {
            if let Some(previous) = old.entries.iter().find(|o| o.name == entry.name) {
                previous.stats.set_hooks(entry.hooks);
                entry.stats = Arc::clone(&previous.stats);
            }
        }
    }

    /// Whether some filter takes part in any of `hooks`.
    #[inline]
    pub(crate) fn wants(&self, hooks: Hooks) -> bool {
        self.hooks.intersects(hooks)
    }

    /// The handshake hooks of a session: `Ok` with the session's filter states (`None` when no
    /// filter needs any), or how the session is refused. Every filter that accepted before a
    /// refusal sees [`Filter::on_close`], so each state made gets its end.
    pub(crate) fn start(
        &self,
        s: &SessionView<'_>,
        now: Time,
    ) -> Result<Option<Box<SessionFilters>>, Ending> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let keep = self.wants(Hooks::PER_SESSION);
        let mut slots: Vec<Option<State>> =
            Vec::with_capacity(if keep { self.entries.len() } else { 0 });
        let mut laps = Laps::new(self.stopwatch.as_ref(), true);
        let mut refused = None;
        for entry in &self.entries {
            let result = guarded(|| entry.filter.handshake(s, now));
            laps.lap(&entry.stats);
            let state = match result {
                Ok(Admit::Accept(state)) => {
                    entry.stats.decided(Hook::Handshake, Decision::Pass);
                    Some(state)
                }
                Ok(Admit::Refuse(refusal)) => {
                    entry.stats.decided(Hook::Handshake, Decision::Refuse);
                    refused = Some(Ending::refused(refusal, false));
                    break;
                }
                Err(panicked) => {
                    entry.stats.decided(Hook::Handshake, Decision::Failed);
                    entry.stats.failed(panicked);
                    if entry.failure == FailurePolicy::CloseSession {
                        refused = Some(Ending::failed());
                        break;
                    }
                    None
                }
            };
            if keep {
                slots.push(state);
            } else {
                discard(state);
            }
        }
        let mut filters = SessionFilters {
            slots: slots.into_boxed_slice(),
            tick: 1,
        };
        match refused {
            Some(ending) => {
                self.close(&mut filters, s, ending.reason, now);
                Err(ending)
            }
            None if keep => Ok(Some(Box::new(filters))),
            None => Ok(None),
        }
    }

    /// The packet hooks, in order, until one stops the packet.
    pub(crate) fn inbound(
        &self,
        filters: &mut SessionFilters,
        s: &SessionView<'_>,
        mut packet: ClientPacket,
        now: Time,
    ) -> InboundStep {
        let mut laps = Laps::sampled(self.stopwatch.as_ref(), &mut filters.tick);
        for (entry, slot) in self.entries.iter().zip(filters.slots.iter_mut()) {
            if !entry.hooks.contains(Hooks::PACKET) {
                continue;
            }
            let Some(state) = slot else { continue };
            let before = packet.take_rewritten();
            let result = guarded(|| entry.filter.packet(state, s, &mut packet, now));
            laps.lap(&entry.stats);
            let changed = packet.take_rewritten();
            packet.mark_rewritten(before || changed);
            let stats = &entry.stats;
            match result {
                Ok(PacketVerdict::Pass) => {
                    let decision = if changed {
                        Decision::Rewrite
                    } else {
                        Decision::Pass
                    };
                    stats.decided(Hook::Packet, decision);
                }
                Ok(PacketVerdict::Reject(msg)) => {
                    stats.decided(Hook::Packet, Decision::Reject);
                    return InboundStep::Reject(msg);
                }
                Ok(PacketVerdict::Drop(reason)) => {
                    stats.decided(Hook::Packet, Decision::Drop);
                    stats.dropped(reason);
                    return InboundStep::Drop;
                }
                Ok(PacketVerdict::Close(refusal)) => {
                    stats.decided(Hook::Packet, Decision::Close);
                    return InboundStep::Close(Ending::refused(refusal, true));
                }
                Err(panicked) => {
                    stats.decided(Hook::Packet, Decision::Failed);
                    stats.failed(panicked);
                    discard(slot.take());
                    if entry.failure == FailurePolicy::CloseSession {
                        return InboundStep::Close(Ending::failed());
                    }
                }
            }
        }
        InboundStep::Forward(packet)
    }

    /// The outbound hooks of a reply or push (`packet.is_push()`), in order, until one stops
    /// it.
    pub(crate) fn outbound(
        &self,
        filters: &mut SessionFilters,
        s: &SessionView<'_>,
        mut packet: ServerPacket,
        now: Time,
    ) -> OutboundStep {
        let (hook, wanted) = if packet.is_push() {
            (Hook::Push, Hooks::PUSH)
        } else {
            (Hook::Reply, Hooks::REPLY)
        };
        let mut laps = Laps::sampled(self.stopwatch.as_ref(), &mut filters.tick);
        for (entry, slot) in self.entries.iter().zip(filters.slots.iter_mut()) {
            if !entry.hooks.contains(wanted) {
                continue;
            }
            let Some(state) = slot else { continue };
            let before = packet.take_rewritten();
            let result = guarded(|| entry.filter.outbound(state, s, &mut packet, now));
            laps.lap(&entry.stats);
            let changed = packet.take_rewritten();
            packet.mark_rewritten(before || changed);
            let stats = &entry.stats;
            match result {
                Ok(OutboundVerdict::Pass) => {
                    let decision = if changed {
                        Decision::Rewrite
                    } else {
                        Decision::Pass
                    };
                    stats.decided(hook, decision);
                }
                Ok(OutboundVerdict::Drop(reason)) => {
                    stats.decided(hook, Decision::Drop);
                    stats.dropped(reason);
                    return OutboundStep::Drop;
                }
                Ok(OutboundVerdict::Close(refusal)) => {
                    stats.decided(hook, Decision::Close);
                    return OutboundStep::Close(Ending::refused(refusal, true));
                }
                Err(panicked) => {
                    stats.decided(hook, Decision::Failed);
                    stats.failed(panicked);
                    discard(slot.take());
                    if entry.failure == FailurePolicy::CloseSession {
                        return OutboundStep::Close(Ending::failed());
                    }
                }
            }
        }
        OutboundStep::Send(packet)
    }

    /// The close hooks: every state is handed back (or dropped, for filters without one).
    pub(crate) fn close(
        &self,
        filters: &mut SessionFilters,
        s: &SessionView<'_>,
        reason: CloseReason,
        now: Time,
    ) {
        let mut laps = Laps::sampled(self.stopwatch.as_ref(), &mut filters.tick);
        for (entry, slot) in self.entries.iter().zip(filters.slots.iter_mut()) {
            let Some(state) = slot.take() else { continue };
            if !entry.hooks.contains(Hooks::CLOSE) {
                discard(Some(state));
                continue;
            }
            let result = guarded(|| {
                entry.filter.close(state, s, reason, now);
                Ok(())
            });
            laps.lap(&entry.stats);
            match result {
                Ok(()) => entry.stats.decided(Hook::Close, Decision::Pass),
                Err(panicked) => {
                    entry.stats.decided(Hook::Close, Decision::Failed);
                    entry.stats.failed(panicked);
                }
            }
        }
    }

    /// The recheck hooks for a live session: how it must end, if it must.
    pub(crate) fn recheck(&self, s: &SessionView<'_>, now: Time) -> Option<Ending> {
        if !self.wants(Hooks::RECHECK) {
            return None;
        }
        let mut laps = Laps::new(self.stopwatch.as_ref(), true);
        for entry in &self.entries {
            if !entry.hooks.contains(Hooks::RECHECK) {
                continue;
            }
            let result = guarded(|| Ok(entry.filter.recheck(s, now)));
            laps.lap(&entry.stats);
            match result {
                Ok(None) => entry.stats.decided(Hook::Recheck, Decision::Pass),
                Ok(Some(refusal)) => {
                    entry.stats.decided(Hook::Recheck, Decision::Close);
                    return Some(Ending::refused(refusal, true));
                }
                Err(panicked) => {
                    entry.stats.decided(Hook::Recheck, Decision::Failed);
                    entry.stats.failed(panicked);
                    if entry.failure == FailurePolicy::CloseSession {
                        return Some(Ending::failed());
                    }
                }
            }
        }
        None
    }
}
