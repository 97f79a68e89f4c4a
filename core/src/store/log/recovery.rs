//! Opening the log: every segment read back in name order, every record checked, the fold
//! rebuilt, the damage found on the way dealt with so that the broker starts.
//!
//! Each segment is read whole into one reused buffer (a few large reads rather than a read
//! per record) and walked record by record; the body of each message a queue may still hold
//! is copied out of the buffer into an allocation of exactly its size, so nothing recovered
//! pins a read buffer. Slicing the buffer instead would save the copy and an allocation per
//! message (about a third of the open, measured with a million 1 KiB messages, most of it
//! the allocator growing its heap) but would keep a whole segment's buffer alive for as long
//! as any one of its messages waits in a queue.
//!
//! What can be wrong, and what is done:
//!
//! - **A torn tail**: the last segment ends in a record that is incomplete or fails its
//!   checksum, and no valid record follows it in that file — what a crash in the middle of
//!   a write leaves. The file is cut back to the last good record and a warning names the
//!   file, the offset and the bytes dropped. Those records were never reported durable.
//! - **Damage in the middle**: a bad record in a segment that is not the last, or one
//!   followed by valid records. Reading that file stops at the last good record; the file is
//!   moved aside (never deleted, see [`segment::quarantine`]) with its good prefix put back
//!   under its name, so those records still count; an error names the file, the offset and
//!   how much is lost. The other segments are read as usual and the open succeeds.
//!
//! A record is also bad if its index is not the one its file's sequence calls for (the file
//! name, then +1 per record), or if it passed its checksum but does not parse.

use std::path::Path;

use bytes::Bytes;

use super::index::{Index, Located};
use super::record::{self, Body, HEADER};
use super::segment;
use crate::clock;
use crate::store::{StoreResult, codec};

/// The log as found on disk.
pub(super) struct Opened {
    /// The fold of every record kept.
    pub index: Index,
    /// The index the next record gets.
    pub next_index: u64,
    /// The segment to append to: its first index, its file, its length.
    pub active: (u64, std::fs::File, u64),
}

/// Reads the log in `dir` (which exists), repairing what a crash or a damaged disk left.
pub(super) fn open(dir: &Path) -> StoreResult<Opened> {
    let segments = segment::list(dir)?;
    let mut index = Index::opening();
    let mut buf = Vec::new();
    let mut next_index = 1;
    let mut active = None;
    for (n, (first, path)) in segments.iter().enumerate() {
        let first = *first;
        let is_last = n + 1 == segments.len();
        segment::read_all(path, &mut buf)?;
        let replayed = replay(&buf, first, &mut index);
        next_index = next_index.max(first).max(replayed.next);
        let good = replayed.good;
        index.add_segment(first, good as u64);
        let Some(reason) = replayed.bad else {
            if is_last {
                active = Some((first, good as u64));
            }
            continue;
        };
        let dropped = buf.len() - good;
        if is_last && !valid_after(&buf, good, replayed.next) {
            segment::truncate(path, good as u64)?;
            tracing::warn!(
                file = %path.display(),
                offset = good,
                dropped_bytes = dropped,
                %reason,
                "message log: torn tail cut off (a write the crash interrupted, never reported durable)"
            );
            active = Some((first, good as u64));
            continue;
        }
        let aside = segment::quarantine(dir, first, &buf[..good], clock::now_ms())?;
        tracing::error!(
            file = %path.display(),
            offset = good,
            lost_bytes = dropped,
            moved_to = %aside.display(),
            %reason,
            "message log: damaged segment moved aside; the records before the damage are kept, \
             the records after it are lost"
        );
        if good == 0 {
            index.remove_segment(first);
        } else if is_last {
            active = Some((first, good as u64));
        }
    }
    index.opened();
    let active = match active {
        Some((first, len)) => {
            let file = segment::open_append(&segment::path(dir, first))?;
            // What the last process wrote may still be only in the page cache.
            file.sync_data()?;
            (first, file, len)
        }
        None => {
            index.add_segment(next_index, 0);
            (next_index, segment::create(dir, next_index)?, 0)
        }
    };
    Ok(Opened {
        index,
        next_index,
        active,
    })
}

/// What reading one segment gave.
struct Replayed {
    /// Bytes of good records from the start.
    good: usize,
    /// The index after the last good record (the file's first index if there is none).
    next: u64,
    /// Why reading stopped before the end, if it did.
    bad: Option<String>,
}

/// Folds the records of the segment in `buf` (starting at index `first`) into `index`.
fn replay(buf: &[u8], first: u64, index: &mut Index) -> Replayed {
    let mut at = 0;
    let mut expected = first;
    let stop = |at, next, why: String| Replayed {
        good: at,
        next,
        bad: Some(why),
    };
    while at < buf.len() {
        let rec = match record::read(buf, at) {
            Ok(rec) => rec,
            Err(bad) => return stop(at, expected, bad.to_string()),
        };
        if rec.index != expected {
            return stop(
                at,
                expected,
                format!("record index {} where {expected} was due", rec.index),
            );
        }
        let mut body = None;
        if let Body::Enqueue { id, message, .. } = rec.body
            && index.wants_body(id)
        {
            match codec::decode(&Bytes::copy_from_slice(message)) {
                Ok((m, used)) if used == message.len() => body = Some(m),
                Ok(_) => {
                    return stop(at, expected, "bytes after the stored message".into());
                }
                Err(e) => return stop(at, expected, e.to_string()),
            }
        }
        let place = Located {
            segment: first,
            offset: at as u64,
            len: rec.len as u64,
        };
        index.apply(&rec.body, place, body);
        at += rec.len;
        expected += 1;
    }
    Replayed {
        good: at,
        next: expected,
        bad: None,
    }
}

/// Whether a valid record with an index at or after `next` starts anywhere after `from`.
fn valid_after(buf: &[u8], from: usize, next: u64) -> bool {
    // Each record takes at least a header, which bounds the indexes the rest can hold.
    let most = next + (buf.len() / HEADER) as u64 + 1;
    (from + 1..buf.len()).any(|at| record::plausible_at(buf, at, next..most))
}
