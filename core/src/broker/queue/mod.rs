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
//! Time-driven work (message deadlines, `x-expires`) is done by a small task per queue
//! ([`driver`]), started the first time the queue has something to wait for, that sleeps
//! until the earliest due time and is woken when an earlier one appears.
//!
//! Dying messages (expired, dropped by `x-max-length`, rejected) are collected under the
//! lock and dead-lettered after it is released ([`Queue::bury`] → `Broker::dead_letter`), so
//! routing them never nests one queue's lock inside another's.
//!
//! Invariants: a message is either in `ready` or in exactly one channel's unacked map (or
//! gone); requeued messages go back to the front, oldest first, marked redelivered, with the
//! deadline they got at enqueue; an expired message is never delivered nor counted (every
//! path that delivers or counts first expires what is due).

mod driver;
mod ready;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::consumer::Consumer;
use super::dead_lettering::DeadLetterNames;
use super::message::Message;
use super::vhost::Broker;
use crate::dead_letter::{Overflow, QueueLimits, Reason, parse_expiration};
use crate::error::AmqpError;
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

/// A binding whose destination is this queue, kept so deleting the queue removes it.
#[derive(Clone, Debug)]
pub struct IncomingBinding {
    /// Source exchange name.
    pub exchange: String,
    /// Binding key.
    pub key: String,
    /// Normalised binding arguments.
    pub arguments: FieldTable,
}

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
    pub message: Arc<Message>,
    /// Why it died.
    pub reason: Reason,
}

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
    bindings: Vec<IncomingBinding>,
    /// Died under the lock; dead-lettered once it is released.
    dead: Vec<Dead>,
    /// Last use for `x-expires` (queue clock, ms).
    last_used: u64,
    /// When the driver will next look ([`NEVER`]: it waits to be woken).
    armed: u64,
    /// The driver task was started.
    driving: bool,
}

/// A queue.
#[derive(Debug)]
pub struct Queue {
    /// Destination id in exchange routers.
    pub id: u64,
    /// Declared properties.
    pub spec: QueueSpec,
    /// Where dead letters are routed.
    broker: Weak<Broker>,
    /// The dead-letter exchange and routing key, ready to put in a message.
    dead_letter_names: Option<DeadLetterNames>,
    deleted: AtomicBool,
    state: Mutex<QueueState>,
    /// Mirrors of the ready count and consumer count, for lock-free flow checks.
    ready_len: AtomicUsize,
    consumers: AtomicUsize,
    /// Set by a paused publisher; cleared (and waiters woken) once below the low mark.
    publishers_waiting: AtomicBool,
    space: Notify,
    /// When a consumer last got a message, in ms since [`epoch`].
    last_delivery_ms: AtomicU64,
    /// Wakes the driver when something is due earlier than it planned.
    wake: Arc<Notify>,
    /// A problem with this queue's dead-lettering was logged at warn already.
    warned: AtomicBool,
}

/// A process-wide time origin for the queue clock.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The queue clock: milliseconds since [`epoch`], monotonic. Deadlines and `x-expires` are
/// kept in it.
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
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
    /// A new, empty queue whose dead letters go through `broker`.
    pub fn new(id: u64, spec: QueueSpec, broker: Weak<Broker>) -> Arc<Queue> {
        let levels = spec.limits.max_priority.map_or(1, |p| usize::from(p) + 1);
        let now = now_ms();
        let dead_letter_names = DeadLetterNames::of(&spec.name, &spec.limits);
        let queue = Arc::new(Queue {
            id,
            spec,
            broker,
            dead_letter_names,
            deleted: AtomicBool::new(false),
            state: Mutex::new(QueueState {
                ready: Ready::new(levels),
                consumers: Vec::new(),
                next: 0,
                had_consumer: false,
                bindings: Vec::new(),
                dead: Vec::new(),
                last_used: now,
                armed: NEVER,
                driving: false,
            }),
            ready_len: AtomicUsize::new(0),
            consumers: AtomicUsize::new(0),
            publishers_waiting: AtomicBool::new(false),
            space: Notify::new(),
            last_delivery_ms: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            warned: AtomicBool::new(false),
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

    /// Whether the queue was deleted (handles to it are stale).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Whether `connection` may use this queue (405 otherwise).
    pub fn check_access(&self, connection: u64) -> Result<(), AmqpError> {
        match self.spec.exclusive_owner {
            Some(owner) if owner != connection => Err(AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '/'. It could be \
                 originally declared on another connection or the exclusive property value does \
                 not match that of the original declaration.",
                self.spec.name
            ))),
            _ => Ok(()),
        }
    }

    /// Runs `f` on the locked state, then dead-letters whatever died meanwhile.
    fn with_state<R>(&self, f: impl FnOnce(&mut QueueState) -> R) -> R {
        let (result, dead) = {
            let mut st = self.state.lock();
            let result = f(&mut st);
            (result, std::mem::take(&mut st.dead))
        };
        self.bury(dead);
        result
    }

    /// Whether messages dying here are dead-lettered (else they are just dropped).
    fn dead_letters(&self) -> bool {
        self.dead_letter_names.is_some()
    }

    /// Dead-letters `dead` through the queue's `x-dead-letter-exchange`. Never called with
    /// the queue's lock held.
    fn bury(&self, dead: Vec<Dead>) {
        if dead.is_empty() || !self.dead_letters() {
            return;
        }
        if let Some(broker) = self.broker.upgrade() {
            broker.dead_letter(self, dead);
        }
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

    /// Dead-letters messages a client rejected (`basic.reject` / `basic.nack` without
    /// requeue).
    pub fn reject(&self, messages: impl IntoIterator<Item = Arc<Message>>) {
        if !self.dead_letters() {
            return;
        }
        let dead = messages
            .into_iter()
            .map(|message| Dead {
                message,
                reason: Reason::Rejected,
            })
            .collect();
        self.bury(dead);
    }

    /// Records a message that died under the lock, for [`Queue::bury`] once it is released.
    fn kill(&self, dead: &mut Vec<Dead>, message: Arc<Message>, reason: Reason) {
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
            self.kill(dead, item.message, Reason::Expired);
        })
    }

    /// Removes every message whose deadline has passed (before delivering or counting).
    fn expire_locked(&self, st: &mut QueueState) {
        self.expire_some(st, usize::MAX);
    }

    /// Makes sure the driver looks at the queue by `at` (queue clock).
    fn schedule(self: &Arc<Self>, st: &mut QueueState, at: u64) {
        if at >= st.armed {
            return;
        }
        st.armed = at;
        if st.driving {
            self.wake.notify_one();
        } else {
            st.driving = driver::spawn(self);
        }
    }

    /// The deadline of a message entering now: the lower of the queue's `x-message-ttl` and
    /// the message's `expiration` (validated at publish), from `now`.
    fn deadline_of(&self, message: &Message, now: impl FnOnce() -> u64) -> u64 {
        let own = message
            .properties
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
            self.kill(&mut st.dead, item.message, Reason::Maxlen);
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
    /// TTL is already over and no consumer took it, then applies `drop-head`.
    pub fn enqueue(self: &Arc<Self>, message: Arc<Message>) -> Enqueued {
        self.with_state(|st| self.enqueue_locked(st, message))
    }

    /// [`Queue::enqueue`] for the dead-letter router, which handles the deaths it causes
    /// itself (appended to `dead`) rather than recursing.
    pub(crate) fn enqueue_collecting(
        self: &Arc<Self>,
        message: Arc<Message>,
        dead: &mut Vec<Dead>,
    ) -> Enqueued {
        let mut st = self.state.lock();
        let outcome = self.enqueue_locked(&mut st, message);
        dead.append(&mut st.dead);
        outcome
    }

    fn enqueue_locked(self: &Arc<Self>, st: &mut QueueState, message: Arc<Message>) -> Enqueued {
        if self.is_deleted() {
            return Enqueued::Gone;
        }
        if self.spec.limits.overflow != Overflow::DropHead
            && self.would_overflow(st, message.body_len())
        {
            if self.spec.limits.overflow == Overflow::RejectPublishDlx {
                self.kill(&mut st.dead, message, Reason::Maxlen);
            }
            return Enqueued::Refused;
        }
        let mut now = NEVER;
        let deadline = self.deadline_of(&message, || {
            now = now_ms();
            now
        });
        let item = Queued::new(message, deadline, false);
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
            self.kill(&mut st.dead, item.message, Reason::Expired);
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
    /// the deadline it got at enqueue (one that passed meanwhile expires now).
    pub fn requeue(
        self: &Arc<Self>,
        messages: impl DoubleEndedIterator<Item = (Arc<Message>, u64)>,
    ) {
        self.with_state(|st| {
            if self.is_deleted() {
                return;
            }
            let now = now_ms();
            let mut earliest = NEVER;
            for (message, deadline) in messages.rev() {
                if deadline <= now {
                    self.kill(&mut st.dead, message, Reason::Expired);
                    continue;
                }
                earliest = earliest.min(deadline);
                st.ready
                    .push_front(Queued::new(message, deadline, true), now);
            }
            if earliest != NEVER {
                self.schedule(st, earliest);
            }
            self.deliver_locked(st);
            self.drop_head_locked(st);
            self.counts_changed(st);
        });
    }

    /// Delivers to consumers with credit (after an ack, qos change, or resume).
    pub fn drain(self: &Arc<Self>) {
        self.with_state(|st| {
            self.deliver_locked(st);
            self.counts_changed(st);
        });
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
            let Some(item) = ready.front() else {
                break;
            };
            if !self.hand_over(consumers, next, item) {
                break;
            }
            ready.pop_front();
            delivered = true;
        }
        if delivered {
            self.delivered();
        }
    }

    /// Takes the first ready message (`basic.get`, which counts as use for `x-expires`),
    /// with the count left behind.
    pub fn get(&self) -> Option<(Queued, usize)> {
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

    /// Ready messages.
    pub fn message_count(&self) -> usize {
        self.counts().0
    }

    /// (ready messages, consumers), after expiring what is due.
    pub fn counts(&self) -> (usize, usize) {
        self.with_state(|st| {
            self.expire_locked(st);
            self.counts_changed(st);
            (st.ready.len(), st.consumers.len())
        })
    }

    /// The driver's visit: expires (and dead-letters) a slice of what is due; reports
    /// whether the queue expired unused, whether more is due at once, or when to come back
    /// (queue clock, [`NEVER`] for "when woken").
    fn tick(&self) -> driver::Visit {
        self.with_state(|st| {
            if self.is_deleted() {
                return driver::Visit::Deleted;
            }
            let more = self.expire_some(st, driver::SLICE);
            self.counts_changed(st);
            if more {
                return driver::Visit::Again;
            }
            let idle_at = match self.spec.limits.expires {
                Some(expires) if st.consumers.is_empty() => st.last_used.saturating_add(expires),
                _ => NEVER,
            };
            if idle_at <= now_ms() {
                return driver::Visit::Unused;
            }
            let next = st.ready.next_deadline().unwrap_or(NEVER).min(idle_at);
            st.armed = next;
            driver::Visit::Next(next)
        })
    }

    /// Whether the queue has gone unused for its `x-expires` (checked again under the
    /// catalogue lock before it is deleted).
    pub(crate) fn is_unused_for_expires(&self) -> bool {
        let st = self.state.lock();
        self.spec.limits.expires.is_some_and(|expires| {
            st.consumers.is_empty() && st.last_used.saturating_add(expires) <= now_ms()
        })
    }

    /// Checks that a consumer (exclusive or not) could be added now (403 otherwise).
    pub fn check_can_consume(&self, exclusive: bool) -> Result<(), AmqpError> {
        let st = self.state.lock();
        Self::check_exclusive_locked(&self.spec.name, &st, exclusive)
    }

    fn check_exclusive_locked(
        name: &str,
        st: &QueueState,
        exclusive: bool,
    ) -> Result<(), AmqpError> {
        if st.consumers.iter().any(|c| c.exclusive) || (exclusive && !st.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format!(
                "queue '{name}' in vhost '/' in exclusive use"
            )));
        }
        Ok(())
    }

    /// Adds a consumer, enforcing exclusive consumers, then delivers.
    pub fn add_consumer(self: &Arc<Self>, consumer: Arc<Consumer>) -> Result<(), AmqpError> {
        self.with_state(|st| {
            if self.is_deleted() {
                return Err(AmqpError::not_found(format!(
                    "no queue '{}' in vhost '/'",
                    self.spec.name
                )));
            }
            Self::check_exclusive_locked(&self.spec.name, st, consumer.exclusive)?;
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
        let n = st.ready.clear();
        self.counts_changed(&st);
        n
    }

    /// Marks the queue deleted; returns its ready count, consumers and incoming bindings.
    pub(crate) fn mark_deleted(&self) -> (usize, Vec<Arc<Consumer>>, Vec<IncomingBinding>) {
        let mut st = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        let n = st.ready.clear();
        self.counts_changed(&st);
        self.wake.notify_one();
        (
            n,
            std::mem::take(&mut st.consumers),
            std::mem::take(&mut st.bindings),
        )
    }

    /// Records a binding to this queue; false if it was already there.
    pub(crate) fn add_incoming(&self, binding: IncomingBinding) {
        self.state.lock().bindings.push(binding);
    }

    /// Forgets a binding to this queue.
    pub(crate) fn remove_incoming(&self, exchange: &str, key: &str, arguments: &FieldTable) {
        self.state
            .lock()
            .bindings
            .retain(|b| !(b.exchange == exchange && b.key == key && &b.arguments == arguments));
    }

    /// Forgets every binding from `exchange` (it was deleted).
    pub(crate) fn remove_incoming_from(&self, exchange: &str) {
        self.state
            .lock()
            .bindings
            .retain(|b| b.exchange != exchange);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::consumer::DeliveryChannel;
    use crate::protocol::{Properties, ShortStr};
    use crate::server::outbox::Outbox;
    use bytes::Bytes;

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
            Weak::new(),
        )
    }

    fn message() -> Arc<Message> {
        Arc::new(Message {
            exchange: ShortStr::empty(),
            routing_key: ShortStr::from_static("q"),
            properties: Properties::empty(),
            body: Bytes::from_static(b"x"),
        })
    }

    fn consumer(q: &Arc<Queue>, tag: &'static str, prefetch: u16) -> Arc<Consumer> {
        let channel = DeliveryChannel::new(1, 131_072, 1, true, Outbox::new());
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
        q.add_consumer(a.clone()).expect("added");
        q.add_consumer(b.clone()).expect("added");
        for _ in 0..5 {
            q.enqueue(message());
        }
        assert_eq!(a.unacked.load(Ordering::Relaxed), 2);
        assert_eq!(b.unacked.load(Ordering::Relaxed), 1);
        assert_eq!(q.message_count(), 2);
    }

    #[test]
    fn single_active_consumer_gets_everything() {
        let q = queue(true);
        let a = consumer(&q, "a", 0);
        let b = consumer(&q, "b", 0);
        q.add_consumer(a.clone()).expect("added");
        q.add_consumer(b.clone()).expect("added");
        for _ in 0..3 {
            q.enqueue(message());
        }
        assert_eq!(a.unacked.load(Ordering::Relaxed), 3);
        assert_eq!(b.unacked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn last_consumer_of_an_auto_delete_queue_is_reported() {
        let q = queue(false);
        let a = consumer(&q, "a", 0);
        q.add_consumer(a.clone()).expect("added");
        assert_eq!(q.remove_consumer(&a), ConsumerRemoved::LastOfAutoDelete);
        assert_eq!(q.remove_consumer(&a), ConsumerRemoved::NotFound);
    }

    #[test]
    fn requeued_messages_come_first_and_redelivered() {
        let q = queue(false);
        q.enqueue(message());
        q.requeue(vec![(message(), NEVER)].into_iter());
        let (first, left) = q.get().expect("a message");
        assert!(first.redelivered);
        assert_eq!(left, 1);
    }

    fn body(item: &Queued) -> &[u8] {
        &item.message.body
    }

    fn numbered(n: u8) -> Arc<Message> {
        Arc::new(Message {
            exchange: ShortStr::empty(),
            routing_key: ShortStr::from_static("q"),
            properties: Properties::empty(),
            body: Bytes::from(vec![n; usize::from(n)]),
        })
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
            assert_eq!(q.enqueue(numbered(n)), Enqueued::Accepted);
        }
        // Four messages of 1..4 bytes: the length limit drops 1, the byte limit then 2.
        let left: Vec<u8> = std::iter::from_fn(|| q.get())
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
        assert_eq!(q.enqueue(message()), Enqueued::Accepted);
        assert_eq!(q.enqueue(message()), Enqueued::Refused);
        // Taken out (as by basic.get without ack): no longer ready, so room again.
        let _unacked = q.get().expect("a message");
        assert_eq!(q.enqueue(message()), Enqueued::Accepted);
        assert_eq!(q.message_count(), 1);
    }

    #[test]
    fn ttl_zero_goes_to_a_waiting_consumer_or_nowhere() {
        let limits = QueueLimits {
            message_ttl: Some(0),
            ..QueueLimits::default()
        };
        let q = queue_with(false, limits);
        q.enqueue(message());
        assert_eq!(q.message_count(), 0, "nobody waiting: expired at once");
        let a = consumer(&q, "a", 1);
        q.add_consumer(a.clone()).expect("added");
        q.enqueue(message());
        assert_eq!(
            a.unacked.load(Ordering::Relaxed),
            1,
            "delivered to the waiting consumer"
        );
        q.enqueue(message());
        assert_eq!(q.message_count(), 0, "no credit left: expired, not queued");
    }

    #[test]
    fn a_requeued_message_keeps_its_deadline() {
        let q = queue(false);
        let now = now_ms();
        q.requeue(
            vec![
                (message(), now.saturating_sub(1)),
                (message(), now + 60_000),
            ]
            .into_iter(),
        );
        // The first was already past its deadline when it came back.
        let (item, left) = q.get().expect("one message");
        assert_eq!((item.deadline, left), (now + 60_000, 0));
        assert!(item.redelivered);
    }
}
