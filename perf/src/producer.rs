//! One producer: its own connection and channel, publishing stamped bodies in a loop.
//!
//! Own connection because lapin serializes the channels of one connection through a single
//! socket and I/O loop, which would cap several producers at one producer's rate.
//!
//! Publishes are pipelined through [`InFlight`]: without confirms up to [`WRITE_WINDOW`]
//! may be waiting for lapin to write them; with confirms each in-flight entry is "publish,
//! then await its confirm", so the window is exactly `--max-unconfirmed`.

use crate::broker;
use crate::cli::{Plan, Target};
use crate::delay::DelayPicker;
use crate::error::{Context, Failure};
use crate::in_flight::InFlight;
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

/// Without confirms, how many publishes may wait for lapin to write them.
const WRITE_WINDOW: usize = 256;

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
    delays: Option<DelayPicker>,
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
            window: plan.max_unconfirmed.unwrap_or(WRITE_WINDOW),
            persistent: plan.persistent,
            limit: plan.pmessages,
            delays: plan
                .delay_ms
                .map(|(min, max)| DelayPicker::new(min, max, index as u64 + 1)),
        })
    }

    /// Publishes until stopped or `--pmessages` is reached, then closes the connection.
    pub async fn run(mut self, stats: Arc<Stats>, stop: StopSignal) -> Result<(), Failure> {
        let result = self.publish(&stats, &stop).await;
        broker::close(&self.connection).await;
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
        let start = Instant::now();
        let mut sent: u64 = 0;

        while !stop.is_stopped() && self.limit.is_none_or(|limit| sent < limit) {
            if self.rate > 0.0 {
                // Due times come from the start, not the previous send, so timer slop turns
                // into a short burst rather than a lower rate.
                let due = start + Duration::from_secs_f64(sent as f64 / self.rate);
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
            stamp::write_stamp(&mut body, stamp::now_nanos());

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
