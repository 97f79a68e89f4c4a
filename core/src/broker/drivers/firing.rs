//! The task that fires a delayed exchange's held messages: it sleeps until the wheel's next
//! due time (woken early when an earlier message is held), takes out everything due, and
//! publishes each through the vhost's one publish path with the bindings of that moment.
//!
//! The wheel's lock is never held while publishing: the due messages are taken out first.
//!
//! A stored held message is released from the held store only once its destinations have
//! it durably (the message store's mark for the batch is synced): a crash in between fires
//! it again after the restart — a duplicate, never a loss. If the message store fails, the
//! held record is kept for the same reason.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::broker::delayed::{Delayed, held::Held};
use crate::broker::exchange::Exchange;
use crate::broker::publish::{Durably, Origin, Publish, PublishScratch};
use crate::broker::routing_keys::RoutingKeys;
use crate::broker::vhost::VHost;
use crate::clock;
use crate::error::AmqpError;
use crate::protocol::ShortStr;
use crate::stats::Counter;
use crate::store::{HeldId, SyncMark};

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
    let opened = vhost.upgrade().map(|v| v.opened());
    runtime.spawn(async move {
        // Nothing fires while the vhost is being restored (its bindings may not be back).
        if let Some(mut opened) = opened {
            let _ = opened.wait_for(|open| *open).await;
        }
        let mut fired = Vec::new();
        let mut to_release = Vec::new();
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
                let mut written = None;
                for (due, held) in fired.drain(..) {
                    let result = fire(&vhost, &exchange, &name, held, &mut scratch);
                    if !matches!(result, Fired::NotRouted(_)) {
                        delayed.stats().counters.incr(Counter::Fired);
                        vhost
                            .lateness()
                            .observe(clock::now_ms().saturating_sub(due));
                    }
                    match result {
                        Fired::Release(stored) => {
                            delayed.release(Some(stored));
                        }
                        Fired::ReleaseAt(stored, mark) => {
                            written = written.max(Some(mark));
                            to_release.push(stored);
                        }
                        Fired::NotRouted(Some(stored)) => {
                            delayed.release(Some(stored));
                        }
                        Fired::Keep | Fired::NotRouted(None) => {}
                    }
                }
                if let Some(mark) = written {
                    let durability = vhost.stores().messages.durability();
                    drop((exchange, vhost));
                    if crate::store::durable_at(durability, mark).await {
                        for stored in to_release.drain(..) {
                            delayed.release(Some(stored));
                        }
                    } else {
                        tracing::error!(
                            "fired delayed messages were not stored durably; they stay held \
                             and fire again after a restart"
                        );
                        to_release.clear();
                    }
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

/// What to do with a fired message's held record.
enum Fired {
    /// Forget it now (it went nowhere durable, or was never stored).
    Release(HeldId),
    /// Forget it once the message store's mark is durable.
    ReleaseAt(HeldId, SyncMark),
    /// Keep it (not stored, or its destinations could not store it).
    Keep,
    /// It could not be published: not counted as fired. A publish the vhost refused
    /// forgets its held record (as `Release`); one that could not be unpacked keeps it.
    NotRouted(Option<HeldId>),
}

/// Publishes a fired message exactly as a publish would, without `mandatory` (its publisher
/// was answered at publish time).
fn fire(
    vhost: &VHost,
    exchange: &Arc<Exchange>,
    name: &ShortStr,
    held: Held,
    scratch: &mut PublishScratch,
) -> Fired {
    let unpacked = match held.into_parts(name) {
        Ok(unpacked) => unpacked,
        Err(e) => {
            // Packed from validated parts, so this is a packing bug, not client input.
            tracing::error!(
                exchange = exchange.name(),
                "delayed message could not be unpacked: {e}"
            );
            return Fired::NotRouted(None);
        }
    };
    let stored = unpacked.stored;
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
    let outcome = match vhost.publish(publish, scratch) {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(
                exchange = exchange.name(),
                "delayed message not routed: {e}"
            );
            return Fired::NotRouted(stored);
        }
    };
    match (stored, outcome.durably) {
        (None, _) => Fired::Keep,
        (Some(id), Some(Durably::Messages(mark))) => Fired::ReleaseAt(id, mark),
        // The message store refused it: keep the held record.
        (Some(_), _) if outcome.refused && vhost.stores().messages.durability().borrow().failed => {
            Fired::Keep
        }
        (Some(id), _) => Fired::Release(id),
    }
}
