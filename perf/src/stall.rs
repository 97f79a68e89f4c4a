//! Publisher stalls: gaps between one producer's consecutive publishes that are longer
//! than its pace explains.
//!
//! Why not just per-window rates: a 100 ms window with a 60 ms stall in it still shows a
//! healthy rate. Each producer already reads the clock once per message (for the stamp), so
//! comparing with the previous reading is free; only the rare long gaps are kept, behind a
//! mutex that is untouched while publishing flows.

use std::sync::{Mutex, PoisonError};

/// Gaps shorter than this are scheduling noise on a shared 2-core machine, not stalls.
const MIN_STALL_NANOS: u64 = 10_000_000;

/// One gap between consecutive publishes of one producer, in nanoseconds since the run's
/// start (wall clock, as the stamps are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub start: u64,
    pub end: u64,
}

impl Gap {
    pub fn nanos(&self) -> u64 {
        self.end - self.start
    }
}

/// Every producer's long gaps.
#[derive(Default)]
pub struct Stalls(Mutex<Vec<Gap>>);

impl Stalls {
    fn record(&self, gap: Gap) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(gap);
    }

    /// The longest gap overlapping `from..to` (nanoseconds since start), if any.
    pub fn longest_within(&self, from: u64, to: u64) -> Option<Gap> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|gap| gap.end > from && gap.start < to)
            .max_by_key(|gap| gap.nanos())
            .copied()
    }
}

/// One producer's view: the previous publish time and what counts as too long after it.
pub struct GapWatch {
    origin: u64,
    last: Option<u64>,
    threshold: u64,
}

impl GapWatch {
    /// `origin` is the run's start on the stamp clock; `rate` the producer's pace (0 =
    /// unpaced), whose interval is expected and so not a stall.
    pub fn new(origin: u64, rate: f64) -> Self {
        let pace = if rate > 0.0 { 1e9 / rate } else { 0.0 };
        Self {
            origin,
            last: None,
            threshold: MIN_STALL_NANOS.saturating_add(pace as u64),
        }
    }

    /// Notes a publish at `now` (stamp clock), recording the gap before it if it was long.
    pub fn publishing(&mut self, now: u64, stalls: &Stalls) {
        let Some(last) = self.last.replace(now) else {
            return;
        };
        if now.saturating_sub(last) > self.threshold {
            stalls.record(Gap {
                start: last.saturating_sub(self.origin),
                end: now.saturating_sub(self.origin),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gaps_beyond_the_pace_and_the_noise_floor_are_kept() {
        let stalls = Stalls::default();
        let mut watch = GapWatch::new(1_000, 100.0); // 10 ms pace + 10 ms floor
        for now in [1_000, 11_001_000, 21_001_000, 61_001_000] {
            watch.publishing(now, &stalls);
        }
        let gap = stalls.longest_within(0, u64::MAX).unwrap();
        assert_eq!(
            gap,
            Gap {
                start: 21_000_000,
                end: 61_000_000
            }
        );
        assert!(stalls.longest_within(0, 20_000_000).is_none());
    }
}
