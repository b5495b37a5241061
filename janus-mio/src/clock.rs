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
