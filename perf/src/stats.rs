//! Counters and latency samples shared between the producer/consumer tasks and the reporter.
//!
//! Counters are atomics bumped once per message. Latency goes into one HdrHistogram per
//! consumer behind its own mutex, so consumers never contend with each other; the reporter
//! takes each lock once a second to move the samples out, which makes every sample land in
//! exactly one per-second line and in the final total.

use crate::stall::Stalls;
use crate::stamp;
use hdrhistogram::Histogram;
use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};
use std::time::{Duration, Instant};

/// Largest recordable value: one day in microseconds, ample for delayed-message lateness.
const MAX_MICROS: u64 = 24 * 3600 * 1_000_000;

/// An empty histogram in microseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

/// Everything the tasks of one run report into.
pub struct Stats {
    start: Instant,
    /// `start` on the wall clock that message stamps use.
    start_nanos: u64,
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub consumed: AtomicU64,
    /// Delayed mode: messages delivered before their delay was up.
    pub early: AtomicU64,
    /// Deliveries stamped before this run started, left out of every other number.
    pub stale: AtomicU64,
    producers_done: AtomicUsize,
    /// Nanoseconds after `start` at which the last producer finished.
    publish_end_nanos: AtomicU64,
    sinks: Mutex<Vec<LatencySink>>,
    /// Long gaps between a producer's publishes (see `stall`).
    pub stalls: Stalls,
}

/// A point-in-time copy of the counters.
#[derive(Clone, Copy, Default)]
pub struct Counts {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub consumed: u64,
    pub early: u64,
    pub stale: u64,
}

/// One consumer's latency histogram (microseconds).
#[derive(Clone)]
pub struct LatencySink(Arc<Mutex<Histogram<u64>>>);

impl LatencySink {
    pub fn record_micros(&self, micros: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(micros);
    }
}

impl Stats {
    /// Starts the clock: call once connections are open, right before load starts.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            start_nanos: stamp::now_nanos(),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            early: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            producers_done: AtomicUsize::new(0),
            publish_end_nanos: AtomicU64::new(0),
            sinks: Mutex::new(Vec::new()),
            stalls: Stalls::default(),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn start_nanos(&self) -> u64 {
        self.start_nanos
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            published: self.published.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
            early: self.early.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }

    /// A new histogram for one consumer, registered so [`Stats::harvest`] sees it.
    pub fn latency_sink(&self) -> LatencySink {
        let sink = LatencySink(Arc::new(Mutex::new(new_histogram())));
        self.sinks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sink.clone());
        sink
    }

    /// Moves every sample recorded since the last harvest into one histogram.
    pub fn harvest(&self) -> Histogram<u64> {
        let mut merged = new_histogram();
        for sink in self
            .sinks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let mut histogram = sink.0.lock().unwrap_or_else(PoisonError::into_inner);
            // Same bounds on both sides, so adding cannot fail.
            let _ = merged.add(&*histogram);
            histogram.reset();
        }
        merged
    }

    /// Called by each producer as it exits, whether it hit `--pmessages` or was stopped.
    pub fn producer_finished(&self) {
        let at = u64::try_from(self.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.publish_end_nanos.fetch_max(at, Ordering::Relaxed);
        self.producers_done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn producers_done(&self) -> usize {
        self.producers_done.load(Ordering::Relaxed)
    }

    /// How long publishing lasted: start until the last producer finished.
    pub fn publish_elapsed(&self) -> Duration {
        Duration::from_nanos(self.publish_end_nanos.load(Ordering::Relaxed))
    }
}
