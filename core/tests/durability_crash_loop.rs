//! The real `warren` binary killed with SIGKILL again and again on one data directory while
//! clients publish persistent messages in confirm mode and consume them with manual acks,
//! then drained: nothing confirmed is lost, nothing durably acked comes back, redeliveries
//! carry the flag wherever the design promises it, and nothing unpublished appears.
//!
//! `WARREN_CRASH_ROUNDS` (default 30) sets the number of kills, `WARREN_CRASH_SEED` replays a
//! run (the seed is printed first).
//!
//! What a client can know, and so what is asserted (the broker writes the store in one order,
//! and a mark that is durable makes every earlier write durable):
//!
//! - A confirm (`basic.ack` from the broker) for a publish means its append is durable.
//! - A worker is one connection with a publishing channel and (maybe) a consuming one. The
//!   broker handles a connection's frames in order, and writes an ack's removal while handling
//!   the ack (`Queue::settled`), so a publish the connection sends after an ack is appended
//!   after that removal: its confirm makes the ack durable. "Sent after" is measured on the
//!   client: an ack counts once lapin has written it to the socket (its promise resolved),
//!   and the publish is queued after that, so it follows on the wire (lapin sends acks ahead
//!   of queued publishes, which is why the ack's own completion is awaited first).
//! - The broker writes a delivery's mark (`MessageStore::delivered`) before the delivery
//!   leaves (`DeliveryState::record` runs before the frame is pushed), so a delivery the
//!   worker received before it sent a publish that was then confirmed has a durable mark: a
//!   restart must bring that message back with `redelivered = true`.
//! - Anything else in flight at a kill is unknown: an ack or a mark may or may not have been
//!   synced, so such a message may come back, with or without the flag; a publish without a
//!   confirm may or may not survive.

#[allow(dead_code)] // Not every helper of `common` is used here.
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use common::broker_process::BrokerProcess;

const QUEUE: &str = "crash-loop";
/// Unacked deliveries a consumer may hold.
const PREFETCH: u16 = 50;
/// Publishes a publisher sends before it waits for their confirms.
const BATCH: usize = 20;
/// Publishes not yet acked by any consumer beyond which publishers pause, so the queue (and
/// so each restart's recovery) stays small.
const BACKLOG: u64 = 2_000;
/// How long the final drain waits without a delivery before it looks at the queue's count.
const QUIET: Duration = Duration::from_millis(500);

/// splitmix64: enough randomness to vary the rounds, and replayable from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What a client saw, in the order it saw it (all workers of all runs).
#[derive(Clone, Copy, Debug)]
enum Event {
    Delivered {
        id: u64,
        run: usize,
        redelivered: bool,
    },
    /// An ack for the last delivery of `id` on its channel was written to the socket.
    Acked { id: u64 },
}

#[derive(Default)]
struct History {
    events: Vec<Event>,
    /// Every id a publisher handed to lapin (it may or may not have reached the broker).
    published: HashSet<u64>,
    confirmed: HashSet<u64>,
    nacked: HashSet<u64>,
    /// Events (acks) known durable: a later publish of the same connection was confirmed.
    durable_acks: HashSet<usize>,
    /// Events (deliveries) whose delivery mark is known durable, likewise.
    durable_marks: HashSet<usize>,
}

impl History {
    fn record(&mut self, event: Event) -> usize {
        self.events.push(event);
        self.events.len() - 1
    }
}

/// One worker's connection: its acks and deliveries (as event indices) in the order they
/// happened, and how many of each a confirmed publish came after.
#[derive(Default)]
struct WorkerLog {
    acks: Vec<usize>,
    deliveries: Vec<usize>,
    durable_acks: usize,
    durable_deliveries: usize,
}

type Shared<T> = Arc<Mutex<T>>;

/// Ids for every round's publishers, and this round's traffic for the backlog bound.
struct Counters {
    next_id: Arc<AtomicU64>,
    /// Messages the queue had when the round started.
    depth: u64,
    published: AtomicU64,
    acked: AtomicU64,
}

impl Counters {
    fn backlog(&self) -> u64 {
        (self.depth + self.published.load(Ordering::Relaxed))
            .saturating_sub(self.acked.load(Ordering::Relaxed))
    }
}

async fn connect(uri: &str) -> Connection {
    Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("connects to warren")
}

async fn declare(ch: &Channel) -> u32 {
    ch.queue_declare(
        QUEUE,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declares the durable queue")
    .message_count()
}

/// Receives, records and acks until the connection dies.
async fn consume(
    mut consumer: lapin::Consumer,
    run: usize,
    history: Shared<History>,
    log: Shared<WorkerLog>,
    counters: Arc<Counters>,
) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let id = parse_id(&delivery.data);
        let at = history.lock().unwrap().record(Event::Delivered {
            id,
            run,
            redelivered: delivery.redelivered,
        });
        log.lock().unwrap().deliveries.push(at);
        if delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .is_err()
        {
            return;
        }
        let at = history.lock().unwrap().record(Event::Acked { id });
        log.lock().unwrap().acks.push(at);
        counters.acked.fetch_add(1, Ordering::Relaxed);
    }
}

/// Publishes persistent messages (body = a fresh id) in batches, waiting for each batch's
/// confirms, until the connection dies.
async fn publish(
    ch: Channel,
    history: Shared<History>,
    log: Shared<WorkerLog>,
    counters: Arc<Counters>,
) {
    let properties = BasicProperties::default().with_delivery_mode(2);
    loop {
        while counters.backlog() > BACKLOG {
            if !ch.status().connected() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut pending = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            let id = counters.next_id.fetch_add(1, Ordering::Relaxed);
            counters.published.fetch_add(1, Ordering::Relaxed);
            history.lock().unwrap().published.insert(id);
            // What this connection had settled and received before this publish left.
            let before = {
                let log = log.lock().unwrap();
                (log.acks.len(), log.deliveries.len())
            };
            let body = id.to_string();
            match ch
                .basic_publish(
                    "",
                    QUEUE,
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    properties.clone(),
                )
                .await
            {
                Ok(confirm) => pending.push((id, before, confirm)),
                Err(_) => return,
            }
        }
        for (id, (acks, deliveries), confirm) in pending {
            match confirm.await {
                Ok(Confirmation::Ack(_)) => {
                    history.lock().unwrap().confirmed.insert(id);
                    let mut log = log.lock().unwrap();
                    log.durable_acks = log.durable_acks.max(acks);
                    log.durable_deliveries = log.durable_deliveries.max(deliveries);
                }
                Ok(Confirmation::Nack(_)) => {
                    history.lock().unwrap().nacked.insert(id);
                }
                Ok(Confirmation::NotRequested) => panic!("the channel is in confirm mode"),
                Err(_) => return,
            }
        }
    }
}

fn parse_id(body: &[u8]) -> u64 {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a body that no publisher wrote: {body:?}"))
}

/// One round: start the broker, run two workers (each a publisher, one or both also a
/// consumer) for `run_for`, then SIGKILL the broker mid-flight.
async fn round(
    run: usize,
    data_dir: &std::path::Path,
    consumers: usize,
    run_for: Duration,
    history: &Shared<History>,
    next_id: &Arc<AtomicU64>,
) -> usize {
    let mut broker = BrokerProcess::start(data_dir);
    let uri = broker.amqp_uri();
    let mut connections = Vec::new();
    let mut channels = Vec::new();
    for _ in 0..2 {
        let conn = connect(&uri).await;
        channels.push(conn.create_channel().await.expect("a channel"));
        connections.push(conn);
    }
    let counters = Arc::new(Counters {
        next_id: next_id.clone(),
        depth: u64::from(declare(&channels[0]).await),
        published: AtomicU64::new(0),
        acked: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    let mut logs = Vec::new();
    for (worker, (conn, pub_ch)) in connections.iter().zip(channels).enumerate() {
        let log: Shared<WorkerLog> = Arc::default();
        pub_ch
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        if worker < consumers {
            let sub_ch = conn.create_channel().await.expect("a channel");
            sub_ch
                .basic_qos(PREFETCH, BasicQosOptions::default())
                .await
                .expect("qos");
            let consumer = sub_ch
                .basic_consume(
                    QUEUE,
                    &format!("crash-{run}-{worker}"),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consumes");
            tasks.push((
                "consumer",
                worker,
                tokio::spawn(consume(
                    consumer,
                    run,
                    history.clone(),
                    log.clone(),
                    counters.clone(),
                )),
            ));
        }
        tasks.push((
            "publisher",
            worker,
            tokio::spawn(publish(
                pub_ch,
                history.clone(),
                log.clone(),
                counters.clone(),
            )),
        ));
        logs.push(log);
    }
    tokio::time::sleep(run_for).await;
    tokio::task::block_in_place(|| broker.kill9());
    // Every task ends once lapin sees the connection die; one can hang in lapin instead (an
    // ack or publish queued just as its I/O loop ended is never answered). Its unfinished
    // operation recorded nothing, so aborting it loses no observation.
    let mut stuck = 0;
    for (kind, worker, mut task) in tasks {
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            eprintln!("run {run}: the {kind} of worker {worker} hung after the kill; aborted");
            task.abort();
            stuck += 1;
        }
    }
    drop(connections);
    let mut history = history.lock().unwrap();
    for log in logs {
        let log = log.lock().unwrap();
        history
            .durable_acks
            .extend(log.acks[..log.durable_acks].iter().copied());
        history
            .durable_marks
            .extend(log.deliveries[..log.durable_deliveries].iter().copied());
    }
    stuck
}

/// Starts the broker once more and consumes (and acks) until the queue is empty and no
/// delivery came for [`QUIET`].
async fn drain(run: usize, data_dir: &std::path::Path, history: &Shared<History>) -> usize {
    let mut broker = BrokerProcess::start(data_dir);
    let conn = connect(&broker.amqp_uri()).await;
    let ch = conn.create_channel().await.expect("a channel");
    let at_start = declare(&ch).await;
    ch.basic_qos(500, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            QUEUE,
            "drain",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consumes");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut drained = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the final drain did not empty the queue within a minute ({drained} of {at_start} \
             drained); broker output:\n{}",
            broker.output()
        );
        match tokio::time::timeout(QUIET, consumer.next()).await {
            Ok(Some(Ok(delivery))) => {
                let id = parse_id(&delivery.data);
                history.lock().unwrap().record(Event::Delivered {
                    id,
                    run,
                    redelivered: delivery.redelivered,
                });
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("acks");
                history.lock().unwrap().record(Event::Acked { id });
                drained += 1;
            }
            Ok(other) => panic!("the drain's consumer ended: {other:?}"),
            Err(_) => {
                let check = conn.create_channel().await.expect("a channel");
                if declare(&check).await == 0 {
                    break;
                }
            }
        }
    }
    drop(conn);
    broker.kill9();
    drained
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_repeated_sigkills() {
    let rounds: usize = std::env::var("WARREN_CRASH_ROUNDS")
        .ok()
        .map(|r| r.parse().expect("WARREN_CRASH_ROUNDS is a number"))
        .unwrap_or(30);
    let seed: u64 = std::env::var("WARREN_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("WARREN_CRASH_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64
        });
    println!("crash loop: {rounds} rounds, WARREN_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let data_dir = std::env::temp_dir().join(format!("warren-crash-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);

    let started = Instant::now();
    let history: Shared<History> = Arc::default();
    let next_id = Arc::new(AtomicU64::new(1));
    let mut stuck = 0;
    for run in 0..rounds {
        let consumers = rng.between(1, 2) as usize;
        let run_for = Duration::from_millis(rng.between(50, 400));
        stuck += round(run, &data_dir, consumers, run_for, &history, &next_id).await;
    }
    let drained = drain(rounds, &data_dir, &history).await;
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&data_dir);

    let history = Arc::try_unwrap(history)
        .ok()
        .expect("every task is done")
        .into_inner()
        .unwrap();
    let (summary, failures) = check(&history);
    println!(
        "crash loop (seed {seed}): {rounds} rounds in {elapsed:.1?}; published {}, confirmed \
         {}, nacked {}, deliveries {}, flagged redelivered {}, ids delivered more than once {} \
         (of which again unflagged after a crash {}), durable acks {}, durable delivery marks \
         {}, drained at the end {drained}, client tasks aborted after a kill {stuck}",
        history.published.len(),
        history.confirmed.len(),
        history.nacked.len(),
        summary.deliveries,
        summary.flagged,
        summary.duplicated_ids,
        summary.unflagged_after_crash,
        history.durable_acks.len(),
        history.durable_marks.len(),
    );
    assert!(
        failures.is_empty(),
        "after {rounds} rounds (seed {seed}), {} violations:\n{}",
        failures.len(),
        failures[..failures.len().min(40)].join("\n")
    );
}

#[derive(Default)]
struct Summary {
    deliveries: usize,
    flagged: usize,
    duplicated_ids: usize,
    unflagged_after_crash: usize,
}

/// Everything the run must satisfy (see the module comment for why each holds): what was
/// seen, and every violation.
fn check(history: &History) -> (Summary, Vec<String>) {
    #[derive(Default)]
    struct Seen {
        runs: HashSet<usize>,
        mark_durable: bool,
        count: usize,
    }
    let mut summary = Summary::default();
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    let mut durably_acked_at: HashMap<u64, usize> = HashMap::new();
    let mut acked: HashSet<u64> = HashSet::new();
    let mut failures = Vec::new();
    for (at, event) in history.events.iter().enumerate() {
        match *event {
            Event::Acked { id } => {
                acked.insert(id);
                if history.durable_acks.contains(&at) {
                    durably_acked_at.entry(id).or_insert(at);
                }
            }
            Event::Delivered {
                id,
                run,
                redelivered,
            } => {
                summary.deliveries += 1;
                summary.flagged += usize::from(redelivered);
                // Nothing appears that no publisher sent.
                if !history.published.contains(&id) {
                    failures.push(format!("id {id} delivered (run {run}) but never published"));
                }
                // A durable ack is final.
                if let Some(ack) = durably_acked_at.get(&id) {
                    failures.push(format!(
                        "id {id} delivered again (run {run}, event {at}) after an ack (event \
                         {ack}) that a later confirm made durable"
                    ));
                }
                let s = seen.entry(id).or_default();
                if s.count > 0 {
                    if s.count == 1 {
                        summary.duplicated_ids += 1;
                    }
                    // In one run a message comes back only requeued, which flags it; across a
                    // crash only if its delivery mark may not have been synced.
                    if !redelivered {
                        if s.runs.contains(&run) {
                            failures.push(format!(
                                "id {id} delivered twice in run {run} without the redelivered \
                                 flag"
                            ));
                        } else if s.mark_durable {
                            failures.push(format!(
                                "id {id} delivered again (run {run}) without the redelivered \
                                 flag although its earlier delivery mark was known durable"
                            ));
                        } else {
                            summary.unflagged_after_crash += 1;
                        }
                    }
                }
                s.count += 1;
                s.runs.insert(run);
                s.mark_durable |= history.durable_marks.contains(&at);
            }
        }
    }
    // Nothing confirmed is lost: every confirmed message reached a consumer that acked it,
    // in some round or in the final drain (which ran until the queue was empty).
    let mut lost: Vec<u64> = history
        .confirmed
        .iter()
        .filter(|id| !acked.contains(id))
        .copied()
        .collect();
    lost.sort_unstable();
    if !lost.is_empty() {
        failures.push(format!(
            "{} confirmed ids never reached a consumer (first: {:?})",
            lost.len(),
            &lost[..lost.len().min(20)]
        ));
    }
    let both: Vec<_> = history.confirmed.intersection(&history.nacked).collect();
    if !both.is_empty() {
        failures.push(format!("ids both confirmed and nacked: {both:?}"));
    }
    (summary, failures)
}
