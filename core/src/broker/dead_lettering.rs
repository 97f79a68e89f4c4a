//! Dead-lettering: republishing a message that died in a queue to the queue's
//! `x-dead-letter-exchange`, with the properties [`crate::dead_letter`] computes.
//!
//! What RabbitMQ users rely on, and how it is kept here:
//! - The new message is published to the dead-letter exchange with the queue's
//!   `x-dead-letter-routing-key` if it has one (and then the `CC` header is dropped), else
//!   with *all* the message's routing keys (its key plus `CC`), and carries the updated
//!   `x-death` history; the body is shared, never copied.
//! - A target queue the message already died in, with no rejection since, is skipped (the
//!   cycle rule of [`crate::dead_letter::cycle`]); other targets still get it.
//! - A missing dead-letter exchange drops the message with a log line (once per queue at
//!   warn, so a misconfigured queue under load does not flood the log); the publisher never
//!   hears of it.
//! - A death caused by dead-lettering (a full target queue dropping its head, a TTL 0 target)
//!   is handled by the same loop from a work list, not by recursion, so a long chain of
//!   dead-letter queues cannot exhaust the stack.
//!
//! Called only with no queue lock held (see `queue`'s module docs): routing takes exchange
//! locks and each target queue's lock in turn.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::message::Message;
use super::queue::{Dead, Queue};
use super::vhost::{Broker, RouteScratch};
use crate::dead_letter::{
    Death, QueueLimits, dead_letter_properties, death_routing_keys, drops_as_cycle,
};
use crate::exchange::RouteRequest;
use crate::protocol::ShortStr;

impl Broker {
    /// Dead-letters messages that died in `source`, and whatever dies in turn in the queues
    /// they reach.
    pub(crate) fn dead_letter(&self, source: &Queue, dead: Vec<Dead>) {
        let mut scratch = RouteScratch::default();
        let mut routed = Vec::new();
        let mut later: Vec<(Arc<Queue>, Vec<Dead>)> = Vec::new();
        // One `time` for the batch: x-death has whole seconds.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut work = Work {
            time_secs: now,
            scratch: &mut scratch,
            routed: &mut routed,
            later: &mut later,
        };
        for d in dead {
            self.dead_letter_one(source, d, &mut work);
        }
        while let Some((queue, dead)) = work.later.pop() {
            for d in dead {
                self.dead_letter_one(&queue, d, &mut work);
            }
        }
    }

    fn dead_letter_one(&self, source: &Queue, dead: Dead, work: &mut Work<'_>) {
        let Some(names) = source.dead_letter_names() else {
            return;
        };
        let Some(exchange) = self.exchange(names.exchange.as_str()) else {
            source.warn_once(|| {
                tracing::warn!(
                    queue = source.name(),
                    exchange = names.exchange.as_str(),
                    "dead-letter exchange does not exist; dead letters of this queue are dropped"
                );
            });
            return;
        };
        let original = &dead.message;
        // The routes the message had (its key and CC): recorded in x-death, and routed on
        // again unless the queue names its own dead-letter routing key.
        let keys = death_routing_keys(original.routing_key.as_str(), original.properties.headers());
        let Some(message) = dead_letter_message(source, &dead, names, &keys, work.time_secs) else {
            return;
        };
        let own_key;
        let original_keys: Vec<&[u8]>;
        let route_keys: &[&[u8]] = if names.routing_key.is_some() {
            own_key = [message.routing_key.as_bytes()];
            &own_key
        } else {
            original_keys = keys.iter().map(|k| k.as_bytes()).collect();
            &original_keys
        };
        let request = RouteRequest {
            exchange: message.exchange.as_bytes(),
            routing_keys: route_keys,
            headers: message.properties.headers().unwrap_or_default(),
        };
        if let Err(e) = self.route(&exchange, &request, work.scratch, work.routed) {
            tracing::warn!(queue = source.name(), "dead letter not routed: {e}");
            return;
        }
        for target in work.routed.drain(..) {
            if drops_as_cycle(
                dead.reason,
                message.properties.headers(),
                target.name().as_bytes(),
            ) {
                tracing::debug!(
                    queue = source.name(),
                    target = target.name(),
                    "dead letter dropped: dead-letter queues cycle"
                );
                continue;
            }
            let mut more = Vec::new();
            target.enqueue_collecting(message.clone(), &mut more);
            if !more.is_empty() {
                work.later.push((target, more));
            }
        }
    }
}

/// What one `dead_letter` call carries from message to message.
struct Work<'a> {
    time_secs: u64,
    scratch: &'a mut RouteScratch,
    routed: &'a mut Vec<Arc<Queue>>,
    /// Deaths caused by dead-lettering, by the queue they happened in.
    later: &'a mut Vec<(Arc<Queue>, Vec<Dead>)>,
}

/// Where a queue's dead letters go, as the shortstrs a republished message carries: built
/// once per queue, not per dead letter.
#[derive(Debug)]
pub struct DeadLetterNames {
    /// `x-dead-letter-exchange`.
    pub exchange: ShortStr,
    /// `x-dead-letter-routing-key`, if set.
    pub routing_key: Option<ShortStr>,
}

impl DeadLetterNames {
    /// From a queue's limits; `None` without a dead-letter exchange, or (logged) when a name
    /// is longer than 255 bytes, which no exchange can have and no routing key can be.
    pub fn of(queue: &str, limits: &QueueLimits) -> Option<DeadLetterNames> {
        let exchange = limits.dead_letter_exchange.as_deref()?;
        let names = ShortStr::copy_from_str(exchange).ok().and_then(|exchange| {
            let routing_key = match limits.dead_letter_routing_key.as_deref() {
                Some(key) => Some(ShortStr::copy_from_str(key).ok()?),
                None => None,
            };
            Some(DeadLetterNames {
                exchange,
                routing_key,
            })
        });
        if names.is_none() {
            tracing::warn!(
                queue,
                "dead-letter exchange or routing key longer than 255 bytes; dead letters of \
                 this queue are dropped"
            );
        }
        names
    }
}

/// The message as the dead-letter exchange receives it; `None` (logged) if its properties
/// cannot be rebuilt, which a parsed message rules out.
fn dead_letter_message(
    source: &Queue,
    dead: &Dead,
    names: &DeadLetterNames,
    keys: &[&str],
    time_secs: u64,
) -> Option<Arc<Message>> {
    let original = &dead.message;
    let death = Death {
        queue: source.name(),
        reason: dead.reason,
        exchange: original.exchange.as_str(),
        routing_keys: keys,
        time_secs,
        replaces_routing_key: names.routing_key.is_some(),
    };
    match dead_letter_properties(&original.properties, &death) {
        Ok(properties) => Some(Arc::new(Message {
            exchange: names.exchange.clone(),
            routing_key: names
                .routing_key
                .clone()
                .unwrap_or_else(|| original.routing_key.clone()),
            properties,
            body: original.body.clone(),
        })),
        Err(e) => {
            tracing::warn!(queue = source.name(), "dead letter dropped: {e}");
            None
        }
    }
}
