//! Getting disk space back: which segments may go, and copying the few live messages out of
//! a mostly dead one so that it can.
//!
//! **The rule.** A segment is deleted only when it is the oldest one, is not the active one,
//! and holds no live entry (no queue still holds a message whose current Enqueue is in it).
//! Why that is safe: a record can only affect entries created before it — an Enqueue comes
//! before every Remove, Delivered and ForgetQueue naming it, and a compaction copy is
//! written after every record that changed the entries it copies and carries their result
//! (see below). So the records of the oldest segment affect only entries created in it, and
//! when none of those is live, replaying the log without it gives the same state. Deleting
//! a dead segment in the middle would not be safe: its Removes may be what keeps an entry
//! of an older segment dead, and without them the message would come back on replay.
//!
//! **Compaction.** Deleting only from the oldest end means a few long-lived messages at the
//! front would keep everything behind them. So the oldest segment is compacted — its live
//! messages copied forward into the active segment as new Enqueue records, keeping their
//! ids (recovery orders a queue by id, so order is kept), deadlines and delivered flags,
//! and listing only the queues that still hold them — when it is mostly dead (under a
//! quarter of its bytes live), or when the log as a whole is more than half dead with over
//! two segments' worth of garbage (so a fully live oldest segment cannot pin an unbounded
//! run of dead ones behind it). Once its last live message has moved, it is dead and the
//! rule above deletes it, after the copies are on disk.
//!
//! **How a copy stays exact.** Compaction runs on the writer thread, a chunk per batch: the
//! writer reads a chunk of the segment (outside every lock), picks the records that are still
//! their message's current location, then, when it takes the next batch from the callers,
//! reserves one index per copy right after that batch. It folds the batch in first and only
//! then encodes the copies against the resulting state, so a Remove or Delivered in the batch
//! (which precedes the copies in the log) is reflected in them; a copy whose message lost
//! its last queue meanwhile is written with no entries (its index is already given).

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use super::index::Index;
use super::record::{self, Body, FLAG_DELIVERED, Kind};
use super::segment;

/// Bytes of a segment read per batch.
const CHUNK: usize = 4 << 20;

/// Compaction's progress through one segment.
#[derive(Debug, Default)]
pub(super) struct Compactor {
    /// The segment being compacted and how far it has been read.
    cursor: Option<(u64, u64)>,
    file: Option<(u64, File)>,
    /// The oldest segment could not be read back: compaction stops there.
    blocked: Option<u64>,
    buf: Vec<u8>,
}

/// Live records read from a segment, to copy forward with the next batch.
#[derive(Debug)]
pub(super) struct Plan {
    buf: Vec<u8>,
    records: Vec<Range<usize>>,
}

impl Plan {
    /// How many records (and so indexes) the copies take.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Appends the copies to `batch`, their indexes from `first`, their entries as `index`
    /// has them now.
    pub fn encode(&self, batch: &mut Vec<u8>, first: u64, index: &Index) {
        for (k, range) in self.records.iter().enumerate() {
            let Ok(rec) = record::view(&self.buf[range.clone()], 0) else {
                continue;
            };
            let Body::Enqueue {
                id,
                entries,
                message,
            } = rec.body
            else {
                continue;
            };
            let start = record::begin(batch, Kind::Enqueue, first + k as u64);
            batch.extend_from_slice(&id.to_be_bytes());
            let count_at = batch.len();
            batch.extend_from_slice(&[0; 4]);
            let mut count: u32 = 0;
            for entry in entries {
                if let Some(live) = index.entry(entry.queue, id) {
                    batch.extend_from_slice(entry.queue);
                    batch.extend_from_slice(&live.deadline.to_be_bytes());
                    batch.push(if live.delivered { FLAG_DELIVERED } else { 0 });
                    count += 1;
                }
            }
            batch[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
            batch.extend_from_slice(message);
            // Never longer than the record it copies.
            let _ = record::finish(batch, start);
        }
    }
}

impl Compactor {
    /// The segment being compacted is gone.
    pub fn forget(&mut self, first: u64) {
        if self.cursor.is_some_and(|(seg, _)| seg == first) {
            self.cursor = None;
        }
        if self.file.as_ref().is_some_and(|(seg, _)| *seg == first) {
            self.file = None;
        }
    }

    /// Takes the buffer of a plan that has been written back for reuse.
    pub fn recycle(&mut self, plan: Plan) {
        self.buf = plan.buf;
    }

    /// The next chunk of compaction, if there is work: `None` when nothing is to be compacted,
    /// a plan (perhaps with no records, when a chunk held nothing live) otherwise.
    pub fn plan(
        &mut self,
        index: &parking_lot::Mutex<Index>,
        dir: &Path,
        active: u64,
        segment_bytes: u64,
    ) -> Option<Plan> {
        let (seg, offset, bytes) = {
            let index = index.lock();
            let (seg, offset) = match self.cursor {
                Some((seg, offset)) if index.segment(seg).is_some() => (seg, offset),
                _ => (pick(&index, active, segment_bytes, self.blocked)?, 0),
            };
            let use_ = index.segment(seg)?;
            if offset >= use_.bytes {
                // Read to the end and still live (its last copies made it dead, so collection
                // would have deleted it): the accounting and the file disagree. Stop here
                // rather than read it again and again.
                tracing::warn!(
                    file = %segment::path(dir, seg).display(),
                    live_entries = use_.live_entries,
                    "message log: compaction found nothing more to move in a segment still counted live"
                );
                self.blocked = Some(seg);
                self.cursor = None;
                return None;
            }
            (seg, offset, use_.bytes)
        };
        self.cursor = Some((seg, offset));
        match self.read(dir, seg, offset, bytes) {
            Ok(Some(records)) => {
                let index = index.lock();
                let mut live = Vec::new();
                let mut end = 0;
                for (at, len, id) in records {
                    end = at + len;
                    // An Enqueue still its message's current location is live here.
                    let current = id
                        .and_then(|id| index.location(id))
                        .is_some_and(|l| l.segment == seg && l.offset == offset + at as u64);
                    if current {
                        live.push(at..at + len);
                    }
                }
                self.cursor = Some((seg, offset + end as u64));
                Some(Plan {
                    buf: std::mem::take(&mut self.buf),
                    records: live,
                })
            }
            Ok(None) | Err(_) => {
                tracing::error!(
                    file = %segment::path(dir, seg).display(),
                    offset,
                    "message log: a segment could not be read back for compaction; \
                     it and the segments after it are kept"
                );
                self.blocked = Some(seg);
                self.cursor = None;
                self.file = None;
                None
            }
        }
    }

    /// Reads whole records of segment `seg` from `offset` (at least one, about a chunk):
    /// (offset in the chunk, length, message id of an Enqueue). `None` if what is there is
    /// not a good record.
    #[allow(clippy::type_complexity)]
    fn read(
        &mut self,
        dir: &Path,
        seg: u64,
        offset: u64,
        bytes: u64,
    ) -> std::io::Result<Option<Vec<(usize, usize, Option<u64>)>>> {
        if self.file.as_ref().is_none_or(|(s, _)| *s != seg) {
            self.file = Some((seg, File::open(segment::path(dir, seg))?));
        }
        let Some((_, file)) = self.file.as_ref() else {
            return Ok(None);
        };
        let want = (bytes - offset).min(CHUNK as u64) as usize;
        segment::read_at(file, offset, want, &mut self.buf)?;
        if self.buf.len() >= record::HEADER {
            let first = record::len_at(&self.buf, 0);
            if first > self.buf.len() {
                // One record bigger than a chunk: read it whole.
                segment::read_at(file, offset, first, &mut self.buf)?;
            }
        }
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.buf.len() {
            match record::read(&self.buf, at) {
                Ok(rec) => {
                    let id = match rec.body {
                        Body::Enqueue { id, .. } => Some(id),
                        _ => None,
                    };
                    out.push((at, rec.len, id));
                    at += rec.len;
                }
                Err(record::Bad::Incomplete) if at > 0 => break,
                Err(_) => return Ok(None),
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}

/// The segment to compact, if one should be: the oldest, when it is not the active one, has
/// something live, and is mostly dead or keeps a mostly dead log from shrinking.
fn pick(index: &Index, active: u64, segment_bytes: u64, blocked: Option<u64>) -> Option<u64> {
    let (first, use_) = index.oldest()?;
    if first == active || use_.live_entries == 0 || blocked == Some(first) {
        return None;
    }
    let sparse = use_.live_bytes.saturating_mul(4) < use_.bytes;
    let (all, live) = index.totals();
    let wasteful = live.saturating_mul(2) < all && all - live > segment_bytes.saturating_mul(2);
    (sparse || wasteful).then_some(first)
}
