//! The message log's tests: the store contract (the conformance suite, "reopen" being a
//! drop and an open over the same directory), then what is particular to a log on disk —
//! group commit, torn tails, damage, deletion and compaction, failures, the sync policies —
//! and a model check against the in-memory store. The measurements are in
//! `core/examples/store_measure.rs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::clock::NEVER;
use crate::protocol::{Properties, ShortStr};
use crate::store::conformance::{self, Reopen};
use crate::store::memory::MemoryStore;

use crate::store::scratch::Scratch as TempDir;

/// A log in its own directory that the conformance suite can reopen.
struct OnDisk {
    dir: TempDir,
    options: LogOptions,
}

impl OnDisk {
    fn new(tag: &str, options: LogOptions) -> OnDisk {
        OnDisk {
            dir: TempDir::new(tag),
            options,
        }
    }

    fn open(&self) -> MessageLog {
        MessageLog::open(&self.dir.0, self.options.clone()).expect("the log opens")
    }

    /// The segment files, oldest first.
    fn segments(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir.0)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        out.sort();
        out
    }

    /// Files moved aside as damaged.
    fn damaged(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir.0)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().contains(".damaged-"))
            .collect()
    }
}

impl Reopen for OnDisk {
    type Store = MessageLog;

    fn reopen(&mut self) -> Arc<MessageLog> {
        Arc::new(self.open())
    }
}

fn queue(name: &str) -> QueueKey {
    QueueKey {
        vhost: "/".into(),
        queue: name.into(),
    }
}

fn message(body: impl Into<Vec<u8>>) -> Message {
    Message::new(
        &ShortStr::copy_from_str("ex").expect("short"),
        &ShortStr::copy_from_str("key").expect("short"),
        &Properties::parse(Bytes::from_static(&[0x10, 0x00, 2])).expect("delivery mode"),
        &Bytes::from(body.into()),
    )
}

fn body_of(r: &Recovered) -> String {
    String::from_utf8_lossy(r.message.body()).into_owned()
}

fn bodies(store: &MessageLog, q: &QueueKey) -> Vec<String> {
    store
        .recover(q)
        .expect("recover")
        .iter()
        .map(body_of)
        .collect()
}

/// Waits (bounded) until `store` reports `mark` durable (or failed).
fn wait_for(store: &MessageLog, what: impl Fn(Durability) -> bool) -> Durability {
    let rx = store.durability();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = *rx.borrow();
        if what(now) {
            return now;
        }
        assert!(Instant::now() < deadline, "still waiting, at {now:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The records of a segment file: (offset, length).
fn records_of(path: &std::path::Path) -> Vec<(usize, usize)> {
    let buf = std::fs::read(path).expect("read segment");
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(rec) = record::read(&buf, at) {
        out.push((at, rec.len));
        at += rec.len;
    }
    out
}

/// Warnings and errors logged while `f` runs on this thread, as their formatted fields.
fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<(tracing::Level, String)>) {
    #[derive(Default)]
    struct Capture(parking_lot::Mutex<Vec<(tracing::Level, String)>>);
    struct Fields(String);
    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
    }
    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let level = *event.metadata().level();
            if level <= tracing::Level::WARN {
                let mut fields = Fields(String::new());
                event.record(&mut fields);
                self.0.lock().push((level, fields.0));
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    let capture = Arc::new(Capture::default());
    let out = tracing::subscriber::with_default(capture.clone(), f);
    let events = std::mem::take(&mut *capture.0.lock());
    (out, events)
}

// ---- the contract ----

#[test]
fn passes_the_message_conformance_suite() {
    conformance::run_messages(&mut || OnDisk::new("conf", LogOptions::default()));
}

#[test]
fn passes_the_message_conformance_suite_with_interval_syncs_and_tiny_segments() {
    conformance::run_messages(&mut || {
        OnDisk::new(
            "conf-interval",
            LogOptions {
                sync: SyncPolicy::Interval(Duration::from_millis(5)),
                segment_bytes: 64,
                faults: None,
            },
        )
    });
}

// ---- group commit and the sync policies ----

#[test]
fn concurrent_appends_share_syncs_and_every_mark_becomes_durable() {
    let disk = OnDisk::new("group", LogOptions::default());
    let store = Arc::new(disk.open());
    const THREADS: usize = 8;
    const EACH: usize = 500;
    let marks: Vec<SyncMark> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    let q = queue(&format!("q{t}"));
                    (0..EACH)
                        .map(|i| {
                            let (_, mark) = store
                                .append(&message(format!("{t}-{i}")), &[(&q, NEVER)])
                                .expect("append");
                            mark
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let highest = *marks.iter().max().expect("marks");
    let now = wait_for(&store, |d| d.synced >= highest);
    assert!(!now.failed);
    let mut sorted = marks.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), THREADS * EACH, "every write has its own mark");
    assert_eq!(highest.0, (THREADS * EACH) as u64, "marks are dense");
    let stats = store.stats();
    assert_eq!(stats.records, (THREADS * EACH) as u64);
    assert!(
        stats.syncs * 4 < stats.records,
        "group commit: {} syncs for {} appends",
        stats.syncs,
        stats.records
    );
    drop(store);
    let store = disk.open();
    for t in 0..THREADS {
        let got = bodies(&store, &queue(&format!("q{t}")));
        let want: Vec<String> = (0..EACH).map(|i| format!("{t}-{i}")).collect();
        assert_eq!(got, want, "queue q{t} in append order");
    }
}

#[test]
fn interval_mode_reports_marks_durable_without_waiting_for_a_sync() {
    let disk = OnDisk::new(
        "interval",
        LogOptions {
            sync: SyncPolicy::Interval(Duration::from_secs(3600)),
            ..LogOptions::default()
        },
    );
    let store = disk.open();
    let (_, mark) = store
        .append(&message("m"), &[(&queue("a"), NEVER)])
        .expect("append");
    wait_for(&store, |d| d.synced >= mark);
    assert_eq!(
        store.stats().syncs,
        0,
        "durable after the write, no sync yet"
    );
    assert!(store.sync().expect("sync") >= mark);
    assert_eq!(store.stats().syncs, 1, "sync() syncs");
    drop(store);
    assert_eq!(bodies(&disk.open(), &queue("a")), ["m"]);
}

#[test]
fn a_batch_bigger_than_a_segment_is_split_across_segments() {
    let disk = OnDisk::new(
        "split",
        LogOptions {
            segment_bytes: 1000,
            ..LogOptions::default()
        },
    );
    let a = queue("a");
    let store = disk.open();
    // No sync in between: these go in one batch or a few.
    for i in 0..50 {
        store
            .append(&message(body_name(i)), &[(&a, NEVER)])
            .expect("append");
    }
    store.sync().expect("sync");
    assert!(store.stats().writes < 50, "batched: {:?}", store.stats());
    drop(store);
    let segments = disk.segments();
    assert!(segments.len() >= 5, "rolled: {}", segments.len());
    for seg in &segments {
        let records = records_of(seg);
        let (last_at, _) = *records.last().expect("records");
        assert!(
            last_at < 1000,
            "{} starts a record past the limit",
            seg.display()
        );
        let first = segment::file_name(
            record::read(&std::fs::read(seg).expect("read"), 0)
                .expect("record")
                .index,
        );
        assert!(seg.ends_with(first), "named by its first record");
    }
    assert_eq!(
        bodies(&disk.open(), &a),
        (0..50).map(body_name).collect::<Vec<_>>()
    );
}

// ---- failures ----

fn with_faults(tag: &str, sync: SyncPolicy) -> (OnDisk, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let disk = OnDisk::new(
        tag,
        LogOptions {
            sync,
            faults: Some(faults.clone()),
            ..LogOptions::default()
        },
    );
    (disk, faults)
}

#[test]
fn a_failed_write_stops_the_log_and_no_later_mark_becomes_durable() {
    let (mut disk, faults) = with_faults("fail-write", SyncPolicy::Always);
    let store = disk.open();
    let a = queue("a");
    store
        .append(&message("kept"), &[(&a, NEVER)])
        .expect("append");
    let before = store.sync().expect("sync");
    faults.fail_writes(true);
    let (_, lost) = store
        .append(&message("lost"), &[(&a, NEVER)])
        .expect("taken before the failure");
    let now = wait_for(&store, |d| d.failed);
    assert_eq!(now.synced, before, "the synced mark stays where it was");
    assert!(now.synced < lost);
    assert!(matches!(
        store.append(&message("refused"), &[(&a, NEVER)]),
        Err(StoreError::Failed(_))
    ));
    assert!(matches!(
        store.remove(&a, MessageId(1)),
        Err(StoreError::Failed(_))
    ));
    assert!(matches!(store.sync(), Err(StoreError::Failed(_))));
    assert_eq!(
        *store.durability().borrow(),
        now,
        "nothing moves after a failure"
    );
    drop(store);
    disk.options.faults = None;
    assert_eq!(bodies(&disk.open(), &a), ["kept"]);
}

#[test]
fn a_failed_sync_stops_the_log_in_either_policy() {
    for (tag, sync) in [
        ("fail-sync", SyncPolicy::Always),
        (
            "fail-sync-interval",
            SyncPolicy::Interval(Duration::from_millis(1)),
        ),
    ] {
        let (mut disk, faults) = with_faults(tag, sync);
        let store = disk.open();
        let a = queue("a");
        store
            .append(&message("kept"), &[(&a, NEVER)])
            .expect("append");
        let before = store.sync().expect("sync");
        faults.fail_syncs(true);
        let (_, mark) = store
            .append(&message("maybe"), &[(&a, NEVER)])
            .expect("append");
        let now = wait_for(&store, |d| d.failed);
        match sync {
            SyncPolicy::Always => {
                assert_eq!(now.synced, before, "{tag}: nothing past the failed sync");
            }
            // Reported durable once written; the failed sync comes after.
            SyncPolicy::Interval(_) => assert!(now.synced <= mark, "{tag}"),
        }
        assert!(matches!(
            store.delivered(&a, MessageId(1)),
            Err(StoreError::Failed(_))
        ));
        drop(store);
        disk.options.faults = None;
        let got = bodies(&disk.open(), &a);
        assert_eq!(got[0], "kept", "{tag}");
    }
}

// ---- torn tails and damage ----

#[test]
fn a_torn_tail_is_cut_off_and_everything_before_it_recovered() {
    let disk = OnDisk::new("torn", LogOptions::default());
    let a = queue("a");
    let store = disk.open();
    for i in 0..4 {
        store
            .append(&message(format!("m{i}")), &[(&a, NEVER)])
            .expect("append");
    }
    store.sync().expect("sync");
    store
        .append(&message("last"), &[(&a, NEVER)])
        .expect("append");
    store.sync().expect("sync");
    drop(store);
    let seg = disk.segments().pop().expect("a segment");
    let full = std::fs::read(&seg).expect("read");
    let (last_at, last_len) = *records_of(&seg).last().expect("records");
    assert_eq!(last_at + last_len, full.len());
    let four: Vec<String> = (0..4).map(|i| format!("m{i}")).collect();
    let mut cuts = vec![
        last_at + 1,
        last_at + 10,
        last_at + record::HEADER,
        full.len() - 1,
    ];
    cuts.dedup();
    for cut in cuts {
        std::fs::write(&seg, &full[..cut]).expect("cut");
        let (store, events) = logged(|| disk.open());
        assert_eq!(bodies(&store, &a), four, "cut at {cut}");
        assert_eq!(
            std::fs::metadata(&seg).expect("meta").len(),
            last_at as u64,
            "cut back to the last good record"
        );
        assert!(
            events
                .iter()
                .any(|(level, fields)| *level == tracing::Level::WARN
                    && fields.contains(&seg.display().to_string())
                    && fields.contains(&format!("offset={last_at}"))),
            "a warning names the file and offset: {events:?}"
        );
        // The log goes on from there.
        store
            .append(&message("after"), &[(&a, NEVER)])
            .expect("append");
        drop(store);
        let mut want = four.clone();
        want.push("after".into());
        assert_eq!(bodies(&disk.open(), &a), want);
        assert!(disk.damaged().is_empty(), "a torn tail is not damage");
    }
    // Garbage (or zeros) after the last record.
    for junk in [vec![0u8; 100], vec![0xAB; 7], vec![0xFF; 300]] {
        std::fs::write(&seg, &full).expect("restore");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open");
        std::io::Write::write_all(&mut file, &junk).expect("junk");
        drop(file);
        let store = disk.open();
        let mut want = four.clone();
        want.push("last".into());
        assert_eq!(bodies(&store, &a), want);
        drop(store);
        assert_eq!(
            std::fs::metadata(&seg).expect("meta").len(),
            full.len() as u64
        );
    }
}

/// Appends `n` messages to `q`, a sync after each, so that small segments roll often.
fn fill(store: &MessageLog, q: &QueueKey, from: usize, n: usize) -> Vec<MessageId> {
    (from..from + n)
        .map(|i| {
            let (id, _) = store
                .append(
                    &message(format!("m{i:04}-{}", "x".repeat(100))),
                    &[(q, NEVER)],
                )
                .expect("append");
            store.sync().expect("sync");
            id
        })
        .collect()
}

fn body_name(i: usize) -> String {
    format!("m{i:04}-{}", "x".repeat(100))
}

#[test]
fn a_bit_flip_in_an_older_segment_moves_it_aside_and_keeps_the_rest() {
    let disk = OnDisk::new(
        "flip",
        LogOptions {
            segment_bytes: 1000,
            ..LogOptions::default()
        },
    );
    let a = queue("a");
    let store = disk.open();
    fill(&store, &a, 0, 40);
    drop(store);
    let segments = disk.segments();
    assert!(segments.len() >= 4, "several segments: {}", segments.len());
    let victim = segments[1].clone();
    let records = records_of(&victim);
    assert!(
        records.len() >= 4,
        "records in the victim: {}",
        records.len()
    );
    // Which messages the victim holds: everything before it, its first two records, and
    // everything after it survive.
    let before: usize = records_of(&segments[0]).len();
    let lost_from = before + 2;
    let lost_to = before + records.len();
    let mut bytes = std::fs::read(&victim).expect("read");
    let (at, len) = records[2];
    bytes[at + len / 2] ^= 0x04;
    std::fs::write(&victim, &bytes).expect("flip");

    let (store, events) = logged(|| disk.open());
    let want: Vec<String> = (0..40)
        .filter(|i| !(lost_from..lost_to).contains(i))
        .map(body_name)
        .collect();
    assert_eq!(
        bodies(&store, &a),
        want,
        "the good prefix and later segments recovered"
    );
    let damaged = disk.damaged();
    assert_eq!(damaged.len(), 1, "moved aside, not deleted");
    assert_eq!(
        std::fs::read(&damaged[0]).expect("aside"),
        bytes,
        "kept as found"
    );
    assert_eq!(
        std::fs::metadata(&victim).expect("prefix").len(),
        at as u64,
        "the good prefix is back under the segment's name"
    );
    assert!(
        events
            .iter()
            .any(|(level, fields)| *level == tracing::Level::ERROR
                && fields.contains(&victim.display().to_string())
                && fields.contains(&format!("offset={at}"))),
        "an error names the file and offset: {events:?}"
    );
    // New writes continue after the highest index, and everything holds on a second open.
    store
        .append(&message("new"), &[(&a, NEVER)])
        .expect("append");
    drop(store);
    let (store, events) = logged(|| disk.open());
    assert!(events.is_empty(), "nothing more to repair: {events:?}");
    let mut again = want;
    again.push("new".into());
    assert_eq!(bodies(&store, &a), again);
}

#[test]
fn damage_in_the_middle_of_the_last_segment_is_not_taken_for_a_torn_tail() {
    let disk = OnDisk::new("flip-last", LogOptions::default());
    let a = queue("a");
    let store = disk.open();
    fill(&store, &a, 0, 6);
    drop(store);
    let seg = disk.segments().pop().expect("segment");
    let records = records_of(&seg);
    let mut bytes = std::fs::read(&seg).expect("read");
    let (at, _) = records[3];
    bytes[at + record::HEADER + 3] ^= 0x80;
    std::fs::write(&seg, &bytes).expect("flip");
    let (store, events) = logged(|| disk.open());
    assert_eq!(
        bodies(&store, &a),
        (0..3).map(body_name).collect::<Vec<_>>()
    );
    assert_eq!(
        disk.damaged().len(),
        1,
        "valid records follow: damage, moved aside"
    );
    assert!(
        events.iter().any(|(l, _)| *l == tracing::Level::ERROR),
        "{events:?}"
    );
    store
        .append(&message("new"), &[(&a, NEVER)])
        .expect("the log goes on");
    drop(store);
    assert_eq!(bodies(&disk.open(), &a).len(), 4);
}

// ---- deletion and compaction ----

/// Waits (bounded) until `f` holds, nudging the writer with empty syncs.
fn eventually(store: &MessageLog, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "never: {what} ({:?})",
            store.stats()
        );
        store.sync().expect("sync");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn dead_segments_are_deleted_from_the_oldest_end() {
    let disk = OnDisk::new(
        "dead",
        LogOptions {
            segment_bytes: 1000,
            ..LogOptions::default()
        },
    );
    let (a, b) = (&queue("a"), queue("b"));
    let store = disk.open();
    let ids = fill(&store, a, 0, 30);
    let grown = disk.segments().len();
    assert!(grown >= 4);
    for id in &ids[..29] {
        store.remove(a, *id).expect("ack");
    }
    // More traffic in another queue rolls the removes' segment behind.
    fill(&store, &b, 100, 20);
    eventually(&store, "the dead front deleted", || {
        store.stats().segments_deleted >= (grown - 1) as u64
    });
    drop(store);
    let store = disk.open();
    assert_eq!(bodies(&store, a), [body_name(29)]);
    assert_eq!(bodies(&store, &b).len(), 20);
}

#[test]
fn a_mostly_dead_oldest_segment_is_compacted_and_recovery_gives_exactly_the_live_messages() {
    let disk = OnDisk::new(
        "compact",
        LogOptions {
            segment_bytes: 2000,
            ..LogOptions::default()
        },
    );
    let (a, b) = (&queue("a"), queue("b"));
    let store = disk.open();
    // Every message in a and b; b keeps one in ten, a keeps the first, and some of what b
    // keeps has been delivered; deadlines differ per queue.
    let mut ids = Vec::new();
    for i in 0..60 {
        let (id, _) = store
            .append(
                &message(body_name(i)),
                &[(a, NEVER), (&b, 1_000 + i as u64)],
            )
            .expect("append");
        store.sync().expect("sync");
        ids.push(id);
    }
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            store.remove(a, *id).expect("ack a");
        }
        if i % 10 != 3 {
            store.remove(&b, *id).expect("ack b");
        } else if i % 20 == 3 {
            store.delivered(&b, *id).expect("delivered");
        }
    }
    let before = disk.segments().len();
    fill(&store, &queue("c"), 0, 30);
    eventually(
        &store,
        "compaction copied the live messages forward",
        || store.stats().records_copied > 0 && disk.segments().len() < before,
    );
    let oldest = disk.segments()[0].clone();
    drop(store);
    let store = disk.open();
    let in_a = store.recover(a).expect("recover");
    assert_eq!(in_a.len(), 1);
    assert_eq!((in_a[0].id, body_of(&in_a[0])), (ids[0], body_name(0)));
    let in_b = store.recover(&b).expect("recover");
    let want: Vec<_> = (0..60)
        .filter(|i| i % 10 == 3)
        .map(|i| (ids[i], body_name(i), 1_000 + i as u64, i % 20 == 3))
        .collect();
    let got: Vec<_> = in_b
        .iter()
        .map(|r| (r.id, body_of(r), r.deadline, r.redelivered))
        .collect();
    assert_eq!(got, want, "ids, order, deadlines and delivered flags kept");
    assert!(
        !oldest.ends_with(segment::file_name(1)),
        "the first segment is gone"
    );
    // The copies keep working: acks after the move hold after a reopen.
    store.remove(&b, ids[3]).expect("ack the copy");
    drop(store);
    assert_eq!(bodies(&disk.open(), &b).len(), want.len() - 1);
}

#[test]
fn a_message_removed_from_one_queue_stays_in_the_other() {
    let disk = OnDisk::new("fanout", LogOptions::default());
    let (a, b) = (&queue("a"), queue("b"));
    let store = disk.open();
    let (id, _) = store
        .append(&message("both"), &[(a, NEVER), (&b, 5)])
        .expect("append");
    store.remove(a, id).expect("ack in a");
    store.remove(a, id).expect("acking twice is nothing");
    store
        .delivered(a, id)
        .expect("delivered where it is gone: nothing");
    // Read from disk (appended after the open), then after a reopen from what it read.
    let got = store.recover(&b).expect("recover");
    assert_eq!((got.len(), got[0].id, got[0].deadline), (1, id, 5));
    assert!(store.recover(a).expect("recover").is_empty());
    drop(store);
    let store = disk.open();
    for _ in 0..2 {
        assert_eq!(bodies(&store, &b), ["both"], "recover twice: the same");
        assert!(store.recover(a).expect("recover").is_empty());
    }
}

// ---- a model check ----

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn many_queues_with_random_removes_match_the_memory_store_after_reopen() {
    let disk = OnDisk::new(
        "model",
        LogOptions {
            segment_bytes: 8 << 10,
            ..LogOptions::default()
        },
    );
    let model = MemoryStore::default();
    let queues: Vec<QueueKey> = (0..8).map(|i| queue(&format!("q{i}"))).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Live entries: (queue, log id, model id).
    let mut live: Vec<(usize, MessageId, MessageId)> = Vec::new();
    let mut store = disk.open();
    let mut deleted = 0;
    for op in 0..6000 {
        match rng.below(10) {
            0..=4 => {
                let fan = 1 + rng.below(3);
                let mut targets: Vec<usize> = (0..fan).map(|_| rng.below(queues.len())).collect();
                targets.sort_unstable();
                targets.dedup();
                let with: Vec<(&QueueKey, u64)> = targets
                    .iter()
                    .map(|&q| (&queues[q], [NEVER, op as u64][rng.below(2)]))
                    .collect();
                let m = message(format!("op{op}-{}", "y".repeat(rng.below(300))));
                let (id, _) = store.append(&m, &with).expect("append");
                let (mid, _) = model.append(&m, &with).expect("append");
                live.extend(targets.iter().map(|&q| (q, id, mid)));
            }
            5..=7 if !live.is_empty() => {
                let (q, id, mid) = live.swap_remove(rng.below(live.len()));
                store.remove(&queues[q], id).expect("remove");
                model.remove(&queues[q], mid).expect("remove");
            }
            8 if !live.is_empty() => {
                let (q, id, mid) = live[rng.below(live.len())];
                store.delivered(&queues[q], id).expect("delivered");
                model.delivered(&queues[q], mid).expect("delivered");
            }
            9 if rng.below(20) == 0 => {
                let q = rng.below(queues.len());
                store.forget_queue(&queues[q]).expect("forget");
                model.forget_queue(&queues[q]).expect("forget");
                live.retain(|(lq, _, _)| *lq != q);
            }
            _ => {}
        }
        if op % 40 == 0 {
            store.sync().expect("sync");
        }
        if op == 3000 || op == 5999 {
            deleted += store.stats().segments_deleted;
            drop(store);
            store = disk.open();
            for q in &queues {
                let got: Vec<_> = store
                    .recover(q)
                    .expect("recover")
                    .iter()
                    .map(|r| (body_of(r), r.deadline, r.redelivered))
                    .collect();
                let want: Vec<_> = model
                    .recover(q)
                    .expect("recover")
                    .iter()
                    .map(|r| (body_of(r), r.deadline, r.redelivered))
                    .collect();
                assert_eq!(got, want, "{q:?} after op {op}");
            }
        }
    }
    drop(store);
    assert!(deleted > 0, "old segments went");
    eprintln!("{deleted} segments deleted, {} left", disk.segments().len());
}
