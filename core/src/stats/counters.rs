//! What is counted: one [`Counter`] per event kind, and [`Counters`], one relaxed atomic per
//! kind, embedded in every object that counts (channel, queue, exchange, delayed exchange).
//!
//! Why atomics and not a lock or a channel of events: the publish path must not wait for
//! anything to be counted. An increment is one uncontended `lock xadd` on memory the
//! incrementing task already owns (a channel's counters are written by its connection and
//! by the queues delivering to it; a queue's under its own lock). Nothing allocates: the
//! array is fixed when the object is made. Reading is a relaxed load per kind — a reader
//! may see one kind a few events ahead of another, never a torn or decreasing value.

use std::sync::atomic::{AtomicU64, Ordering};

/// One kind of event. The names are RabbitMQ's `message_stats` keys where RabbitMQ has one
/// ([`Counter::key`]); Warren's own kinds have Warren's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Counter {
    /// Messages published: on a channel by its client; on a queue, enqueued into it.
    Publish,
    /// Messages published into an exchange (by clients, or by another exchange).
    PublishIn,
    /// Messages routed out of an exchange (one per destination queue).
    PublishOut,
    /// Messages published on a channel in confirm mode (RabbitMQ's `received_confirm`).
    PublishConfirm,
    /// Publishes that reached at least one queue (RabbitMQ's global `routed`).
    Routed,
    /// Publisher confirms sent (`basic.ack` to a publisher).
    Confirm,
    /// Unroutable mandatory messages returned (`basic.return`).
    ReturnUnroutable,
    /// Unroutable messages dropped.
    DropUnroutable,
    /// Deliveries to consumers that must ack.
    Deliver,
    /// Deliveries to consumers with `no_ack`.
    DeliverNoAck,
    /// `basic.get` answered with a message, to be acked.
    Get,
    /// `basic.get` answered with a message, `no_ack`.
    GetNoAck,
    /// `basic.get` answered `get-empty`.
    GetEmpty,
    /// Deliveries (consume or get) with the redelivered flag.
    Redeliver,
    /// Messages acknowledged by consumers.
    Ack,
    /// Messages that died of TTL (with or without a dead-letter exchange).
    DiedExpired,
    /// Messages dropped or rejected by `x-max-length`/`-bytes` (`drop-head`, `reject-publish-dlx`).
    DiedMaxlen,
    /// Messages rejected or nacked without requeue.
    DiedRejected,
    /// Of those that died of TTL, the ones republished to a dead-letter exchange.
    DeadLetteredExpired,
    /// Of those that died of a length limit, the ones republished to a dead-letter exchange.
    DeadLetteredMaxlen,
    /// Of those rejected, the ones republished to a dead-letter exchange.
    DeadLetteredRejected,
    /// Messages a delayed exchange took to hold.
    Held,
    /// Held messages that fell due and were routed.
    Fired,
    /// Held messages cancelled through the API.
    Cancelled,
}

impl Counter {
    /// How many kinds there are.
    pub const COUNT: usize = Counter::Cancelled as usize + 1;

    /// Every kind, in declaration order.
    pub const ALL: [Counter; Counter::COUNT] = [
        Counter::Publish,
        Counter::PublishIn,
        Counter::PublishOut,
        Counter::PublishConfirm,
        Counter::Routed,
        Counter::Confirm,
        Counter::ReturnUnroutable,
        Counter::DropUnroutable,
        Counter::Deliver,
        Counter::DeliverNoAck,
        Counter::Get,
        Counter::GetNoAck,
        Counter::GetEmpty,
        Counter::Redeliver,
        Counter::Ack,
        Counter::DiedExpired,
        Counter::DiedMaxlen,
        Counter::DiedRejected,
        Counter::DeadLetteredExpired,
        Counter::DeadLetteredMaxlen,
        Counter::DeadLetteredRejected,
        Counter::Held,
        Counter::Fired,
        Counter::Cancelled,
    ];

    /// Its key in `message_stats` (RabbitMQ's where it has one).
    pub const fn key(self) -> &'static str {
        match self {
            Counter::Publish => "publish",
            Counter::PublishIn => "publish_in",
            Counter::PublishOut => "publish_out",
            Counter::PublishConfirm => "publish_confirm",
            Counter::Routed => "routed",
            Counter::Confirm => "confirm",
            Counter::ReturnUnroutable => "return_unroutable",
            Counter::DropUnroutable => "drop_unroutable",
            Counter::Deliver => "deliver",
            Counter::DeliverNoAck => "deliver_no_ack",
            Counter::Get => "get",
            Counter::GetNoAck => "get_no_ack",
            Counter::GetEmpty => "get_empty",
            Counter::Redeliver => "redeliver",
            Counter::Ack => "ack",
            Counter::DiedExpired => "expired",
            Counter::DiedMaxlen => "dropped_maxlen",
            Counter::DiedRejected => "rejected",
            Counter::DeadLetteredExpired => "dead_lettered_expired",
            Counter::DeadLetteredMaxlen => "dead_lettered_maxlen",
            Counter::DeadLetteredRejected => "dead_lettered_rejected",
            Counter::Held => "held",
            Counter::Fired => "fired",
            Counter::Cancelled => "cancelled",
        }
    }
}

/// Which kind of object a node total of a [`Counter`] is summed from. Several objects count
/// the same kind (a channel's `publish` is what its client sent, a queue's what was enqueued
/// into it), so each node total has one source, or it would count an event twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Channels (what clients did).
    Channel,
    /// Queues (what happened to messages in them).
    Queue,
    /// Exchanges, delayed ones included (what they held and fired).
    Exchange,
}

impl Counter {
    /// The objects the node's total of this kind is summed from.
    pub const fn source(self) -> Source {
        match self {
            Counter::DiedExpired
            | Counter::DiedMaxlen
            | Counter::DiedRejected
            | Counter::DeadLetteredExpired
            | Counter::DeadLetteredMaxlen
            | Counter::DeadLetteredRejected => Source::Queue,
            Counter::PublishIn
            | Counter::PublishOut
            | Counter::Held
            | Counter::Fired
            | Counter::Cancelled => Source::Exchange,
            _ => Source::Channel,
        }
    }
}

/// One atomic count per [`Counter`].
#[derive(Debug)]
pub struct Counters([AtomicU64; Counter::COUNT]);

impl Default for Counters {
    fn default() -> Self {
        Counters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Counters {
    /// Counts `n` events of `kind`.
    #[inline]
    pub fn add(&self, kind: Counter, n: u64) {
        self.0[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one event of `kind`.
    #[inline]
    pub fn incr(&self, kind: Counter) {
        self.add(kind, 1);
    }

    /// The count of `kind` so far.
    pub fn get(&self, kind: Counter) -> u64 {
        self.0[kind as usize].load(Ordering::Relaxed)
    }

    /// Every count, read now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }

    /// Adds every count of `other` (a closed channel's or deleted queue's totals, folded
    /// into the node's so its totals never go down).
    pub fn absorb(&self, other: &Snapshot) {
        for (mine, &theirs) in self.0.iter().zip(other.0.iter()) {
            if theirs != 0 {
                mine.fetch_add(theirs, Ordering::Relaxed);
            }
        }
    }
}

/// Counts read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot(pub [u64; Counter::COUNT]);

impl Snapshot {
    /// The count of `kind`.
    pub fn get(&self, kind: Counter) -> u64 {
        self.0[kind as usize]
    }

    /// Adds `other` into this one.
    pub fn add(&mut self, other: &Snapshot) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }

    /// This snapshot with every kind not summed from `source` zeroed.
    pub fn from_source(&self, source: Source) -> Snapshot {
        Snapshot(std::array::from_fn(|i| {
            if Counter::ALL[i].source() == source {
                self.0[i]
            } else {
                0
            }
        }))
    }

    /// What happened between `earlier` and this one, per kind (0 where a count went down,
    /// which only a deleted and re-created object can make happen).
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot(std::array::from_fn(|i| {
            self.0[i].saturating_sub(earlier.0[i])
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_in_order() {
        for (i, kind) in Counter::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?} out of order");
        }
        let mut keys: Vec<_> = Counter::ALL.iter().map(|k| k.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Counter::COUNT, "two kinds share a key");
    }

    #[test]
    fn counts_add_snapshot_and_fold() {
        let c = Counters::default();
        c.incr(Counter::Publish);
        c.add(Counter::Ack, 3);
        let s = c.snapshot();
        assert_eq!((s.get(Counter::Publish), s.get(Counter::Ack)), (1, 3));
        let node = Counters::default();
        node.absorb(&s);
        node.absorb(&s);
        assert_eq!(node.get(Counter::Ack), 6);
        let later = node.snapshot();
        assert_eq!(later.since(&s).get(Counter::Ack), 3);
        assert_eq!(s.since(&later).get(Counter::Ack), 0);
    }
}
