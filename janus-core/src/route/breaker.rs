//! Per-backend circuit breaker: stop dialling a backend that keeps failing, probe it now and then.
//!
//! Upstream has no breaker on tunnel opens: every new tunnel to a dead backend waits for the gRPC
//! dial to fail, inline in the client's read loop (spec §7.1, §7.2). Here the adapter asks the
//! breaker before it opens a tunnel stream and reports the outcome; an open breaker removes the
//! backend from placement ([`Candidates::retain`](super::Candidates::retain)) and, for player
//! kinds, lets the route-table entry pointing at it be overwritten
//! ([`route_write`](super::route_write)).

use core::time::Duration;

use crate::Time;

/// Consecutive failed tunnel opens that open the breaker. Stops a dead backend from costing every
/// new tunnel a full dial timeout; high enough that a few transient errors do not evict a backend.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;

/// First open period, in seconds of [`Time`]. Long enough to stop hammering a restarting backend,
/// short enough that a healthy one is back quickly.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(10);

/// Cap on the open period, which doubles after each failed probe (5 minutes). Bounds how long a
/// recovered backend can stay unused while keeping a dead one down to one probe per 5 minutes.
pub const DEFAULT_MAX_COOL_DOWN: Duration = Duration::from_secs(300);

/// How long a probe may stay unanswered before another may go (seconds of [`Time`]). Stops a probe
/// whose outcome was never reported (the client left mid-dial) from keeping the breaker half-open
/// forever.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Tuning of a [`CircuitBreaker`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker ([`DEFAULT_FAILURE_THRESHOLD`]; 0 acts as 1).
    pub failure_threshold: u32,
    /// Open period after the first trip ([`DEFAULT_COOL_DOWN`]).
    pub cool_down: Duration,
    /// Longest open period after repeated failed probes ([`DEFAULT_MAX_COOL_DOWN`]).
    pub max_cool_down: Duration,
    /// How long a half-open probe may go unreported ([`DEFAULT_PROBE_TIMEOUT`]).
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            cool_down: DEFAULT_COOL_DOWN,
            max_cool_down: DEFAULT_MAX_COOL_DOWN,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

/// What a breaker lets through, as seen at some `now`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BreakerState {
    /// Healthy: every attempt goes.
    Closed,
    /// Failing: nothing goes until `until`.
    Open {
        /// End of the cool-down.
        until: Time,
    },
    /// Cool-down over: one probe at a time decides between Closed and Open.
    HalfOpen {
        /// A probe is out; further attempts wait for its outcome.
        probing: bool,
    },
}

/// [`CircuitBreaker::try_acquire`] refused: the backend is open, or half-open with a probe out.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("backend circuit open until {until:?}")]
pub struct BreakerOpen {
    /// When an attempt may go again: the end of the cool-down, or of the outstanding probe.
    pub until: Time,
}

/// Leave to make one attempt; hand it back with the outcome. Not `Clone`, so each attempt reports
/// once. Reports on permits from before the breaker last changed state are ignored, so the failures
/// of attempts already in flight when it opened do not extend the cool-down.
#[derive(Debug)]
#[must_use = "report the attempt's outcome with on_success or on_failure"]
pub struct Permit {
    epoch: u64,
    probe: bool,
}

impl Permit {
    /// Whether this attempt is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Time },
    Probing { deadline: Time },
}

/// Closed → Open after [`failure_threshold`](BreakerConfig::failure_threshold) consecutive failures
/// → half-open after the cool-down → one probe: success closes, failure reopens with twice the
/// cool-down (capped). Transitions happen on the calls; [`poll_timeout`](Self::poll_timeout) says
/// when the state will next change by itself (for metrics, not needed for correctness).
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    phase: Phase,
    /// The open period used by the last trip; doubles on each failed probe.
    cool_down: Duration,
    /// Bumped on every state change; permits carry it.
    epoch: u64,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new(BreakerConfig::default())
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            phase: Phase::Closed { failures: 0 },
            cool_down: config.cool_down,
            epoch: 0,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Time) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open { until },
            Phase::Open { .. } => BreakerState::HalfOpen { probing: false },
            Phase::Probing { deadline } => BreakerState::HalfOpen {
                probing: now < deadline,
            },
        }
    }

    /// Whether [`try_acquire`](Self::try_acquire) would succeed at `now`; for filtering candidates.
    pub fn allows(&self, now: Time) -> bool {
        matches!(
            self.state(now),
            BreakerState::Closed | BreakerState::HalfOpen { probing: false }
        )
    }

    /// Leave for one attempt at `now`. In half-open this is the probe, and the breaker refuses
    /// further attempts until the probe is reported or times out.
    pub fn try_acquire(&mut self, now: Time) -> Result<Permit, BreakerOpen> {
        match self.state(now) {
            BreakerState::Closed => Ok(Permit {
                epoch: self.epoch,
                probe: false,
            }),
            BreakerState::Open { until } => Err(BreakerOpen { until }),
            BreakerState::HalfOpen { probing: true } => Err(BreakerOpen {
                until: self.poll_timeout().unwrap_or(now),
            }),
            BreakerState::HalfOpen { probing: false } => {
                self.phase = Phase::Probing {
                    deadline: now + self.config.probe_timeout,
                };
                Ok(Permit {
                    epoch: self.epoch,
                    probe: true,
                })
            }
        }
    }

    /// The attempt worked (the tunnel stream opened).
    pub fn on_success(&mut self, permit: Permit, _now: Time) {
        if permit.epoch != self.epoch {
            return;
        }
        match self.phase {
            Phase::Closed { .. } => self.phase = Phase::Closed { failures: 0 },
            Phase::Probing { .. } if permit.probe => self.close(),
            Phase::Probing { .. } | Phase::Open { .. } => {}
        }
    }

    /// The attempt failed (dial error, stream refused, timed out).
    pub fn on_failure(&mut self, permit: Permit, now: Time) {
        if permit.epoch != self.epoch {
            return;
        }
        match self.phase {
            Phase::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold.max(1) {
                    self.cool_down = self.config.cool_down.min(self.config.max_cool_down);
                    self.open(now);
                } else {
                    self.phase = Phase::Closed { failures };
                }
            }
            Phase::Probing { .. } if permit.probe => {
                self.cool_down = self
                    .cool_down
                    .saturating_mul(2)
                    .min(self.config.max_cool_down);
                self.open(now);
            }
            Phase::Probing { .. } | Phase::Open { .. } => {}
        }
    }

    /// When the state next changes without a call: the end of the cool-down, or the timeout of the
    /// outstanding probe. `None` while closed.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.phase {
            Phase::Closed { .. } => None,
            Phase::Open { until } => Some(until),
            Phase::Probing { deadline } => Some(deadline),
        }
    }

    /// Failures since the last success while closed (0 otherwise), for metrics.
    pub fn consecutive_failures(&self) -> u32 {
        match self.phase {
            Phase::Closed { failures } => failures,
            Phase::Open { .. } | Phase::Probing { .. } => 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn open(&mut self, now: Time) {
        self.phase = Phase::Open {
            until: now + self.cool_down,
        };
        self.epoch = self.epoch.wrapping_add(1);
    }

    fn close(&mut self) {
        self.phase = Phase::Closed { failures: 0 };
        self.cool_down = self.config.cool_down;
        self.epoch = self.epoch.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Time {
        Time::from_unix_millis(1_700_000_000_000 + secs * 1000)
    }

    /// Fails `n` fresh attempts at `now`.
    fn fail(breaker: &mut CircuitBreaker, n: u32, now: Time) {
        for _ in 0..n {
            let permit = breaker.try_acquire(now).unwrap();
            breaker.on_failure(permit, now);
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut breaker = CircuitBreaker::default();
        fail(&mut breaker, 4, t(0));
        let permit = breaker.try_acquire(t(0)).unwrap();
        breaker.on_success(permit, t(0));
        fail(&mut breaker, 4, t(1));
        assert_eq!(breaker.state(t(1)), BreakerState::Closed);
        assert_eq!(breaker.consecutive_failures(), 4);
        fail(&mut breaker, 1, t(1));
        assert_eq!(breaker.state(t(1)), BreakerState::Open { until: t(11) });
        assert!(!breaker.allows(t(10)));
        assert_eq!(
            breaker.try_acquire(t(10)).unwrap_err(),
            BreakerOpen { until: t(11) }
        );
        assert_eq!(breaker.poll_timeout(), Some(t(11)));
    }

    #[test]
    fn one_probe_at_a_time_and_success_closes() {
        let mut breaker = CircuitBreaker::default();
        fail(&mut breaker, 5, t(0));
        assert_eq!(
            breaker.state(t(10)),
            BreakerState::HalfOpen { probing: false }
        );
        assert!(breaker.allows(t(10)));
        let probe = breaker.try_acquire(t(10)).unwrap();
        assert!(probe.is_probe());
        assert_eq!(
            breaker.state(t(10)),
            BreakerState::HalfOpen { probing: true }
        );
        assert!(!breaker.allows(t(11)));
        assert_eq!(
            breaker.try_acquire(t(11)).unwrap_err(),
            BreakerOpen { until: t(40) }
        );
        breaker.on_success(probe, t(12));
        assert_eq!(breaker.state(t(12)), BreakerState::Closed);
        assert_eq!(breaker.poll_timeout(), None);
        // The cool-down starts from the base again.
        fail(&mut breaker, 5, t(20));
        assert_eq!(breaker.poll_timeout(), Some(t(30)));
    }

    #[test]
    fn failed_probes_double_the_cool_down_up_to_the_cap() {
        let mut breaker = CircuitBreaker::default();
        fail(&mut breaker, 5, t(0));
        let mut seen = Vec::new();
        for _ in 0..8 {
            let now = breaker.poll_timeout().unwrap();
            let probe = breaker.try_acquire(now).unwrap();
            breaker.on_failure(probe, now);
            seen.push(
                breaker
                    .poll_timeout()
                    .unwrap()
                    .saturating_since(now)
                    .as_secs(),
            );
        }
        assert_eq!(seen, [20, 40, 80, 160, 300, 300, 300, 300]);
    }

    #[test]
    fn stale_reports_are_ignored() {
        let mut breaker = CircuitBreaker::default();
        let in_flight: Vec<Permit> = (0..10)
            .map(|_| breaker.try_acquire(t(0)).unwrap())
            .collect();
        let mut in_flight = in_flight.into_iter();
        for permit in in_flight.by_ref().take(5) {
            breaker.on_failure(permit, t(1));
        }
        assert_eq!(breaker.poll_timeout(), Some(t(11)));
        // The other five fail later: the cool-down is not extended, and a late success does not
        // close the breaker either.
        for permit in in_flight.by_ref().take(4) {
            breaker.on_failure(permit, t(5));
        }
        breaker.on_success(in_flight.next().unwrap(), t(5));
        assert_eq!(breaker.state(t(5)), BreakerState::Open { until: t(11) });
    }

    #[test]
    fn lost_probe_times_out() {
        let mut breaker = CircuitBreaker::default();
        fail(&mut breaker, 5, t(0));
        let lost = breaker.try_acquire(t(10)).unwrap();
        assert!(!breaker.allows(t(39)));
        assert!(breaker.allows(t(40)));
        let probe = breaker.try_acquire(t(40)).unwrap();
        breaker.on_success(probe, t(41));
        assert_eq!(breaker.state(t(41)), BreakerState::Closed);
        // The lost probe turning up afterwards changes nothing.
        breaker.on_failure(lost, t(42));
        assert_eq!(breaker.state(t(42)), BreakerState::Closed);
        assert_eq!(breaker.consecutive_failures(), 0);
    }

    #[test]
    fn zero_threshold_acts_as_one_and_time_may_go_backwards() {
        let mut breaker = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 0,
            ..Default::default()
        });
        fail(&mut breaker, 1, t(100));
        assert_eq!(breaker.state(t(50)), BreakerState::Open { until: t(110) });
        assert!(breaker.try_acquire(t(50)).is_err());
    }
}
