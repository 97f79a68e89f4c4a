//! How much a vhost holds, counted for monitoring (`/api/overview`, `/api/vhosts`): its
//! exchanges, its queues with their ready messages and consumers.
//!
//! The counts are read from each queue's mirrored atomics, never under a queue's lock, so a
//! monitor polling the API does not slow deliveries; they may be a moment old, as
//! RabbitMQ's are.

use super::VHost;

/// A vhost's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VHostTotals {
    /// Exchanges, the default exchange included (as RabbitMQ counts them).
    pub exchanges: usize,
    /// Queues.
    pub queues: usize,
    /// Messages ready for delivery, over all queues.
    pub messages_ready: usize,
    /// Consumers, over all queues.
    pub consumers: usize,
}

impl VHost {
    /// What the vhost holds now.
    pub fn totals(&self) -> VHostTotals {
        let exchanges = self.exchanges.read().len();
        let queues = self.queues.read();
        let mut totals = VHostTotals {
            exchanges,
            queues: queues.len(),
            ..VHostTotals::default()
        };
        for queue in queues.values() {
            let (ready, consumers) = queue.observed_counts();
            totals.messages_ready += ready;
            totals.consumers += consumers;
        }
        totals
    }
}
