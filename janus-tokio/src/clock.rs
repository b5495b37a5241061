//! The one clock of the adapter: the core's [`Time`] (wall-clock milliseconds) derived from
//! tokio's monotonic clock, anchored to the wall clock once, so it never runs backwards when the
//! system clock is stepped, and it follows tokio's paused time in tests (`start_paused`).
//! The gateway, the bench and the tests all read time here.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use janus_core::Time;
use tokio::time::Instant;

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

/// The tokio instant at which the core's `time` falls.
pub fn instant_of(time: Time) -> Instant {
    let (start, wall) = anchor();
    *start + Duration::from_millis(time.unix_millis().saturating_sub(*wall))
}
