//! A message queue: ready messages in priority and arrival order, its consumers,
//! round-robin delivery, and the rules that make messages leave without a consumer — TTL,
//! length limits, dead-lettering — and the queue itself leave when unused (`x-expires`).
//!
//! Each queue is its own island of state behind its own mutex: publishers on different
//! connections touching different queues never contend, and routing never holds a queue lock
//! (the exchange hands back `Arc<Queue>`s, then each is locked briefly to enqueue). The
//! publisher's task delivers straight to a consumer with credit while it holds the lock, so
//! an idle consumer gets a message without any task switch on the broker side.
//!
//! Flow control: while a queue that has consumers holds more than [`BACKLOG_HIGH`] ready
//! messages, a connection that published to it pauses reading from its socket after each
//! batch until the queue drains below [`BACKLOG_LOW`] or [`MAX_PAUSE`] passes
//! ([`Queue::is_backlogged`], [`Queue::wait_for_space`]). Publishers are thus paced to their
//! consumers and latency stays bounded, as RabbitMQ's credit flow does; the pause is bounded
//! so a queue whose consumers do not ack slows publishers but never stops them (nor stalls
//! acks on the same connection). A queue without consumers is never a reason to pause (it
//! may grow, like RabbitMQ's until a memory alarm).
//!
//! Time-driven work (message deadlines, `x-expires`) is done by a task the vhost runs per
//! queue (`broker::drivers::expiry`): it calls [`Queue::tick`], which expires what is due and
//! says when to come back; the queue wakes it when something is due earlier than planned.
//!
//! A queue never calls up. What happens in it that its owner must act on is returned:
//! messages that died (expired, dropped by `x-max-length`, rejected) come back as [`Deaths`]
//! from the operation that killed them, for the vhost to dead-letter once the queue's lock is
//! released (so routing them never nests one queue's lock inside another's); "unused now"
//! comes back as [`ConsumerRemoved::LastOfAutoDelete`] or [`Visit::Unused`].
//!
//! Invariants: a message is either in `ready` or in exactly one channel's unacked map (or
//! gone); requeued messages go back to the front, oldest first, marked redelivered, with the
//! deadline they got at enqueue; an expired message is never delivered nor counted (every
//! path that delivers or counts first expires what is due).

pub mod arguments;
pub mod consumer;
pub mod expiration;
mod ready;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::dead_letter::{DeadLetterNames, Reason};
use super::message::Message;
use super::replies;
use crate::clock::now_ms;
use crate::error::AmqpError;
use crate::stats::Counter;
use crate::store::{MessageId, MessageStore, QueueKey};
pub use arguments::{Overflow, QueueArguments, QueueLimits};
pub use consumer::{Consumer, DeliveryChannel, DeliverySink, Unacked};
use expiration::parse_expiration;
use ready::Ready;
pub use ready::{NEVER, Queued};

/// Ready messages (with consumers present) above which publishers pause.
pub const BACKLOG_HIGH: usize = 1024;
/// Ready messages at or below which paused publishers resume.
pub const BACKLOG_LOW: usize = 256;

/// A backlog counts only if a consumer took a message within this many milliseconds.
const ACTIVE_WINDOW_MS: u64 = 100;

/// Longest single pause of a publishing connection.
pub const MAX_PAUSE: Duration = Duration::from_millis(50);

/// The declared properties of a queue.
#[derive(Clone, Debug)]
pub struct QueueSpec {
    /// Name.
    pub name: String,
    /// Durable (remembered only, until persistence lands).
    pub durable: bool,
    /// Owning connection of an exclusive queue.
    pub exclusive_owner: Option<u64>,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Declare arguments.
    pub arguments: FieldTable,
    /// `x-single-active-consumer`.
    pub single_active: bool,
    /// TTL, length limits, priorities and dead-lettering, validated.
    pub limits: QueueLimits,
}

/// A message that died in a queue, waiting to be dead-lettered.
#[derive(Debug)]
pub struct Dead {
    /// The message as it was in the queue.
    pub message: Message,
    /// Why it died.
    pub reason: Reason,
}

/// Messages that died in a queue, handed back to its owner to dead-letter
/// (`VHost::bury`). Empty (and unallocated) in the common case.
#[must_use = "dead messages must be handed to the vhost to be dead-lettered"]
#[derive(Debug, Default)]
pub struct Deaths(pub Vec<Dead>);

impl Deaths {
    /// Whether nothing died.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A queue's counts at one moment, for the management API ([`Queue::snapshot`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// Ready messages.
    pub ready: usize,
    /// Body bytes of the ready messages.
    pub ready_bytes: u64,
    /// Consumers.
    pub consumers: usize,
    /// Deliveries to its current consumers not yet acknowledged. Unacked messages taken by
    /// `basic.get`, or by a consumer since cancelled, live only in their channel and are not
    /// counted: the queue does not track them (it gets them back if they are requeued).
    pub unacked: usize,
}

/// What the expiry driver's visit found ([`Queue::tick`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Visit {
    /// The queue is gone: stop.
    Deleted,
    /// More is due already: yield, then visit again.
    Again,
    /// Unused for its `x-expires`: delete it, then stop.
    Unused,
    /// Come back at this time (epoch ms), or when woken if [`NEVER`].
    Next(u64),
}

/// Messages expired per visit at most (give or take one millisecond's worth): a backlog
/// that came due at once is expired and dead-lettered in slices, with a yield to the
/// runtime between them, so neither the queue's lock nor a worker thread is held for long
/// and publishers keep going while it drains.
pub const EXPIRY_SLICE: usize = 1024;

/// What became of a message handed to [`Queue::enqueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Taken (delivered, queued, or expired at once under TTL 0).
    Accepted,
    /// Refused by a full `reject-publish` / `reject-publish-dlx` queue: nack its publisher.
    Refused,
    /// The queue was deleted meanwhile.
    Gone,
}

#[derive(Debug)]
struct QueueState {
    ready: Ready,
    consumers: Vec<Arc<Consumer>>,
    next: usize,
    had_consumer: bool,
    /// Died under the lock; handed back to the caller once it is released.
    dead: Vec<Dead>,
    /// Last use for `x-expires` (epoch ms).
    last_used: u64,
    /// When the driver will next look ([`NEVER`]: it waits to be woken).
    armed: u64,
}

/// Where a durable queue's persistent messages are written: the store and the queue's name
/// in it. Every way a stored message leaves the queue for good (ack, reject, expiry, a
/// length limit, purge, a no-ack delivery) is recorded through it, and so is a delivery
/// (so that a crash brings the message back redelivered).
#[derive(Debug)]
pub struct QueueStore {
    /// The queue's name in the store.
    pub key: QueueKey,
    /// The store.
    pub messages: Arc<dyn MessageStore>,
}

impl QueueStore {
    fn log_failure(&self, what: &str, e: &crate::store::StoreError) {
        // The store flags itself failed (confirms waiting on it are nacked); say it once
        // per message would flood, so at debug beyond the store's own error.
        tracing::debug!(queue = %self.key.queue, "message store refused {what}: {e}");
    }
}

/// A queue.
#[derive(Debug)]
pub struct Queue {
    /// Destination id in exchange routers.
    pub id: u64,
    /// Declared properties.
    pub spec: QueueSpec,
    /// The vhost it lives in, for reply texts.
    vhost: Arc<str>,
    /// The dead-letter exchange and routing key, ready to put in a message.
    dead_letter_names: Option<DeadLetterNames>,
    deleted: AtomicBool,
    state: Mutex<QueueState>,
    /// Mirrors of the ready count and consumer count, for lock-free flow checks.
    ready_len: AtomicUsize,
    consumers: AtomicUsize,
    /// Deliveries from this queue awaiting an ack on some channel — to consumers, current or
    /// cancelled, and by `basic.get` — counted where a channel records and settles them.
    unacked: AtomicUsize,
    /// Set by a paused publisher; cleared (and waiters woken) once below the low mark.
    publishers_waiting: AtomicBool,
    space: Notify,
    /// When a consumer last got a message (epoch ms).
    last_delivery_ms: AtomicU64,
    /// Wakes the driver when something is due earlier than it planned.
    wake: Arc<Notify>,
    /// A problem with this queue's dead-lettering was logged at warn already.
    warned: AtomicBool,
    /// Its message store, if it is durable (and not exclusive) and the broker stores.
    store: Option<QueueStore>,
    /// What happened to messages in it (enqueued, delivered, acked, died by reason).
    stats: crate::stats::Stats,
    /// Its ready and unacknowledged messages as sampled (`messages_details.rate` etc.).
    depth: crate::stats::Series<2>,
}

/// What removing a consumer left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumerRemoved {
    /// No such consumer.
    NotFound,
    /// Removed; others remain or the queue is not auto-delete.
    Removed,
    /// Removed the last consumer of an auto-delete queue: delete the queue.
    LastOfAutoDelete,
}

impl Queue {
    /// A new, empty queue in the vhost named `vhost`; a stored one (durable, not exclusive)
    /// writes its persistent messages to `messages`.
    pub fn new(
        id: u64,
        spec: QueueSpec,
        vhost: Arc<str>,
        messages: Option<Arc<dyn MessageStore>>,
    ) -> Arc<Queue> {
        let levels = spec.limits.max_priority.map_or(1, |p| usize::from(p) + 1);
        let now = now_ms();
        let dead_letter_names = DeadLetterNames::of(
            &spec.name,
            spec.limits.dead_letter_exchange.as_deref(),
            spec.limits.dead_letter_routing_key.as_deref(),
        );
        let store = messages
            .filter(|_| spec.durable && spec.exclusive_owner.is_none())
            .map(|messages| QueueStore {
                key: QueueKey {
                    vhost: vhost.clone(),
                    queue: spec.name.as_str().into(),
                },
                messages,
            });
        let queue = Arc::new(Queue {
            id,
            spec,
            vhost,
            store,
            dead_letter_names,
            deleted: AtomicBool::new(false),
            state: Mutex::new(QueueState {
                ready: Ready::new(levels),
                consumers: Vec::new(),
                next: 0,
                had_consumer: false,
                dead: Vec::new(),
                last_used: now,
                armed: NEVER,
            }),
            ready_len: AtomicUsize::new(0),
            unacked: AtomicUsize::new(0),
            consumers: AtomicUsize::new(0),
            publishers_waiting: AtomicBool::new(false),
            space: Notify::new(),
            last_delivery_ms: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            warned: AtomicBool::new(false),
            stats: crate::stats::Stats::default(),
            depth: crate::stats::Series::default(),
        });
        if let Some(expires) = queue.spec.limits.expires {
            let mut st = queue.state.lock();
            queue.schedule(&mut st, now.saturating_add(expires));
        }
        queue
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether the queue's definition is stored (durable, not exclusive): it survives a
    /// restart.
    pub fn is_stored(&self) -> bool {
        self.spec.durable && self.spec.exclusive_owner.is_none()
    }

    /// Its message store, if its persistent messages are written to one.
    pub fn store(&self) -> Option<&QueueStore> {
        self.store.as_ref()
    }

    /// Whether `message` is written to this queue's store when it enters.
    pub fn stores(&self, message: &Message) -> bool {
        self.store.is_some() && message.properties().is_persistent()
    }

    /// Records that a stored message left the queue for good.
    fn forget_stored(&self, stored: Option<MessageId>) {
        if let (Some(store), Some(id)) = (&self.store, stored)
            && let Err(e) = store.messages.remove(&store.key, id)
        {
            store.log_failure("a removal", &e);
        }
    }

    /// A delivery was settled for good (acked, or rejected without requeue).
    pub fn settled(&self, stored: Option<MessageId>) {
        self.forget_stored(stored);
    }

    /// A message was delivered: with no ack to wait for it is gone, else it comes back
    /// redelivered after a crash.
    pub(crate) fn delivered_stored(&self, stored: Option<MessageId>, no_ack: bool) {
        if no_ack {
            return self.forget_stored(stored);
        }
        if let (Some(store), Some(id)) = (&self.store, stored)
            && let Err(e) = store.messages.delivered(&store.key, id)
        {
            store.log_failure("a delivery mark", &e);
        }
    }

    /// Puts back what the store kept for this queue (at start, before any client), in
    /// order; what expired while the broker was down expires at the driver's first visit.
    pub fn restore(&self, recovered: Vec<crate::store::Recovered>) {
        let mut st = self.state.lock();
        let now = now_ms();
        let mut earliest = NEVER;
        for r in recovered {
            earliest = earliest.min(r.deadline);
            st.ready.push_back(
                Queued::new(r.message, r.deadline, r.redelivered, Some(r.id)),
                now,
            );
        }
        if earliest != NEVER {
            self.schedule(&mut st, earliest);
        }
        self.counts_changed(&st);
    }

    /// The name of the vhost it lives in.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The signal that wakes this queue's expiry driver (see [`Queue::tick`]).
    pub fn driver_wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// What happened to messages in the queue.
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.stats
    }

    /// Records its ready and unacknowledged counts at `now_ms` (the sampler's tick, read from
    /// the atomics the queue keeps, without its lock) and returns them.
    pub fn sample_depth(&self, now_ms: u64) -> (u64, u64) {
        let ready = self.ready_len.load(Ordering::Relaxed) as u64;
        let unacked = self.unacked.load(Ordering::Relaxed) as u64;
        self.depth.record(now_ms, [ready, unacked]);
        (ready, unacked)
    }

    /// Its sampled depths: `[ready, unacknowledged]` (see [`Queue::sample_depth`]).
    pub fn depth(&self) -> &crate::stats::Series<2> {
        &self.depth
    }

    /// Whether the queue was deleted (handles to it are stale).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Whether `connection` may use this queue (405 otherwise).
    pub fn check_access(&self, connection: u64) -> Result<(), AmqpError> {
        match self.spec.exclusive_owner {
            Some(owner) if owner != connection => {
                Err(replies::queue_locked(&self.vhost, &self.spec.name))
            }
            _ => Ok(()),
        }
    }

    /// Runs `f` on the locked state; returns its result with whatever died meanwhile.
    fn with_state<R>(&self, f: impl FnOnce(&mut QueueState) -> R) -> (R, Deaths) {
        let mut st = self.state.lock();
        let result = f(&mut st);
        (result, Deaths(std::mem::take(&mut st.dead)))
    }

    /// Whether messages dying here are dead-lettered (else they are just dropped).
    fn dead_letters(&self) -> bool {
        self.dead_letter_names.is_some()
    }

    /// The dead-letter exchange and routing key, if the queue dead-letters.
    pub(crate) fn dead_letter_names(&self) -> Option<&DeadLetterNames> {
        self.dead_letter_names.as_ref()
    }

    /// Runs `log` the first time only: a misconfiguration is reported once per queue, not
    /// once per message.
    pub(crate) fn warn_once(&self, log: impl FnOnce()) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            log();
        }
    }

    /// Messages a client rejected (`basic.reject` / `basic.nack` without requeue), as deaths
    /// to dead-letter (none if the queue does not dead-letter).
    pub fn reject(
        &self,
        messages: impl IntoIterator<Item = (Message, Option<MessageId>)>,
    ) -> Deaths {
        let mut dead = Vec::new();
        for (message, stored) in messages {
            self.kill(&mut dead, message, stored, Reason::Rejected);
        }
        Deaths(dead)
    }

    /// Records a message that died (under the lock, or just after), handed back to be
    /// dead-lettered once the lock is released; a stored one leaves the store.
    ///
    /// Its removal is written before its dead letter (if any) is: a crash between loses the
    /// dead letter, as RabbitMQ's classic queues do (dead-lettering is at most once).
    fn kill(
        &self,
        dead: &mut Vec<Dead>,
        message: Message,
        stored: Option<MessageId>,
        reason: Reason,
    ) {
        self.stats.counters.incr(match reason {
            Reason::Expired => Counter::DiedExpired,
            Reason::Maxlen => Counter::DiedMaxlen,
            Reason::Rejected => Counter::DiedRejected,
        });
        self.forget_stored(stored);
        if self.dead_letters() {
            dead.push(Dead { message, reason });
        }
    }

    /// Removes the messages whose deadline has passed, up to about `limit` (whole
    /// milliseconds); returns whether more are due.
    fn expire_some(&self, st: &mut QueueState, limit: usize) -> bool {
        if st.ready.next_deadline().is_none() {
            return false;
        }
        let QueueState { ready, dead, .. } = st;
        ready.expire(now_ms(), limit, |item| {
            self.kill(dead, item.message, item.stored, Reason::Expired);
        })
    }

    /// Removes every message whose deadline has passed (before delivering or counting).
    fn expire_locked(&self, st: &mut QueueState) {
        self.expire_some(st, usize::MAX);
    }

    /// Makes sure the driver looks at the queue by `at` (epoch ms).
    fn schedule(&self, st: &mut QueueState, at: u64) {
        if at >= st.armed {
            return;
        }
        st.armed = at;
        self.wake.notify_one();
    }

    /// The deadline of a message entering at `now`: the lower of the queue's
    /// `x-message-ttl` and the message's `expiration` (validated at publish).
    pub fn deadline_at(&self, message: &Message, now: u64) -> u64 {
        self.deadline_of(message, || now)
    }

    /// The deadline of a message entering now: the lower of the queue's `x-message-ttl` and
    /// the message's `expiration` (validated at publish), from `now`.
    fn deadline_of(&self, message: &Message, now: impl FnOnce() -> u64) -> u64 {
        let own = message
            .properties()
            .expiration()
            .and_then(|raw| parse_expiration(raw).ok());
        match (self.spec.limits.message_ttl, own) {
            (None, None) => NEVER,
            (Some(a), Some(b)) => now().saturating_add(a.min(b)),
            (Some(ttl), None) | (None, Some(ttl)) => now().saturating_add(ttl),
        }
    }

    /// Whether one more message of `size` bytes would exceed a length limit.
    fn would_overflow(&self, st: &QueueState, size: usize) -> bool {
        let limits = &self.spec.limits;
        limits
            .max_length
            .is_some_and(|max| st.ready.len() as u64 + 1 > max)
            || limits
                .max_length_bytes
                .is_some_and(|max| st.ready.bytes() + size as u64 > max)
    }

    fn over_limit(&self, st: &QueueState) -> bool {
        let limits = &self.spec.limits;
        limits
            .max_length
            .is_some_and(|max| st.ready.len() as u64 > max)
            || limits
                .max_length_bytes
                .is_some_and(|max| st.ready.bytes() > max)
    }

    /// `drop-head`: drops (and dead-letters as `maxlen`) from the head until within limits.
    fn drop_head_locked(&self, st: &mut QueueState) {
        if self.spec.limits.overflow != Overflow::DropHead {
            return;
        }
        while self.over_limit(st) {
            let Some(item) = st.ready.pop_front() else {
                break;
            };
            self.kill(&mut st.dead, item.message, item.stored, Reason::Maxlen);
        }
    }

    /// Publishes the counts for flow control; wakes paused publishers when drained.
    fn counts_changed(&self, st: &QueueState) {
        let ready = st.ready.len();
        self.ready_len.store(ready, Ordering::Relaxed);
        self.consumers.store(st.consumers.len(), Ordering::Relaxed);
        if (ready <= BACKLOG_LOW || st.consumers.is_empty() || self.is_deleted())
            && self.publishers_waiting.swap(false, Ordering::AcqRel)
        {
            self.space.notify_waiters();
        }
    }

    /// (ready messages, consumers) as last recorded, without taking the queue's lock or
    /// expiring anything: what a monitoring read (`/api/overview`) may cost.
    pub fn observed_counts(&self) -> (usize, usize) {
        (
            self.ready_len.load(Ordering::Relaxed),
            self.consumers.load(Ordering::Relaxed),
        )
    }

    /// Deliveries to current consumers not yet acknowledged, as last recorded (the
    /// `unacked` of [`Queue::snapshot`], read without the queue's lock for monitoring).
    pub fn observed_unacked(&self) -> usize {
        self.unacked.load(Ordering::Relaxed)
    }

    /// A channel recorded a delivery that awaits an ack (`true`) or settled one (`false`),
    /// however: ack, reject, requeue, recover, or the channel closing.
    pub fn count_unacked(&self, outstanding: bool) {
        if outstanding {
            self.unacked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.unacked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether publishers to this queue should pause (see the module doc): a backlog that
    /// consumers are actively working through. A backlog nobody is taking from (no
    /// consumers, or consumers without credit that do not ack) is no reason to pause.
    pub fn is_backlogged(&self) -> bool {
        self.ready_len.load(Ordering::Relaxed) > BACKLOG_HIGH
            && self.consumers.load(Ordering::Relaxed) > 0
            && !self.is_deleted()
            && now_ms().saturating_sub(self.last_delivery_ms.load(Ordering::Relaxed))
                < ACTIVE_WINDOW_MS
    }

    /// Completes once the queue is no longer backlogged, or after [`MAX_PAUSE`].
    pub async fn wait_for_space(&self) {
        let notified = self.space.notified();
        self.publishers_waiting.store(true, Ordering::Release);
        if !self.is_backlogged() || self.ready_len.load(Ordering::Relaxed) <= BACKLOG_LOW {
            return;
        }
        let _ = tokio::time::timeout(MAX_PAUSE, notified).await;
    }

    /// Takes a published (or dead-lettered, or fired delayed) message: refuses it if a
    /// `reject-publish` limit is reached, delivers it or queues it, expires it at once if its
    /// TTL is already over and no consumer took it, then applies `drop-head`. What died
    /// meanwhile is appended to `dead`, for the caller to dead-letter.
    ///
    /// `stored` is the message's id in this queue's store and the deadline it was written
    /// with (computed by [`Queue::deadline_at`] before the write), if it was written.
    pub fn enqueue(
        self: &Arc<Self>,
        message: Message,
        stored: Option<(MessageId, u64)>,
        dead: &mut Vec<Dead>,
    ) -> Enqueued {
        let mut st = self.state.lock();
        let outcome = self.enqueue_locked(&mut st, message, stored);
        dead.append(&mut st.dead);
        outcome
    }

    fn enqueue_locked(
        self: &Arc<Self>,
        st: &mut QueueState,
        message: Message,
        stored: Option<(MessageId, u64)>,
    ) -> Enqueued {
        let id = stored.map(|(id, _)| id);
        if self.is_deleted() {
            self.forget_stored(id);
            return Enqueued::Gone;
        }
        if self.spec.limits.overflow != Overflow::DropHead
            && self.would_overflow(st, message.body_len())
        {
            if self.spec.limits.overflow == Overflow::RejectPublishDlx {
                self.kill(&mut st.dead, message, id, Reason::Maxlen);
            } else {
                self.forget_stored(id);
            }
            return Enqueued::Refused;
        }
        self.stats.counters.incr(Counter::Publish);
        let mut now = NEVER;
        let deadline = match stored {
            Some((_, deadline)) => {
                if deadline != NEVER {
                    now = now_ms();
                }
                deadline
            }
            None => self.deadline_of(&message, || {
                now = now_ms();
                now
            }),
        };
        let item = Queued::new(message, deadline, false, id);
        if deadline != NEVER && deadline <= now {
            // TTL 0: to a consumer that can take it now, or nowhere.
            self.expire_locked(st);
            let QueueState {
                ready,
                consumers,
                next,
                ..
            } = &mut *st;
            if ready.is_empty() && self.hand_over(consumers, next, &item) {
                self.delivered();
                self.counts_changed(st);
                return Enqueued::Accepted;
            }
            self.kill(&mut st.dead, item.message, item.stored, Reason::Expired);
            return Enqueued::Accepted;
        }
        st.ready.push_back(item, now);
        if deadline != NEVER {
            self.schedule(st, deadline);
        }
        self.deliver_locked(st);
        self.drop_head_locked(st);
        self.counts_changed(st);
        Enqueued::Accepted
    }

    /// Puts messages back at the front (in the given order), marked redelivered, each with
    /// the deadline it got at enqueue (one that passed meanwhile expires now) and its store
    /// id.
    pub fn requeue(
        self: &Arc<Self>,
        messages: impl DoubleEndedIterator<Item = (Message, u64, Option<MessageId>)>,
    ) -> Deaths {
        self.with_state(|st| {
            if self.is_deleted() {
                return;
            }
            let now = now_ms();
            let mut earliest = NEVER;
            for (message, deadline, stored) in messages.rev() {
                if deadline <= now {
                    self.kill(&mut st.dead, message, stored, Reason::Expired);
                    continue;
                }
                earliest = earliest.min(deadline);
                st.ready
                    .push_front(Queued::new(message, deadline, true, stored), now);
            }
            if earliest != NEVER {
                self.schedule(st, earliest);
            }
            self.deliver_locked(st);
            self.drop_head_locked(st);
            self.counts_changed(st);
        })
        .1
    }

    /// Delivers to consumers with credit (after an ack, qos change, or resume).
    pub fn drain(self: &Arc<Self>) -> Deaths {
        self.with_state(|st| {
            self.deliver_locked(st);
            self.counts_changed(st);
        })
        .1
    }

    /// Hands `item` to the next consumer in round-robin order that has credit; false if
    /// none has.
    fn hand_over(
        self: &Arc<Self>,
        consumers: &[Arc<Consumer>],
        next: &mut usize,
        item: &Queued,
    ) -> bool {
        let eligible = if self.spec.single_active {
            consumers.len().min(1)
        } else {
            consumers.len()
        };
        if eligible == 0 {
            return false;
        }
        let start = *next % eligible;
        for i in 0..eligible {
            let idx = (start + i) % eligible;
            if consumers[idx].try_deliver(self, item) {
                *next = idx + 1;
                return true;
            }
        }
        false
    }

    fn delivered(&self) {
        self.last_delivery_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn deliver_locked(self: &Arc<Self>, st: &mut QueueState) {
        self.expire_locked(st);
        let mut delivered = false;
        loop {
            let QueueState {
                ready,
                consumers,
                next,
                ..
            } = &mut *st;
            if consumers.is_empty() {
                break;
            }
            match ready.offer_front(|item| self.hand_over(consumers, next, item)) {
                Some(true) => delivered = true,
                Some(false) | None => break,
            }
        }
        if delivered {
            self.delivered();
        }
    }

    /// Takes the first ready message (`basic.get`, which counts as use for `x-expires`),
    /// with the count left behind.
    pub fn get(&self) -> (Option<(Queued, usize)>, Deaths) {
        self.with_state(|st| {
            st.last_used = now_ms();
            self.expire_locked(st);
            let item = st.ready.pop_front()?;
            self.counts_changed(st);
            Some((item, st.ready.len()))
        })
    }

    /// Records a use for `x-expires` (a declare or redeclare of the queue).
    pub fn touch(&self) {
        self.state.lock().last_used = now_ms();
    }

    /// What a listing shows of the queue now, after expiring what is due (hand the deaths
    /// to the vhost, as with [`Queue::counts`]).
    pub fn snapshot(&self) -> (QueueSnapshot, Deaths) {
        self.with_state(|st| {
            self.expire_locked(st);
            self.counts_changed(st);
            QueueSnapshot {
                ready: st.ready.len(),
                ready_bytes: st.ready.bytes(),
                consumers: st.consumers.len(),
                unacked: self.unacked.load(Ordering::Relaxed),
            }
        })
    }

    /// (ready messages, consumers), after expiring what is due.
    pub fn counts(&self) -> ((usize, usize), Deaths) {
        self.with_state(|st| {
            self.expire_locked(st);
            self.counts_changed(st);
            (st.ready.len(), st.consumers.len())
        })
    }

    /// The expiry driver's visit: expires a slice of what is due; reports whether the queue
    /// expired unused, whether more is due at once, or when to come back (epoch ms, [`NEVER`]
    /// for "when woken"), with what died.
    pub fn tick(&self) -> (Visit, Deaths) {
        self.with_state(|st| {
            if self.is_deleted() {
                return Visit::Deleted;
            }
            let more = self.expire_some(st, EXPIRY_SLICE);
            self.counts_changed(st);
            if more {
                return Visit::Again;
            }
            let idle_at = match self.spec.limits.expires {
                Some(expires) if st.consumers.is_empty() => st.last_used.saturating_add(expires),
                _ => NEVER,
            };
            if idle_at <= now_ms() {
                return Visit::Unused;
            }
            let next = st.ready.next_deadline().unwrap_or(NEVER).min(idle_at);
            st.armed = next;
            Visit::Next(next)
        })
    }

    /// Whether the queue has gone unused for its `x-expires` (checked again under the
    /// catalogue lock before it is deleted).
    pub fn is_unused_for_expires(&self) -> bool {
        let st = self.state.lock();
        self.spec.limits.expires.is_some_and(|expires| {
            st.consumers.is_empty() && st.last_used.saturating_add(expires) <= now_ms()
        })
    }

    /// Checks that a consumer (exclusive or not) could be added now (403 otherwise).
    pub fn check_can_consume(&self, exclusive: bool) -> Result<(), AmqpError> {
        let st = self.state.lock();
        self.check_exclusive_locked(&st, exclusive)
    }

    fn check_exclusive_locked(&self, st: &QueueState, exclusive: bool) -> Result<(), AmqpError> {
        if st.consumers.iter().any(|c| c.exclusive) || (exclusive && !st.consumers.is_empty()) {
            return Err(replies::queue_in_exclusive_use(
                &self.vhost,
                &self.spec.name,
            ));
        }
        Ok(())
    }

    /// Adds a consumer, enforcing exclusive consumers, then delivers.
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Arc<Consumer>,
    ) -> (Result<(), AmqpError>, Deaths) {
        self.with_state(|st| {
            if self.is_deleted() {
                return Err(replies::no_queue(&self.vhost, &self.spec.name));
            }
            self.check_exclusive_locked(st, consumer.exclusive)?;
            st.consumers.push(consumer);
            st.had_consumer = true;
            self.deliver_locked(st);
            self.counts_changed(st);
            Ok(())
        })
    }

    /// Removes the consumer `tag` of `channel`. The last one leaving starts the
    /// `x-expires` clock.
    pub fn remove_consumer(self: &Arc<Self>, consumer: &Arc<Consumer>) -> ConsumerRemoved {
        let mut st = self.state.lock();
        let before = st.consumers.len();
        st.consumers.retain(|c| !Arc::ptr_eq(c, consumer));
        if st.consumers.len() == before {
            return ConsumerRemoved::NotFound;
        }
        if st.next > st.consumers.len() {
            st.next = 0;
        }
        self.counts_changed(&st);
        if st.consumers.is_empty() {
            let now = now_ms();
            st.last_used = now;
            if let Some(expires) = self.spec.limits.expires {
                self.schedule(&mut st, now.saturating_add(expires));
            }
        }
        if st.consumers.is_empty() && st.had_consumer && self.spec.auto_delete {
            ConsumerRemoved::LastOfAutoDelete
        } else {
            ConsumerRemoved::Removed
        }
    }

    /// Drops every ready message, returning how many (not dead-lettered, as in RabbitMQ).
    pub fn purge(&self) -> usize {
        let mut st = self.state.lock();
        let n = st.ready.clear(|item| self.forget_stored(item.stored));
        self.counts_changed(&st);
        n
    }

    /// Marks the queue deleted; returns its ready count and its consumers. (Its stored
    /// messages are forgotten all at once by the vhost.)
    pub(crate) fn mark_deleted(&self) -> (usize, Vec<Arc<Consumer>>) {
        let mut st = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        let n = st.ready.clear(drop);
        self.counts_changed(&st);
        self.wake.notify_one();
        (n, std::mem::take(&mut st.consumers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Properties, ShortStr};
    use bytes::{Bytes, BytesMut};

    /// A sink that takes every delivery and keeps the bytes.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<BytesMut>);

    impl DeliverySink for Recorder {
        fn accepts_deliveries(&self) -> bool {
            true
        }
        fn push_frames(&self, write: &mut dyn FnMut(&mut BytesMut)) {
            write(&mut self.0.lock());
        }
    }

    /// Enqueues, with no dead-lettering configured (nothing may die into the void unseen).
    fn put(q: &Arc<Queue>, message: Message) -> Enqueued {
        let mut dead = Vec::new();
        let outcome = q.enqueue(message, None, &mut dead);
        assert!(
            dead.is_empty(),
            "no dead-letter exchange: nothing to dead-letter"
        );
        outcome
    }

    fn count(q: &Queue) -> usize {
        q.counts().0.0
    }

    fn take(q: &Queue) -> Option<(Queued, usize)> {
        q.get().0
    }

    fn queue(single_active: bool) -> Arc<Queue> {
        queue_with(single_active, QueueLimits::default())
    }

    fn queue_with(single_active: bool, limits: QueueLimits) -> Arc<Queue> {
        Queue::new(
            1,
            QueueSpec {
                name: "q".into(),
                durable: false,
                exclusive_owner: None,
                auto_delete: true,
                arguments: FieldTable::default(),
                single_active,
                limits,
            },
            "/".into(),
            None,
        )
    }

    fn message() -> Message {
        Message::new(
            &ShortStr::empty(),
            &ShortStr::from_static("q"),
            &Properties::empty(),
            &Bytes::from_static(b"x"),
        )
    }

    fn consumer(q: &Arc<Queue>, tag: &'static str, prefetch: u16) -> Arc<Consumer> {
        let channel = DeliveryChannel::new(1, 131_072, 1, true, Arc::new(Recorder::default()));
        Arc::new(Consumer {
            tag: ShortStr::from_static(tag),
            channel,
            queue: q.clone(),
            no_ack: false,
            exclusive: false,
            prefetch,
            unacked: Default::default(),
        })
    }

    #[test]
    fn deliveries_round_robin_within_prefetch() {
        let q = queue(false);
        let a = consumer(&q, "a", 2);
        let b = consumer(&q, "b", 1);
        q.add_consumer(a.clone()).0.expect("added");
        q.add_consumer(b.clone()).0.expect("added");
        for _ in 0..5 {
            put(&q, message());
        }
        assert_eq!(a.unacked.load(Ordering::Relaxed), 2);
        assert_eq!(b.unacked.load(Ordering::Relaxed), 1);
        assert_eq!(count(&q), 2);
    }

    #[test]
    fn single_active_consumer_gets_everything() {
        let q = queue(true);
        let a = consumer(&q, "a", 0);
        let b = consumer(&q, "b", 0);
        q.add_consumer(a.clone()).0.expect("added");
        q.add_consumer(b.clone()).0.expect("added");
        for _ in 0..3 {
            put(&q, message());
        }
        assert_eq!(a.unacked.load(Ordering::Relaxed), 3);
        assert_eq!(b.unacked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn last_consumer_of_an_auto_delete_queue_is_reported() {
        let q = queue(false);
        let a = consumer(&q, "a", 0);
        q.add_consumer(a.clone()).0.expect("added");
        assert_eq!(q.remove_consumer(&a), ConsumerRemoved::LastOfAutoDelete);
        assert_eq!(q.remove_consumer(&a), ConsumerRemoved::NotFound);
    }

    #[test]
    fn requeued_messages_come_first_and_redelivered() {
        let q = queue(false);
        put(&q, message());
        assert!(
            q.requeue(vec![(message(), NEVER, None)].into_iter())
                .is_empty()
        );
        let (first, left) = take(&q).expect("a message");
        assert!(first.redelivered);
        assert_eq!(left, 1);
    }

    fn body(item: &Queued) -> &[u8] {
        item.message.body()
    }

    fn numbered(n: u8) -> Message {
        Message::new(
            &ShortStr::empty(),
            &ShortStr::from_static("q"),
            &Properties::empty(),
            &Bytes::from(vec![n; usize::from(n)]),
        )
    }

    #[test]
    fn drop_head_keeps_the_newest_within_both_limits() {
        let limits = QueueLimits {
            max_length: Some(3),
            max_length_bytes: Some(8),
            ..QueueLimits::default()
        };
        let q = queue_with(false, limits);
        for n in 1..=4 {
            assert_eq!(put(&q, numbered(n)), Enqueued::Accepted);
        }
        // Four messages of 1..4 bytes: the length limit drops 1, the byte limit then 2.
        let left: Vec<u8> = std::iter::from_fn(|| take(&q))
            .map(|(i, _)| body(&i)[0])
            .collect();
        assert_eq!(left, [3, 4]);
    }

    #[test]
    fn reject_publish_refuses_once_full_and_unacked_do_not_count() {
        let limits = QueueLimits {
            max_length: Some(1),
            overflow: Overflow::RejectPublish,
            ..QueueLimits::default()
        };
        let q = queue_with(false, limits);
        assert_eq!(put(&q, message()), Enqueued::Accepted);
        assert_eq!(put(&q, message()), Enqueued::Refused);
        // Taken out (as by basic.get without ack): no longer ready, so room again.
        let _unacked = take(&q).expect("a message");
        assert_eq!(put(&q, message()), Enqueued::Accepted);
        assert_eq!(count(&q), 1);
    }

    #[test]
    fn ttl_zero_goes_to_a_waiting_consumer_or_nowhere() {
        let limits = QueueLimits {
            message_ttl: Some(0),
            ..QueueLimits::default()
        };
        let q = queue_with(false, limits);
        put(&q, message());
        assert_eq!(count(&q), 0, "nobody waiting: expired at once");
        let a = consumer(&q, "a", 1);
        q.add_consumer(a.clone()).0.expect("added");
        put(&q, message());
        assert_eq!(
            a.unacked.load(Ordering::Relaxed),
            1,
            "delivered to the waiting consumer"
        );
        put(&q, message());
        assert_eq!(count(&q), 0, "no credit left: expired, not queued");
    }

    #[test]
    fn enqueues_deliveries_and_deaths_are_counted_on_the_queue_and_the_channel() {
        let limits = QueueLimits {
            max_length: Some(1),
            ..QueueLimits::default()
        };
        let q = queue_with(false, limits);
        put(&q, message());
        put(&q, message());
        let a = consumer(&q, "a", 0);
        q.add_consumer(a.clone()).0.expect("added");
        assert!(
            q.requeue(vec![(message(), NEVER, None)].into_iter())
                .is_empty()
        );
        let on_queue = q.stats().counters.snapshot();
        assert_eq!(on_queue.get(Counter::Publish), 2);
        assert_eq!(on_queue.get(Counter::DiedMaxlen), 1, "drop-head");
        assert_eq!(
            on_queue.get(Counter::Deliver),
            2,
            "the survivor, then the requeued one"
        );
        assert_eq!(on_queue.get(Counter::Redeliver), 1);
        let on_channel = a.channel.stats.counters.snapshot();
        assert_eq!(
            (
                on_channel.get(Counter::Deliver),
                on_channel.get(Counter::Redeliver)
            ),
            (2, 1)
        );
        assert!(
            q.reject(vec![(message(), None)]).is_empty(),
            "no dead-letter exchange"
        );
        assert_eq!(q.stats().counters.get(Counter::DiedRejected), 1);
    }

    #[test]
    fn a_requeued_message_keeps_its_deadline() {
        let q = queue(false);
        let now = now_ms();
        let deaths = q.requeue(
            vec![
                (message(), now.saturating_sub(1), None),
                (message(), now + 60_000, None),
            ]
            .into_iter(),
        );
        assert!(deaths.is_empty(), "no dead-letter exchange");
        // The first was already past its deadline when it came back.
        let (item, left) = take(&q).expect("one message");
        assert_eq!((item.deadline, left), (now + 60_000, 0));
        assert!(item.redelivered);
    }
}
