//! The broker's own message log: a [`MessageStore`] on disk, as an append-only log of
//! checksummed records in segment files, written by one thread with group commit.
//!
//! The pieces, each in its own file:
//!
//! - `record.rs`: the record layout (documented there), encoding and checksums.
//! - `segment.rs`: the segment files — naming, appending, reading, cutting, moving aside.
//! - `index.rs`: the fold of the records — per queue its live messages, per segment how much
//!   is live — shared by recovery and the writer.
//! - `writer.rs`: the `warren-log` thread: batches, one write and one sync per batch.
//! - `recovery.rs`: opening — every segment read and checked, torn tails and damage handled.
//! - `compaction.rs`: which segments may be deleted, and moving live messages out of old ones.
//!
//! Shaped around the publish path: a caller of [`MessageStore::append`] (or `remove`,
//! `delivered`, `forget_queue`) only encodes its record into the pending batch under one
//! short lock and gets its [`SyncMark`] — the record's index — back at once, without a
//! syscall; a confirm waits on [`Durable::durability`] for the writer to reach that mark.
//! Reading happens at open (everything, once) and in [`MessageStore::recover`] (each queue,
//! from bodies kept since the open or from disk).

mod compaction;
mod index;
mod record;
mod recovery;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use self::writer::{Active, Counters, Pending, Shared, Writer};
use super::{
    Durability, Durable, MessageId, MessageStore, QueueKey, Recovered, StoreError, StoreResult,
    SyncMark,
};
use crate::broker::message::Message;

pub use super::SyncPolicy;

/// How a [`MessageLog`] runs.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// When writes are synced.
    pub sync: SyncPolicy,
    /// A segment is closed and a new one started once it passes this size.
    pub segment_bytes: u64,
    /// Failures to inject, for tests.
    pub faults: Option<Arc<Faults>>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            sync: SyncPolicy::Always,
            segment_bytes: 32 << 20,
            faults: None,
        }
    }
}

/// Injected failures: while set, every write (or sync) the writer attempts fails as a real
/// one would. Shared with the log through [`LogOptions::faults`].
#[derive(Debug, Default)]
pub struct Faults {
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
}

impl Faults {
    /// Makes the writes from now on fail (or not).
    pub fn fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }

    /// Makes the syncs from now on fail (or not).
    pub fn fail_syncs(&self, on: bool) {
        self.fail_syncs.store(on, Ordering::SeqCst);
    }

    fn write_fails(&self) -> bool {
        self.fail_writes.load(Ordering::SeqCst)
    }

    fn sync_fails(&self) -> bool {
        self.fail_syncs.load(Ordering::SeqCst)
    }
}

/// What the log has done since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// `fdatasync` calls on segment data.
    pub syncs: u64,
    /// Batches written (one `write_all` each).
    pub writes: u64,
    /// Records written, compaction copies included.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Dead segments deleted.
    pub segments_deleted: u64,
    /// Messages copied forward by compaction.
    pub records_copied: u64,
}

/// Persistent messages in an append-only log on disk.
pub struct MessageLog {
    shared: Arc<Shared>,
    dir: PathBuf,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MessageLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageLog")
            .field("dir", &self.dir)
            .field("durability", &*self.shared.durability.borrow())
            .finish_non_exhaustive()
    }
}

impl MessageLog {
    /// Opens the log in `dir` (created if missing), recovering what is there, and starts
    /// its writer thread.
    pub fn open(dir: &Path, options: LogOptions) -> StoreResult<MessageLog> {
        std::fs::create_dir_all(dir)?;
        let opened = recovery::open(dir)?;
        let last = opened.next_index - 1;
        let next_id = opened.index.max_id + 1;
        let (first, file, len) = opened.active;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                next_index: opened.next_index,
                next_id,
                on_disk: last,
                sync_wanted: 0,
                failed: None,
                shutdown: false,
                writer_idle: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            durability: watch::Sender::new(Durability {
                synced: SyncMark(last),
                failed: false,
            }),
            index: Mutex::new(opened.index),
            counters: Counters::default(),
            faults: options.faults,
            unwritten: AtomicU64::new(0),
        });
        let writer = Writer {
            shared: shared.clone(),
            dir: dir.to_path_buf(),
            policy: options.sync,
            segment_bytes: options.segment_bytes.max(1),
            active: Active { first, file, len },
            batch: Vec::new(),
            next: opened.next_index,
            written: last,
            unsynced_since: None,
            compactor: Default::default(),
            rolls: Vec::new(),
        };
        let watch = shared.clone();
        let writer = std::thread::Builder::new()
            .name("warren-log".into())
            .spawn(move || {
                // A bug, not an I/O error (those fail the log): still, nobody may wait forever.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.run())).is_err()
                {
                    watch.pending.lock().failed = Some("the log's writer thread panicked".into());
                    watch.done.notify_all();
                    watch.durability.send_modify(|d| d.failed = true);
                }
            })?;
        Ok(MessageLog {
            shared,
            dir: dir.to_path_buf(),
            writer: Some(writer),
        })
    }

    /// Counters since the open.
    pub fn stats(&self) -> LogStats {
        self.shared.counters.snapshot()
    }

    /// Runs `encode` on the pending batch with the next record index, and wakes the writer
    /// if it sleeps. The whole of a write on the caller's side.
    fn write<T>(
        &self,
        encode: impl FnOnce(&mut Pending, u64) -> StoreResult<T>,
    ) -> StoreResult<(T, SyncMark)> {
        let mut p = self.shared.pending.lock();
        if let Some(why) = &p.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        let index = p.next_index;
        let out = encode(&mut p, index)?;
        p.next_index += 1;
        self.shared
            .unwritten
            .store(p.buf.len() as u64, Ordering::Relaxed);
        let wake = std::mem::replace(&mut p.writer_idle, false);
        drop(p);
        if wake {
            self.shared.work.notify_one();
        }
        Ok((out, SyncMark(index)))
    }
}

impl Drop for MessageLog {
    fn drop(&mut self) {
        self.shared.pending.lock().shutdown = true;
        self.shared.work.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Durable for MessageLog {
    fn sync(&self) -> StoreResult<SyncMark> {
        let mut p = self.shared.pending.lock();
        let target = p.next_index - 1;
        loop {
            if let Some(why) = &p.failed {
                return Err(StoreError::Failed(why.clone()));
            }
            if p.on_disk >= target {
                return Ok(SyncMark(p.on_disk));
            }
            p.sync_wanted = p.sync_wanted.max(target);
            if std::mem::replace(&mut p.writer_idle, false) {
                self.shared.work.notify_one();
            }
            self.shared.done.wait(&mut p);
        }
    }

    fn durability(&self) -> watch::Receiver<Durability> {
        self.shared.durability.subscribe()
    }

    fn backlog(&self) -> u64 {
        self.shared.unwritten.load(Ordering::Relaxed)
    }
}

impl MessageStore for MessageLog {
    fn append(
        &self,
        message: &Message,
        queues: &[(&QueueKey, u64)],
    ) -> StoreResult<(MessageId, SyncMark)> {
        for (queue, _) in queues {
            record::check_queue(queue)?;
        }
        self.write(|p, index| {
            let id = p.next_id;
            record::encode_enqueue(&mut p.buf, index, id, queues, message)?;
            p.next_id += 1;
            Ok(MessageId(id))
        })
    }

    fn remove(&self, queue: &QueueKey, id: MessageId) -> StoreResult<SyncMark> {
        record::check_queue(queue)?;
        let ((), mark) = self.write(|p, index| {
            record::encode_mark(&mut p.buf, record::Kind::Remove, index, queue, id.0);
            Ok(())
        })?;
        Ok(mark)
    }

    fn delivered(&self, queue: &QueueKey, id: MessageId) -> StoreResult<SyncMark> {
        record::check_queue(queue)?;
        let ((), mark) = self.write(|p, index| {
            record::encode_mark(&mut p.buf, record::Kind::Delivered, index, queue, id.0);
            Ok(())
        })?;
        Ok(mark)
    }

    fn forget_queue(&self, queue: &QueueKey) -> StoreResult<SyncMark> {
        record::check_queue(queue)?;
        let ((), mark) = self.write(|p, index| {
            record::encode_forget(&mut p.buf, index, queue);
            Ok(())
        })?;
        Ok(mark)
    }

    fn recover(&self, queue: &QueueKey) -> StoreResult<Vec<Recovered>> {
        // Everything written before the call is folded in once it is on disk.
        self.sync()?;
        let mut reader = BodyReader::new(&self.dir);
        self.shared
            .index
            .lock()
            .recover(queue, |located| reader.read(located))
    }
}

/// Reads message bodies back from their segments (for `recover` of what the open did not
/// keep), a file handle per segment.
struct BodyReader<'a> {
    dir: &'a Path,
    files: Vec<(u64, std::fs::File)>,
    buf: Vec<u8>,
}

impl<'a> BodyReader<'a> {
    fn new(dir: &'a Path) -> Self {
        BodyReader {
            dir,
            files: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn read(&mut self, at: &index::Located) -> StoreResult<Message> {
        let file = match self.files.iter().position(|(s, _)| *s == at.segment) {
            Some(i) => &self.files[i].1,
            None => {
                let file = std::fs::File::open(segment::path(self.dir, at.segment))?;
                self.files.push((at.segment, file));
                &self.files[self.files.len() - 1].1
            }
        };
        segment::read_at(file, at.offset, at.len as usize, &mut self.buf)?;
        let corrupt = |why: String| {
            StoreError::Corrupt(format!(
                "{} at offset {}: {why}",
                segment::path(self.dir, at.segment).display(),
                at.offset
            ))
        };
        let rec = record::read(&self.buf, 0).map_err(|bad| corrupt(bad.to_string()))?;
        let record::Body::Enqueue { message, .. } = rec.body else {
            return Err(corrupt("not an Enqueue record".into()));
        };
        let (message, _) = super::codec::decode(&bytes::Bytes::copy_from_slice(message))?;
        Ok(message)
    }
}
