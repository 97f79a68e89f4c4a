//! One consumer: its own connection, channel and basic.consume, measuring each delivery.
//!
//! What is measured depends on the mode: in throughput mode the time from publish to
//! delivery; in delayed mode how late the delivery is relative to publish time plus the
//! message's requested delay (its *firing lateness*; early deliveries count as zero and are
//! tallied separately).

use crate::broker;
use crate::cli::{Mode, Plan};
use crate::error::{Context, Failure};
use crate::in_flight::InFlight;
use crate::stamp;
use crate::stats::{LatencySink, Stats};
use crate::stop::StopSignal;
use futures_lite::StreamExt;
use lapin::{
    Connection,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Acks queued for lapin to write before the consumer waits for the oldest one.
const ACK_WINDOW: usize = 64;
/// How long a stopped consumer waits for its last acks to be written.
const ACK_GRACE: Duration = Duration::from_secs(1);

pub struct Consumer {
    connection: Connection,
    deliveries: lapin::Consumer,
    manual_ack: bool,
    mode: Mode,
}

impl Consumer {
    /// Connects and subscribes before any producer starts, so the first messages published
    /// are not left sitting in the queue inflating latency.
    pub async fn open(plan: &Plan, index: usize) -> Result<Self, Failure> {
        let connection =
            broker::connect(&plan.uri, &format!("warren-perf consumer {index}")).await?;
        let channel = connection
            .create_channel()
            .await
            .context("opening consumer channel")?;
        if plan.prefetch > 0 {
            channel
                .basic_qos(plan.prefetch, BasicQosOptions::default())
                .await
                .context("setting prefetch")?;
        }
        let deliveries = channel
            .basic_consume(
                &plan.queue,
                &format!("warren-perf-{index}"),
                BasicConsumeOptions {
                    no_ack: !plan.manual_ack,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .context(format_args!("consuming from queue {:?}", plan.queue))?;
        Ok(Self {
            connection,
            deliveries,
            manual_ack: plan.manual_ack,
            mode: plan.mode,
        })
    }

    /// Consumes until stopped, then closes the connection (which requeues anything unacked).
    pub async fn run(
        mut self,
        stats: Arc<Stats>,
        sink: LatencySink,
        stop: StopSignal,
    ) -> Result<(), Failure> {
        let result = self.consume(&stats, &sink, &stop).await;
        broker::close(&self.connection).await;
        result
    }

    async fn consume(
        &mut self,
        stats: &Stats,
        sink: &LatencySink,
        stop: &StopSignal,
    ) -> Result<(), Failure> {
        let mut acks = InFlight::new(ACK_WINDOW);
        let stopped = stop.stopped();
        tokio::pin!(stopped);
        let outcome = loop {
            let next = tokio::select! {
                biased;
                () = &mut stopped => break Ok(()),
                next = self.deliveries.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => break Err(error).context("consuming"),
                None if stop.is_stopped() => break Ok(()),
                None => break Err(Failure::new("the broker cancelled the consumer")),
            };
            let now = stamp::now_nanos();
            self.measure(now, &delivery.data, stats, sink);
            if self.manual_ack {
                let acker = delivery.acker;
                let ack = async move { acker.ack(BasicAckOptions::default()).await };
                acks.start(ack, |acked| acked.map(drop).context("acknowledging"))
                    .await?;
            }
        };
        // The acks are already queued for writing; wait for them so the broker sees them
        // before this connection closes (which would requeue the messages).
        let written = tokio::time::timeout(
            ACK_GRACE,
            acks.finish(|acked| acked.map(drop).context("acknowledging")),
        )
        .await
        .unwrap_or(Ok(()));
        outcome.and(written)
    }

    /// Counts one delivery and records its latency (or lateness).
    fn measure(&self, now: u64, body: &[u8], stats: &Stats, sink: &LatencySink) {
        let Some(published) = stamp::read_stamp(body) else {
            // Not published by warren-perf: counted, not timed.
            stats.consumed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if published < stats.start_nanos() {
            // Published before this run started: a previous run's leftovers, which reached
            // the queue after it was purged (a broker still working through a closed
            // producer's socket). Counting them would inflate the received total.
            stats.stale.fetch_add(1, Ordering::Relaxed);
            return;
        }
        stats.consumed.fetch_add(1, Ordering::Relaxed);
        let due = match self.mode {
            Mode::Throughput | Mode::Ttl => published,
            Mode::Delayed => match stamp::read_delay(body) {
                Some(delay_ms) => published.saturating_add(delay_ms.saturating_mul(1_000_000)),
                None => return,
            },
        };
        if now < due && self.mode == Mode::Delayed {
            stats.early.fetch_add(1, Ordering::Relaxed);
        }
        sink.record_micros(now.saturating_sub(due) / 1_000);
    }
}
