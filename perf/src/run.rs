//! One benchmark run from start to finish: set up the topology, open every connection,
//! start the clock, drive the load while reporting each second, then stop in order —
//! producers first, consumers after a short drain — and print the summary.
//!
//! Both modes share this sequence; they differ only in what the plan tells producers to
//! put in each message, what consumers measure, and when the run is over.

use crate::broker::{self, Topology};
use crate::cli::Plan;
use crate::consumer::Consumer;
use crate::error::{Context, Failure};
use crate::producer::Producer;
use crate::report::{Reporter, Summary};
use crate::stats::Stats;
use crate::stop;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long consumers may keep receiving after producers stop.
const DRAIN: Duration = Duration::from_secs(2);
/// How long a stopped task may take to finish before it is abandoned.
const TASK_GRACE: Duration = Duration::from_secs(3);
/// How often the end-of-run conditions are checked between report lines.
const CHECK_EVERY: Duration = Duration::from_millis(20);

pub async fn run(plan: Plan) -> Result<(), Failure> {
    if plan.expiry.is_some() {
        // TTL mode has its own topology and end condition.
        return crate::expiry::run(plan).await;
    }
    let setup = broker::connect(&plan.uri, "warren-perf setup").await?;
    let setup_channel = setup
        .create_channel()
        .await
        .context("opening setup channel")?;
    let topology = Topology::new(&plan);
    topology.declare(&setup_channel).await?;

    // Everything connects before the clock starts, consumers first so the very first
    // messages already have somewhere to go.
    let mut consumers = Vec::with_capacity(plan.consumers);
    for index in 0..plan.consumers {
        consumers.push(Consumer::open(&plan, index).await?);
    }
    let mut producers = Vec::with_capacity(plan.producers);
    for index in 0..plan.producers {
        producers.push(Producer::open(&plan, index).await?);
    }

    let stats = Arc::new(Stats::new());
    let (failures_tx, mut failures) = mpsc::unbounded_channel();
    let (stop_consumers, consumer_stop) = stop::pair();
    let (stop_producers, producer_stop) = stop::pair();
    let consumer_tasks: Vec<_> = consumers
        .into_iter()
        .map(|consumer| {
            let run = consumer.run(stats.clone(), stats.latency_sink(), consumer_stop.clone());
            spawn_reporting(run, failures_tx.clone())
        })
        .collect();
    let producer_tasks: Vec<_> = producers
        .into_iter()
        .map(|producer| {
            let run = producer.run(stats.clone(), producer_stop.clone());
            spawn_reporting(run, failures_tx.clone())
        })
        .collect();

    let mut reporter = Reporter::new(&plan);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::from_std(stats.start()) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut checks = tokio::time::interval(CHECK_EVERY);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut publishing_reported = false;

    let outcome = loop {
        tokio::select! {
            _ = ticks.tick() => reporter.tick(&stats),
            _ = checks.tick() => {
                let producers_done = plan.producers > 0 && stats.producers_done() == plan.producers;
                if producers_done && !publishing_reported && plan.pmessages.is_some() {
                    publishing_reported = true;
                    report_publishing(&plan, &stats);
                }
                if stats.elapsed() >= plan.duration || (producers_done && caught_up(&plan, &stats)) {
                    break Ok(());
                }
            }
            Some(failure) = failures.recv() => break Err(failure),
            _ = &mut interrupted => {
                eprintln!("interrupted: stopping");
                break Ok(());
            }
        }
    };

    stop_producers.trigger();
    finish_all(producer_tasks, TASK_GRACE).await;
    let publish_elapsed = stats.publish_elapsed();
    if outcome.is_ok() {
        let deadline = tokio::time::Instant::now() + DRAIN;
        while !caught_up(&plan, &stats) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let consume_elapsed = stats.elapsed();
    stop_consumers.trigger();
    finish_all(consumer_tasks, TASK_GRACE).await;

    // A failure while stopping (a confirm that errored, a consumer that lost its
    // connection) still makes the numbers untrustworthy.
    let outcome = outcome.and_then(|()| match failures.try_recv() {
        Ok(failure) => Err(failure),
        Err(_) => Ok(()),
    });
    let teardown = topology.teardown(&setup_channel).await;
    broker::close(&setup).await;
    outcome?;
    teardown?;

    let summary = Summary {
        plan: &plan,
        counts: stats.counts(),
        publish_elapsed,
        consume_elapsed,
        histogram: reporter.finish(&stats),
    };
    if plan.json {
        println!("{}", summary.json());
    } else {
        println!("{}", summary.text());
    }
    Ok(())
}

/// Whether consumers have received everything published (trivially so without consumers).
fn caught_up(plan: &Plan, stats: &Stats) -> bool {
    let counts = stats.counts();
    plan.consumers == 0 || counts.consumed >= counts.published
}

fn report_publishing(plan: &Plan, stats: &Stats) {
    let published = stats.counts().published;
    let seconds = stats.publish_elapsed().as_secs_f64();
    let line = format!(
        "published {published} messages in {seconds:.2} s ({:.0} msg/s)",
        published as f64 / seconds.max(1e-9)
    );
    if plan.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Spawns a producer or consumer, forwarding its failure (if any) to the run loop so one
/// broken connection ends the run instead of silently lowering the numbers.
pub fn spawn_reporting(
    task: impl Future<Output = Result<(), Failure>> + Send + 'static,
    failures: mpsc::UnboundedSender<Failure>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(failure) = task.await {
            let _ = failures.send(failure);
        }
    })
}

/// Waits for stopped tasks, abandoning any stuck on a broker that no longer answers.
pub async fn finish_all(tasks: Vec<JoinHandle<()>>, grace: Duration) {
    for mut task in tasks {
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}
