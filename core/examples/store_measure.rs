//! The disk stores measured on their own, without a broker or a network in between: what
//! the broker's start-up and confirm figures are made of.
//!
//! ```sh
//! cargo run --release -p warren --example store_measure -- log-recovery [N]
//! cargo run --release -p warren --example store_measure -- log-acks [RATE|max] [SECONDS]
//! cargo run --release -p warren --example store_measure -- held-million [N]
//! ```
//!
//! - `log-recovery`: N (default 1 M) persistent 1 KiB messages appended to one queue and
//!   synced, then the message log opened again and the queue recovered.
//! - `log-acks`: four threads append 1 KiB messages, each acked (a delivered mark and a
//!   removal) 64 behind, at RATE messages a second in all (default 60 000; `max`: flat out)
//!   for SECONDS (default 5): syncs and messages per sync.
//! - `held-million`: N (default 1 M) 200-byte delayed messages spread over a year, then the
//!   held store opened again: open, count and the first page, and every page read back.
//!
//! Everything is written under the system's temporary directory and removed afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warren::broker::Message;
use warren::clock::NEVER;
use warren::protocol::{Properties, ShortStr};
use warren::store::held_disk::HeldLsm;
use warren::store::log::{LogOptions, MessageLog};
use warren::store::{Durable, ExchangeKey, HeldStore, MessageStore, QueueKey, SyncPolicy};

/// A directory of its own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("warren-measure-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn message(routing_key: &str, body: Vec<u8>) -> Message {
    Message::new(
        &ShortStr::copy_from_str("x").expect("short"),
        &ShortStr::copy_from_str(routing_key).expect("short"),
        &Properties::empty(),
        &Bytes::from(body),
    )
}

fn queue(name: &str) -> QueueKey {
    QueueKey {
        vhost: "/".into(),
        queue: name.into(),
    }
}

fn log_recovery(n: usize) {
    let dir = Scratch::new("log-recovery");
    let q = queue("big");
    let store = MessageLog::open(&dir.0, LogOptions::default()).expect("opens");
    let m = message("k", vec![b'z'; 1024]);
    let started = Instant::now();
    for _ in 0..n {
        store.append(&m, &[(&q, NEVER)]).expect("append");
    }
    store.sync().expect("sync");
    let wrote = started.elapsed();
    let stats = store.stats();
    drop(store);
    let started = Instant::now();
    let store = MessageLog::open(&dir.0, LogOptions::default()).expect("reopens");
    let opened = started.elapsed();
    let got = store.recover(&q).expect("recover");
    let recovered = started.elapsed();
    assert_eq!(got.len(), n, "every message recovered");
    println!(
        "wrote {n} x 1 KiB in {wrote:.2?} ({} syncs, {} MiB); open {opened:.2?}, open + recover \
         {recovered:.2?}",
        stats.syncs,
        stats.bytes >> 20
    );
}

fn log_acks(rate: Option<u64>, seconds: u64) {
    const PUBLISHERS: u64 = 4;
    let dir = Scratch::new("log-acks");
    let store = Arc::new(MessageLog::open(&dir.0, LogOptions::default()).expect("opens"));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let sent: u64 = std::thread::scope(|s| {
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    let q = queue(&format!("q{t}"));
                    let m = message("k", vec![b'z'; 1024]);
                    let per_ms = rate.map_or(100, |r| (r / PUBLISHERS / 1000).max(1));
                    let mut window = std::collections::VecDeque::new();
                    let (mut sent, mut next) = (0, Instant::now());
                    while Instant::now() < stop {
                        for _ in 0..per_ms {
                            let (id, _) = store.append(&m, &[(&q, NEVER)]).expect("append");
                            window.push_back(id);
                            if window.len() > 64 {
                                let id = window.pop_front().expect("one");
                                store.delivered(&q, id).expect("delivered");
                                store.remove(&q, id).expect("ack");
                            }
                            sent += 1;
                        }
                        if rate.is_some() {
                            next += Duration::from_millis(1);
                            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                    }
                    sent
                })
            })
            .collect();
        publishers
            .into_iter()
            .map(|p| p.join().expect("publisher"))
            .sum()
    });
    store.sync().expect("sync");
    let all = started.elapsed().as_secs_f64();
    let stats = store.stats();
    println!(
        "{sent} messages (append + delivered + remove each) in {all:.1} s: {:.0}/s; {} syncs \
         ({:.0}/s, {:.0} messages per sync); {} MiB written, {} segments deleted",
        sent as f64 / all,
        stats.syncs,
        stats.syncs as f64 / all,
        sent as f64 / stats.syncs.max(1) as f64,
        stats.bytes >> 20,
        stats.segments_deleted
    );
}

fn held_million(n: u64) {
    const PAGE: usize = 10_000;
    let dir = Scratch::new("held");
    let x = ExchangeKey {
        vhost: "/".into(),
        exchange: "delayed".into(),
    };
    let policy = SyncPolicy::Interval(Duration::from_millis(100));
    let store = HeldLsm::open(&dir.0, policy).expect("opens");
    let started = Instant::now();
    let base = 1_800_000_000_000u64;
    for i in 0..n {
        // Spread over a year, out of hold order.
        let due = base + (i * 2_654_435_761) % 31_536_000_000;
        let mut body = format!("{{\"user\":{i},\"event\":\"reminder\",\"note\":\"").into_bytes();
        body.resize(199, b'x');
        body.push(b'}');
        store
            .hold(&x, due, &message("notify.user", body), &[])
            .expect("hold");
    }
    store.sync().expect("sync");
    let filled = started.elapsed();
    drop(store);
    let started = Instant::now();
    let store = HeldLsm::open(&dir.0, policy).expect("reopens");
    let opened = started.elapsed();
    assert_eq!(store.count(&x).expect("count"), n);
    let first = store.page(&x, None, NEVER, PAGE).expect("page");
    let first_page = started.elapsed();
    assert_eq!(first.len(), PAGE.min(n as usize));
    let started = Instant::now();
    let (mut cursor, mut seen) = (None, 0u64);
    loop {
        let page = store.page(&x, cursor, NEVER, PAGE).expect("page");
        let Some(end) = page.last() else { break };
        cursor = Some((end.due, end.id));
        seen += page.len() as u64;
    }
    assert_eq!(seen, n, "every message read back");
    println!(
        "{n} held x 200 B: filled in {filled:.2?}; open {opened:.2?}, open + count + first \
         page of {PAGE} {first_page:.2?}; all in pages of {PAGE} {:.2?}",
        started.elapsed()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| {
        args.get(i)
            .map_or(Some(default), |a| a.parse().ok())
            .unwrap_or_else(|| panic!("argument {i} is not a number: {:?}", args.get(i)))
    };
    match args.first().map(String::as_str) {
        Some("log-recovery") => log_recovery(number(1, 1_000_000) as usize),
        Some("log-acks") => {
            let rate = match args.get(1).map(String::as_str) {
                Some("max") => None,
                _ => Some(number(1, 60_000)),
            };
            log_acks(rate, number(2, 5));
        }
        Some("held-million") => held_million(number(1, 1_000_000)),
        _ => {
            eprintln!(
                "usage: store_measure log-recovery [N] | log-acks [RATE|max] [SECONDS] | held-million [N]"
            );
            std::process::exit(2);
        }
    }
}
