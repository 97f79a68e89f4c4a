//! Counts sampled over time, for rates: an object's [`Stats`] is its [`Counters`] plus the
//! last few snapshots the sampler took of them.
//!
//! Rates are computed from samples, not on the event path: the sampler (one background task
//! per node) records every object's snapshot each interval, and a rate is the difference of
//! the last two samples divided by the time between them — RabbitMQ's
//! `message_stats.<kind>_details.rate`, which it also computes from periodic samples
//! (`collect_statistics_interval`). The history lock is taken by the sampler and by the API,
//! never by a publish or a delivery.

use parking_lot::Mutex;
use std::collections::VecDeque;

use super::counters::{Counter, Counters, Snapshot};

/// Samples kept by an object that only needs its current rate.
pub const RATE_SAMPLES: usize = 2;

/// One sample: when, and the counts then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The counts.
    pub counts: Snapshot,
}

/// The last `capacity` samples of one object, oldest first.
#[derive(Debug)]
pub struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl History {
    /// An empty history keeping `capacity` samples (at least 2, so a rate can be computed).
    pub fn new(capacity: usize) -> History {
        let capacity = capacity.max(RATE_SAMPLES);
        History {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Records `counts` taken at `at_ms`, forgetting the oldest sample beyond capacity.
    pub fn record(&mut self, at_ms: u64, counts: Snapshot) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { at_ms, counts });
    }

    /// Events of `kind` per second between the last two samples (0.0 before there are two).
    pub fn rate(&self, kind: Counter) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let (prev, last) = (&self.samples[n - 2], &self.samples[n - 1]);
        let ms = last.at_ms.saturating_sub(prev.at_ms);
        if ms == 0 {
            return 0.0;
        }
        last.counts.since(&prev.counts).get(kind) as f64 * 1000.0 / ms as f64
    }

    /// The samples taken at or after `since_ms`, oldest first.
    pub fn since(&self, since_ms: u64) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.at_ms >= since_ms)
    }

    /// The latest sample, if any.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }
}

/// One object's counters and their recent samples.
#[derive(Debug)]
pub struct Stats {
    /// The live counts, incremented on the event paths.
    pub counters: Counters,
    history: Mutex<History>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::with_history(RATE_SAMPLES)
    }
}

impl Stats {
    /// Counters keeping `samples` samples.
    pub fn with_history(samples: usize) -> Stats {
        Stats {
            counters: Counters::default(),
            history: Mutex::new(History::new(samples)),
        }
    }

    /// Takes a sample of the counters at `at_ms` (the sampler's tick).
    pub fn sample(&self, at_ms: u64) {
        let counts = self.counters.snapshot();
        self.history.lock().record(at_ms, counts);
    }

    /// Records `counts` as the sample at `at_ms` (for totals computed from other objects).
    pub fn record(&self, at_ms: u64, counts: Snapshot) {
        self.history.lock().record(at_ms, counts);
    }

    /// Events of `kind` per second over the last sampling interval.
    pub fn rate(&self, kind: Counter) -> f64 {
        self.history.lock().rate(kind)
    }

    /// Runs `read` over the samples (for charts: `History::since`).
    pub fn with_history_read<R>(&self, read: impl FnOnce(&History) -> R) -> R {
        read(&self.history.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_last_interval_per_second() {
        let s = Stats::default();
        assert_eq!(s.rate(Counter::Publish), 0.0);
        s.counters.add(Counter::Publish, 10);
        s.sample(1_000);
        assert_eq!(s.rate(Counter::Publish), 0.0, "one sample is no rate");
        s.counters.add(Counter::Publish, 50);
        s.sample(6_000);
        assert_eq!(s.rate(Counter::Publish), 10.0);
        s.sample(11_000);
        assert_eq!(
            s.rate(Counter::Publish),
            0.0,
            "nothing in the last interval"
        );
    }

    #[test]
    fn history_keeps_its_capacity() {
        let mut h = History::new(3);
        for i in 0..10 {
            h.record(i * 1000, Snapshot::default());
        }
        assert_eq!(h.since(0).count(), 3);
        assert_eq!(h.last().map(|s| s.at_ms), Some(9000));
        assert_eq!(h.since(8000).count(), 2);
    }
}
