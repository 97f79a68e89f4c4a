//! A fixed-bucket histogram of durations in milliseconds, counted with atomics: how late
//! delayed messages fire. Recording is a bucket search over a dozen bounds and two relaxed
//! adds, so the firing path takes no lock (prometheus-client's own histogram takes one).

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms, inclusive) of the lateness buckets; beyond the last is `+Inf`.
pub const LATENESS_BOUNDS_MS: [u64; 12] = [
    1, 5, 10, 25, 50, 100, 250, 500, 1_000, 5_000, 30_000, 60_000,
];

/// Counts of observations per bucket, their sum and their number.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, plus `+Inf`. Each counts observations in its bucket only (not
    /// cumulative); [`Histogram::read`] makes them cumulative.
    buckets: Vec<AtomicU64>,
    sum_ms: AtomicU64,
    count: AtomicU64,
}

/// A histogram read at one moment, buckets cumulative as Prometheus wants them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramReading {
    /// `(upper bound in ms, observations at or under it)`; the last has bound `u64::MAX`
    /// (`+Inf`) and counts every observation.
    pub buckets: Vec<(u64, u64)>,
    /// Sum of every observation, in ms.
    pub sum_ms: u64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ms: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// The lateness histogram ([`LATENESS_BOUNDS_MS`]).
    pub fn lateness() -> Histogram {
        Histogram::new(&LATENESS_BOUNDS_MS)
    }

    /// Records one observation of `ms`.
    pub fn observe(&self, ms: u64) {
        let at = self.bounds.partition_point(|&bound| bound < ms);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The histogram now, cumulative.
    pub fn read(&self) -> HistogramReading {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(u64::MAX))
            .zip(&self.buckets)
            .map(|(bound, n)| {
                running += n.load(Ordering::Relaxed);
                (bound, running)
            })
            .collect();
        HistogramReading {
            buckets,
            sum_ms: self.sum_ms.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_read_cumulative() {
        static BOUNDS: [u64; 3] = [1, 10, 100];
        let h = Histogram::new(&BOUNDS);
        for ms in [0, 1, 2, 10, 11, 5_000] {
            h.observe(ms);
        }
        let r = h.read();
        assert_eq!(r.buckets, vec![(1, 2), (10, 4), (100, 5), (u64::MAX, 6)]);
        assert_eq!((r.count, r.sum_ms), (6, 5_024));
    }
}
