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
//! 3. [`VHost::enqueue_all`] hands the one `Arc<Message>` to each (the only enqueue loop):
//!    a `reject-publish` queue's refusal makes the confirm a nack; a dead letter skips the
//!    targets the cycle rule forbids; what dies in a target (drop-head, TTL 0) is collected.
//! 4. What died is dead-lettered from a work list ([`VHost::bury`]), through steps 2–3
//!    again, until nothing more dies — never by recursion.
//!
//! Hot path: no lock shared across queues, no allocation for a message without `CC`/`BCC`
//! that reaches one queue (the scratch buffers are the channel's, reused), no body copy.

use std::sync::Arc;

use super::dead_letter::{DeadLetter, drops_as_cycle};
use super::exchange::Exchange;
use super::message::Message;
use super::queue::{Dead, Deaths, Enqueued, Queue};
use super::routing_keys::RoutingKeys;
use super::vhost::{RouteScratch, VHost};
use crate::clock;
use crate::error::AmqpError;
use crate::plugin::RouteRequest;

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
    pub message: Arc<Message>,
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
    /// `basic.nack`: a queue refused it (`reject-publish`).
    Nack,
}

/// What became of one publish.
#[derive(Debug)]
pub struct Outcome {
    /// Where it went.
    pub routed: Routed,
    /// A full `reject-publish` queue refused it.
    pub refused: bool,
    /// The message to send back in `basic.return`: it was `mandatory` and routed nowhere.
    pub returned: Option<Arc<Message>>,
    /// A queue it reached is backlogged: its publisher should pause (flow control).
    pub backlogged: Option<Arc<Queue>>,
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
        let key_list = keys.with(message.routing_key.as_bytes());
        let request = RouteRequest {
            exchange: message.exchange.as_bytes(),
            routing_keys: &key_list,
            headers: message.properties.headers().unwrap_or_default(),
        };
        let mut outcome = Outcome {
            routed: Routed::Unroutable,
            refused: false,
            returned: None,
            backlogged: None,
        };
        if origin == Origin::Client
            && let Some(delayed) = exchange.delayed()
            && let Some(due) = delayed.due(exchange.name(), message.properties.headers())
        {
            // `mandatory` is judged against the bindings of now; a message that routes
            // nowhere now is returned and not held (see `broker::delayed`).
            if mandatory {
                self.route(exchange, &request, &mut scratch.route, &mut scratch.queues)?;
                let routable = !scratch.queues.is_empty();
                scratch.queues.clear();
                if !routable {
                    outcome.returned = Some(message);
                    return Ok(outcome);
                }
            }
            delayed.hold(due, message, keys);
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
        let (refused, backlogged) =
            self.enqueue_all(&message, &targets, None, &mut scratch.dead, &mut work);
        scratch.queues = targets;
        scratch.queues.clear();
        outcome.refused = refused;
        outcome.backlogged = backlogged;
        if !work.is_empty() {
            self.dead_letter(work, scratch);
        }
        Ok(outcome)
    }

    /// The only enqueue loop: hands `message` to each target (skipping, for a dead letter
    /// that died as `reason`, the targets the cycle rule forbids). Returns whether a target
    /// refused it and a backlogged target, if any; deaths in the targets go on `work`.
    fn enqueue_all(
        &self,
        message: &Arc<Message>,
        targets: &[Arc<Queue>],
        dead_letter: Option<super::dead_letter::Reason>,
        dead: &mut Vec<Dead>,
        work: &mut WorkList,
    ) -> (bool, Option<Arc<Queue>>) {
        let mut refused = false;
        let mut backlogged = None;
        for queue in targets {
            if let Some(reason) = dead_letter
                && drops_as_cycle(
                    reason,
                    message.properties.headers(),
                    queue.name().as_bytes(),
                )
            {
                tracing::debug!(
                    target = queue.name(),
                    "dead letter dropped: dead-letter queues cycle"
                );
                continue;
            }
            refused |= queue.enqueue(message.clone(), dead) == Enqueued::Refused;
            if !dead.is_empty() {
                work.push((queue.clone(), std::mem::take(dead)));
            }
            if queue.is_backlogged() {
                backlogged = Some(queue.clone());
            }
        }
        (refused, backlogged)
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
                let key_list = letter.keys.with(letter.message.routing_key.as_bytes());
                let request = RouteRequest {
                    exchange: letter.message.exchange.as_bytes(),
                    routing_keys: &key_list,
                    headers: letter.message.properties.headers().unwrap_or_default(),
                };
                let routed =
                    self.route(&exchange, &request, &mut scratch.route, &mut scratch.queues);
                drop(key_list);
                if let Err(e) = routed {
                    tracing::warn!(queue = source.name(), "dead letter not routed: {e}");
                    continue;
                }
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
