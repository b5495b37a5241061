//! Per-filter counters: calls and decisions by hook, drops by reason, failures, and sampled time
//! spent. Plain relaxed atomics shared by every session of a chain (and carried over a reload by
//! [`FilterChain::carry_stats_from`](super::FilterChain::carry_stats_from)); rendered the same way
//! by every adapter ([`render_prometheus`]). Every label has a bounded set of values: the filter
//! names of the configuration (at most [`MAX_FILTERS`](super::MAX_FILTERS)), [`Hook::ALL`],
//! [`Decision::ALL`], [`DropReason::ALL`].

use std::{
    fmt::{Debug, Write as _},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
};

use super::{DropReason, Hooks};

/// One call in this many is timed (per session; a session's first call, its handshake, always
/// is): reading a clock costs about as much as a simple filter, so timing every call would
/// double what it measures.
pub const TIMING_SAMPLE: u32 = 16;

/// A monotonic clock with nanosecond resolution, handed in by the adapter (the core reads no
/// clock of its own) to time filters.
pub trait Stopwatch: Send + Sync + Debug {
    /// Nanoseconds since an arbitrary fixed point; never decreasing.
    fn nanos(&self) -> u64;
}

macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }
        impl $name {
            /// Every value, in label order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The metric label.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub(crate) const fn index(self) -> usize { self as usize }
        }
    };
}

label_enum!(
    /// Where in a session a filter was called.
    Hook {
        /// [`Filter::on_handshake`](super::Filter::on_handshake).
        Handshake => "handshake",
        /// [`Filter::on_packet`](super::Filter::on_packet).
        Packet => "packet",
        /// [`Filter::on_outbound`](super::Filter::on_outbound) for a reply.
        Reply => "reply",
        /// [`Filter::on_outbound`](super::Filter::on_outbound) for a push.
        Push => "push",
        /// [`Filter::on_close`](super::Filter::on_close).
        Close => "close",
        /// [`Filter::recheck`](super::Filter::recheck).
        Recheck => "recheck",
    }
);

label_enum!(
    /// What one call decided.
    Decision {
        /// Let through unchanged (a handshake accepted, a recheck with nothing to say, a close
        /// seen).
        Pass => "pass",
        /// Let through changed.
        Rewrite => "rewrite",
        /// A handshake refused.
        Refuse => "refuse",
        /// A request answered with an error instead of forwarded.
        Reject => "reject",
        /// A packet dropped.
        Drop => "drop",
        /// The session closed (a packet, reply, push or recheck verdict).
        Close => "close",
        /// The hook failed (an error or a panic); [`FailurePolicy`](super::FailurePolicy)
        /// decided the rest.
        Failed => "failed",
    }
);

const HOOKS: usize = Hook::ALL.len();
const DECISIONS: usize = Decision::ALL.len();

/// The counters of one filter.
#[derive(Debug, Default)]
pub struct FilterStats {
    decisions: [[AtomicU64; DECISIONS]; HOOKS],
    drops: [AtomicU64; DropReason::ALL.len()],
    errors: AtomicU64,
    panics: AtomicU64,
    timed_calls: AtomicU64,
    timed_nanos: AtomicU64,
    /// The hooks the filter declared (rendering shows those only).
    hooks: AtomicU8,
}

fn add(c: Option<&AtomicU64>, n: u64) {
    if let Some(c) = c {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl FilterStats {
    pub(crate) fn with_hooks(hooks: Hooks) -> Self {
        let stats = Self::default();
        stats.hooks.store(hooks.bits(), Ordering::Relaxed);
        stats
    }

    pub(crate) fn set_hooks(&self, hooks: Hooks) {
        self.hooks.store(hooks.bits(), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn decided(&self, hook: Hook, decision: Decision) {
        add(
            self.decisions
                .get(hook.index())
                .and_then(|d| d.get(decision.index())),
            1,
        );
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        add(self.drops.get(reason.index()), 1);
    }

    pub(crate) fn failed(&self, panicked: bool) {
        add(Some(if panicked { &self.panics } else { &self.errors }), 1);
    }

    pub(crate) fn timed(&self, nanos: u64) {
        add(Some(&self.timed_calls), 1);
        add(Some(&self.timed_nanos), nanos);
    }

    /// Calls of `hook` that decided `decision` so far.
    pub fn decisions(&self, hook: Hook, decision: Decision) -> u64 {
        self.decisions
            .get(hook.index())
            .and_then(|d| d.get(decision.index()))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Calls of `hook` so far (every decision).
    pub fn calls(&self, hook: Hook) -> u64 {
        Decision::ALL.iter().map(|d| self.decisions(hook, *d)).sum()
    }

    /// Packets dropped for `reason` so far.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Hooks that returned an error, and hooks that panicked, so far.
    pub fn failures(&self) -> (u64, u64) {
        (
            self.errors.load(Ordering::Relaxed),
            self.panics.load(Ordering::Relaxed),
        )
    }

    /// Calls timed (one in [`TIMING_SAMPLE`]) and the nanoseconds they took in all: the mean
    /// time per call is their ratio.
    pub fn timing(&self) -> (u64, u64) {
        (
            self.timed_calls.load(Ordering::Relaxed),
            self.timed_nanos.load(Ordering::Relaxed),
        )
    }

    fn hooks(&self) -> impl Iterator<Item = Hook> + '_ {
        let declared = Hooks::from_bits(self.hooks.load(Ordering::Relaxed));
        Hook::ALL
            .iter()
            .copied()
            .filter(move |h| h.declared_in(declared))
    }
}

impl Hook {
    fn declared_in(self, hooks: Hooks) -> bool {
        match self {
            Hook::Handshake => true,
            Hook::Packet => hooks.contains(Hooks::PACKET),
            Hook::Reply => hooks.contains(Hooks::REPLY),
            Hook::Push => hooks.contains(Hooks::PUSH),
            Hook::Close => hooks.contains(Hooks::CLOSE),
            Hook::Recheck => hooks.contains(Hooks::RECHECK),
        }
    }
}

/// Appends the filter families in the Prometheus text format (0.0.4) to `out`, one series set
/// per filter of `filters` (a chain's [`stats`](super::FilterChain::stats)):
///
/// | family | type | labels |
/// | --- | --- | --- |
/// | `janus_filter_calls_total` | counter | filter, hook |
/// | `janus_filter_decisions_total` | counter | filter, hook, decision |
/// | `janus_filter_drops_total` | counter | filter, reason |
/// | `janus_filter_failures_total` | counter | filter, kind (error, panic) |
/// | `janus_filter_timed_calls_total` / `janus_filter_timed_seconds_total` | counter | filter |
///
/// Hooks a filter does not take part in are left out. Nothing is written for an empty chain.
pub fn render_prometheus(filters: &[(Arc<str>, Arc<FilterStats>)], out: &mut String) {
    if filters.is_empty() {
        return;
    }
    let mut family = |name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    };
    family(
        "janus_filter_calls_total",
        "Filter calls, by filter and hook.",
    );
    for (name, stats) in filters {
        for hook in stats.hooks() {
            let _ = writeln!(
                out,
                "janus_filter_calls_total{{filter=\"{name}\",hook=\"{}\"}} {}",
                hook.as_str(),
                stats.calls(hook)
            );
        }
    }
    let mut family = |name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    };
    family(
        "janus_filter_decisions_total",
        "Filter decisions, by filter, hook and decision.",
    );
    for (name, stats) in filters {
        for hook in stats.hooks() {
            for decision in Decision::ALL {
                let _ = writeln!(
                    out,
                    "janus_filter_decisions_total{{filter=\"{name}\",hook=\"{}\",decision=\"{}\"}} {}",
                    hook.as_str(),
                    decision.as_str(),
                    stats.decisions(hook, *decision)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP janus_filter_drops_total Packets a filter dropped, by filter and reason.\n# TYPE janus_filter_drops_total counter"
    );
    for (name, stats) in filters {
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "janus_filter_drops_total{{filter=\"{name}\",reason=\"{}\"}} {}",
                reason.as_str(),
                stats.drops(reason)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP janus_filter_failures_total Filter hooks that returned an error or panicked (caught; the session's outcome follows the filter's failure policy).\n# TYPE janus_filter_failures_total counter"
    );
    for (name, stats) in filters {
        let (errors, panics) = stats.failures();
        let _ = writeln!(
            out,
            "janus_filter_failures_total{{filter=\"{name}\",kind=\"error\"}} {errors}\njanus_filter_failures_total{{filter=\"{name}\",kind=\"panic\"}} {panics}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP janus_filter_timed_calls_total Filter calls timed (one in {TIMING_SAMPLE} per session).\n# TYPE janus_filter_timed_calls_total counter"
    );
    for (name, stats) in filters {
        let _ = writeln!(
            out,
            "janus_filter_timed_calls_total{{filter=\"{name}\"}} {}",
            stats.timing().0
        );
    }
    let _ = writeln!(
        out,
        "# HELP janus_filter_timed_seconds_total Time spent in the timed filter calls; divided by janus_filter_timed_calls_total, the mean time per call.\n# TYPE janus_filter_timed_seconds_total counter"
    );
    for (name, stats) in filters {
        let nanos = stats.timing().1;
        let _ = writeln!(
            out,
            "janus_filter_timed_seconds_total{{filter=\"{name}\"}} {}.{:09}",
            nanos / 1_000_000_000,
            nanos % 1_000_000_000
        );
    }
}
