//! Message statistics: what the management API's `message_stats` and rates, the console's
//! charts and the Prometheus endpoint report.
//!
//! - [`counters`]: the event kinds and [`Counters`], one relaxed atomic per kind, embedded in
//!   each channel, queue, exchange and delayed exchange; incremented where the event happens.
//! - [`history`]: [`Stats`], counters plus the samples a background task takes of them each
//!   interval; rates are differences of samples, never computed on the event path.
//! - [`histogram`]: the fixed-bucket, lock-free histogram of firing lateness.
//!
//! [`NodeStats`] is the node's part: what closed channels and deleted objects had counted
//! (so node totals, and Prometheus counters, never go down), the lateness histogram, the
//! node's own sampled history (the overview's charts) and object churn.

pub mod counters;
pub mod histogram;
pub mod history;
pub mod series;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use counters::{Counter, Counters, Snapshot, Source};
pub use histogram::{Histogram, HistogramReading};
pub use history::{RATE_SAMPLES, Stats};
pub use series::{Io, Series};

/// How often objects are sampled unless configured (RabbitMQ's `collect_statistics_interval`
/// default, 5 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How long the node's history reaches back (the overview's charts).
pub const NODE_HISTORY: Duration = Duration::from_secs(10 * 60);

/// Objects opened and closed since start (RabbitMQ's `churn_rates` and
/// `rabbitmq_*_opened_total`/`_closed_total`).
#[derive(Debug, Default)]
pub struct Churn {
    /// Connections accepted.
    pub connections_opened: AtomicU64,
    /// Connections ended.
    pub connections_closed: AtomicU64,
    /// Channels opened.
    pub channels_opened: AtomicU64,
    /// Channels closed.
    pub channels_closed: AtomicU64,
    /// `queue.declare`s (and API declares) answered, created or not.
    pub queues_declared: AtomicU64,
    /// Queues created.
    pub queues_created: AtomicU64,
    /// Queues deleted (by a client, `x-expires`, auto-delete or exclusivity).
    pub queues_deleted: AtomicU64,
}

impl Churn {
    /// Counts one event on `which`.
    pub fn incr(which: &AtomicU64) {
        which.fetch_add(1, Ordering::Relaxed);
    }

    /// RabbitMQ's `churn_rates` keys, in the order of [`Churn::read`].
    pub const KEYS: [&'static str; 7] = [
        "connection_created",
        "connection_closed",
        "channel_created",
        "channel_closed",
        "queue_declared",
        "queue_created",
        "queue_deleted",
    ];

    /// Every count now, in the order of [`Churn::KEYS`].
    pub fn read(&self) -> [u64; 7] {
        [
            &self.connections_opened,
            &self.connections_closed,
            &self.channels_opened,
            &self.channels_closed,
            &self.queues_declared,
            &self.queues_created,
            &self.queues_deleted,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// The node's statistics beyond its live objects.
#[derive(Debug)]
pub struct NodeStats {
    /// How often the sampler runs.
    pub interval: Duration,
    /// Totals of channels that have closed (their counts leave with them otherwise).
    pub closed_channels: Counters,
    /// Totals of queues that have been deleted.
    pub deleted_queues: Counters,
    /// Totals of exchanges that have been deleted (delayed exchanges' held and fired too).
    pub deleted_exchanges: Counters,
    /// How late delayed messages fired: the time from due to routed, in ms. Shared with
    /// every vhost, whose firing drivers observe into it.
    pub lateness: Arc<Histogram>,
    /// Objects opened and closed.
    pub churn: Churn,
    /// The node's totals as sampled, kept for [`NODE_HISTORY`].
    pub totals: Stats,
    /// The node's messages ready, unacknowledged and in all ([`QUEUE_TOTALS_KEYS`]), as
    /// sampled, kept for [`NODE_HISTORY`] (the overview's `queue_totals` rates).
    pub queue_totals: Series<3>,
    /// [`Churn::read`] as sampled (the overview's `churn_rates`).
    pub churn_sampled: Series<7>,
}

/// The names of [`NodeStats::queue_totals`]' values, in order.
pub const QUEUE_TOTALS_KEYS: [&str; 3] = ["messages_ready", "messages_unacknowledged", "messages"];

/// What one vhost's deleted queues and exchanges had counted, so its own totals (the
/// `message_stats` of `/api/vhosts`) do not go down either; the node keeps its copy in
/// [`NodeStats`], which outlives the vhost.
#[derive(Debug, Default)]
pub struct Retired {
    /// Totals of the vhost's deleted queues.
    pub queues: Counters,
    /// Totals of the vhost's deleted exchanges (delayed ones' held, fired, cancelled too).
    pub exchanges: Counters,
}

impl NodeStats {
    /// Statistics sampled every `interval`.
    pub fn new(interval: Duration) -> NodeStats {
        let interval = interval.max(Duration::from_millis(100));
        let samples = (NODE_HISTORY.as_millis() / interval.as_millis()).max(2) as usize + 1;
        NodeStats {
            interval,
            closed_channels: Counters::default(),
            deleted_queues: Counters::default(),
            deleted_exchanges: Counters::default(),
            lateness: Arc::new(Histogram::lateness()),
            churn: Churn::default(),
            totals: Stats::with_history(samples),
            queue_totals: Series::new(samples),
            churn_sampled: Series::new(samples),
        }
    }
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats::new(DEFAULT_INTERVAL)
    }
}
