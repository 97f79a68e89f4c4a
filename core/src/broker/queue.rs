//! A message queue: ready messages in order, its consumers, round-robin delivery.
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
//! Invariants: a message is either in `ready` or in exactly one channel's unacked map (or
//! gone); requeued messages go back to the front, oldest first, marked redelivered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::consumer::Consumer;
use super::message::Message;
use crate::error::AmqpError;

/// Ready messages (with consumers present) above which publishers pause.
pub const BACKLOG_HIGH: usize = 1024;
/// Ready messages at or below which paused publishers resume.
pub const BACKLOG_LOW: usize = 256;

/// A backlog counts only if a consumer took a message within this many milliseconds.
const ACTIVE_WINDOW_MS: u64 = 100;

/// Longest single pause of a publishing connection.
pub const MAX_PAUSE: Duration = Duration::from_millis(50);

/// A message waiting in a queue.
#[derive(Clone, Debug)]
pub struct Queued {
    /// The message.
    pub message: Arc<Message>,
    /// Delivered before and requeued.
    pub redelivered: bool,
}

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
}

#[derive(Debug, Default)]
struct QueueState {
    ready: VecDeque<Queued>,
    consumers: Vec<Arc<Consumer>>,
    next: usize,
    had_consumer: bool,
    bindings: Vec<IncomingBinding>,
}

/// A queue.
#[derive(Debug)]
pub struct Queue {
    /// Destination id in exchange routers.
    pub id: u64,
    /// Declared properties.
    pub spec: QueueSpec,
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
}

/// A process-wide time origin for the coarse timestamps above.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
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
    /// A new, empty queue.
    pub fn new(id: u64, spec: QueueSpec) -> Arc<Queue> {
        Arc::new(Queue {
            id,
            spec,
            deleted: AtomicBool::new(false),
            state: Mutex::new(QueueState::default()),
            ready_len: AtomicUsize::new(0),
            consumers: AtomicUsize::new(0),
            publishers_waiting: AtomicBool::new(false),
            space: Notify::new(),
            last_delivery_ms: AtomicU64::new(0),
        })
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

    /// Appends a message and delivers what it can. False if the queue is gone.
    pub fn enqueue(self: &Arc<Self>, message: Arc<Message>) -> bool {
        let mut st = self.state.lock();
        if self.is_deleted() {
            return false;
        }
        st.ready.push_back(Queued {
            message,
            redelivered: false,
        });
        self.deliver_locked(&mut st);
        self.counts_changed(&st);
        true
    }

    /// Puts messages back at the front (in the given order), marked redelivered.
    pub fn requeue(self: &Arc<Self>, messages: impl DoubleEndedIterator<Item = Arc<Message>>) {
        let mut st = self.state.lock();
        if self.is_deleted() {
            return;
        }
        for message in messages.rev() {
            st.ready.push_front(Queued {
                message,
                redelivered: true,
            });
        }
        self.deliver_locked(&mut st);
        self.counts_changed(&st);
    }

    /// Delivers to consumers with credit (after an ack, qos change, or resume).
    pub fn drain(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.deliver_locked(&mut st);
        self.counts_changed(&st);
    }

    fn deliver_locked(self: &Arc<Self>, st: &mut QueueState) {
        let mut delivered = false;
        loop {
            let eligible = if self.spec.single_active {
                st.consumers.len().min(1)
            } else {
                st.consumers.len()
            };
            if eligible == 0 {
                break;
            }
            let Some(item) = st.ready.front() else {
                break;
            };
            let start = st.next % eligible;
            let mut chosen = None;
            for i in 0..eligible {
                let idx = (start + i) % eligible;
                if st.consumers[idx].try_deliver(self, item) {
                    chosen = Some(idx);
                    break;
                }
            }
            match chosen {
                Some(idx) => {
                    st.next = idx + 1;
                    st.ready.pop_front();
                    delivered = true;
                }
                None => break,
            }
        }
        if delivered {
            self.last_delivery_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Takes the first ready message (`basic.get`), with the count left behind.
    pub fn get(&self) -> Option<(Queued, usize)> {
        let mut st = self.state.lock();
        let item = st.ready.pop_front()?;
        self.counts_changed(&st);
        Some((item, st.ready.len()))
    }

    /// Ready messages.
    pub fn message_count(&self) -> usize {
        self.state.lock().ready.len()
    }

    /// Consumers.
    pub fn consumer_count(&self) -> usize {
        self.state.lock().consumers.len()
    }

    /// (ready messages, consumers).
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.ready.len(), st.consumers.len())
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
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Err(AmqpError::not_found(format!(
                "no queue '{}' in vhost '/'",
                self.spec.name
            )));
        }
        Self::check_exclusive_locked(&self.spec.name, &st, consumer.exclusive)?;
        st.consumers.push(consumer);
        st.had_consumer = true;
        self.deliver_locked(&mut st);
        self.counts_changed(&st);
        Ok(())
    }

    /// Removes the consumer `tag` of `channel`.
    pub fn remove_consumer(&self, consumer: &Arc<Consumer>) -> ConsumerRemoved {
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
        if st.consumers.is_empty() && st.had_consumer && self.spec.auto_delete {
            ConsumerRemoved::LastOfAutoDelete
        } else {
            ConsumerRemoved::Removed
        }
    }

    /// Drops every ready message, returning how many.
    pub fn purge(&self) -> usize {
        let mut st = self.state.lock();
        let n = st.ready.len();
        st.ready.clear();
        self.counts_changed(&st);
        n
    }

    /// Marks the queue deleted; returns its ready count, consumers and incoming bindings.
    pub(crate) fn mark_deleted(&self) -> (usize, Vec<Arc<Consumer>>, Vec<IncomingBinding>) {
        let mut st = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        let n = st.ready.len();
        st.ready.clear();
        self.counts_changed(&st);
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
        Queue::new(
            1,
            QueueSpec {
                name: "q".into(),
                durable: false,
                exclusive_owner: None,
                auto_delete: true,
                arguments: FieldTable::default(),
                single_active,
            },
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
        q.requeue(vec![message()].into_iter());
        let (first, left) = q.get().expect("a message");
        assert!(first.redelivered);
        assert_eq!(left, 1);
    }
}
