//! A fixed-bucket latency histogram of atomics: one relaxed add per bucket hit, rendered in the
//! Prometheus histogram layout (`_bucket{le}`, `_sum`, `_count`).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Upper bounds of the buckets, seconds: 250 µs to 10 s, roughly ×2.5 apart. A backend reply
/// on the same host takes a few hundred microseconds; one over a few seconds is an incident.
pub const BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Observations by bucket (not cumulative; the last slot is `+Inf`), their sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of the observations, nanoseconds.
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// `(le, cumulative count)` per bucket, `+Inf` last; then the sum in seconds and the count.
    pub fn snapshot(&self) -> (Vec<(String, u64)>, f64, u64) {
        let mut cumulative = 0;
        let mut out = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |le| le.to_string());
            out.push((le, cumulative));
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (out, sum, self.count.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let (buckets, sum, count) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 60.0031).abs() < 1e-6, "{sum}");
        assert_eq!(buckets.first().unwrap(), &("0.00025".to_owned(), 1));
        assert_eq!(buckets.iter().find(|(le, _)| le == "0.005").unwrap().1, 2);
        assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), 3));
    }
}
