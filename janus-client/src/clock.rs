//! The clock of the std runtimes: the core's [`Time`] (wall-clock milliseconds) derived from the
//! monotonic clock, anchored to the wall clock once per process, so deadlines never jump when
//! the system clock is stepped. Also the OS randomness the core is seeded with.

use std::{
    sync::OnceLock,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use janus_core::Time;
use rand_core::{OsRng, RngCore as _};

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
pub(crate) fn now() -> Time {
    let (start, wall) = anchor();
    let elapsed = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    Time::from_unix_millis(wall.saturating_add(elapsed))
}

/// The monotonic instant at which the core's `time` falls.
pub(crate) fn instant_of(time: Time) -> Instant {
    let (start, wall) = anchor();
    *start + Duration::from_millis(time.unix_millis().saturating_sub(*wall))
}

/// 32 bytes from the OS CSPRNG: a session's seed (ephemeral key, nonces) or the backoff's.
pub(crate) fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}
