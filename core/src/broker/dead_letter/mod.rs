//! Dead-lettering: what a message that died in a queue becomes, and where it goes.
//!
//! What RabbitMQ users rely on, and where it is kept:
//! - The new message carries the updated `x-death` history ([`x_death`], the one place that
//!   builds it, byte-compatible with RabbitMQ 3.10.8) and shares the body, never copying it.
//! - It is published to the queue's `x-dead-letter-exchange` with the queue's
//!   `x-dead-letter-routing-key` if it has one (and then the `CC` header is dropped), else
//!   with *all* the message's routing keys (its key plus `CC`) — [`DeadLetter`].
//! - A target queue the message already died in, with no rejection since, is skipped (the
//!   cycle rule of [`cycle`]); other targets still get it.
//! - A missing dead-letter exchange drops the message with a log line (once per queue at
//!   warn, so a misconfigured queue under load does not flood the log).
//!
//! The publishing itself is the broker's one publish path (`broker::publish`): deaths caused
//! by dead-lettering (a full target dropping its head, a TTL 0 target) go on the same work
//! list, not into recursion, so a long chain of dead-letter queues cannot exhaust the stack.
//!
//! The facts these rules rely on were read from RabbitMQ 3.10.8's own code
//! (`rabbit_dead_letter`, `rabbit_basic`) and then checked against a running broker; the
//! captured bytes are the golden values in the unit tests.

pub mod cycle;
pub mod x_death;

use super::message::Message;
use super::queue::{Dead, Queue};
use super::routing_keys::RoutingKeys;
use crate::protocol::ShortStr;
pub use cycle::{PastDeath, drops_as_cycle, history, is_cycle};
pub use x_death::{Death, Reason, dead_letter_properties};

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
    /// From a queue's dead-letter arguments; `None` without a dead-letter exchange, or
    /// (logged) when a name is longer than 255 bytes, which no exchange can have and no
    /// routing key can be.
    pub fn of(
        queue: &str,
        exchange: Option<&str>,
        routing_key: Option<&str>,
    ) -> Option<DeadLetterNames> {
        let exchange = exchange?;
        let names = ShortStr::copy_from_str(exchange).ok().and_then(|exchange| {
            let routing_key = match routing_key {
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

/// A dead message rebuilt for its dead-letter exchange.
#[derive(Debug)]
pub struct DeadLetter {
    /// The message as the dead-letter exchange receives it.
    pub message: Message,
    /// The keys beyond its routing key that it is routed with (the `CC` keys, unless the
    /// queue names its own dead-letter routing key).
    pub keys: RoutingKeys,
    /// Why it died (for the cycle rule).
    pub reason: Reason,
}

impl DeadLetter {
    /// Rebuilds `dead`, which died in `source` (a queue that dead-letters to `names`), with
    /// `time_secs` as its death's time; `None` (logged) if its properties cannot be rebuilt,
    /// which a parsed message rules out.
    pub fn of(
        source: &Queue,
        names: &DeadLetterNames,
        dead: Dead,
        time_secs: u64,
    ) -> Option<DeadLetter> {
        let original = &dead.message;
        // The routes the message had (its key and CC): recorded in x-death, and routed on
        // again unless the queue names its own dead-letter routing key.
        let cc = RoutingKeys::cc_of(original.properties().headers());
        let recorded: Vec<&str> = cc
            .with(original.routing_key().as_bytes())
            .iter()
            .filter_map(|k| std::str::from_utf8(k).ok())
            .collect();
        let death = Death {
            queue: source.name(),
            reason: dead.reason,
            exchange: original.exchange(),
            routing_keys: &recorded,
            time_secs,
            replaces_routing_key: names.routing_key.is_some(),
        };
        let properties = match dead_letter_properties(original.properties(), &death) {
            Ok(properties) => properties,
            Err(e) => {
                tracing::warn!(queue = source.name(), "dead letter dropped: {e}");
                return None;
            }
        };
        let (routing_key, keys) = match &names.routing_key {
            Some(own) => (own.as_str(), RoutingKeys::default()),
            None => (original.routing_key(), cc),
        };
        Some(DeadLetter {
            message: original.rebuilt(&names.exchange, routing_key, &properties),
            keys,
            reason: dead.reason,
        })
    }
}
