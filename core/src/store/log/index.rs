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
//! except those read at open ([`Index::cache`]): each is held until every queue holding it
//! has been recovered (or has let it go), then dropped, so the store pins no body for longer
//! than the broker takes to start.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::record::{Body, Entries, FLAG_DELIVERED, queue_name};
use crate::broker::message::Message;
use crate::store::{MessageId, QueueKey, Recovered, StoreResult};

/// Where a message's current Enqueue record is, and how many queues still hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Located {
    /// The segment (its first index).
    pub segment: u64,
    /// Byte offset of the record in the segment file.
    pub offset: u64,
    /// Record length, header included.
    pub len: u32,
    /// Queues holding it.
    live: u32,
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
    /// Its messages read at open are still in the cache, waiting for `recover`.
    cached: bool,
}

#[derive(Debug)]
struct Cached {
    message: Arc<Message>,
    /// Queues that hold it and have not recovered it yet (counted when the open ends).
    waiting: u32,
}

/// The fold.
#[derive(Debug, Default)]
pub(super) struct Index {
    names: FxHashMap<Box<[u8]>, u32>,
    queues: Vec<Queue>,
    messages: FxHashMap<u64, Located>,
    segments: BTreeMap<u64, SegmentUse>,
    cache: FxHashMap<u64, Cached>,
    /// Recovery is running: queues it creates hold their messages in the cache.
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

    /// Recovery is over: from now each cached body waits for the queues that hold it.
    pub fn opened(&mut self) {
        self.opening = false;
        let messages = &self.messages;
        self.cache.retain(|id, cached| match messages.get(id) {
            Some(located) => {
                cached.waiting = located.live;
                true
            }
            None => false,
        });
    }

    /// Folds one record in: `body`, `len` bytes long, at `offset` in `segment`.
    pub fn apply(&mut self, body: &Body<'_>, segment: u64, offset: u64, len: usize) {
        match *body {
            Body::Enqueue { id, entries, .. } => self.enqueue(id, entries, segment, offset, len),
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

    /// An Enqueue: fresh, or a copy of a message the log holds (which moves it here).
    fn enqueue(&mut self, id: u64, entries: Entries<'_>, segment: u64, offset: u64, len: usize) {
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
        let len = len as u32;
        let live = match self.messages.get(&id).copied() {
            Some(old) => {
                self.detach(&old);
                old.live + added
            }
            None => added,
        };
        if live == 0 {
            return;
        }
        let located = Located {
            segment,
            offset,
            len,
            live,
        };
        self.messages.insert(id, located);
        let seg = self.segments.entry(segment).or_default();
        seg.live_entries += u64::from(live);
        seg.live_bytes += u64::from(len);
    }

    fn detach(&mut self, located: &Located) {
        if let Some(seg) = self.segments.get_mut(&located.segment) {
            seg.live_entries = seg.live_entries.saturating_sub(u64::from(located.live));
            seg.live_bytes = seg.live_bytes.saturating_sub(u64::from(located.len));
        }
    }

    fn remove_entry(&mut self, slot: u32, id: u64) {
        let queue = &mut self.queues[slot as usize];
        if queue.entries.remove(&id).is_none() {
            return;
        }
        if queue.cached
            && !self.opening
            && let Some(cached) = self.cache.get_mut(&id)
        {
            cached.waiting = cached.waiting.saturating_sub(1);
            if cached.waiting == 0 {
                self.cache.remove(&id);
            }
        }
        let Some(located) = self.messages.get_mut(&id) else {
            return;
        };
        located.live -= 1;
        if let Some(seg) = self.segments.get_mut(&located.segment) {
            seg.live_entries = seg.live_entries.saturating_sub(1);
            if located.live == 0 {
                seg.live_bytes = seg.live_bytes.saturating_sub(u64::from(located.len));
            }
        }
        if located.live == 0 {
            self.messages.remove(&id);
            self.cache.remove(&id);
        }
    }

    // ---- the message bodies read at open ----

    /// Whether recovery should decode the body of the Enqueue for `id` it is reading (no
    /// body for it is held yet).
    pub fn wants_body(&self, id: u64) -> bool {
        !self.cache.contains_key(&id)
    }

    /// Holds `message`, read at open, if a queue still holds it.
    pub fn cache(&mut self, id: u64, message: Arc<Message>) {
        if self.messages.contains_key(&id) {
            self.cache.insert(
                id,
                Cached {
                    message,
                    waiting: 0,
                },
            );
        }
    }

    /// The messages `queue` holds, in id order: bodies read at open come from the cache
    /// (let go once every queue holding them has them), the rest through `read`.
    pub fn recover(
        &mut self,
        queue: &QueueKey,
        mut read: impl FnMut(&Located) -> StoreResult<Arc<Message>>,
    ) -> StoreResult<Vec<Recovered>> {
        let Some(&slot) = self.names.get(queue_name(queue).as_slice()) else {
            return Ok(Vec::new());
        };
        let q = &mut self.queues[slot as usize];
        let cached = std::mem::replace(&mut q.cached, false);
        let mut out = Vec::with_capacity(q.entries.len());
        for (&id, entry) in &q.entries {
            let from_cache = match self.cache.get_mut(&id) {
                Some(c) if cached => {
                    let message = c.message.clone();
                    c.waiting = c.waiting.saturating_sub(1);
                    if c.waiting == 0 {
                        self.cache.remove(&id);
                    }
                    Some(message)
                }
                Some(c) => Some(c.message.clone()),
                None => None,
            };
            let message = match from_cache {
                Some(message) => message,
                None => match self.messages.get(&id) {
                    Some(located) => read(located)?,
                    None => continue,
                },
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
        self.messages.get(&id).copied()
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
