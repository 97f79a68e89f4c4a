//! What the log holds, folded from its records: per queue, its live entries in id order;
//! per message, where its current Enqueue record is; per segment, how much of it is live.
//!
//! One fold serves both recovery (records read back at open) and the writer (records as it
//! writes them), so the state a restart rebuilds is by construction the state the running
//! store had: [`Index::apply`] reads nothing but the record (no clock, no map order), which
//! is what makes a queue's state a deterministic function of its records.
//!
//! Queues are interned here by their encoded name (the bytes a record names them by) into
//! dense slots: node-local numbers that live only in memory. Message bodies are not kept,
//! except those read at open: each is held (with the message's entry, so that recovery pays
//! for one map, not two) until every queue holding it has been recovered or has let it go,
//! then dropped, so the store pins no body for longer than the broker takes to start.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use rustc_hash::FxHashMap;

use super::record::{Body, Entries, FLAG_DELIVERED, queue_name};
use crate::broker::message::Message;
use crate::store::{MessageId, QueueKey, Recovered, StoreResult};

/// Where a message's current Enqueue record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Located {
    /// The segment (its first index).
    pub segment: u64,
    /// Byte offset of the record in the segment file.
    pub offset: u64,
    /// Record length, header included.
    pub len: u64,
}

/// A message some queue still holds.
#[derive(Debug)]
struct Stored {
    at: Located,
    /// Queues holding it.
    live: u32,
    /// Queues holding it that have not recovered it yet (counted when the open ends).
    waiting: u32,
    /// Its body, read at open, until `waiting` drops to zero.
    body: Option<Message>,
}

/// How much of a segment is still needed.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SegmentUse {
    /// File length.
    pub bytes: u64,
    /// Live (message × queue) entries whose current Enqueue is in this segment.
    pub live_entries: u64,
    /// Bytes of the Enqueue records that at least one queue still needs.
    pub live_bytes: u64,
}

/// A queue's entry for one message.
#[derive(Clone, Copy, Debug)]
pub(super) struct QueueEntry {
    pub deadline: u64,
    pub delivered: bool,
}

#[derive(Debug)]
struct Queue {
    entries: BTreeMap<u64, QueueEntry>,
    /// Its messages read at open still wait for `recover` (their bodies are held).
    cached: bool,
}

/// Hashes a message id so that ids close together land in buckets close together: the low
/// bits (which pick the bucket) are the id's own, the top seven (which the table compares
/// first) are mixed. Ids grow with appends, and recovery inserts them in order and the
/// broker acks mostly recent ones, so the table is walked, not jumped around in — with a
/// million messages that is most of the cost of the fold.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mixed = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (self.0 & (u64::MAX >> 7)) | (mixed & !(u64::MAX >> 7))
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; anything else still hashes correctly.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

/// The fold.
#[derive(Debug, Default)]
pub(super) struct Index {
    names: FxHashMap<Box<[u8]>, u32>,
    queues: Vec<Queue>,
    messages: HashMap<u64, Stored, BuildHasherDefault<IdHasher>>,
    segments: BTreeMap<u64, SegmentUse>,
    /// Recovery is running: queues it creates hold their messages' bodies.
    opening: bool,
    /// The highest message id any record named.
    pub max_id: u64,
}

impl Index {
    /// An index for recovery to fill.
    pub fn opening() -> Index {
        Index {
            opening: true,
            ..Index::default()
        }
    }

    /// Recovery is over: from now each body held waits for the queues that hold it.
    pub fn opened(&mut self) {
        self.opening = false;
        for stored in self.messages.values_mut() {
            stored.waiting = if stored.body.is_some() {
                stored.live
            } else {
                0
            };
        }
    }

    /// Whether recovery should decode the body of an Enqueue for `id` (none is held yet).
    pub fn wants_body(&self, id: u64) -> bool {
        self.messages.get(&id).is_none_or(|s| s.body.is_none())
    }

    /// Folds one record in: `body`, `len` bytes long, at `offset` in `segment`. `message` is
    /// the body of an Enqueue, read at open, to hold until the queues have recovered it.
    pub fn apply(&mut self, body: &Body<'_>, at: Located, message: Option<Message>) {
        match *body {
            Body::Enqueue { id, entries, .. } => self.enqueue(id, entries, at, message),
            Body::Remove { id, queue } => {
                self.saw(id);
                if let Some(&slot) = self.names.get(queue) {
                    self.remove_entry(slot, id);
                }
            }
            Body::Delivered { id, queue } => {
                self.saw(id);
                if let Some(&slot) = self.names.get(queue)
                    && let Some(entry) = self.queues[slot as usize].entries.get_mut(&id)
                {
                    entry.delivered = true;
                }
            }
            Body::ForgetQueue { queue } => {
                if let Some(&slot) = self.names.get(queue) {
                    let ids: Vec<u64> =
                        self.queues[slot as usize].entries.keys().copied().collect();
                    for id in ids {
                        self.remove_entry(slot, id);
                    }
                }
            }
        }
    }

    fn saw(&mut self, id: u64) {
        self.max_id = self.max_id.max(id);
    }

    fn slot(&mut self, name: &[u8]) -> u32 {
        if let Some(&slot) = self.names.get(name) {
            return slot;
        }
        let slot = self.queues.len() as u32;
        self.queues.push(Queue {
            entries: BTreeMap::new(),
            cached: self.opening,
        });
        self.names.insert(name.into(), slot);
        slot
    }

    /// An Enqueue: fresh, or a copy of a message the log holds (which moves it to `at`).
    fn enqueue(&mut self, id: u64, entries: Entries<'_>, at: Located, message: Option<Message>) {
        self.saw(id);
        let mut added = 0;
        for entry in entries {
            let slot = self.slot(entry.queue);
            let value = QueueEntry {
                deadline: entry.deadline,
                delivered: entry.flags & FLAG_DELIVERED != 0,
            };
            if self.queues[slot as usize]
                .entries
                .insert(id, value)
                .is_none()
            {
                added += 1;
            }
        }
        let stored = match self.messages.entry(id) {
            MapEntry::Occupied(held) => {
                let stored = held.into_mut();
                if let Some(seg) = self.segments.get_mut(&stored.at.segment) {
                    seg.live_entries = seg.live_entries.saturating_sub(u64::from(stored.live));
                    seg.live_bytes = seg.live_bytes.saturating_sub(stored.at.len);
                }
                stored.at = at;
                stored.live += added;
                if stored.body.is_none() {
                    stored.body = message;
                }
                stored
            }
            MapEntry::Vacant(_) if added == 0 => return,
            MapEntry::Vacant(free) => free.insert(Stored {
                at,
                live: added,
                waiting: 0,
                body: message,
            }),
        };
        let seg = self.segments.entry(at.segment).or_default();
        seg.live_entries += u64::from(stored.live);
        seg.live_bytes += at.len;
    }

    fn remove_entry(&mut self, slot: u32, id: u64) {
        let queue = &mut self.queues[slot as usize];
        if queue.entries.remove(&id).is_none() {
            return;
        }
        let MapEntry::Occupied(mut held) = self.messages.entry(id) else {
            return;
        };
        let stored = held.get_mut();
        stored.live = stored.live.saturating_sub(1);
        if let Some(seg) = self.segments.get_mut(&stored.at.segment) {
            seg.live_entries = seg.live_entries.saturating_sub(1);
            if stored.live == 0 {
                seg.live_bytes = seg.live_bytes.saturating_sub(stored.at.len);
            }
        }
        if stored.live == 0 {
            held.remove();
        } else if queue.cached && !self.opening {
            stored.let_go();
        }
    }

    /// The messages `queue` holds, in id order: bodies read at open come from what the
    /// index holds (let go once every queue holding them has them), the rest through `read`.
    pub fn recover(
        &mut self,
        queue: &QueueKey,
        mut read: impl FnMut(&Located) -> StoreResult<Message>,
    ) -> StoreResult<Vec<Recovered>> {
        let Some(&slot) = self.names.get(queue_name(queue).as_slice()) else {
            return Ok(Vec::new());
        };
        let q = &mut self.queues[slot as usize];
        let cached = std::mem::replace(&mut q.cached, false);
        let mut out = Vec::with_capacity(q.entries.len());
        for (&id, entry) in &q.entries {
            let Some(stored) = self.messages.get_mut(&id) else {
                continue;
            };
            let message = match &stored.body {
                Some(body) => {
                    let body = body.clone();
                    if cached {
                        stored.let_go();
                    }
                    body
                }
                None => read(&stored.at)?,
            };
            out.push(Recovered {
                id: MessageId(id),
                message,
                deadline: entry.deadline,
                redelivered: entry.delivered,
            });
        }
        Ok(out)
    }

    // ---- what compaction and deletion need ----

    /// Where the message `id` lives now.
    pub fn location(&self, id: u64) -> Option<Located> {
        self.messages.get(&id).map(|s| s.at)
    }
    /// The live entry of the queue named `name` for message `id`.
    pub fn entry(&self, name: &[u8], id: u64) -> Option<QueueEntry> {
        let &slot = self.names.get(name)?;
        self.queues[slot as usize].entries.get(&id).copied()
    }

    /// Registers a segment of `bytes` bytes (recovery, or a roll).
    pub fn add_segment(&mut self, first: u64, bytes: u64) {
        self.segments.entry(first).or_default().bytes = bytes;
    }

    /// The active segment grew by `bytes`.
    pub fn grew(&mut self, first: u64, bytes: u64) {
        self.segments.entry(first).or_default().bytes += bytes;
    }

    /// Forgets a deleted (or moved aside) segment.
    pub fn remove_segment(&mut self, first: u64) {
        self.segments.remove(&first);
    }

    /// The oldest segment.
    pub fn oldest(&self) -> Option<(u64, SegmentUse)> {
        self.segments.first_key_value().map(|(k, v)| (*k, *v))
    }

    /// A segment's use.
    pub fn segment(&self, first: u64) -> Option<SegmentUse> {
        self.segments.get(&first).copied()
    }

    /// (all bytes, live bytes) over every segment.
    pub fn totals(&self) -> (u64, u64) {
        self.segments.values().fold((0, 0), |(all, live), s| {
            (all + s.bytes, live + s.live_bytes)
        })
    }
}

impl Stored {
    /// One queue waiting for the body has it (or no longer holds the message).
    fn let_go(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
        if self.waiting == 0 {
            self.body = None;
        }
    }
}
