//! The gateway's side of the filter chain ([`janus_core::filter`]): which custom filters this
//! build has, the clock that times filters, and how a chain is readied for a gateway. The
//! decisions are all the core's; the connection tasks only hand it their inputs.
//!
//! # Custom filters
//!
//! A game team's filter is a crate implementing [`janus_core::filter::Filter`] with a
//! `register(&mut CustomFilters)` function, added to this crate as an optional dependency behind
//! a cargo feature and registered in [`custom_filters`]. The repository's example is
//! `janus-filter-example` (feature `filter-example`, configured as `filters.custom.trial`).
//!
//! # Decisions that need IO
//!
//! Hooks run inside a connection task and must not wait on the network. Two ways to decide with
//! outside data without blocking a connection:
//!
//! * **Decided ahead and cached.** A background task keeps a snapshot (a ban set, a feature
//!   flag) fresh and the hook reads it: `janus_core::filter::builtin::BanFeed` is such a
//!   snapshot. When the snapshot changes, ask every live session to recheck
//!   ([`Gateway::recheck_sessions`](crate::gateway::Gateway::recheck_sessions)), which closes
//!   the ones the new data refuses. The configuration's own ban list works this way on reload.
//! * **Decided at the handshake, kept per session.** A filter's state lives as long as the
//!   session: what it learned before the connection (or from a snapshot at the handshake) is
//!   kept there for every later packet.
//!
//! An async round trip per packet with a bounded wait is deliberately not offered: packets of a
//! session must stay in order, so every packet behind the one waiting would wait too, and a slow
//! service would turn into a stalled connection. Fetch ahead instead.

use std::{sync::Arc, time::Instant};

use janus_core::filter::{FilterChain, Stopwatch};

use crate::config::CustomFilters;

/// The custom filters compiled into this build (each behind its cargo feature).
pub fn custom_filters() -> CustomFilters {
    #[allow(unused_mut)]
    let mut custom = CustomFilters::new();
    #[cfg(feature = "filter-example")]
    janus_filter_example::register(&mut custom);
    custom
}

/// The names of [`custom_filters`], comma-separated (for `janus_build_info`).
pub fn custom_filter_names() -> String {
    custom_filters().names().collect::<Vec<_>>().join(",")
}

/// The monotonic clock the chain's sampled timings read.
#[derive(Debug)]
pub struct MonotonicStopwatch(Instant);

impl Default for MonotonicStopwatch {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Stopwatch for MonotonicStopwatch {
    fn nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Readies `chain` for a gateway: timed with the process's monotonic clock, and counting on from
/// `previous` (the chain a reload replaces) for filters of the same name.
pub fn prepare(chain: &mut FilterChain, previous: Option<&FilterChain>) {
    if chain.is_empty() {
        return;
    }
    chain.set_stopwatch(Arc::new(MonotonicStopwatch::default()));
    if let Some(previous) = previous {
        chain.carry_stats_from(previous);
    }
}
