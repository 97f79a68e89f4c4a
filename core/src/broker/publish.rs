//! The one publish path. Every message that enters queues comes through [`VHost::publish`]:
//! `basic.publish`, each publish of a `tx.commit`, a delayed message firing, a dead letter,
//! and (later) the management API's publish. It takes the message, its [`RoutingKeys`] and
//! the `mandatory` flag and returns one [`Outcome`]: where it went (queues, held by a
//! delayed exchange, nowhere), whether a full queue refused it, and the confirm its publisher
//! gets. It is where storage will append and where confirms will wait.
//!
//! The steps, in order:
//! 1. A delayed exchange holds a message whose headers ask for a delay (after judging
//!    `mandatory` against the bindings of now: a message that routes nowhere now is
//!    returned, not held). A fired message comes back here with [`Origin::Fired`] and is
//!    routed like any other.
//! 2. [`VHost::route`] finds the distinct destination queues.
//! 3. [`VHost::enqueue_all`] writes a persistent message once to the message store for its
//!    durable targets (the confirm then waits for that write to be durable: [`Durably`]),
//!    then hands the one `Message` to each (the only enqueue loop): a `reject-publish`
//!    queue's refusal or a store failure makes the confirm a nack; a dead letter skips the
//!    targets the cycle rule forbids; what dies in a target (drop-head, TTL 0) is collected.
//! 4. What died is dead-lettered from a work list ([`VHost::bury`]), through steps 2–3
//!    again, until nothing more dies — never by recursion.
//!
//! Hot path: no lock shared across queues, no allocation for a message without `CC`/`BCC`
//! that reaches one queue (the scratch buffers are the channel's, reused), no body copy.

use std::sync::Arc;

use super::dead_letter::{DeadLetter, Reason, drops_as_cycle};
use super::delayed::Holding;
use super::exchange::Exchange;
use super::message::Message;
use super::queue::{Dead, Deaths, Enqueued, Queue};
use super::routing_keys::RoutingKeys;
use super::vhost::{RouteScratch, VHost};
use crate::clock;
use crate::error::AmqpError;
use crate::plugin::RouteRequest;
use crate::stats::Counter;
use crate::store::{MessageId, SyncMark};

/// Who is publishing, where it changes what happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client (or the management API): a delayed exchange may hold the message.
    Client,
    /// A delayed message firing: routed now, whatever its headers say.
    Fired,
}

/// One message to publish.
#[derive(Debug)]
pub struct Publish<'a> {
    /// The exchange it is published to.
    pub exchange: &'a Arc<Exchange>,
    /// The message.
    pub message: Message,
    /// Its keys beyond its routing key (`CC`, `BCC`).
    pub keys: &'a RoutingKeys,
    /// Return it (312) if it routes nowhere.
    pub mandatory: bool,
    /// Who publishes it.
    pub origin: Origin,
}

/// Where a published message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Into this many queues (refused ones included).
    Queues(usize),
    /// Held by a delayed exchange until it is due.
    Held,
    /// Nowhere.
    Unroutable,
}

/// The confirm a publisher in confirm mode gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// `basic.ack`.
    Ack,
    /// `basic.nack`: a queue refused it (`reject-publish`), or a store could not take it.
    Nack,
}

pub use crate::store::Durably;

/// What became of one publish.
#[derive(Debug)]
pub struct Outcome {
    /// Where it went.
    pub routed: Routed,
    /// A full `reject-publish` queue refused it.
    pub refused: bool,
    /// The message to send back in `basic.return`: it was `mandatory` and routed nowhere.
    pub returned: Option<Message>,
    /// A queue it reached is backlogged: its publisher should pause (flow control).
    pub backlogged: Option<Arc<Queue>>,
    /// The write its confirm waits for, if it was written to a store.
    pub durably: Option<Durably>,
}

impl Outcome {
    /// The confirm for this publish.
    pub fn confirm(&self) -> Confirm {
        if self.refused {
            Confirm::Nack
        } else {
            Confirm::Ack
        }
    }
}

/// Buffers reused from one publish to the next (one per channel, or per driver).
#[derive(Debug, Default)]
pub struct PublishScratch {
    route: RouteScratch,
    queues: Vec<Arc<Queue>>,
    dead: Vec<Dead>,
}

/// Deaths waiting to be dead-lettered, by the queue they happened in.
type WorkList = Vec<(Arc<Queue>, Vec<Dead>)>;

/// What the enqueue loop did with one message.
#[derive(Debug, Default)]
struct EnqueuedAll {
    /// A target refused it, or the store could not take it.
    refused: bool,
    /// A backlogged target, for flow control.
    backlogged: Option<Arc<Queue>>,
    /// The store's mark for its write, if it was written.
    stored: Option<SyncMark>,
}

/// Whether a message was written to the message store.
enum Stored {
    /// Not needed (transient, or no durable target).
    No,
    /// Written with this id, durable at `mark`; deadlines were computed at `now`.
    Yes {
        id: MessageId,
        mark: SyncMark,
        now: u64,
    },
    /// The store refused it.
    Failed,
}

impl VHost {
    /// Publishes one message (see the module docs).
    pub fn publish(
        &self,
        p: Publish<'_>,
        scratch: &mut PublishScratch,
    ) -> Result<Outcome, AmqpError> {
        let Publish {
            exchange,
            message,
            keys,
            mandatory,
            origin,
        } = p;
        let key_list = keys.with(message.routing_key().as_bytes());
        let request = RouteRequest {
            exchange: message.exchange().as_bytes(),
            routing_keys: &key_list,
            headers: message.properties().headers().unwrap_or_default(),
        };
        let mut outcome = Outcome {
            routed: Routed::Unroutable,
            refused: false,
            returned: None,
            backlogged: None,
            durably: None,
        };
        if origin == Origin::Client
            && let Some(delayed) = exchange.delayed()
            && let Some(due) = delayed.due(exchange.name(), message.properties().headers())
        {
            // `mandatory` is judged against the bindings of now; a message that routes
            // nowhere now is returned and not held (see `broker::delayed`).
            if mandatory {
                let routable =
                    self.routable(exchange, &request, &mut scratch.route, &mut scratch.queues)?;
                if !routable {
                    outcome.returned = Some(message);
                    return Ok(outcome);
                }
            }
            match delayed.hold(due, message, keys) {
                Holding::InMemory => {}
                Holding::Stored(mark) => outcome.durably = Some(Durably::Held(mark)),
                Holding::Failed => outcome.refused = true,
            }
            outcome.routed = Routed::Held;
            return Ok(outcome);
        }
        self.route(exchange, &request, &mut scratch.route, &mut scratch.queues)?;
        drop(key_list);
        if scratch.queues.is_empty() {
            if mandatory {
                outcome.returned = Some(message);
            }
            return Ok(outcome);
        }
        outcome.routed = Routed::Queues(scratch.queues.len());
        let mut work = WorkList::new();
        let targets = std::mem::take(&mut scratch.queues);
        let enqueued = self.enqueue_all(&message, &targets, None, &mut scratch.dead, &mut work);
        scratch.queues = targets;
        scratch.queues.clear();
        outcome.refused = enqueued.refused;
        outcome.backlogged = enqueued.backlogged;
        outcome.durably = enqueued.stored.map(Durably::Messages);
        if !work.is_empty() {
            self.dead_letter(work, scratch);
        }
        Ok(outcome)
    }

    /// The only enqueue loop: hands `message` to each target (skipping, for a dead letter
    /// that died as `reason`, the targets the cycle rule forbids), after writing it once to
    /// the message store for the durable targets if it is persistent. Deaths in the targets
    /// go on `work`.
    fn enqueue_all(
        &self,
        message: &Message,
        targets: &[Arc<Queue>],
        dead_letter: Option<super::dead_letter::Reason>,
        dead: &mut Vec<Dead>,
        work: &mut WorkList,
    ) -> EnqueuedAll {
        let skips = |queue: &Queue| {
            dead_letter.is_some_and(|reason| {
                drops_as_cycle(
                    reason,
                    message.properties().headers(),
                    queue.name().as_bytes(),
                )
            })
        };
        let mut all = EnqueuedAll::default();
        let (id, now) = match self.store_message(message, targets, &skips) {
            Stored::No => (None, 0),
            Stored::Yes { id, mark, now } => {
                all.stored = Some(mark);
                // One id for the publish, kept in the message for all its stored queues.
                message.set_store_id(id);
                (Some(id), now)
            }
            Stored::Failed => {
                all.refused = true;
                (None, 0)
            }
        };
        for queue in targets {
            if skips(queue) {
                tracing::debug!(
                    target = queue.name(),
                    "dead letter dropped: dead-letter queues cycle"
                );
                continue;
            }
            let stored = id
                .filter(|_| queue.stores(message))
                .map(|id| (id, queue.deadline_at(message, now)));
            all.refused |= queue.enqueue(message.clone(), stored, dead) == Enqueued::Refused;
            if !dead.is_empty() {
                work.push((queue.clone(), std::mem::take(dead)));
            }
            if queue.is_backlogged() {
                all.backlogged = Some(queue.clone());
            }
        }
        all
    }

    /// Writes a persistent `message` once for every durable target (each with its deadline
    /// there), before any of them has it: an ack or an expiry can then only follow the
    /// write. Nothing is written for a transient message or when no target is durable.
    fn store_message(
        &self,
        message: &Message,
        targets: &[Arc<Queue>],
        skips: &dyn Fn(&Queue) -> bool,
    ) -> Stored {
        if !message.properties().is_persistent()
            || !targets.iter().any(|q| q.stores(message) && !skips(q))
        {
            return Stored::No;
        }
        let now = clock::now_ms();
        let entries: Vec<_> = targets
            .iter()
            .filter(|q| !skips(q))
            .filter_map(|q| Some((&q.store()?.key, q.deadline_at(message, now))))
            .collect();
        match self.stores().messages.append(message, &entries) {
            Ok((id, mark)) => Stored::Yes { id, mark, now },
            Err(e) => {
                tracing::error!(
                    vhost = self.name(),
                    "message not stored (kept in memory only, publish nacked): {e}"
                );
                Stored::Failed
            }
        }
    }

    /// Dead-letters what died in `queue` (no-op when nothing did, or when the queue does not
    /// dead-letter), and whatever dies in turn. Never called with a queue's lock held.
    pub fn bury(&self, queue: &Arc<Queue>, deaths: Deaths) {
        if deaths.is_empty() || queue.dead_letter_names().is_none() {
            return;
        }
        self.dead_letter(
            vec![(queue.clone(), deaths.0)],
            &mut PublishScratch::default(),
        );
    }

    /// Works through `work` until nothing more dies: each dead message is rebuilt for its
    /// queue's dead-letter exchange, routed, and enqueued by the one loop.
    fn dead_letter(&self, mut work: WorkList, scratch: &mut PublishScratch) {
        // One time for the batch: x-death has whole seconds.
        let time_secs = clock::now_ms() / 1000;
        while let Some((source, dead)) = work.pop() {
            let Some(names) = source.dead_letter_names() else {
                continue;
            };
            let Some(exchange) = self.exchange(names.exchange.as_str()) else {
                source.warn_once(|| {
                    tracing::warn!(
                        queue = source.name(),
                        exchange = names.exchange.as_str(),
                        "dead-letter exchange does not exist; dead letters of this queue are \
                         dropped"
                    );
                });
                continue;
            };
            for d in dead {
                let Some(letter) = DeadLetter::of(&source, names, d, time_secs) else {
                    continue;
                };
                let key_list = letter.keys.with(letter.message.routing_key().as_bytes());
                let request = RouteRequest {
                    exchange: letter.message.exchange().as_bytes(),
                    routing_keys: &key_list,
                    headers: letter.message.properties().headers().unwrap_or_default(),
                };
                let routed =
                    self.route(&exchange, &request, &mut scratch.route, &mut scratch.queues);
                drop(key_list);
                if let Err(e) = routed {
                    tracing::warn!(queue = source.name(), "dead letter not routed: {e}");
                    continue;
                }
                source.stats().counters.incr(match letter.reason {
                    Reason::Expired => Counter::DeadLetteredExpired,
                    Reason::Maxlen => Counter::DeadLetteredMaxlen,
                    Reason::Rejected => Counter::DeadLetteredRejected,
                });
                let targets = std::mem::take(&mut scratch.queues);
                self.enqueue_all(
                    &letter.message,
                    &targets,
                    Some(letter.reason),
                    &mut scratch.dead,
                    &mut work,
                );
                scratch.queues = targets;
                scratch.queues.clear();
            }
        }
    }
}
