//! The edge's one clock: the core's [`Time`] (wall-clock milliseconds) from a monotonic clock
//! anchored to the wall clock once, so it never runs backwards when the system clock is stepped.

use std::{
    sync::OnceLock,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use janus_core::Time;

fn anchor() -> &'static (Instant, u64) {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        (
            Instant::now(),
            u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        )
    })
}

/// Now, as the core wants it.
pub fn now() -> Time {
    let (start, wall) = anchor();
    let elapsed = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    Time::from_unix_millis(wall.saturating_add(elapsed))
}

/// How long from `now` until `at` (zero when it has passed).
pub fn until(at: Time, now: Time) -> Duration {
    at.saturating_since(now)
}

/// The monotonic clock the filter chain's sampled timings read (`janus_filter_timed_*`).
#[derive(Debug)]
pub struct FilterStopwatch(Instant);

impl Default for FilterStopwatch {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl janus_core::filter::Stopwatch for FilterStopwatch {
    fn nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
