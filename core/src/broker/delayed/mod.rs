//! The `x-delayed-message` exchange type, implemented by the broker itself rather than as a
//! plugin: holding a message until a time and routing it then needs the broker's queues,
//! bindings and a clock, none of which the plugin ABI exposes.
//!
//! A delayed exchange is an ordinary `Exchange` whose router is the *inner* type named by
//! its `x-delayed-type` argument (direct, topic, a loaded plugin, …), with the bindings the
//! broker owns as for any exchange, plus a [`Delayed`]: a [`TimerWheel`] of held messages.
//! The broker's publish path decides to hold a message ([`Delayed::due`], [`Delayed::hold`]);
//! a driver task (`broker::drivers::firing`) sleeps until the wheel's next due time — woken
//! early when an earlier entry arrives — and publishes what fired with the bindings of that
//! moment (a binding made after publish receives the message), following exchange-to-exchange
//! bindings and the alternate exchange like any publish.
//!
//! Where Warren differs from RabbitMQ's plugin (each on purpose):
//! - `mandatory` is checked against the bindings at publish; only a message that routes
//!   nowhere *now* is returned (312) and it is then not held. Nothing is returned at fire time.
//! - A publisher confirm is sent once the message is in the wheel — and, for a persistent
//!   message on a durable exchange, once it is durably in the held store.
//! - Any delay up to the `u64` millisecond range is held (not only < 2^32 ms); `x-deliver-at`
//!   and human durations are accepted ([`due`]).
//! - An unknown `x-delayed-type` is refused with the same 406 as a missing one (RabbitMQ's
//!   text names "an existing exchange type", so one message covers both), and a redeclare
//!   with another `x-delayed-type` is 406 inequivalent arg instead of being ignored.
//! - Pending messages can be counted, listed and cancelled ([`Delayed::list`],
//!   [`Delayed::cancel`]); deleting the exchange drops them.
//!
//! Invariants: a held message is packed into one allocation ([`held`]) so that it does not
//! keep the connection's read buffer alive; a body over [`held::MAX_PACKED_BODY`] is shared
//! rather than copied, and a fired message is rebuilt once and shared by every queue. The
//! wheel's lock is never held while routing (the driver takes the fired entries out
//! first), so it is a leaf lock next to the exchange's bindings. Time in the wheel is epoch
//! milliseconds ([`crate::clock`]), so `x-deliver-at` compares directly, a due time can be
//! stored as it is, and `tokio::time::pause` drives it in tests.

pub mod due;
pub(crate) mod held;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::sync::Notify;

use super::message::Message;
use super::routing_keys::RoutingKeys;
use crate::clock;
use crate::error::AmqpError;
use crate::plugin::ExchangeTypeRegistry;
use crate::protocol::ShortStr;
use crate::scheduler::{TimerId, TimerWheel};
use crate::store::{Durability, ExchangeKey, HeldId, HeldStore, SyncMark};
use due::When;
use held::Held;

/// The type name.
pub const DELAYED_TYPE: &str = "x-delayed-message";
/// The declare argument naming the inner type.
pub const DELAYED_TYPE_ARG: &str = "x-delayed-type";

/// The inner type named by a delayed exchange's declare arguments, checked against the
/// registry: 406 if missing, not a string, unknown, or `x-delayed-message` itself.
pub fn inner_type<'a>(
    arguments: &'a FieldTable,
    registry: &ExchangeTypeRegistry,
) -> Result<&'a str, AmqpError> {
    super::args::text_arg(arguments, DELAYED_TYPE_ARG)
        .filter(|t| *t != DELAYED_TYPE && registry.get(t).is_some())
        .ok_or_else(|| {
            AmqpError::precondition_failed(
                "Invalid argument, 'x-delayed-type' must be an existing exchange type",
            )
        })
}

#[derive(Debug)]
struct Pending {
    wheel: TimerWheel<Held>,
    stopped: bool,
}

/// One pending message as `/api/scheduled` shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PendingInfo {
    /// Id for [`Delayed::cancel`] (valid only for this exchange, until it fires).
    pub id: u64,
    /// Due time, milliseconds since the Unix epoch.
    pub due_ms: u64,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Body size in bytes.
    pub body_size: usize,
}

/// How many wheel slots a scan looks at per lock.
const SCAN_CHUNK: usize = 4096;

/// The edges of [`Delayed::due_histogram`]'s buckets after now, in ms, with their names:
/// next minute, next hour, next day, and later (no edge).
const DUE_BUCKETS: [(&str, Option<u64>); 4] = [
    ("next minute", Some(60_000)),
    ("next hour", Some(3_600_000)),
    ("next day", Some(86_400_000)),
    ("later", None),
];

/// How many pending messages fall due when, as `/api/scheduled/{vhost}/{exchange}/due`
/// shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DueHistogram {
    /// The moment the buckets are relative to (ms since the Unix epoch).
    pub now_ms: u64,
    /// Messages pending; the buckets' counts add up to it.
    pub pending: u64,
    /// False when a bucket edge cut through a wheel slot too full to walk, and that slot
    /// was split by time (see [`TimerWheel::due_counts`]).
    pub exact: bool,
    /// Next minute (with anything overdue), next hour, next day, later.
    pub buckets: Vec<DueBucket>,
}

/// One bucket of a [`DueHistogram`]: messages due in `from_ms..to_ms`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DueBucket {
    /// What the bucket is ("next minute", …).
    pub label: String,
    /// Start (ms since the epoch); the first bucket also holds messages already due.
    pub from_ms: u64,
    /// End, exclusive; `None` for the last, open-ended bucket.
    pub to_ms: Option<u64>,
    /// Messages due in it.
    pub count: u64,
}

/// What a cancel-by-filter did.
#[derive(Debug, Default)]
pub struct Cancelled {
    /// Messages cancelled.
    pub count: usize,
    /// Whether matching messages are left because the query's limit was reached.
    pub more: bool,
    /// The mark at which the cancels are durable, if any was stored.
    pub mark: Option<SyncMark>,
}

/// Which pending messages a listing or a cancel-by-filter is about.
#[derive(Clone, Debug)]
pub struct PendingQuery {
    /// Only those due at or after this (ms since the epoch).
    pub from_ms: Option<u64>,
    /// Only those due before this.
    pub to_ms: Option<u64>,
    /// Only those with this routing key.
    pub routing_key: Option<String>,
    /// Only those after this `(due_ms, id)` (the last of the previous page).
    pub after: Option<(u64, u64)>,
    /// At most this many (a listing).
    pub limit: usize,
}

impl PendingQuery {
    /// Every pending message, no cursor, no limit.
    pub fn everything() -> PendingQuery {
        PendingQuery {
            from_ms: None,
            to_ms: None,
            routing_key: None,
            after: None,
            limit: usize::MAX,
        }
    }

    /// Whether a message due at `due` with `routing_key` is one of them (cursor aside).
    fn matches(&self, due: u64, routing_key: &str) -> bool {
        self.from_ms.is_none_or(|from| due >= from)
            && self.to_ms.is_none_or(|to| due < to)
            && self.routing_key.as_deref().is_none_or(|k| k == routing_key)
    }
}

/// Where a durable delayed exchange writes its persistent held messages.
#[derive(Debug)]
pub struct DelayedStore {
    /// The exchange's name in the store.
    pub key: ExchangeKey,
    /// The store.
    pub held: Arc<dyn HeldStore>,
}

/// What a hold wrote: the mark its confirm waits on, if it was stored.
#[derive(Debug)]
pub enum Holding {
    /// Held in memory only (a transient message, or an exchange that is not durable).
    InMemory,
    /// Written to the held store; durable at this mark.
    Stored(SyncMark),
    /// The store refused the write: held in memory only, and its confirm is a nack.
    Failed,
}

/// The delayed half of an `x-delayed-message` exchange: pending messages and the driver's
/// wake-up signal.
#[derive(Debug)]
pub struct Delayed {
    inner_type: String,
    pending: Mutex<Pending>,
    /// The held store, for a durable exchange.
    store: Option<DelayedStore>,
    /// The exchange's name as the first held message carried it, so that held messages need
    /// not store it (see [`held`]).
    exchange_name: OnceLock<ShortStr>,
    wake: Notify,
    warned: AtomicBool,
    /// Held, fired and cancelled.
    stats: crate::stats::Stats,
}

impl Delayed {
    /// What it counted: held, fired, cancelled.
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.stats
    }

    /// A delayed state routing through `inner_type`, writing persistent messages to `store`
    /// if it has one. Must be called inside a tokio runtime (its clock is tokio's).
    pub fn new(inner_type: &str, store: Option<DelayedStore>) -> Arc<Delayed> {
        Arc::new(Delayed {
            inner_type: inner_type.to_owned(),
            store,
            pending: Mutex::new(Pending {
                wheel: TimerWheel::new(clock::now_ms()),
                stopped: false,
            }),
            exchange_name: OnceLock::new(),
            wake: Notify::new(),
            warned: AtomicBool::new(false),
            stats: crate::stats::Stats::default(),
        })
    }

    /// The inner type's name.
    pub fn inner_type(&self) -> &str {
        &self.inner_type
    }

    /// When a message with these headers is due (`None`: route it now). An unreadable
    /// header is logged at warn once per exchange and routed now.
    pub fn due(&self, exchange: &str, headers: Option<&[u8]>) -> Option<u64> {
        match due::when(headers, clock::now_ms_ceil()) {
            When::Now => None,
            When::At(t) => Some(t),
            When::Invalid(why) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        exchange,
                        "unreadable delay header ({why}); routing at once (logged once per exchange)"
                    );
                }
                None
            }
        }
    }

    /// Holds `message` until `due`, packed (the publish's buffers are let go); a persistent
    /// one on a durable exchange is written to the held store first. A message arriving
    /// while the exchange is being deleted is dropped with it.
    pub fn hold(&self, due: u64, message: Message, keys: &RoutingKeys) -> Holding {
        let extra: Vec<&[u8]> = keys.extra().collect();
        let (stored, holding) = match &self.store {
            Some(store) if message.properties().is_persistent() => {
                let owned: Vec<Vec<u8>> = extra.iter().map(|k| k.to_vec()).collect();
                match store.held.hold(&store.key, due, &message, &owned) {
                    Ok((id, mark)) => (Some(id), Holding::Stored(mark)),
                    Err(e) => {
                        tracing::error!(
                            exchange = %store.key.exchange,
                            "delayed message not stored (held in memory only, publish nacked): {e}"
                        );
                        (None, Holding::Failed)
                    }
                }
            }
            _ => (None, Holding::InMemory),
        };
        if self.insert(due, &message, &extra, stored) {
            self.stats.counters.incr(crate::stats::Counter::Held);
        }
        holding
    }

    /// Puts back what the held store kept (at start): in memory only, with its store id.
    pub fn restore(&self, record: crate::store::HeldRecord) {
        let keys: Vec<&[u8]> = record.keys.iter().map(Vec::as_slice).collect();
        self.insert(record.due, &record.message, &keys, Some(record.id));
    }

    /// Puts a packed message in the wheel; false if the exchange is being deleted.
    fn insert(&self, due: u64, message: &Message, keys: &[&[u8]], stored: Option<HeldId>) -> bool {
        let name = self
            .exchange_name
            .get_or_init(|| ShortStr::copy_from_str(message.exchange()).unwrap_or_default());
        let held = Held::pack(message, keys, name, stored);
        let earlier = {
            let mut pending = self.pending.lock();
            if pending.stopped {
                return false;
            }
            let earlier = pending.wheel.next_due().is_none_or(|next| due < next);
            pending.wheel.insert(due, held);
            earlier
        };
        if earlier {
            self.wake.notify_one();
        }
        true
    }

    /// Forgets a stored message that fired (its destinations have it durably) or was
    /// cancelled; returns the mark at which that is durable.
    pub(crate) fn release(&self, stored: Option<HeldId>) -> Option<SyncMark> {
        let (store, id) = (self.store.as_ref()?, stored?);
        match off_reactor(|| store.held.release(&store.key, id)) {
            Ok(mark) => Some(mark),
            Err(e) => {
                tracing::error!(
                    exchange = %store.key.exchange,
                    "held message not released (it fires again after a restart): {e}"
                );
                None
            }
        }
    }

    /// The held store's durability, for a durable exchange.
    pub fn durability(&self) -> Option<tokio::sync::watch::Receiver<Durability>> {
        self.store.as_ref().map(|s| s.held.durability())
    }

    /// Number of pending messages. O(1).
    pub fn len(&self) -> usize {
        self.pending.lock().wheel.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the earliest pending message is due (ms since the epoch), `None` if nothing is
    /// pending; see [`TimerWheel::earliest_due`] for when it is only a lower bound.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.pending.lock().wheel.earliest_due()
    }

    /// How many pending messages fall due in the next minute (and any overdue), hour, day,
    /// and later, from `now_ms`: one lock of the wheel for a walk of its slot counts, not of
    /// the messages ([`TimerWheel::due_counts`] says how exact that is).
    pub fn due_histogram(&self, now_ms: u64) -> DueHistogram {
        let bounds = DUE_BUCKETS.map(|(_, edge)| edge.map(|ms| now_ms.saturating_add(ms)));
        let edges: Vec<u64> = bounds.iter().flatten().copied().collect();
        let found = self.pending.lock().wheel.due_counts(now_ms, &edges);
        let mut from_ms = now_ms;
        let buckets = DUE_BUCKETS
            .iter()
            .zip(bounds)
            .zip(found.counts)
            .map(|(((label, _), to_ms), count)| {
                let bucket = DueBucket {
                    label: (*label).to_owned(),
                    from_ms,
                    to_ms,
                    count,
                };
                from_ms = to_ms.unwrap_or(from_ms);
                bucket
            })
            .collect::<Vec<_>>();
        DueHistogram {
            now_ms,
            pending: buckets.iter().map(|b| b.count).sum(),
            exact: found.exact,
            buckets,
        }
    }

    /// Every pending message, by due time (a page without bounds).
    pub fn list(&self) -> Vec<PendingInfo> {
        self.page(&PendingQuery::everything())
    }

    /// One page of pending messages by due time: those matching `query` after its cursor,
    /// at most `query.limit`. The wheel is scanned [`SCAN_CHUNK`] slots per lock, so a
    /// listing of millions never stalls publishing or firing on this exchange.
    pub fn page(&self, query: &PendingQuery) -> Vec<PendingInfo> {
        let mut best: std::collections::BinaryHeap<(u64, u64)> =
            std::collections::BinaryHeap::new();
        let mut found: FxHashMap<u64, PendingInfo> = FxHashMap::default();
        let mut start = Some(0);
        while let Some(at) = start {
            let pending = self.pending.lock();
            let (entries, next) = pending.wheel.iter_chunk(at, SCAN_CHUNK);
            for (id, due, held) in entries {
                let key = (due, id.to_bits());
                if !query.matches(due, held.routing_key()) || query.after.is_some_and(|a| key <= a)
                {
                    continue;
                }
                if best.len() == query.limit {
                    match best.peek() {
                        Some(worst) if key < *worst => {
                            if let Some(dropped) = best.pop() {
                                found.remove(&dropped.1);
                            }
                        }
                        _ => continue,
                    }
                }
                best.push(key);
                found.insert(
                    key.1,
                    PendingInfo {
                        id: key.1,
                        due_ms: due,
                        routing_key: held.routing_key().to_owned(),
                        body_size: held.body_len(),
                    },
                );
            }
            start = next;
        }
        let mut out: Vec<PendingInfo> = found.into_values().collect();
        out.sort_by_key(|p| (p.due_ms, p.id));
        out
    }

    /// Cancels pending messages matching `query` (its cursor ignored), at most
    /// `query.limit` of them, scanning a chunk per lock. Which ones a limited cancel takes is
    /// not by due time but by wheel position; `more` says whether matching messages remain
    /// (so a client cancelling in batches knows when to stop).
    pub fn cancel_matching(&self, query: &PendingQuery) -> Cancelled {
        let mut done = Cancelled::default();
        let mut start = Some(0);
        while let Some(at) = start {
            let room = query.limit - done.count;
            let (ids, next) = {
                let pending = self.pending.lock();
                let (entries, next) = pending.wheel.iter_chunk(at, SCAN_CHUNK);
                // One more than there is room for: its presence means `more`.
                let ids: Vec<TimerId> = entries
                    .filter(|(_, due, held)| query.matches(*due, held.routing_key()))
                    .map(|(id, _, _)| id)
                    .take(room.saturating_add(1))
                    .collect();
                (ids, next)
            };
            done.more = ids.len() > room;
            for id in ids.into_iter().take(room) {
                if let Some(mark) = self.cancel(id.to_bits()) {
                    done.count += 1;
                    done.mark = done.mark.max(mark);
                }
            }
            if done.more {
                break;
            }
            start = next;
        }
        done
    }

    /// Cancels a pending message: `None` if the id names nothing pending, else the mark at
    /// which the cancel is durable (`Some(None)`: nothing stored to wait for).
    pub fn cancel(&self, id: u64) -> Option<Option<SyncMark>> {
        let held = self.pending.lock().wheel.cancel(TimerId::from_bits(id))?;
        self.stats.counters.incr(crate::stats::Counter::Cancelled);
        Some(self.release(held.stored()))
    }

    /// Drops everything pending and stops the driver (exchange deleted); the store forgets
    /// the exchange's messages.
    pub(crate) fn stop(&self) {
        if let Some(store) = &self.store
            && let Err(e) = off_reactor(|| store.held.forget_exchange(&store.key))
        {
            tracing::error!(exchange = %store.key.exchange, "held messages not forgotten: {e}");
        }
        {
            let mut pending = self.pending.lock();
            pending.stopped = true;
            let now = pending.wheel.elapsed();
            pending.wheel = TimerWheel::new(now);
        }
        self.wake.notify_one();
    }

    /// The exchange's name as held messages carry it (empty before the first was held).
    pub(crate) fn exchange_name(&self) -> ShortStr {
        self.exchange_name.get().cloned().unwrap_or_default()
    }

    /// Completes when an earlier message is held or the exchange is deleted.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }

    /// Takes out everything due now as (due, message), in (due, publish) order, and says
    /// when the next is due; `None` once stopped.
    pub(crate) fn take_due(&self, out: &mut Vec<(u64, Held)>) -> Option<Option<u64>> {
        let now = clock::now_ms();
        let mut pending = self.pending.lock();
        if pending.stopped {
            return None;
        }
        pending
            .wheel
            .advance(now, |_, due, held| out.push((due, held)));
        Some(pending.wheel.next_due())
    }
}

/// Runs a held-store write that may read the disk (a release looks up its message's due
/// time, a forget walks the exchange's ids; a hold only queues): on a multi-threaded runtime
/// through `block_in_place`, so the worker's other tasks move to another thread instead of
/// waiting behind it; elsewhere (a single-threaded runtime, no runtime) directly.
fn off_reactor<T>(write: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

#[cfg(test)]
mod tests;
