//! The ready messages of one queue: delivery order, priorities, and expiry deadlines that
//! fire on time wherever the message sits.
//!
//! Shape, and why:
//! - **One FIFO per priority level** (one level for a plain queue). Delivery takes the head
//!   of the highest non-empty level; a requeued message goes back to the front of its level.
//!   That is RabbitMQ's priority-queue order: higher first, FIFO within a priority.
//! - **Positions are sequence numbers.** Each level numbers its slots consecutively (a push at
//!   the back takes `tail`, a push at the front takes `head - 1`), so a slot is found from
//!   its number in O(1) without storing the number in it.
//! - **Expiry is a timer wheel over those numbers.** A message with a deadline arms one
//!   [`TimerWheel`] entry naming (level, number). When it fires, the slot becomes a
//!   *tombstone* (the message leaves at once, counts and bytes drop) even in the middle of a
//!   level: RabbitMQ only drops per-message-TTL messages at the head, Warren on time. A
//!   message that leaves any other way cancels its entry, so the wheel only ever holds live
//!   messages (a long TTL on a busy queue does not pile up stale timers).
//! - **Tombstones** are popped when they reach either end. A level whose tombstones
//!   outnumber its live messages is compacted and renumbered, re-pointing the wheel entries
//!   of the messages that moved (amortised O(1) per expiry).
//! - The wheel is created with the first deadline: a queue without TTLs pays nothing for it.
//! - **A slot is 24 bytes** ([`Slot`]): the message handle (8), its timer (12) and two bits.
//!   The deadline is not kept: a message with one has a timer, and the wheel holds the due
//!   time; the store id is the message's own (one per publish, see `broker::message`), so
//!   the slot only says whether this queue stored it. [`Queued`], the full record, is what
//!   goes in and comes out. At a million queued messages that is 25 MB of slots instead of
//!   50 MB (the record is 48 bytes).
//!
//! Time is epoch milliseconds (see `crate::clock`); a deadline `<= now` is due.

use std::collections::VecDeque;

use crate::broker::message::Message;
use crate::scheduler::{TimerId, TimerWheel};
use crate::store::MessageId;

/// "No deadline".
pub use crate::clock::NEVER;

/// A message waiting in a queue.
#[derive(Clone, Debug)]
pub struct Queued {
    /// The message.
    pub message: Message,
    /// When it expires (epoch ms), or [`NEVER`]. Fixed at enqueue, kept on requeue.
    pub deadline: u64,
    /// Delivered before and requeued.
    pub redelivered: bool,
    /// Its id in the queue's message store, if it was written there (a persistent message
    /// in a durable queue).
    pub stored: Option<MessageId>,
}

/// A message as a ready slot keeps it (see the module docs): `Option<Slot>` is 24 bytes.
#[derive(Debug)]
struct Slot {
    message: Message,
    /// Its expiry timer: there is one exactly when it has a deadline.
    timer: Option<TimerId>,
    redelivered: bool,
    /// Written to this queue's store (the id is the message's).
    stored: bool,
}

impl Queued {
    /// A message entering the queue.
    pub fn new(
        message: Message,
        deadline: u64,
        redelivered: bool,
        stored: Option<MessageId>,
    ) -> Queued {
        Queued {
            message,
            deadline,
            redelivered,
            stored,
        }
    }
}

/// First sequence number of a level: room for 2^55 pushes either way.
const START: u64 = 1 << 55;

/// A wheel payload: level in the top byte, sequence number below.
fn key(level: usize, seq: u64) -> u64 {
    ((level as u64) << 56) | seq
}

fn unkey(key: u64) -> (usize, u64) {
    ((key >> 56) as usize, key & ((1 << 56) - 1))
}

#[derive(Debug)]
struct Level {
    slots: VecDeque<Option<Slot>>,
    /// Sequence number of `slots[0]`.
    head: u64,
    live: usize,
}

impl Level {
    fn new() -> Level {
        Level {
            slots: VecDeque::new(),
            head: START,
            live: 0,
        }
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let i = usize::try_from(seq.checked_sub(self.head)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// Drops tombstones at both ends, so a non-empty level starts and ends with a message.
    fn trim(&mut self) {
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.head += 1;
        }
        while matches!(self.slots.back(), Some(None)) {
            self.slots.pop_back();
        }
    }
}

/// Ready messages by priority, with their expiry timers. See the module docs.
#[derive(Debug)]
pub struct Ready {
    levels: Box<[Level]>,
    live: usize,
    bytes: u64,
    timers: Option<Box<TimerWheel<u64>>>,
}

impl Ready {
    /// Empty, with `levels` priority levels (1 for a plain queue, `x-max-priority + 1`).
    pub fn new(levels: usize) -> Ready {
        Ready {
            levels: (0..levels.max(1)).map(|_| Level::new()).collect(),
            live: 0,
            bytes: 0,
            timers: None,
        }
    }

    /// Ready messages.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether none are ready.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Body bytes of the ready messages (`x-max-length-bytes`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The level of `message`: its `priority` capped at the top level (RabbitMQ treats a
    /// priority above `x-max-priority` as the maximum); no priority is 0.
    fn level_of(&self, message: &Message) -> usize {
        let top = self.levels.len() - 1;
        if top == 0 {
            return 0;
        }
        usize::from(message.properties().priority().unwrap_or(0)).min(top)
    }

    /// The slot for `item` at (`level`, `seq`), arming its expiry timer if it has a
    /// deadline.
    fn slot(&mut self, item: Queued, level: usize, seq: u64, now: u64) -> Slot {
        let timer = (item.deadline != NEVER).then(|| {
            let wheel = self
                .timers
                .get_or_insert_with(|| Box::new(TimerWheel::new(now)));
            wheel.insert(item.deadline, key(level, seq))
        });
        // The id is the message's own (one store write per publish); `stored_as` only copies
        // a message stored although transient.
        let (message, stored) = match item.stored {
            None => (item.message, false),
            Some(id) => (item.message.stored_as(id), true),
        };
        self.live += 1;
        self.bytes += message.body_len() as u64;
        Slot {
            message,
            timer,
            redelivered: item.redelivered,
            stored,
        }
    }

    /// The record of a slot leaving, with `due` its deadline if its timer already fired
    /// (otherwise the timer, if any, is cancelled and its due time read).
    fn leave(&mut self, slot: Slot, fired: Option<u64>) -> Queued {
        self.live -= 1;
        self.bytes -= slot.message.body_len() as u64;
        let deadline = match (fired, slot.timer, self.timers.as_mut()) {
            (Some(due), _, _) => due,
            (None, Some(id), Some(wheel)) => {
                let due = wheel.due(id).unwrap_or(NEVER);
                wheel.cancel(id);
                due
            }
            _ => NEVER,
        };
        let stored = if slot.stored {
            slot.message.store_id()
        } else {
            None
        };
        Queued {
            message: slot.message,
            deadline,
            redelivered: slot.redelivered,
            stored,
        }
    }

    /// Appends at the back of its priority level. `now` starts the wheel if this is the
    /// first deadline.
    pub fn push_back(&mut self, item: Queued, now: u64) {
        let level = self.level_of(&item.message);
        let l = &self.levels[level];
        let seq = l.head + l.slots.len() as u64;
        let slot = self.slot(item, level, seq, now);
        let l = &mut self.levels[level];
        l.slots.push_back(Some(slot));
        l.live += 1;
    }

    /// Puts back at the front of its priority level (requeue).
    pub fn push_front(&mut self, item: Queued, now: u64) {
        let level = self.level_of(&item.message);
        let seq = self.levels[level].head - 1;
        let slot = self.slot(item, level, seq, now);
        let l = &mut self.levels[level];
        l.slots.push_front(Some(slot));
        l.head = seq;
        l.live += 1;
    }

    fn top_level(&self) -> Option<usize> {
        self.levels.iter().rposition(|l| l.live > 0)
    }

    /// Takes the next message to deliver.
    pub fn pop_front(&mut self) -> Option<Queued> {
        let level = self.top_level()?;
        let l = &mut self.levels[level];
        let slot = l.slots.pop_front()??;
        l.head += 1;
        l.live -= 1;
        l.trim();
        Some(self.leave(slot, None))
    }

    /// Offers the next message to `hand` (a delivery attempt) and takes it out only if
    /// `hand` accepted it. A refused offer leaves the queue exactly as it was — the slot,
    /// its expiry timer and that timer's place among equal deadlines — so a queue whose
    /// consumers are all at their prefetch pays one lookup per attempt, not a timer cancel
    /// and re-insert. `None` when nothing is ready.
    pub fn offer_front(&mut self, hand: impl FnOnce(&Queued) -> bool) -> Option<bool> {
        let level = self.top_level()?;
        let slot = self.levels[level].slots.front()?.as_ref()?;
        let deadline = match (slot.timer, self.timers.as_ref()) {
            (Some(id), Some(wheel)) => wheel.due(id).unwrap_or(NEVER),
            _ => NEVER,
        };
        let offered = Queued {
            message: slot.message.clone(),
            deadline,
            redelivered: slot.redelivered,
            stored: if slot.stored {
                slot.message.store_id()
            } else {
                None
            },
        };
        if !hand(&offered) {
            return Some(false);
        }
        drop(offered);
        let taken = self.pop_front();
        debug_assert!(taken.is_some(), "the offered slot is still first");
        Some(true)
    }

    /// When to look again: never later than the earliest deadline among ready messages
    /// (possibly earlier, see [`TimerWheel::next_due`]).
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.as_ref()?.next_due()
    }

    /// Removes messages whose deadline is `<= now`, wherever they are, passing each to
    /// `expired` in deadline order (ties in the order they got their deadline). Stops after
    /// the millisecond in which `limit` is reached, so a large backlog is expired in slices
    /// that keep the queue's lock short; returns whether more are due.
    pub fn expire(&mut self, now: u64, limit: usize, mut expired: impl FnMut(Queued)) -> bool {
        let Some(wheel) = self.timers.as_mut() else {
            return false;
        };
        let mut fired = Vec::new();
        // `next_due` is a lower bound that is exact for the cursor's own 64 ms block, so
        // advancing to it fires at most one millisecond's worth (or only cascades).
        while fired.len() < limit
            && let Some(due) = wheel.next_due().filter(|due| *due <= now)
        {
            wheel.advance(due, |_, due, key| fired.push((key, due)));
        }
        let more = wheel.next_due().is_some_and(|due| due <= now);
        let mut touched = Vec::new();
        for (key, due) in fired {
            let (level, seq) = unkey(key);
            let l = &mut self.levels[level];
            let Some(slot) = l.index(seq).and_then(|i| l.slots[i].take()) else {
                continue;
            };
            l.live -= 1;
            if !touched.contains(&level) {
                touched.push(level);
            }
            expired(self.leave(slot, Some(due)));
        }
        for level in touched {
            self.levels[level].trim();
            if self.levels[level].slots.len() > 2 * self.levels[level].live + 64 {
                self.compact(level);
            }
        }
        more
    }

    /// Squeezes the tombstones out of `level` and re-points the moved messages' timers.
    fn compact(&mut self, level: usize) {
        let l = &mut self.levels[level];
        l.slots.retain(Option::is_some);
        if let Some(wheel) = self.timers.as_mut() {
            for (i, slot) in l.slots.iter().enumerate() {
                if let Some(Slot {
                    timer: Some(id), ..
                }) = slot
                    && let Some(payload) = wheel.get_mut(*id)
                {
                    *payload = key(level, l.head + i as u64);
                }
            }
        }
    }

    /// Removes everything, handing each message to `gone` (without its deadline: the
    /// timers go with the queue's); returns how many were ready.
    pub fn clear(&mut self, mut gone: impl FnMut(Queued)) -> usize {
        let n = self.live;
        let levels = self.levels.len();
        let old = std::mem::replace(self, Ready::new(levels));
        for level in old.levels {
            for slot in level.slots.into_iter().flatten() {
                let stored = if slot.stored {
                    slot.message.store_id()
                } else {
                    None
                };
                gone(Queued::new(slot.message, NEVER, slot.redelivered, stored));
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Properties, ShortStr};
    use bytes::Bytes;

    fn message(body: &'static str, priority: Option<u8>) -> Message {
        let empty = Properties::empty();
        let properties = match priority {
            Some(p) => empty
                .edit()
                .set_octet(crate::protocol::Property::Priority, p)
                .finish()
                .unwrap(),
            None => empty,
        };
        Message::new(
            &ShortStr::empty(),
            &ShortStr::from_static("q"),
            &properties,
            &Bytes::from_static(body.as_bytes()),
        )
    }

    fn item(body: &'static str, deadline: u64) -> Queued {
        Queued::new(message(body, None), deadline, false, None)
    }

    fn bodies(ready: &mut Ready) -> Vec<String> {
        std::iter::from_fn(|| ready.pop_front())
            .map(|q| String::from_utf8(q.message.body().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn fifo_with_requeue_at_the_front() {
        let mut r = Ready::new(1);
        r.push_back(item("a", NEVER), 0);
        r.push_back(item("b", NEVER), 0);
        let a = r.pop_front().unwrap();
        r.push_back(item("c", NEVER), 0);
        r.push_front(a, 0);
        assert_eq!(r.len(), 3);
        assert_eq!(r.bytes(), 3);
        assert_eq!(bodies(&mut r), ["a", "b", "c"]);
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn higher_priorities_first_fifo_within_and_capped_at_the_top() {
        let mut r = Ready::new(6); // x-max-priority 5
        for (body, p) in [
            ("p0", None),
            ("p9", Some(9)),
            ("p3", Some(3)),
            ("p5", Some(5)),
        ] {
            r.push_back(Queued::new(message(body, p), NEVER, false, None), 0);
        }
        r.push_back(item("p0b", NEVER), 0);
        // 9 counts as 5 and came first among the fives.
        assert_eq!(bodies(&mut r), ["p9", "p5", "p3", "p0", "p0b"]);
    }

    #[test]
    fn a_message_in_the_middle_expires_on_time() {
        let mut r = Ready::new(1);
        r.push_back(item("long", 1000), 0);
        r.push_back(item("short", 10), 0);
        r.push_back(item("none", NEVER), 0);
        let mut gone = Vec::new();
        r.expire(9, usize::MAX, |q| gone.push(q.message.body_bytes()));
        assert!(gone.is_empty());
        r.expire(10, usize::MAX, |q| gone.push(q.message.body_bytes()));
        assert_eq!(gone, [Bytes::from_static(b"short")]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.bytes(), 8);
        // A safe lower bound (the wheel's slot start), never after the real deadline.
        assert!(r.next_deadline().is_some_and(|t| t > 10 && t <= 1000));
        assert_eq!(bodies(&mut r), ["long", "none"]);
    }

    #[test]
    fn a_refused_offer_leaves_the_message_its_timer_and_its_place_among_equal_deadlines() {
        let mut r = Ready::new(1);
        r.push_back(item("a", 50), 0);
        r.push_back(item("b", 50), 0);
        let mut seen = None;
        let refused = r.offer_front(|q| {
            seen = Some((q.message.body_bytes(), q.deadline));
            false
        });
        assert_eq!(refused, Some(false));
        assert_eq!(
            seen,
            Some((Bytes::from_static(b"a"), 50)),
            "the full record"
        );
        assert_eq!(r.len(), 2);
        // Still first to expire among the two due at 50.
        let mut gone = Vec::new();
        r.expire(50, usize::MAX, |q| gone.push(q.message.body_bytes()));
        assert_eq!(gone, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);

        r.push_back(item("c", 70), 0);
        assert_eq!(r.offer_front(|_| true), Some(true));
        assert!(r.is_empty());
        assert_eq!(
            r.next_deadline(),
            None,
            "the taken message's timer is disarmed"
        );
        assert_eq!(r.offer_front(|_| true), None);
    }

    #[test]
    fn delivered_messages_disarm_their_timers() {
        let mut r = Ready::new(1);
        r.push_back(item("a", 50), 0);
        let a = r.pop_front().unwrap();
        assert_eq!(r.next_deadline(), None);
        // Requeued with its deadline kept: it arms again and still expires at 50.
        r.push_front(a, 20);
        let mut gone = 0;
        r.expire(50, usize::MAX, |_| gone += 1);
        assert_eq!(gone, 1);
        assert!(r.is_empty());
    }

    #[test]
    fn compaction_keeps_order_and_timers() {
        let mut r = Ready::new(1);
        r.push_back(item("head", NEVER), 0);
        for _ in 0..500 {
            r.push_back(item("dies", 5), 0);
        }
        r.push_back(item("tail", 7), 0);
        r.push_back(item("last", NEVER), 0);
        let mut gone = 0;
        r.expire(5, usize::MAX, |_| gone += 1);
        assert_eq!(gone, 500);
        // Compacted (500 tombstones against 3 live); "tail"'s timer followed it.
        assert!(r.levels[0].slots.len() < 10);
        let mut late = Vec::new();
        r.expire(7, usize::MAX, |q| late.push(q.message.body_bytes()));
        assert_eq!(late, [Bytes::from_static(b"tail")]);
        assert_eq!(bodies(&mut r), ["head", "last"]);
    }

    #[test]
    fn equal_deadlines_expire_in_arrival_order() {
        let mut r = Ready::new(1);
        for body in ["1", "2", "3"] {
            r.push_back(item(body, 5), 0);
        }
        let mut order = Vec::new();
        r.expire(100, usize::MAX, |q| order.push(q.message.body_bytes()));
        assert_eq!(order, [&b"1"[..], b"2", b"3"]);
    }

    #[test]
    fn a_backlog_expires_in_slices_of_whole_milliseconds() {
        let mut r = Ready::new(1);
        for due in [3, 3, 3, 4, 5] {
            r.push_back(item("x", due), 0);
        }
        let mut gone = 0;
        // The limit is reached inside millisecond 3, which still fires completely.
        assert!(r.expire(10, 2, |_| gone += 1));
        assert_eq!(gone, 3);
        assert!(!r.expire(10, 100, |_| gone += 1));
        assert_eq!((gone, r.len()), (5, 0));
    }
}
