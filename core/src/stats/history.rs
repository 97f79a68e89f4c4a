//! An object's [`Stats`]: its [`Counters`] plus the last few snapshots the sampler took of
//! them, kept in a [`Series`] like every other sampled value.
//!
//! Rates are computed from samples, not on the event path: the sampler (one background task
//! per node) records every object's snapshot each interval, and the API's rate is the
//! difference of the last two samples divided by the time between them
//! (`http/rates.rs`) — RabbitMQ's `message_stats.<kind>_details.rate`, which it also
//! computes from periodic samples (`collect_statistics_interval`). The samples' lock is
//! taken by the sampler and by the API, never by a publish or a delivery.

use super::counters::{Counter, Counters, Snapshot};
use super::series::Series;

/// Samples kept by an object that only needs its current rate.
pub const RATE_SAMPLES: usize = 2;

/// One object's counters and their recent samples.
#[derive(Debug)]
pub struct Stats {
    /// The live counts, incremented on the event paths.
    pub counters: Counters,
    samples: Series<{ Counter::COUNT }>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::with_history(RATE_SAMPLES)
    }
}

impl Stats {
    /// Counters keeping `samples` samples (at least [`RATE_SAMPLES`]).
    pub fn with_history(samples: usize) -> Stats {
        Stats {
            counters: Counters::default(),
            samples: Series::new(samples),
        }
    }

    /// Takes a sample of the counters at `at_ms` (the sampler's tick).
    pub fn sample(&self, at_ms: u64) {
        self.record(at_ms, self.counters.snapshot());
    }

    /// Records `counts` as the sample at `at_ms` (for totals computed from other objects).
    pub fn record(&self, at_ms: u64, counts: Snapshot) {
        self.samples.record(at_ms, counts.0);
    }

    /// The samples kept, oldest first, as `(ms since the epoch, counts)`.
    pub fn samples(&self) -> Vec<(u64, Snapshot)> {
        self.samples
            .since(0)
            .into_iter()
            .map(|(at, counts)| (at, Snapshot(counts)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_snapshots_of_the_counters_within_capacity() {
        let s = Stats::default();
        s.counters.add(Counter::Publish, 10);
        s.sample(1_000);
        s.counters.add(Counter::Publish, 50);
        s.sample(6_000);
        s.sample(11_000);
        let kept: Vec<(u64, u64)> = s
            .samples()
            .iter()
            .map(|(at, c)| (*at, c.get(Counter::Publish)))
            .collect();
        assert_eq!(kept, vec![(6_000, 60), (11_000, 60)], "the last two");
    }
}
