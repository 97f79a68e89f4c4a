//! TTL mode from start to finish: a source queue whose messages expire after `--ttl-ms`
//! into a dead-letter queue, a first batch of `--messages` published as fast as possible,
//! and publishers that keep publishing while the batch expires.
//!
//! The question is the one a user of TTL queues asks: how fast does the broker expire and
//! dead-letter a large backlog, and do publishers stall while it does? So nobody consumes
//! the source queue, the batch is counted as it arrives in the dead-letter queue (see
//! `dead_letters`), and producers are only stopped once the batch has fully arrived plus a
//! margin — every window of the expiry is a window with publishers running.
//!
//! Sequence: declare both queues; connect the counter and the producers; start the clock;
//! each window, purge-count the dead-letter queue and read the publish counter; stop the
//! producers when the phase is over; drain until everything published has arrived (or
//! TTL + a grace has passed); count what is left; delete both queues; report.

use crate::broker;
use crate::cli::{ExpiryPlan, Plan};
use crate::dead_letters::DeadLetterCounter;
use crate::error::{Context, Failure};
use crate::expiry_report::ExpirySummary;
use crate::producer::Producer;
use crate::run::{finish_all, spawn_reporting};
use crate::stats::Stats;
use crate::stop;
use crate::timeline::{Timeline, Window};
use lapin::{
    Channel,
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// Default "keep publishing" after the batch has fully arrived, so the end of the expiry is
/// measured with publishers still running.
const MARGIN_AFTER_BATCH: Duration = Duration::from_secs(1);
/// If nothing has arrived this long after TTL, the broker does not expire (or dead-letter)
/// at all — e.g. it accepts `x-message-ttl` and ignores it. Giving up early matters: the
/// producers are filling its memory at full speed meanwhile.
const FIRST_EXPIRY_GRACE: Duration = Duration::from_secs(10);
/// Same, for a broker that started dead-lettering and then stopped before the batch ended.
const STALLED_EXPIRY_GRACE: Duration = Duration::from_secs(10);
/// After producers have stopped, how long past TTL to wait for the last messages to arrive.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How long stopping producers may take: more than their close grace (see `producer`).
const PRODUCER_STOP_GRACE: Duration = Duration::from_secs(35);

pub async fn run(plan: Plan) -> Result<(), Failure> {
    let Some(expiry) = plan.expiry.clone() else {
        return Err(Failure::new("ttl mode without its settings"));
    };
    let setup = broker::connect(&plan.uri, "warren-perf setup").await?;
    let setup_channel = setup
        .create_channel()
        .await
        .context("opening setup channel")?;
    let declared = declare(&setup_channel, &plan.queue, &expiry).await;
    let outcome = match declared {
        Ok(()) => measure(&plan, &expiry).await,
        Err(failure) => Err(failure),
    };
    // Whatever happened, do not leave up to a million messages on the broker.
    let teardown = if plan.keep_queue {
        Ok(())
    } else {
        teardown(&setup, &plan.queue, &expiry.dead_letter_queue).await
    };
    broker::close(&setup).await;
    let summary = outcome?;
    teardown?;

    if plan.json {
        println!("{}", summary.json());
    } else {
        println!("{}", summary.text());
    }
    match summary.problem() {
        Some(problem) => Err(Failure::new(problem)),
        None => Ok(()),
    }
}

/// The dead-letter queue first: the source queue names it as its routing key.
async fn declare(channel: &Channel, queue: &str, expiry: &ExpiryPlan) -> Result<(), Failure> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let dlq = &expiry.dead_letter_queue;
    channel
        .queue_declare(dlq, durable, FieldTable::default())
        .await
        .context(format_args!("declaring dead-letter queue {dlq:?}"))?;
    let mut arguments = FieldTable::default();
    let ttl_ms = i64::try_from(expiry.ttl.as_millis()).unwrap_or(i64::MAX);
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dlq.as_str().into()),
    );
    channel
        .queue_declare(queue, durable, arguments)
        .await
        .map(drop)
        .context(format_args!(
            "declaring queue {queue:?} with x-message-ttl and x-dead-letter-exchange"
        ))
}

/// A fresh channel: a failed declare closes the setup channel, and the queues should go
/// even then (the dead-letter queue may exist without the source queue).
async fn teardown(
    connection: &lapin::Connection,
    queue: &str,
    dead_letter_queue: &str,
) -> Result<(), Failure> {
    for name in [queue, dead_letter_queue] {
        let channel = connection
            .create_channel()
            .await
            .context("opening teardown channel")?;
        let deleted = channel
            .queue_delete(name, QueueDeleteOptions::default())
            .await;
        // A queue that was never declared closes the channel with 404: nothing to delete.
        match deleted {
            Err(error) if !error.to_string().contains("NOT_FOUND") => {
                return Err(error).context(format_args!("deleting queue {name:?}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Everything between the declared queues and the summary.
async fn measure(plan: &Plan, expiry: &ExpiryPlan) -> Result<ExpirySummary, Failure> {
    let counter = DeadLetterCounter::open(&plan.uri, &expiry.dead_letter_queue).await?;
    let mut producers = Vec::with_capacity(plan.producers);
    for index in 0..plan.producers {
        producers.push(Producer::open(plan, index).await?);
    }

    let stats = Arc::new(Stats::new());
    let (failures_tx, mut failures) = mpsc::unbounded_channel();
    let (stop_producers, producer_stop) = stop::pair();
    let producer_tasks: Vec<_> = producers
        .into_iter()
        .map(|producer| {
            spawn_reporting(
                producer.run(stats.clone(), producer_stop.clone()),
                failures_tx.clone(),
            )
        })
        .collect();

    let mut sampler = Sampler::new(plan, expiry);
    let mut ticks = tokio::time::interval(expiry.window);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);

    // Phase 1 and 2: publishing while the batch expires.
    let phase = loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(failure) = sampler.sample(&counter, &stats, true).await {
                    break Err(failure);
                }
                match sampler.verdict(&stats) {
                    Verdict::Continue => {}
                    Verdict::StopPublishing => break Ok(()),
                    Verdict::GiveUp(why) => break Err(Failure::new(why)),
                }
            }
            Some(failure) = failures.recv() => break Err(failure),
            _ = &mut interrupted => {
                eprintln!("interrupted: stopping");
                sampler.interrupted = true;
                break Ok(());
            }
        }
    };
    // Producers may take seconds to stop (a throttled connection still has publishes to
    // hand over); the windows go on meanwhile, so arrivals keep their timing.
    stop_producers.trigger();
    let mut stopping = tokio::spawn(finish_all(producer_tasks, PRODUCER_STOP_GRACE));
    let mut stopped = false;
    let mut phase = phase;
    while phase.is_ok() && !stopped {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(failure) = sampler.sample(&counter, &stats, false).await {
                    phase = Err(failure);
                }
            }
            _ = &mut stopping => stopped = true,
        }
    }
    if !stopped {
        let _ = stopping.await;
    }
    let phase = phase.and_then(|()| match failures.try_recv() {
        Ok(failure) => Err(failure),
        Err(_) => Ok(()),
    });
    if let Err(failure) = phase {
        counter.close().await;
        return Err(failure);
    }

    // Drain: whatever was published last expires one TTL later.
    let counts = stats.counts();
    let expected = counts.published - counts.nacked;
    let deadline = stats.elapsed() + expiry.ttl + DRAIN_GRACE;
    while !sampler.interrupted
        && sampler.timeline.arrived() < expected
        && stats.elapsed() < deadline
    {
        ticks.tick().await;
        sampler.sample(&counter, &stats, false).await?;
    }
    let left_in_source = counter.ready_in(&plan.queue).await?;
    counter.close().await;

    let figures = sampler.timeline.figures(expiry.messages);
    // Gaps are looked for while the batch expired, or until the end for an incomplete run.
    let longest_gap = figures.expiry_start.and_then(|from| {
        let to = figures.expiry_end.unwrap_or_else(|| stats.elapsed());
        stats
            .stalls
            .longest_within(nanos(from), nanos(to))
            .map(|gap| Duration::from_nanos(gap.nanos()))
    });
    Ok(ExpirySummary {
        plan: plan.clone(),
        figures,
        longest_gap,
        counts: stats.counts(),
        arrived: sampler.timeline.arrived(),
        left_in_source,
        interrupted: sampler.interrupted,
    })
}

fn nanos(at: Duration) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

enum Verdict {
    Continue,
    StopPublishing,
    GiveUp(String),
}

/// Takes one window's numbers, prints a progress line each second, and decides when the
/// publishing phase is over.
struct Sampler {
    timeline: Timeline,
    batch: u64,
    ttl: Duration,
    keep_publishing: Option<Duration>,
    run_limit: Duration,
    to_stderr: bool,
    last_published: u64,
    last_end: Duration,
    batch_published_at: Option<Duration>,
    batch_arrived_at: Option<Duration>,
    last_arrival_at: Option<Duration>,
    /// Progress line state: when the last one was printed and the counts then.
    line_at: Duration,
    line_counts: (u64, u64),
    interrupted: bool,
}

impl Sampler {
    fn new(plan: &Plan, expiry: &ExpiryPlan) -> Self {
        Self {
            timeline: Timeline::new(expiry.window),
            batch: expiry.messages,
            ttl: expiry.ttl,
            keep_publishing: expiry.keep_publishing,
            run_limit: plan.duration,
            to_stderr: plan.json,
            last_published: 0,
            last_end: Duration::ZERO,
            batch_published_at: None,
            batch_arrived_at: None,
            last_arrival_at: None,
            line_at: Duration::ZERO,
            line_counts: (0, 0),
            interrupted: false,
        }
    }

    /// Ends the current window: both counts are read once the purge is answered, so they
    /// cover the same stretch of time.
    async fn sample(
        &mut self,
        counter: &DeadLetterCounter,
        stats: &Stats,
        publishing: bool,
    ) -> Result<(), Failure> {
        let arrived = counter.take().await?;
        let end = stats.elapsed();
        let published = stats.counts().published;
        self.timeline.push(Window {
            end,
            length: end - self.last_end,
            published: published - self.last_published,
            arrived,
            publishing,
        });
        self.last_end = end;
        self.last_published = published;
        if arrived > 0 {
            self.last_arrival_at = Some(end);
        }
        if self.batch_published_at.is_none() && published >= self.batch {
            self.batch_published_at = Some(end);
            self.say(format!(
                "batch of {} published in {:.2} s ({:.0} msg/s)",
                self.batch,
                end.as_secs_f64(),
                self.batch as f64 / end.as_secs_f64().max(1e-9)
            ));
        }
        if self.batch_arrived_at.is_none() && self.timeline.arrived() >= self.batch {
            self.batch_arrived_at = Some(end);
        }
        if end - self.line_at >= Duration::from_secs(1) {
            self.progress(end, published);
        }
        Ok(())
    }

    fn progress(&mut self, now: Duration, published: u64) {
        let seconds = (now - self.line_at).as_secs_f64().max(1e-9);
        let arrived = self.timeline.arrived();
        let (last_published, last_arrived) = self.line_counts;
        self.say(format!(
            "t={:.0}s published {:.0} msg/s, dead-lettered {:.0} msg/s, batch {}/{} dead-lettered",
            now.as_secs_f64(),
            (published - last_published) as f64 / seconds,
            (arrived - last_arrived) as f64 / seconds,
            arrived.min(self.batch),
            self.batch,
        ));
        self.line_at = now;
        self.line_counts = (published, arrived);
    }

    fn say(&self, line: String) {
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    fn verdict(&self, stats: &Stats) -> Verdict {
        let now = stats.elapsed();
        if let (Some(published), Some(arrived)) = (self.batch_published_at, self.batch_arrived_at) {
            let stop_at = match self.keep_publishing {
                Some(keep) => (published + keep).max(arrived),
                None => arrived + MARGIN_AFTER_BATCH,
            };
            return if now >= stop_at {
                Verdict::StopPublishing
            } else {
                Verdict::Continue
            };
        }
        match self.last_arrival_at {
            None if now > self.ttl + FIRST_EXPIRY_GRACE => Verdict::GiveUp(format!(
                "nothing arrived in the dead-letter queue within {:.1} s (TTL {} ms + {} s): \
                 the broker does not seem to expire messages by x-message-ttl into \
                 x-dead-letter-exchange",
                now.as_secs_f64(),
                self.ttl.as_millis(),
                FIRST_EXPIRY_GRACE.as_secs()
            )),
            Some(last) if now > last + self.ttl + STALLED_EXPIRY_GRACE => Verdict::GiveUp(format!(
                "dead-lettering stopped: nothing arrived for {:.1} s with {} of the batch of {} \
                 still missing",
                (now - last).as_secs_f64(),
                self.batch.saturating_sub(self.timeline.arrived()),
                self.batch
            )),
            _ if now >= self.run_limit => Verdict::GiveUp(format!(
                "the batch did not expire within --duration {} s ({} of {} dead-lettered)",
                self.run_limit.as_secs(),
                self.timeline.arrived().min(self.batch),
                self.batch
            )),
            _ => Verdict::Continue,
        }
    }
}
