//! GCRA (generic cell rate algorithm): a token bucket whose whole state is one timestamp.

use core::time::Duration;

use crate::Time;

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A rate: `burst` cells back to back, then `per_second` on average.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RateLimit {
    /// Sustained rate, cells per second. [`Gcra::new`] treats 0 as 1; [`validate`](Self::validate)
    /// rejects it.
    pub per_second: u32,
    /// Cells accepted back to back after a quiet period. [`Gcra::new`] treats 0 as 1;
    /// [`validate`](Self::validate) rejects it.
    pub burst: u32,
}

/// A [`RateLimit`] that admits nothing is a configuration mistake, never a limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRateLimit {
    /// `per_second` is 0: the bucket would never refill.
    #[error("rate limit per_second must be at least 1")]
    ZeroRate,
    /// `burst` is 0: not even the first cell would pass.
    #[error("rate limit burst must be at least 1")]
    ZeroBurst,
}

impl RateLimit {
    /// Rejects the zero values, for configuration loading.
    pub fn validate(&self) -> Result<(), InvalidRateLimit> {
        if self.per_second == 0 {
            Err(InvalidRateLimit::ZeroRate)
        } else if self.burst == 0 {
            Err(InvalidRateLimit::ZeroBurst)
        } else {
            Ok(())
        }
    }
}

/// [`Gcra::check`] refused a cell.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("rate limited, retry after {retry_after:?}")]
pub struct RateLimited {
    /// How long until a cell conforms again, rounded up to the millisecond [`Time`] resolution.
    pub retry_after: Duration,
}

/// GCRA limiter for one [`RateLimit`].
///
/// The state is the theoretical arrival time (TAT) of the next cell: each accepted cell pushes it
/// one emission interval (`1 s / per_second`) past `max(TAT, now)`, and a cell conforms while the
/// TAT stays within `burst` intervals of `now`. So `burst` cells pass back to back, then one per
/// interval, and in any window of length `T` at most `burst + T × per_second` cells pass. Refused
/// cells change nothing.
///
/// The TAT is kept at nanosecond resolution (a [`Time`] plus the sub-millisecond part) so that
/// rates above 1000/s and intervals that are not whole milliseconds are exact; the interval is
/// rounded up to the nanosecond, so rounding can only make the limit stricter, never looser.
///
/// A `now` earlier than a previous one never panics and never blocks longer than a full refill
/// (`burst` intervals): the TAT is clamped to `now + burst × interval`, the state of a bucket just
/// emptied at `now`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Gcra {
    /// Emission interval, ns, ≥ 1.
    interval_ns: u64,
    /// ≥ 1.
    burst: u32,
    /// TAT, whole milliseconds.
    tat: Time,
    /// TAT, the nanoseconds below `tat`, < 1 ms.
    tat_sub_ns: u32,
}

impl Gcra {
    /// A limiter with a full bucket.
    pub fn new(limit: RateLimit) -> Self {
        let per_second = u64::from(limit.per_second.max(1));
        Gcra {
            interval_ns: NANOS_PER_SEC.div_ceil(per_second),
            burst: limit.burst.max(1),
            tat: Time::EPOCH,
            tat_sub_ns: 0,
        }
    }

    /// Accepts one cell at `now`, or says how long until one would be accepted.
    pub fn check(&mut self, now: Time) -> Result<(), RateLimited> {
        let now_ns = u128::from(now.unix_millis()) * NANOS_PER_MILLI;
        let interval = u128::from(self.interval_ns);
        let window = interval * u128::from(self.burst);
        // In forward time an accepted cell leaves TAT ≤ now + window; more means `now` went back.
        // Keep the clamp, or the debt would come back as soon as `now` moves on.
        let mut tat = self.tat_ns();
        if tat > now_ns + window {
            tat = now_ns + window;
            self.set_tat_ns(tat);
        }
        let next_tat = tat.max(now_ns) + interval;
        let conforms_at = next_tat.saturating_sub(window);
        if now_ns >= conforms_at {
            self.set_tat_ns(next_tat);
            Ok(())
        } else {
            let wait_ms = (conforms_at - now_ns).div_ceil(NANOS_PER_MILLI);
            let retry_after = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX));
            Err(RateLimited { retry_after })
        }
    }

    /// Whether the bucket is full at `now` (no cell accepted within the last `burst` intervals):
    /// such a limiter behaves exactly like a fresh one, so a table of limiters can forget it.
    pub fn is_full(&self, now: Time) -> bool {
        self.tat_ns() <= u128::from(now.unix_millis()) * NANOS_PER_MILLI
    }

    /// The limit this limiter enforces, after zeros were raised to 1 (`per_second` is recovered
    /// from the rounded interval, so a rate that does not divide 10⁹ may read one lower).
    pub fn limit(&self) -> RateLimit {
        let per_second = NANOS_PER_SEC / self.interval_ns.max(1);
        RateLimit {
            per_second: u32::try_from(per_second).unwrap_or(u32::MAX),
            burst: self.burst,
        }
    }

    fn tat_ns(&self) -> u128 {
        u128::from(self.tat.unix_millis()) * NANOS_PER_MILLI + u128::from(self.tat_sub_ns)
    }

    fn set_tat_ns(&mut self, ns: u128) {
        match u64::try_from(ns / NANOS_PER_MILLI) {
            Ok(ms) => {
                self.tat = Time::from_unix_millis(ms);
                self.tat_sub_ns = u32::try_from(ns % NANOS_PER_MILLI).unwrap_or(0);
            }
            Err(_) => {
                // Past the end of representable time (584 million years): pin to its last instant.
                self.tat = Time::from_unix_millis(u64::MAX);
                self.tat_sub_ns = 999_999;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const START: u64 = 1_700_000_000_000;

    fn at(ms: u64) -> Time {
        Time::from_unix_millis(START + ms)
    }

    #[test]
    fn burst_back_to_back_then_the_rate() {
        let mut gcra = Gcra::new(RateLimit {
            per_second: 10,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(gcra.check(at(0)), Ok(()));
        }
        assert_eq!(
            gcra.check(at(0)),
            Err(RateLimited {
                retry_after: Duration::from_millis(100)
            })
        );
        assert_eq!(
            gcra.check(at(99)),
            Err(RateLimited {
                retry_after: Duration::from_millis(1)
            })
        );
        assert_eq!(gcra.check(at(100)), Ok(()));
        assert!(gcra.check(at(150)).is_err());
        assert_eq!(gcra.check(at(200)), Ok(()));
        // A quiet second refills the bucket to `burst`, no further.
        for _ in 0..3 {
            assert_eq!(gcra.check(at(1500)), Ok(()));
        }
        assert!(gcra.check(at(1500)).is_err());
    }

    #[test]
    fn rates_above_one_per_millisecond_are_exact() {
        // Arrivals come in whole milliseconds, so 5 per ms needs a burst of 5 to be usable.
        let mut gcra = Gcra::new(RateLimit {
            per_second: 5000,
            burst: 5,
        });
        let accepted = (0..=1000)
            .flat_map(|ms| (0..10).map(move |_| ms))
            .filter(|&ms| gcra.check(at(ms)).is_ok())
            .count();
        // burst + 1000 ms × 5 per ms: exactly the bound.
        assert_eq!(accepted, 5005);
    }

    #[test]
    fn fractional_intervals_never_exceed_the_rate() {
        let mut gcra = Gcra::new(RateLimit {
            per_second: 3,
            burst: 1,
        });
        let accepted: Vec<u64> = (0..=3000)
            .filter(|&ms| gcra.check(at(ms)).is_ok())
            .collect();
        // The interval is 333.33 ms; polled every millisecond with no burst to absorb the rounding
        // of arrivals, cells pass every 334 ms.
        assert_eq!(accepted, (0..9).map(|k| k * 334).collect::<Vec<_>>());
        // With a burst of 2 the lost fractions are caught up: 0, 0, 334, 667, 1001, ..., 2667. The
        // bound is 2 + 9; the cell at 3000 misses by the 6 ns the interval was rounded up.
        let mut gcra = Gcra::new(RateLimit {
            per_second: 3,
            burst: 2,
        });
        let accepted = (0..=3000)
            .flat_map(|ms| [ms, ms])
            .filter(|&ms| gcra.check(at(ms)).is_ok())
            .count();
        assert_eq!(accepted, 10);
    }

    #[test]
    fn zeros_are_raised_to_one_and_rejected_by_validate() {
        assert_eq!(
            RateLimit {
                per_second: 0,
                burst: 5
            }
            .validate(),
            Err(InvalidRateLimit::ZeroRate)
        );
        assert_eq!(
            RateLimit {
                per_second: 5,
                burst: 0
            }
            .validate(),
            Err(InvalidRateLimit::ZeroBurst)
        );
        assert_eq!(
            RateLimit {
                per_second: 5,
                burst: 5
            }
            .validate(),
            Ok(())
        );
        let mut gcra = Gcra::new(RateLimit {
            per_second: 0,
            burst: 0,
        });
        assert_eq!(
            gcra.limit(),
            RateLimit {
                per_second: 1,
                burst: 1
            }
        );
        assert!(gcra.check(at(0)).is_ok());
        assert_eq!(
            gcra.check(at(0)),
            Err(RateLimited {
                retry_after: Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn time_going_backwards_blocks_at_most_one_refill() {
        let mut gcra = Gcra::new(RateLimit {
            per_second: 10,
            burst: 2,
        });
        assert!(gcra.check(at(3_600_000)).is_ok());
        // The clock jumps back an hour: treated as a bucket just emptied, not an hour's debt.
        let err = gcra.check(at(0)).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(100));
        assert!(gcra.check(at(100)).is_ok());
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let mut gcra = Gcra::new(RateLimit {
            per_second: u32::MAX,
            burst: u32::MAX,
        });
        for ms in [u64::MAX, 0, u64::MAX - 1, u64::MAX] {
            let _ = gcra.check(Time::from_unix_millis(ms));
        }
        let mut gcra = Gcra::new(RateLimit {
            per_second: 1,
            burst: 1,
        });
        assert!(gcra.check(Time::from_unix_millis(u64::MAX)).is_ok());
        assert!(gcra.check(Time::from_unix_millis(u64::MAX)).is_err());
    }

    fn limits() -> impl Strategy<Value = RateLimit> {
        (1u32..2000, 1u32..50).prop_map(|(per_second, burst)| RateLimit { per_second, burst })
    }

    /// Milliseconds between attempts: often none (bursts), sometimes a few, sometimes long pauses.
    fn gaps(max: u64) -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(prop_oneof![Just(0u64), 0u64..5, 0..max], 1..300)
    }

    proptest! {
        /// Over any schedule, the cells accepted between any two accepted cells `i..=j` number at
        /// most `burst + (t_j - t_i) × rate`: no window of length T holds more than burst + T·rate.
        #[test]
        fn never_exceeds_burst_plus_rate(limit in limits(), gaps in gaps(400)) {
            let mut gcra = Gcra::new(limit);
            let mut now = 0;
            let mut accepted = Vec::new();
            for gap in gaps {
                now += gap;
                if gcra.check(at(now)).is_ok() {
                    accepted.push(now);
                }
            }
            for (i, &first) in accepted.iter().enumerate() {
                for (j, &last) in accepted.iter().enumerate().skip(i) {
                    let cells = (j - i + 1) as u64;
                    let span = last - first;
                    let rate = u64::from(limit.per_second);
                    let allowed = u64::from(limit.burst) + span * rate / 1000;
                    prop_assert!(cells <= allowed, "{} cells in {} ms", cells, span);
                }
            }
        }

        /// The limiter is not stricter than promised: after `retry_after` a cell passes, and a
        /// schedule spaced by at least the interval always passes.
        #[test]
        fn retry_after_is_honest(limit in limits(), gaps in gaps(50)) {
            let mut gcra = Gcra::new(limit);
            let mut now = at(0);
            for gap in gaps {
                now = now + Duration::from_millis(gap);
                if let Err(RateLimited { retry_after }) = gcra.check(now) {
                    prop_assert!(retry_after > Duration::ZERO);
                    prop_assert!(gcra.check(now + retry_after).is_ok());
                    now = now + retry_after;
                }
            }
            let spacing = 1000u64.div_ceil(u64::from(limit.per_second));
            let mut steady = Gcra::new(limit);
            for k in 0..100 {
                prop_assert!(steady.check(at(k * spacing)).is_ok());
            }
        }

        /// Any sequence of times, backwards included, never panics and never asks to wait longer
        /// than one full refill.
        #[test]
        fn arbitrary_clocks_are_tolerated(
            limit in limits(),
            times in proptest::collection::vec(0u64..100_000, 1..200),
        ) {
            let mut gcra = Gcra::new(limit);
            let interval_ms = 1000u64.div_ceil(u64::from(limit.per_second));
            let refill_ms = u64::from(limit.burst) * interval_ms + 1;
            for t in times {
                if let Err(RateLimited { retry_after }) = gcra.check(at(t)) {
                    prop_assert!(retry_after <= Duration::from_millis(refill_ms));
                }
            }
        }
    }
}
