//! When to reconnect: jittered exponential backoff, as pure arithmetic over an injected random
//! source so it can be tested and shared by every runtime.

use core::time::Duration;

use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
use rand_core::RngCore;

/// First reconnect delay (before jitter). Long enough that a gateway restarting behind a load
/// balancer is not hit by every client within the same few milliseconds, short enough that a
/// player on a flaky network is back before noticing.
pub const DEFAULT_RECONNECT_INITIAL_DELAY: Duration = Duration::from_millis(500);
/// Largest reconnect delay (before jitter). A gateway fleet that is down for minutes still sees
/// each client about twice a minute, not a thundering herd.
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(30);

/// The reconnect policy: delays double from [`initial_delay`](Self::initial_delay) up to
/// [`max_delay`](Self::max_delay), each with "equal jitter" (half fixed, half uniformly random),
/// so clients dropped together spread out but none retries at once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// [`DEFAULT_RECONNECT_INITIAL_DELAY`] (500 ms).
    pub initial_delay: Duration,
    /// [`DEFAULT_RECONNECT_MAX_DELAY`] (30 s).
    pub max_delay: Duration,
    /// Attempts in a row before giving up for good; `None` (the default) never gives up. Counted
    /// from the last established connection.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: DEFAULT_RECONNECT_INITIAL_DELAY,
            max_delay: DEFAULT_RECONNECT_MAX_DELAY,
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// The delay before attempt `attempt` (1 for the first), with `random` drawn uniformly from
    /// all `u32`s; `None` once [`max_attempts`](Self::max_attempts) is used up.
    pub fn delay(&self, attempt: u32, random: u32) -> Option<Duration> {
        if attempt == 0 || self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        let doublings = (attempt - 1).min(31);
        let step = self
            .initial_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        let half = step / 2;
        // `random / 2^32` of the other half.
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = u64::try_from((u128::from(nanos) * u128::from(random)) >> 32).unwrap_or(0);
        Some(half + Duration::from_nanos(jitter))
    }
}

/// A [`Reconnect`] policy in progress: counts attempts since the last established connection.
#[derive(Debug)]
pub struct Backoff {
    policy: Reconnect,
    attempt: u32,
    rng: ChaCha8Rng,
}

impl Backoff {
    /// Starts counting; `seed` feeds the jitter (it need not be secret, only differ between
    /// clients).
    pub fn new(policy: Reconnect, seed: [u8; 32]) -> Self {
        Self {
            policy,
            attempt: 0,
            rng: ChaCha8Rng::from_seed(seed),
        }
    }

    /// The delay before the next attempt, or `None` when the policy gives up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.attempt = self.attempt.saturating_add(1);
        self.policy.delay(self.attempt, self.rng.next_u32())
    }

    /// A connection was established: the next loss starts again from the initial delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last established connection.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Reconnect {
        Reconnect {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_attempts: Some(6),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_with_half_jitter() {
        let p = policy();
        let ms = |attempt, random| p.delay(attempt, random).map(|d| d.as_millis());
        assert_eq!(ms(1, 0), Some(50), "half fixed");
        assert_eq!(ms(1, u32::MAX), Some(99), "the other half random");
        assert_eq!(ms(2, 0), Some(100));
        assert_eq!(ms(3, 0), Some(200));
        assert_eq!(ms(4, 0), Some(400));
        assert_eq!(ms(5, 0), Some(500), "capped at max_delay");
        assert_eq!(ms(6, u32::MAX), Some(999));
        assert_eq!(ms(7, 0), None, "max_attempts used up");
        assert_eq!(ms(0, 0), None);
        let forever = Reconnect::default();
        assert_eq!(
            forever.delay(u32::MAX, 0),
            Some(DEFAULT_RECONNECT_MAX_DELAY / 2),
            "no overflow"
        );
    }

    #[test]
    fn backoff_resets_after_a_connection_and_spreads_clients() {
        let mut a = Backoff::new(policy(), [1; 32]);
        let mut b = Backoff::new(policy(), [2; 32]);
        let first = a.next_delay();
        assert_ne!(first, b.next_delay(), "different seeds, different jitter");
        a.next_delay();
        assert_eq!(a.attempts(), 2);
        a.reset();
        let again = a.next_delay().unwrap();
        assert!(again >= Duration::from_millis(50) && again < Duration::from_millis(100));
        for _ in 0..5 {
            assert!(a.next_delay().is_some());
        }
        assert_eq!(a.next_delay(), None);
    }
}
