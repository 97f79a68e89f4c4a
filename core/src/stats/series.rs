//! Sampled values that are not [`Counter`](super::Counter) kinds: a connection's bytes and
//! socket operations, the node's and each queue's message depths. A [`Series`] keeps the
//! last few samples of `N` numbers; the API's rate of one is its change per second over the
//! last interval (`http/rates.rs`), which for a monotonic count is events per second and for
//! a depth (ready messages) how fast it grows or drains, as RabbitMQ's
//! `messages_details.rate` is. [`Stats`](super::Stats) keeps its counters' samples in one.
//!
//! Only the sampler and the API take its lock.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use super::history::RATE_SAMPLES;

/// The last samples of `N` values, oldest first.
#[derive(Debug)]
pub struct Series<const N: usize> {
    samples: Mutex<VecDeque<(u64, [u64; N])>>,
    capacity: usize,
}

impl<const N: usize> Default for Series<N> {
    fn default() -> Self {
        Series::new(RATE_SAMPLES)
    }
}

impl<const N: usize> Series<N> {
    /// A series keeping `capacity` samples (at least 2).
    pub fn new(capacity: usize) -> Series<N> {
        Series {
            samples: Mutex::new(VecDeque::new()),
            capacity: capacity.max(RATE_SAMPLES),
        }
    }

    /// Records `values` taken at `at_ms`.
    pub fn record(&self, at_ms: u64, values: [u64; N]) {
        let mut samples = self.samples.lock();
        if samples.len() == self.capacity {
            samples.pop_front();
        }
        samples.push_back((at_ms, values));
    }

    /// The samples taken at or after `since_ms`, oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<(u64, [u64; N])> {
        self.samples
            .lock()
            .iter()
            .filter(|(at, _)| *at >= since_ms)
            .copied()
            .collect()
    }
}

/// What a connection's socket carried: RabbitMQ's `recv_oct`, `send_oct`, `recv_cnt` and
/// `send_cnt`, counted once per read or write (never per byte), with their samples.
#[derive(Debug, Default)]
pub struct Io {
    counts: [AtomicU64; 4],
    /// Samples of [`Io::read`], for rates.
    pub series: Series<4>,
}

impl Io {
    /// Index of bytes received in [`Io::read`].
    pub const RECV_OCT: usize = 0;
    /// Index of bytes sent.
    pub const SEND_OCT: usize = 1;
    /// Index of socket reads.
    pub const RECV_CNT: usize = 2;
    /// Index of socket writes.
    pub const SEND_CNT: usize = 3;
    /// The API's names of the four values, in index order.
    pub const KEYS: [&'static str; 4] = ["recv_oct", "send_oct", "recv_cnt", "send_cnt"];

    /// One read of `bytes` bytes.
    #[inline]
    pub fn received(&self, bytes: usize) {
        self.counts[Self::RECV_OCT].fetch_add(bytes as u64, Ordering::Relaxed);
        self.counts[Self::RECV_CNT].fetch_add(1, Ordering::Relaxed);
    }

    /// One write of `bytes` bytes.
    #[inline]
    pub fn sent(&self, bytes: usize) {
        self.counts[Self::SEND_OCT].fetch_add(bytes as u64, Ordering::Relaxed);
        self.counts[Self::SEND_CNT].fetch_add(1, Ordering::Relaxed);
    }

    /// The four counts now.
    pub fn read(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Takes a sample (the sampler's tick).
    pub fn sample(&self, at_ms: u64) {
        self.series.record(at_ms, self.read());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_keeps_its_capacity_and_io_counts_per_operation() {
        let s: Series<1> = Series::new(3);
        s.record(0, [10]);
        s.record(2_000, [4]);
        s.record(3_000, [4]);
        s.record(4_000, [5]);
        assert_eq!(s.since(0).len(), 3, "capacity kept");
        let io = Io::default();
        io.received(100);
        io.received(20);
        io.sent(7);
        assert_eq!(io.read(), [120, 7, 2, 1]);
    }
}
