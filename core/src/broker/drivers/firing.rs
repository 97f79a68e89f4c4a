//! The task that fires a delayed exchange's held messages: it sleeps until the wheel's next
//! due time (woken early when an earlier message is held), takes out everything due, and
//! publishes each through the vhost's one publish path with the bindings of that moment.
//!
//! The wheel's lock is never held while publishing: the due messages are taken out first.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::broker::delayed::{Delayed, held::Held};
use crate::broker::exchange::Exchange;
use crate::broker::publish::{Origin, Publish, PublishScratch};
use crate::broker::routing_keys::RoutingKeys;
use crate::broker::vhost::VHost;
use crate::clock;
use crate::error::AmqpError;
use crate::protocol::ShortStr;

/// The longest the driver sleeps in one go: far-future sleeps are re-armed rather than
/// trusted to the runtime's timer range.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Starts the task that fires `delayed`'s messages into `exchange`'s bindings. It ends when
/// the exchange is deleted or the vhost dropped. 541 outside a tokio runtime (an embedding
/// bug, not a client's).
pub fn spawn(
    delayed: Arc<Delayed>,
    exchange: Weak<Exchange>,
    vhost: Weak<VHost>,
) -> Result<(), AmqpError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        AmqpError::internal("delayed exchanges need a tokio runtime to fire their messages")
    })?;
    runtime.spawn(async move {
        let mut fired = Vec::new();
        let mut scratch = PublishScratch::default();
        loop {
            let Some(next) = delayed.take_due(&mut fired) else {
                return;
            };
            if !fired.is_empty() {
                let (Some(exchange), Some(vhost)) = (exchange.upgrade(), vhost.upgrade()) else {
                    return;
                };
                let name = delayed.exchange_name();
                for held in fired.drain(..) {
                    fire(&vhost, &exchange, &name, held, &mut scratch);
                }
                // Publishing took time: look again before sleeping.
                continue;
            }
            match next {
                None => delayed.woken().await,
                Some(due) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(clock::instant_of(due, MAX_SLEEP)) => {}
                        () = delayed.woken() => {}
                    }
                }
            }
        }
    });
    Ok(())
}

/// Publishes a fired message exactly as a publish would, without `mandatory` (its publisher
/// was answered at publish time).
fn fire(
    vhost: &VHost,
    exchange: &Arc<Exchange>,
    name: &ShortStr,
    held: Held,
    scratch: &mut PublishScratch,
) {
    let unpacked = match held.into_parts(name) {
        Ok(unpacked) => unpacked,
        Err(e) => {
            // Packed from validated parts, so this is a packing bug, not client input.
            tracing::error!(
                exchange = exchange.name(),
                "delayed message could not be unpacked: {e}"
            );
            return;
        }
    };
    let keys = match &unpacked.extra_keys {
        None => RoutingKeys::default(),
        Some(packed) => RoutingKeys::from_extra(
            crate::broker::delayed::held::extra_keys(packed)
                .map(<[u8]>::to_vec)
                .collect(),
        ),
    };
    let publish = Publish {
        exchange,
        message: unpacked.message,
        keys: &keys,
        mandatory: false,
        origin: Origin::Fired,
    };
    if let Err(e) = vhost.publish(publish, scratch) {
        tracing::warn!(
            exchange = exchange.name(),
            "delayed message not routed: {e}"
        );
    }
}
