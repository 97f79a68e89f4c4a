//! The memory high watermark against the real `warren` binary, run under an address-space
//! cap (`prlimit --as`) so that a broker which kept allocating would die, not swap.
//!
//! The reported scenario: a consumer with prefetch 65535 that never reads its socket, and a
//! publisher with confirms sending 4 KiB messages as fast as it can. Before the alarm, the
//! broker grew until malloc failed at the cap. Now the publisher must hear
//! `connection.blocked` ("low on memory"), the broker must stay up, and once the slow
//! consumer is gone and a real consumer drains the queue, the publisher must hear
//! `connection.unblocked` and publish again — and every message the broker confirmed must
//! reach the draining consumer.
//!
//! Waits are bounded polls; nothing asserts how fast anything happens.

#[allow(dead_code)]
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use parking_lot::Mutex;

use common::broker_process::{BrokerProcess, TempDataDir};
use common::confirmed::{id_of, publish_window};
use common::memory::{rss, status_bytes};

/// The watermark: well above an idle broker's resident set (~20 MiB), well below the cap.
const WATERMARK: &str = "256MiB";
/// The address-space cap. It has to leave room for what is reserved, not used: thread
/// stacks of the runtime and the blocking pool, glibc's per-thread malloc arenas (64 MiB of
/// address space each) and the stores' maps. An idle broker reserves a few hundred MiB; the
/// cap is far above that and above the watermark, and far below what an unbounded broker
/// reaches in this scenario (it aborted at a 4 GB cap).
const CAP_BYTES: u64 = 2 << 30;
/// Message size of the report.
const BODY: usize = 4096;
/// Publishes in flight before the publisher waits for their confirms.
const WINDOW: usize = 256;
/// How long a test waits for what must happen before calling it a failure.
const PATIENCE: Duration = Duration::from_secs(40);
const GUEST: &str = "Basic Z3Vlc3Q6Z3Vlc3Q=";

/// What the publisher's connection heard, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Heard {
    Blocked(String),
    Unblocked,
}

/// A publisher with confirms, running until told to stop: message `n` carries `n` in its
/// first 8 bytes, and `confirmed` collects the ids the broker acked.
struct Publisher {
    conn: Connection,
    heard: Arc<Mutex<Vec<Heard>>>,
    confirmed: Arc<Mutex<Vec<u64>>>,
    published: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    async fn start(uri: &str, queue: &str) -> Publisher {
        let conn = Connection::connect(uri, ConnectionProperties::default())
            .await
            .expect("the publisher connects");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let mut events = conn.events_listener();
        let log = heard.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    Event::ConnectionBlocked(reason) => log.lock().push(Heard::Blocked(reason)),
                    Event::ConnectionUnblocked => log.lock().push(Heard::Unblocked),
                    _ => {}
                }
            }
        });
        let ch = conn.create_channel().await.expect("a channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let confirmed = Arc::new(Mutex::new(Vec::new()));
        let published = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(publish(
            ch,
            queue.to_owned(),
            confirmed.clone(),
            published.clone(),
            stop.clone(),
        ));
        Publisher {
            conn,
            heard,
            confirmed,
            published,
            stop,
            task,
        }
    }

    fn heard(&self) -> Vec<Heard> {
        self.heard.lock().clone()
    }

    fn confirmed(&self) -> usize {
        self.confirmed.lock().len()
    }
}

async fn publish(
    ch: Channel,
    queue: String,
    confirmed: Arc<Mutex<Vec<u64>>>,
    published: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let ids = next..next + WINDOW as u64;
        next = ids.end;
        match publish_window(&ch, &queue, ids, BODY, &published).await {
            Some(acked) => confirmed.lock().extend(acked),
            None => return,
        }
    }
}

/// Polls `condition` every 50 ms until it holds or `PATIENCE` passes.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /api/health/checks/alarms`: the status code and the body.
fn alarms_check(broker: &BrokerProcess) -> (u16, serde_json::Value) {
    let url = format!("{}/api/health/checks/alarms", broker.admin_url());
    let response = match ureq::get(&url)
        .set("Authorization", GUEST)
        .timeout(Duration::from_secs(10))
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = response.status();
    let body = response.into_string().expect("a body");
    (status, serde_json::from_str(&body).expect("JSON"))
}

/// `GET /api/nodes`: the one node.
fn node(broker: &BrokerProcess) -> serde_json::Value {
    let url = format!("{}/api/nodes", broker.admin_url());
    let body = ureq::get(&url)
        .set("Authorization", GUEST)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .expect("a body");
    let nodes: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    nodes[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_reads_gets_publishers_blocked_not_the_broker_killed() {
    let dir = TempDataDir::new("memory-alarm");
    let cap = format!("--as={CAP_BYTES}");
    let mut broker = BrokerProcess::start_with(
        dir.path(),
        &["--memory-high-watermark", WATERMARK],
        &["prlimit", &cap, "--"],
    );
    let pid = broker.pid();
    let idle_rss = rss(pid);
    let idle_vm = status_bytes(pid, "VmSize:").unwrap_or(0);
    eprintln!(
        "idle broker: RSS {} MiB, VmSize {} MiB, cap {} MiB, watermark {WATERMARK}",
        idle_rss >> 20,
        idle_vm >> 20,
        CAP_BYTES >> 20
    );
    assert!(
        broker
            .output()
            .contains("memory high watermark set to 256 MiB"),
        "the watermark is logged at start:\n{}",
        broker.output()
    );
    let uri = broker.amqp_uri();
    let queue = "backlog";
    let setup = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connects");
    let ch = setup.create_channel().await.expect("a channel");
    ch.queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declared");

    let slow = common::raw_amqp::consume_without_reading(broker.amqp_addr(), queue, 65535);
    let publisher = Publisher::start(&uri, queue).await;

    // Sample the broker's resident set while it fills up.
    let max_rss = Arc::new(AtomicU64::new(idle_rss));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (max_rss, sampling) = (max_rss.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                max_rss.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    eventually("connection.blocked", || !publisher.heard().is_empty()).await;
    assert_eq!(
        publisher.heard(),
        [Heard::Blocked("low on memory".into())],
        "the publisher hears why it is blocked"
    );
    assert!(
        broker.is_running(),
        "the broker is alive:\n{}",
        broker.output()
    );
    let (status, check) = alarms_check(&broker);
    assert_eq!(status, 503, "{check}");
    assert_eq!(check["alarms"][0]["resource"], "memory", "{check}");
    let n = node(&broker);
    assert_eq!(n["mem_alarm"], true, "{n}");
    assert_eq!(n["mem_limit"], 256u64 << 20, "{n}");
    // Blocked means not read: publishing stops progressing.
    let stalled = publisher.published.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = publisher.published.load(Ordering::Relaxed);
    assert!(
        later <= stalled + WINDOW as u64,
        "a blocked publisher is not read ({stalled} then {later} publishes)"
    );
    assert!(broker.is_running());

    // The slow consumer goes away (its unacked messages go back to the queue) and a real
    // one drains it: memory falls below the watermark and the publisher is unblocked.
    drop(slow);
    let drain = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("the draining consumer connects while publishers are blocked");
    let dch = drain.create_channel().await.expect("a channel");
    dch.basic_qos(1000, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut deliveries = dch
        .basic_consume(
            queue,
            "drain",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consumes");
    let received = Arc::new(Mutex::new(HashSet::new()));
    let drainer = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = deliveries.next().await {
                let id = id_of(&delivery.data);
                received.lock().insert(id);
                if delivery.ack(BasicAckOptions::default()).await.is_err() {
                    return;
                }
            }
        })
    };
    eventually("connection.unblocked", || {
        publisher.heard().contains(&Heard::Unblocked)
    })
    .await;
    let resumed_from = publisher.confirmed();
    eventually("publishing after the unblock", || {
        publisher.confirmed() > resumed_from + WINDOW
    })
    .await;

    publisher.stop.store(true, Ordering::Relaxed);
    // Stopping waits for the last window's confirms; if the publisher is blocked again
    // meanwhile, the drain unblocks it.
    tokio::time::timeout(PATIENCE, publisher.task)
        .await
        .expect("the publisher stops")
        .expect("the publisher ran");
    let confirmed: Vec<u64> = publisher.confirmed.lock().clone();
    // A loaded machine drains slowly: the wait is for progress, so it fails only when the
    // drain stops short of a confirmed message (one lost), not when it is merely slow.
    let missing = || {
        let received = received.lock();
        confirmed.iter().filter(|id| !received.contains(id)).count()
    };
    let (mut left, mut deadline) = (missing(), Instant::now() + PATIENCE);
    while left > 0 {
        assert!(
            Instant::now() < deadline,
            "{left} of {} confirmed messages never reached the drain",
            confirmed.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now_left = missing();
        if now_left < left {
            deadline = Instant::now() + PATIENCE;
        }
        left = now_left;
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await.expect("sampled");
    assert!(broker.is_running(), "{}", broker.output());
    eprintln!(
        "confirmed {} messages, all delivered; broker max RSS {} MiB (watermark {WATERMARK})",
        confirmed.len(),
        max_rss.load(Ordering::Relaxed) >> 20
    );
    assert!(
        broker.output().contains("memory alarm raised")
            && broker.output().contains("memory alarm cleared"),
        "raise and clear are logged:\n{}",
        broker.output()
    );
    drainer.abort();
    let _ = publisher.conn.close(200, "done").await;
    let _ = drain.close(200, "done").await;
    let _ = setup.close(200, "done").await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_watermark_blocks_the_first_publish_and_consumers_still_work() {
    let dir = TempDataDir::new("memory-zero");
    let mut broker = BrokerProcess::start_with(dir.path(), &["--memory-high-watermark", "0"], &[]);
    let uri = broker.amqp_uri();
    let consumer = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connects");
    let cch = consumer.create_channel().await.expect("a channel");
    cch.queue_declare(
        "zero",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("a consumer-only connection is served: declared");
    let publisher = Publisher::start(&uri, "zero").await;
    eventually("connection.blocked", || !publisher.heard().is_empty()).await;
    assert_eq!(publisher.heard(), [Heard::Blocked("low on memory".into())]);
    // The connection that only consumes is still read and answered.
    let served = tokio::time::timeout(PATIENCE, async {
        cch.queue_declare(
            "zero",
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("a passive declare while the alarm is raised");
        cch.basic_consume(
            "zero",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("a consume while the alarm is raised")
    })
    .await;
    assert!(served.is_ok(), "the consumer-only connection was served");
    assert!(broker.is_running());
    publisher.task.abort();
    broker.kill9();
}
