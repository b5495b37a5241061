//! Time as the core sees it: a value handed in by the adapter, never read from the OS.

use core::{fmt, ops::Add, time::Duration};

/// A point in time, in milliseconds since the Unix epoch, supplied by the adapter with every input.
///
/// One clock serves both the deadlines (handshake, idle, drain) and the wall-clock checks of the
/// protocol (handshake timestamp skew, token expiry). Adapters should derive it from a monotonic
/// clock anchored to the wall clock at start-up, so it never runs backwards; the core tolerates a
/// `now` that goes backwards (it treats it as no time having passed) but will not fire deadlines early.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The Unix epoch.
    pub const EPOCH: Time = Time(0);

    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_millis(ms: u64) -> Self {
        Time(ms)
    }

    /// From whole seconds since the Unix epoch (negative values clamp to the epoch).
    pub const fn from_unix_secs(secs: i64) -> Self {
        if secs <= 0 {
            Time(0)
        } else {
            Time((secs as u64).saturating_mul(1000))
        }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, as the protocol's `timestamp` fields carry them.
    pub const fn unix_secs(self) -> i64 {
        (self.0 / 1000) as i64
    }

    /// The time elapsed from `earlier` to `self`, or zero when `earlier` is later.
    pub const fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturating: a deadline too far away to represent is simply "never" in practice.
    fn add(self, rhs: Duration) -> Time {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(ms))
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Time({}.{:03})", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_and_saturate() {
        let t = Time::from_unix_secs(1_700_000_000);
        assert_eq!(t.unix_secs(), 1_700_000_000);
        assert_eq!((t + Duration::from_millis(999)).unix_secs(), 1_700_000_000);
        assert_eq!(Time::from_unix_secs(-5), Time::EPOCH);
        assert_eq!(
            Time::from_unix_millis(u64::MAX) + Duration::from_secs(1),
            Time::from_unix_millis(u64::MAX)
        );
        assert_eq!(Time::EPOCH.saturating_since(t), Duration::ZERO);
    }
}
