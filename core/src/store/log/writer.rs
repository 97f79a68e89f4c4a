//! The writer thread (`warren-log`) and group commit: the only place the log does I/O after
//! it has opened.
//!
//! Callers encode their record into the pending batch under a short lock and return with
//! its index (their [`SyncMark`]); the first one into an empty batch while the writer sleeps
//! wakes it. The writer swaps the whole batch out for its spare buffer (so the two buffers
//! keep their capacity and the hot path does not allocate), stamps the time and computes
//! every checksum, folds the records into the [`Index`], writes them with one `write_all`
//! (one per segment, should the batch cross into the next), then — with
//! [`SyncPolicy::Always`] — one `fdatasync`, and publishes the last index as durable.
//! Whoever wrote while the writer was busy shares the next sync: one sync per batch,
//! however many callers.
//!
//! With [`SyncPolicy::Interval`] the batch is published once it is written to the OS, and
//! `fdatasync` runs when the interval has passed since the first unsynced write, when a
//! caller waits in [`Durable::sync`](crate::store::Durable::sync), before a segment rolls
//! (so an older segment is always whole on disk) and before a segment is deleted (so the
//! records that made it dead, compaction copies included, are on disk first).
//!
//! After each batch the writer deletes dead segments and does a chunk of compaction
//! ([`super::compaction`]), so neither ever runs on a caller's thread. A failed write or
//! sync — real, or injected through [`Faults`] — stops the log: `failed` is published,
//! the synced mark stays where it was, and every later write is refused.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::compaction::{Compactor, Plan};
use super::index::{Index, Located};
use super::record;
use super::segment;
use super::{Faults, LogStats, SyncPolicy};
use crate::clock;
use crate::store::Durability;

/// What callers and the writer share.
#[derive(Debug)]
pub(super) struct Shared {
    pub pending: Mutex<Pending>,
    /// The writer waits here for work.
    pub work: Condvar,
    /// [`Durable::sync`](crate::store::Durable::sync) callers wait here for `on_disk`.
    pub done: Condvar,
    pub durability: watch::Sender<Durability>,
    /// The fold; the writer updates it, `recover` reads it.
    pub index: Mutex<Index>,
    pub counters: Counters,
    pub faults: Option<Arc<Faults>>,
    /// Bytes in `pending.buf`, readable without the lock (the store's backlog).
    pub unwritten: AtomicU64,
}

/// The batch callers fill, and what they and the writer tell each other.
#[derive(Debug)]
pub(super) struct Pending {
    /// Encoded records not yet taken by the writer.
    pub buf: Vec<u8>,
    /// The index the next record gets.
    pub next_index: u64,
    /// The id the next message gets.
    pub next_id: u64,
    /// Every record at or before this index is on disk (fdatasync'd).
    pub on_disk: u64,
    /// A `sync` caller wants everything up to here on disk.
    pub sync_wanted: u64,
    /// Why the log stopped, once it has.
    pub failed: Option<String>,
    /// The store is being dropped: write what is pending, sync, stop.
    pub shutdown: bool,
    /// The writer sleeps and needs a wake-up.
    pub writer_idle: bool,
}

/// The counters behind [`LogStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    syncs: AtomicU64,
    writes: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    deleted: AtomicU64,
    copied: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> LogStats {
        LogStats {
            syncs: self.syncs.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            segments_deleted: self.deleted.load(Ordering::Relaxed),
            records_copied: self.copied.load(Ordering::Relaxed),
        }
    }
}

/// The segment being appended to.
#[derive(Debug)]
pub(super) struct Active {
    pub first: u64,
    pub file: File,
    pub len: u64,
}

/// The writer thread's state.
#[derive(Debug)]
pub(super) struct Writer {
    pub shared: Arc<Shared>,
    pub dir: PathBuf,
    pub policy: SyncPolicy,
    pub segment_bytes: u64,
    pub active: Active,
    /// The buffer swapped with the pending one.
    pub batch: Vec<u8>,
    /// The index of the first record not yet taken.
    pub next: u64,
    /// The last index written to the OS.
    pub written: u64,
    /// When the first write since the last sync happened.
    pub unsynced_since: Option<Instant>,
    pub compactor: Compactor,
    /// Reused: where the batch being written crosses segments.
    pub rolls: Vec<(usize, u64)>,
}

/// A batch buffer grown past this (a burst the disk could not keep up with) is let go
/// after use rather than kept for reuse.
const KEEP_CAPACITY: usize = 8 << 20;

impl Writer {
    /// The thread's body: until the store is dropped, or forever idle once it has failed.
    pub fn run(mut self) {
        loop {
            let plan = self.compactor.plan(
                &self.shared.index,
                &self.dir,
                self.active.first,
                self.segment_bytes,
            );
            let mut p = self.shared.pending.lock();
            loop {
                if p.failed.is_some() {
                    if p.shutdown {
                        return;
                    }
                    p.buf.clear();
                    self.shared.unwritten.store(0, Ordering::Relaxed);
                    p.writer_idle = true;
                    self.shared.work.wait(&mut p);
                    continue;
                }
                let sync_due = p.sync_wanted > p.on_disk || self.interval_due();
                if !p.buf.is_empty() || plan.is_some() || sync_due || p.shutdown {
                    break;
                }
                p.writer_idle = true;
                match self.sync_deadline() {
                    Some(at) => {
                        self.shared.work.wait_until(&mut p, at);
                    }
                    None => self.shared.work.wait(&mut p),
                }
                p.writer_idle = false;
            }
            std::mem::swap(&mut p.buf, &mut self.batch);
            self.shared.unwritten.store(0, Ordering::Relaxed);
            let copies_from = p.next_index;
            p.next_index += plan.as_ref().map_or(0, |plan| plan.len() as u64);
            self.next = p.next_index;
            let shutdown = p.shutdown;
            let force_sync = shutdown || p.sync_wanted > p.on_disk;
            drop(p);

            let result = self
                .commit(copies_from, plan.as_ref(), force_sync)
                .and_then(|()| self.collect());
            if let Some(plan) = plan {
                self.compactor.recycle(plan);
            }
            self.batch.clear();
            if self.batch.capacity() > KEEP_CAPACITY {
                self.batch = Vec::new();
            }
            if let Err(e) = result {
                self.fail(&e);
            }
            if shutdown {
                return;
            }
        }
    }

    fn interval_due(&self) -> bool {
        self.sync_deadline().is_some_and(|at| Instant::now() >= at)
    }

    fn sync_deadline(&self) -> Option<Instant> {
        match self.policy {
            SyncPolicy::Always => None,
            SyncPolicy::Interval(every) => self.unsynced_since.map(|since| since + every),
        }
    }

    /// Writes the taken batch and `plan`'s copies (indexes from `copies_from`), syncs as
    /// the policy says, publishes.
    fn commit(
        &mut self,
        copies_from: u64,
        plan: Option<&Plan>,
        force_sync: bool,
    ) -> io::Result<()> {
        let copies = plan.map_or(0, Plan::len);
        if !self.batch.is_empty() || copies > 0 {
            let time = clock::now_ms();
            let mut place = Placement {
                segment: self.active.first,
                len: self.active.len,
                limit: self.segment_bytes,
                rolls: std::mem::take(&mut self.rolls),
            };
            place.rolls.clear();
            let records = {
                let mut index = self.shared.index.lock();
                let mut records = seal_and_apply(&mut self.batch, 0, time, &mut place, &mut index)?;
                if let Some(plan) = plan {
                    let from = self.batch.len();
                    plan.encode(&mut self.batch, copies_from, &index);
                    records += seal_and_apply(&mut self.batch, from, time, &mut place, &mut index)?;
                }
                records
            };
            // One write per segment the batch lands in, a roll between them.
            let mut start = 0;
            let ends = place.rolls.iter().copied().map(Some).chain([None]);
            for end in ends {
                let (until, last) = match end {
                    Some((at, first)) => (at, first - 1),
                    None => (self.batch.len(), self.next - 1),
                };
                if until > start {
                    write(
                        &mut self.active.file,
                        self.shared.faults.as_deref(),
                        &self.batch[start..until],
                    )?;
                    self.active.len += (until - start) as u64;
                    self.written = last;
                    self.unsynced_since.get_or_insert_with(Instant::now);
                    self.shared.counters.writes.fetch_add(1, Ordering::Relaxed);
                }
                if let Some((_, first)) = end {
                    self.roll(first)?;
                }
                start = until;
            }
            self.rolls = place.rolls;
            let c = &self.shared.counters;
            c.records.fetch_add(records, Ordering::Relaxed);
            c.bytes
                .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
            c.copied.fetch_add(copies as u64, Ordering::Relaxed);
        }
        let sync = match self.policy {
            SyncPolicy::Always => true,
            SyncPolicy::Interval(_) => force_sync || self.interval_due(),
        };
        if sync && self.unsynced_since.is_some() {
            self.sync_data()?;
        }
        if matches!(self.policy, SyncPolicy::Interval(_)) {
            self.publish(self.written);
        }
        Ok(())
    }

    /// Everything written so far to disk; publishes it.
    fn sync_data(&mut self) -> io::Result<()> {
        if self.shared.faults.as_ref().is_some_and(|f| f.sync_fails()) {
            return Err(io::Error::other("injected sync failure"));
        }
        self.active.file.sync_data()?;
        self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.unsynced_since = None;
        let synced = self.written;
        // Published first: whoever `sync` returns to finds the watch there already.
        self.publish(synced);
        let mut p = self.shared.pending.lock();
        p.on_disk = p.on_disk.max(synced);
        drop(p);
        self.shared.done.notify_all();
        Ok(())
    }

    fn publish(&self, synced: u64) {
        self.shared.durability.send_if_modified(|d| {
            if d.failed || d.synced.0 >= synced {
                return false;
            }
            d.synced.0 = synced;
            true
        });
    }

    /// Starts the segment whose first record is `first` (the fold knows it already), the
    /// current one whole on disk first.
    fn roll(&mut self, first: u64) -> io::Result<()> {
        if self.unsynced_since.is_some() {
            self.sync_data()?;
        }
        let file = segment::create(&self.dir, first)?;
        self.active = Active {
            first,
            file,
            len: 0,
        };
        Ok(())
    }

    /// Deletes dead segments from the oldest end (see [`super::compaction`] for why only there).
    fn collect(&mut self) -> io::Result<()> {
        loop {
            let mut index = self.shared.index.lock();
            let Some((first, use_)) = index.oldest() else {
                return Ok(());
            };
            if first == self.active.first || use_.live_entries > 0 {
                return Ok(());
            }
            if self.unsynced_since.is_some() {
                // What made it dead goes to disk before it goes.
                drop(index);
                self.sync_data()?;
                continue;
            }
            let path = segment::path(&self.dir, first);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "message log: a dead segment could not be deleted");
                    return Ok(());
                }
            }
            index.remove_segment(first);
            drop(index);
            self.compactor.forget(first);
            self.shared.counters.deleted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The log stops: `failed` is published and every later write refused.
    fn fail(&mut self, error: &io::Error) {
        tracing::error!(
            dir = %self.dir.display(),
            %error,
            "message log: a write or sync failed; the log takes no more writes"
        );
        let mut p = self.shared.pending.lock();
        p.failed = Some(format!("message log at {}: {error}", self.dir.display()));
        p.buf.clear();
        self.shared.unwritten.store(0, Ordering::Relaxed);
        drop(p);
        self.shared.done.notify_all();
        self.shared.durability.send_modify(|d| d.failed = true);
    }
}

/// Where the records of a batch go: the segment being filled and its length so far, and
/// where the batch crosses into a new segment — (offset in the batch, first index).
struct Placement {
    segment: u64,
    len: u64,
    limit: u64,
    rolls: Vec<(usize, u64)>,
}

/// Stamps and checksums the records of `batch` from `from` on, places them (a record that
/// finds its segment past the size limit starts the next one) and folds them into `index`.
/// Returns how many records there were.
fn seal_and_apply(
    batch: &mut [u8],
    from: usize,
    time: u64,
    place: &mut Placement,
    index: &mut Index,
) -> io::Result<u64> {
    let mut at = from;
    let mut records = 0;
    while at < batch.len() {
        let len = record::len_at(batch, at);
        record::seal(&mut batch[at..at + len], time);
        let rec = record::view(batch, at)
            .map_err(|bad| io::Error::other(format!("the log built a bad record: {bad}")))?;
        if place.len >= place.limit && place.len > 0 {
            place.rolls.push((at, rec.index));
            place.segment = rec.index;
            place.len = 0;
            index.add_segment(rec.index, 0);
        }
        let at_place = Located {
            segment: place.segment,
            offset: place.len,
            len: len as u64,
        };
        index.apply(&rec.body, at_place, None);
        index.grew(place.segment, len as u64);
        place.len += len as u64;
        at += len;
        records += 1;
    }
    Ok(records)
}

/// Part of a batch to the OS, in one write.
fn write(file: &mut File, faults: Option<&Faults>, bytes: &[u8]) -> io::Result<()> {
    if faults.is_some_and(Faults::write_fails) {
        return Err(io::Error::other("injected write failure"));
    }
    file.write_all(bytes)
}
