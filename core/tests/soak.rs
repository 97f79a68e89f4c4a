//! A bounded soak of the real `warren` binary with a memory high watermark: exactly 2 000
//! loopback connections — publishers with confirms, fast consumers, slow consumers (small
//! prefetch, acking late) and idle logged-in connections — for about half a minute, while the
//! broker's resident set is sampled from `/proc/<pid>/status`.
//!
//! It asserts that the broker survives, that its resident set stays under the watermark plus
//! [`MARGIN`], and that every message the broker confirmed reaches a consumer.

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
use lapin::{Connection, ConnectionProperties};
use parking_lot::Mutex;

use common::broker_process::{BrokerProcess, TempDataDir};
use common::confirmed::{id_of, publish_window};
use common::memory::{raise_nofile, rss};

/// Connections in all.
const CONNECTIONS: usize = 2000;
const PUBLISHERS: usize = 40;
const FAST_CONSUMERS: usize = 20;
const SLOW_CONSUMERS: usize = 20;
/// Queues the publishers spread over; each has fast and slow consumers.
const QUEUES: usize = 10;
const WATERMARK_MIB: u64 = 300;
/// Over the watermark the broker may go by what arrives between two of its samples (every
/// 200 ms; at a loaded 2-core machine's publish rate, tens of MiB), what the connections
/// already read when the block starts (up to a socket read each), and the trim's lag. The
/// figure is generous so the test says "bounded", not "how fast".
const MARGIN_MIB: u64 = 128;
/// How long the publishers run.
const RUN: Duration = Duration::from_secs(12);
const BODY: usize = 2048;
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_stay_under_the_watermark_and_lose_nothing_confirmed() {
    let nofile = raise_nofile();
    assert!(
        nofile as usize > CONNECTIONS * 2 + 100,
        "the open-file limit ({nofile}) is too low for {CONNECTIONS} connections on both ends"
    );
    let dir = TempDataDir::new("soak");
    let watermark = format!("{WATERMARK_MIB}MiB");
    // The broker inherits the raised limit.
    let mut broker =
        BrokerProcess::start_with(dir.path(), &["--memory-high-watermark", &watermark], &[]);
    let pid = broker.pid();
    let uri = broker.amqp_uri();
    let idle_rss = rss(pid);

    let setup = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connects");
    let ch = setup.create_channel().await.expect("a channel");
    for q in 0..QUEUES {
        ch.queue_declare(
            format!("soak-{q}").as_str(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declared");
    }

    let idle_count = CONNECTIONS - 1 - PUBLISHERS - FAST_CONSUMERS - SLOW_CONSUMERS;
    let addr = broker.amqp_addr();
    let idle = tokio::task::spawn_blocking(move || {
        (0..idle_count)
            .map(|_| common::raw_amqp::idle(addr).expect("an idle connection"))
            .collect::<Vec<_>>()
    });

    let received = Arc::new(Mutex::new(HashSet::new()));
    let slow_mode = Arc::new(AtomicBool::new(true));
    let mut consumers = Vec::new();
    let mut consumer_conns = Vec::new();
    for n in 0..FAST_CONSUMERS + SLOW_CONSUMERS {
        let slow = n >= FAST_CONSUMERS;
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .expect("a consumer connects");
        let cch = conn.create_channel().await.expect("a channel");
        cch.basic_qos(if slow { 5 } else { 200 }, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut deliveries = cch
            .basic_consume(
                format!("soak-{}", n % QUEUES).as_str(),
                format!("c{n}").as_str(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consumes");
        let (received, slow_mode) = (received.clone(), slow_mode.clone());
        consumers.push(tokio::spawn(async move {
            while let Some(Ok(d)) = deliveries.next().await {
                if slow && slow_mode.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                received.lock().insert(id_of(&d.data));
                if d.ack(BasicAckOptions::default()).await.is_err() {
                    return;
                }
            }
        }));
        consumer_conns.push(conn);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(Mutex::new(Vec::new()));
    let next_id = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let conn = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .expect("a publisher connects");
        let pch = conn.create_channel().await.expect("a channel");
        pch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let (stop, confirmed, next_id) = (stop.clone(), confirmed.clone(), next_id.clone());
        publishers.push(tokio::spawn(async move {
            let queue = format!("soak-{}", p % QUEUES);
            let published = AtomicU64::new(0);
            while !stop.load(Ordering::Relaxed) {
                let first = next_id.fetch_add(64, Ordering::Relaxed);
                match publish_window(&pch, &queue, first..first + 64, BODY, &published).await {
                    Some(acked) => confirmed.lock().extend(acked),
                    None => break,
                }
            }
            let _ = conn.close(200, "done").await;
        }));
    }

    let idle = idle.await.expect("opened");
    // All 2 000 are in: the broker lists them.
    let overview_connections = || -> u64 {
        let url = format!("{}/api/overview", broker.admin_url());
        ureq::get(&url)
            .set("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
            .timeout(Duration::from_secs(10))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["object_totals"]["connections"].as_u64())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + PATIENCE;
    while overview_connections() != CONNECTIONS as u64 {
        assert!(
            Instant::now() < deadline,
            "the broker lists {} connections, not {CONNECTIONS}",
            overview_connections()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded_rss = rss(pid);

    let started = Instant::now();
    let mut max_rss = 0;
    while started.elapsed() < RUN {
        max_rss = max_rss.max(rss(pid));
        assert!(broker.is_running(), "the broker died:\n{}", broker.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    slow_mode.store(false, Ordering::Relaxed);
    for p in publishers {
        let _ = tokio::time::timeout(PATIENCE, p).await;
    }
    let confirmed: Vec<u64> = confirmed.lock().clone();
    let deadline = Instant::now() + PATIENCE;
    loop {
        max_rss = max_rss.max(rss(pid));
        let missing = {
            let received = received.lock();
            confirmed.iter().filter(|id| !received.contains(id)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} confirmed messages never arrived",
            confirmed.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(broker.is_running(), "{}", broker.output());
    eprintln!(
        "soak: {CONNECTIONS} connections, idle RSS {} MiB, with connections {} MiB, max RSS {} \
         MiB, watermark {WATERMARK_MIB} MiB, {} messages confirmed and delivered, memory alarm \
         raised: {}",
        idle_rss >> 20,
        loaded_rss >> 20,
        max_rss >> 20,
        confirmed.len(),
        broker.output().contains("memory alarm raised")
    );
    assert!(
        max_rss < (WATERMARK_MIB + MARGIN_MIB) << 20,
        "the broker's resident set reached {} MiB, over the {WATERMARK_MIB} MiB watermark + \
         {MARGIN_MIB} MiB",
        max_rss >> 20
    );
    assert!(!confirmed.is_empty(), "something was published");
    drop(idle);
    for c in consumers {
        c.abort();
    }
    drop(consumer_conns);
    broker.kill9();
}
