//! One producer: its own connection and channel, publishing stamped bodies in a loop.
//!
//! Own connection because lapin serializes the channels of one connection through a single
//! socket and I/O loop, which would cap several producers at one producer's rate.
//!
//! Publishes are pipelined through [`InFlight`]: without confirms up to `--publish-window`
//! (default 256) may be waiting for lapin to write them; with confirms each in-flight entry
//! is "publish, then await its confirm", so the window is also the unconfirmed limit. A
//! window of 1 awaits each `basic_publish` (and its confirm) before the next, which is how
//! most programs publish.

use crate::broker;
use crate::cli::{Plan, Target};
use crate::delay::DelayPicker;
use crate::error::{Context, Failure};
use crate::in_flight::InFlight;
use crate::stall::GapWatch;
use crate::stamp;
use crate::stats::Stats;
use crate::stop::StopSignal;
use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    publisher_confirm::Confirmation,
    types::{AMQPValue, FieldTable},
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// How long a stopped producer waits for its outstanding confirms before giving up on them.
const CONFIRM_GRACE: Duration = Duration::from_secs(2);

/// How long a stopped producer waits for the broker to answer its connection close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The same in TTL mode, whose count check needs every publish to have reached the broker:
/// a broker that throttles publishers may still have megabytes of them to read from the
/// socket, and dropping the connection would throw those away.
const TTL_CLOSE_GRACE: Duration = Duration::from_secs(30);

pub struct Producer {
    connection: Connection,
    /// Shared with each in-flight publish, which has to own what it uses.
    channel: Arc<Channel>,
    target: Arc<Target>,
    size: usize,
    rate: f64,
    confirms: bool,
    /// Publishes started but not finished (written, and confirmed when `confirms`).
    window: usize,
    persistent: bool,
    limit: Option<u64>,
    /// Published as fast as possible before `rate` applies (TTL mode's first batch).
    unpaced_first: u64,
    delays: Option<DelayPicker>,
    index: usize,
    close_grace: Duration,
}

impl Producer {
    /// Connects and prepares the channel, so that the run starts timing only once every
    /// producer is ready to publish.
    pub async fn open(plan: &Plan, index: usize) -> Result<Self, Failure> {
        let connection =
            broker::connect(&plan.uri, &format!("warren-perf producer {index}")).await?;
        let channel = connection
            .create_channel()
            .await
            .context("opening producer channel")?;
        if plan.max_unconfirmed.is_some() {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .context("enabling publisher confirms")?;
        }
        Ok(Self {
            connection,
            channel: Arc::new(channel),
            target: Arc::new(plan.target.clone()),
            size: plan.size,
            rate: plan.rate,
            confirms: plan.max_unconfirmed.is_some(),
            window: plan.publish_window,
            persistent: plan.persistent,
            limit: plan.pmessages,
            unpaced_first: plan
                .expiry
                .as_ref()
                .map_or(0, |expiry| share(expiry.messages, plan.producers, index)),
            delays: plan
                .delay_ms
                .map(|(min, max)| DelayPicker::new(min, max, index as u64 + 1)),
            index,
            close_grace: if plan.expiry.is_some() {
                TTL_CLOSE_GRACE
            } else {
                CLOSE_GRACE
            },
        })
    }

    /// Publishes until stopped or `--pmessages` is reached, then closes the connection.
    pub async fn run(mut self, stats: Arc<Stats>, stop: StopSignal) -> Result<(), Failure> {
        let result = self.publish(&stats, &stop).await;
        if !broker::close_within(&self.connection, self.close_grace).await && result.is_ok() {
            eprintln!(
                "producer {}: the broker did not answer the connection close within {} s; \
                 some of its last publishes may never have reached it",
                self.index,
                self.close_grace.as_secs()
            );
        }
        result
    }

    async fn publish(&mut self, stats: &Stats, stop: &StopSignal) -> Result<(), Failure> {
        let mut in_flight = InFlight::new(self.window);
        let mut body = vec![0u8; self.size];
        let base_properties = if self.persistent {
            BasicProperties::default().with_delivery_mode(2)
        } else {
            BasicProperties::default()
        };
        let stopped = stop.stopped();
        tokio::pin!(stopped);
        let mut paced_from = Instant::now();
        let mut sent: u64 = 0;
        let mut gaps = GapWatch::new(stats.start_nanos(), self.rate);

        while !stop.is_stopped() && self.limit.is_none_or(|limit| sent < limit) {
            if sent == self.unpaced_first && sent > 0 {
                paced_from = Instant::now();
            }
            if self.rate > 0.0 && sent >= self.unpaced_first {
                // Due times come from the start, not the previous send, so timer slop turns
                // into a short burst rather than a lower rate.
                let paced = sent - self.unpaced_first;
                let due = paced_from + Duration::from_secs_f64(paced as f64 / self.rate);
                if due > Instant::now() {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = &mut stopped => break,
                    }
                }
            }

            let mut properties = base_properties.clone();
            if let Some(delays) = &mut self.delays {
                let delay_ms = delays.next_ms();
                stamp::write_delay(&mut body, delay_ms);
                let mut headers = FieldTable::default();
                headers.insert(
                    "x-delay".into(),
                    AMQPValue::LongLongInt(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
                );
                properties = properties.with_headers(headers);
            }
            let now = stamp::now_nanos();
            gaps.publishing(now, &stats.stalls);
            stamp::write_stamp(&mut body, now);

            let channel = self.channel.clone();
            let target = self.target.clone();
            let payload = body.clone();
            let confirms = self.confirms;
            let publish = async move {
                let confirm = channel
                    .basic_publish(
                        &target.exchange,
                        &target.routing_key,
                        BasicPublishOptions::default(),
                        &payload,
                        properties,
                    )
                    .await
                    .context("publishing")?;
                if confirms {
                    let confirmation = confirm.await.context("waiting for a publisher confirm")?;
                    Ok(Some(confirmation))
                } else {
                    Ok(None)
                }
            };
            in_flight
                .start(publish, |outcome| settle(outcome, stats))
                .await?;
            sent += 1;
            stats.published.fetch_add(1, Ordering::Relaxed);
        }

        // Publishing time ends here; settling the last confirms is not sending.
        stats.producer_finished();
        tokio::time::timeout(
            CONFIRM_GRACE,
            in_flight.finish(|outcome| settle(outcome, stats)),
        )
        .await
        .unwrap_or(Ok(()))
    }
}

/// Producer `index`'s part of `total` messages; the first ones take the remainder.
fn share(total: u64, producers: usize, index: usize) -> u64 {
    let producers = producers.max(1) as u64;
    let index = index as u64;
    total / producers + u64::from(index < total % producers)
}

/// Books one finished publish: a confirm (when confirms are on), or an error.
fn settle(outcome: Result<Option<Confirmation>, Failure>, stats: &Stats) -> Result<(), Failure> {
    match outcome? {
        Some(confirmation) if confirmation.is_nack() => {
            stats.nacked.fetch_add(1, Ordering::Relaxed);
        }
        Some(_) => {
            stats.confirmed.fetch_add(1, Ordering::Relaxed);
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_to_the_total() {
        assert_eq!(
            (0..3).map(|i| share(10, 3, i)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(
            (0..2).map(|i| share(1_000_000, 2, i)).sum::<u64>(),
            1_000_000
        );
    }
}
