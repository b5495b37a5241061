//! Token replay protection: a token may open one session (upstream accepts a token any number of
//! times within its 10-minute life, spec §2.4 `rand`).
//!
//! Memory is bounded: the cache holds at most `capacity` tokens. When it is full of unexpired
//! tokens the oldest entry is evicted (and counted), so under a login storm larger than
//! `capacity` per token lifetime the protection weakens for the oldest tokens instead of memory
//! growing without bound. Entries are keyed by a 64-bit fingerprint of `(account_id, rand,
//! timeout)`, so a cache entry costs about 40 bytes.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasherDefault, Hasher},
    sync::{Arc, Mutex},
};

/// Default number of remembered tokens: ~10 MiB, enough for 430 logins a second sustained over a
/// 10-minute token lifetime.
pub const DEFAULT_REPLAY_CAPACITY: usize = 262_144;

/// The fingerprints are already uniformly mixed, so the map need not hash them again.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Inner {
    /// fingerprint → token expiry (unix seconds)
    seen: HashMap<u64, i64, BuildHasherDefault<Identity>>,
    /// insertion order, for expiry and eviction
    order: VecDeque<(u64, i64)>,
    evicted: u64,
}

/// Tokens already used, shared by all sessions of a gateway (`Arc` it; it locks internally).
/// [`share`](Self::share) hands the same memory to a new configuration, so a reloaded gateway
/// still refuses tokens used before the reload.
pub struct TokenReplayCache {
    capacity: usize,
    inner: Arc<Mutex<Inner>>,
}

impl core::fmt::Debug for TokenReplayCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenReplayCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for TokenReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

/// FNV-1a then a SplitMix64 finaliser: deterministic (no OS randomness) and well mixed. Tokens are
/// minted by the account service, so a peer cannot choose fingerprints to collide.
fn fingerprint(account_id: i64, rand: &str, expiry: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account_id
        .to_le_bytes()
        .iter()
        .chain(rand.as_bytes())
        .chain(&expiry.to_le_bytes())
    {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl TokenReplayCache {
    /// A cache remembering at most `capacity` tokens (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// A handle on the same remembered tokens (not a copy): for a configuration built on reload,
    /// so a token used before it cannot open a second session after it.
    pub fn share(&self) -> Self {
        Self {
            capacity: self.capacity,
            inner: Arc::clone(&self.inner),
        }
    }

    /// Records a token's first use. Returns `false` when this token was already used and has not
    /// expired. `now_secs` and `expiry` are unix seconds.
    pub fn first_use(&self, account_id: i64, rand: &str, expiry: i64, now_secs: i64) -> bool {
        let key = fingerprint(account_id, rand, expiry);
        let mut inner = match self.inner.lock() {
            Ok(guard) => guard,
            // A panic elsewhere while holding the lock cannot leave the maps inconsistent in a way
            // that matters for a cache; keep serving.
            Err(poisoned) => poisoned.into_inner(),
        };
        let Inner {
            seen,
            order,
            evicted,
        } = &mut *inner;
        // Drop expired entries from the front (tokens are issued with equal lifetimes, so
        // insertion order is close to expiry order; stragglers are dropped on eviction).
        while let Some(&(k, exp)) = order.front() {
            if exp >= now_secs {
                break;
            }
            order.pop_front();
            if seen.get(&k) == Some(&exp) {
                seen.remove(&k);
            }
        }
        if let Some(&exp) = seen.get(&key) {
            if exp >= now_secs {
                return false;
            }
        }
        while seen.len() >= self.capacity {
            let Some((k, exp)) = order.pop_front() else {
                break;
            };
            if seen.get(&k) == Some(&exp) {
                seen.remove(&k);
                *evicted += 1;
            }
        }
        seen.insert(key, expiry);
        order.push_back((key, expiry));
        true
    }

    /// Tokens currently remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unexpired tokens forgotten because the cache was full (a metric worth alerting on).
    pub fn evicted(&self) -> u64 {
        self.inner.lock().map(|i| i.evicted).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_refused_until_expiry() {
        let c = TokenReplayCache::new(16);
        assert!(c.first_use(1, "abcdefgh", 100, 10));
        assert!(!c.first_use(1, "abcdefgh", 100, 50));
        assert!(c.first_use(2, "abcdefgh", 100, 50), "another account");
        assert!(c.first_use(1, "zzzzzzzz", 100, 50), "another token");
        // after expiry the entry is gone (the handshake refuses expired tokens anyway)
        assert!(c.first_use(1, "abcdefgh", 100, 101));
    }

    #[test]
    fn memory_is_bounded() {
        let c = TokenReplayCache::new(100);
        for i in 0..10_000 {
            assert!(c.first_use(i, "r", 1_000_000, 0));
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.evicted(), 9_900);
        assert!(
            !c.first_use(9_999, "r", 1_000_000, 0),
            "recent tokens are still remembered"
        );
    }

    #[test]
    fn a_shared_cache_remembers_what_the_original_saw() {
        let c = TokenReplayCache::new(16);
        assert!(c.first_use(1, "abcdefgh", 100, 10));
        let shared = c.share();
        assert!(!shared.first_use(1, "abcdefgh", 100, 20));
        assert!(shared.first_use(2, "abcdefgh", 100, 20));
        assert!(!c.first_use(2, "abcdefgh", 100, 30));
    }

    #[test]
    fn expired_entries_are_pruned() {
        let c = TokenReplayCache::new(1000);
        for i in 0..500 {
            c.first_use(i, "r", i, 0);
        }
        c.first_use(-1, "r", 10_000, 600);
        assert_eq!(c.len(), 1);
        assert_eq!(c.evicted(), 0);
    }
}
