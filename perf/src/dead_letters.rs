//! Counting what arrives in the dead-letter queue, by purging it once per window: the
//! purge-ok's message count is exactly what arrived since the previous purge.
//!
//! Why purge rather than the two obvious ways:
//! - consuming with auto-ack makes the broker deliver every dead letter over the wire and
//!   this tool decode it — on a 2-core machine shared by broker and client, that is CPU
//!   taken from the very expiry being measured, at the same rate as the expiry itself;
//! - polling `queue.declare(passive)` costs one small round trip per window like a purge,
//!   but leaves every dead letter in the queue, so the broker ends up holding the whole
//!   batch a second time (RabbitMQ needs ≈ 2.5 KB per queued message) and memory pressure
//!   (paging, flow control) would then perturb the run instead.
//!
//! A purge drops messages in bulk inside the broker, one round trip per window, and keeps
//! the dead-letter queue near empty. Its own connection keeps the round trip from queueing
//! behind publishes.

use crate::broker;
use crate::error::{Context, Failure};
use lapin::{
    Channel, Connection,
    options::{QueueDeclareOptions, QueuePurgeOptions},
    types::FieldTable,
};
use std::time::Duration;

/// A purge unanswered this long means the broker is stuck; the run cannot measure on.
const PURGE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DeadLetterCounter {
    connection: Connection,
    channel: Channel,
    queue: String,
}

impl DeadLetterCounter {
    pub async fn open(uri: &str, queue: &str) -> Result<Self, Failure> {
        let connection = broker::connect(uri, "warren-perf dead-letter counter").await?;
        let channel = connection
            .create_channel()
            .await
            .context("opening dead-letter counter channel")?;
        Ok(Self {
            connection,
            channel,
            queue: queue.to_string(),
        })
    }

    /// How many messages arrived since the previous call (and removes them).
    pub async fn take(&self) -> Result<u64, Failure> {
        let purge = self
            .channel
            .queue_purge(&self.queue, QueuePurgeOptions::default());
        match tokio::time::timeout(PURGE_TIMEOUT, purge).await {
            Ok(purged) => purged
                .map(u64::from)
                .context(format_args!("purging dead-letter queue {:?}", self.queue)),
            Err(_) => Err(Failure::new(format!(
                "the broker did not answer a purge of {:?} within {} s",
                self.queue,
                PURGE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Messages still waiting in `queue` (the source queue, at the end of the run).
    pub async fn ready_in(&self, queue: &str) -> Result<u64, Failure> {
        let declared = self
            .channel
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .context(format_args!("counting messages left in {queue:?}"))?;
        Ok(u64::from(declared.message_count()))
    }

    pub async fn close(self) {
        broker::close(&self.connection).await;
    }
}
