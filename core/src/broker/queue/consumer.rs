//! Consumers, and the delivery half of a channel that queues deliver into.
//!
//! A queue delivers by calling [`Consumer::try_deliver`] while holding its own lock: the
//! consumer's channel ([`DeliveryChannel`]) assigns the delivery tag, records the unacked
//! message and hands the encoded `basic.deliver` to the channel's [`DeliverySink`] (the
//! connection's outbox), all in one step, so per-channel order is the order in which queues
//! handed messages over and no extra task hop sits on the hot path. `basic.get` records its
//! delivery through the same [`DeliveryState::record`].
//!
//! The sink is a trait so that a queue is tested without a connection: the server's outbox
//! implements it, unit tests use a recording sink.
//!
//! Lock order (see also `broker/mod.rs`): queue state → channel delivery state → sink.
//! The channel's own connection task takes the delivery state alone (ack, nack, recover) and
//! only after releasing it touches queues (requeue, re-drain), so the order is never inverted.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use amq_protocol::protocol::{AMQPClass, basic};
use bytes::BytesMut;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use super::{Queue, Queued};
use crate::broker::message::Message;
use crate::protocol::{Deliver, ShortStr, encode_deliver, encode_method};
use crate::stats::{Counter, Stats};
use crate::store::MessageId;

/// Counts one delivery (a consumer's or `basic.get`'s: `kind` says which, and whether it
/// needs an ack) on the channel that made it and on the queue it came from, with
/// `redeliver` beside it if the message had been delivered before. Relaxed adds only.
pub fn count_delivery(channel: &Stats, queue: &Queue, kind: Counter, redelivered: bool) {
    for stats in [channel, queue.stats()] {
        stats.counters.incr(kind);
        if redelivered {
            stats.counters.incr(Counter::Redeliver);
        }
    }
}

/// Where a channel's deliveries go: the connection's outgoing frames.
pub trait DeliverySink: Send + Sync + fmt::Debug {
    /// Whether deliveries may be written now (the sink is neither congested nor dead). A
    /// `false` also asks the sink to resume the channel's consumers once it drains.
    fn accepts_deliveries(&self) -> bool;
    /// Appends the frames `write` encodes.
    fn push_frames(&self, write: &mut dyn FnMut(&mut BytesMut));
}

/// A message delivered and not yet acknowledged.
#[derive(Debug)]
pub struct Unacked {
    /// The queue it came from (where a requeue puts it back).
    pub queue: Arc<Queue>,
    /// The message.
    pub message: Message,
    /// Its deadline from enqueue (epoch ms), kept if it is requeued.
    pub deadline: u64,
    /// Its id in the queue's store, if it is stored there.
    pub stored: Option<MessageId>,
    /// The consumer it went to (`None` for `basic.get`), whose credit an ack restores.
    pub consumer: Option<Arc<Consumer>>,
}

/// Mutable delivery state of one channel.
#[derive(Debug, Default)]
pub struct DeliveryState {
    /// The last delivery tag handed out.
    pub next_tag: u64,
    /// Unacked deliveries by tag.
    pub unacked: BTreeMap<u64, Unacked>,
    /// `basic.qos(global=true)` limit for the whole channel (0 = none).
    pub global_prefetch: u16,
    /// `channel.flow(active)`.
    pub flow_active: bool,
    /// Set when the channel closes: no further deliveries.
    pub closed: bool,
    /// The channel's consumers by tag.
    pub consumers: FxHashMap<ShortStr, Arc<Consumer>>,
}

impl DeliveryState {
    /// Assigns the next delivery tag to `item` from `queue` and, unless it needs no ack,
    /// records it as unacked (with the consumer whose credit it uses, if any).
    pub fn record(
        &mut self,
        queue: &Arc<Queue>,
        item: &Queued,
        no_ack: bool,
        consumer: Option<&Arc<Consumer>>,
    ) -> u64 {
        self.next_tag += 1;
        let tag = self.next_tag;
        queue.delivered_stored(item.stored, no_ack);
        if !no_ack {
            if let Some(c) = consumer {
                c.unacked.fetch_add(1, Ordering::Relaxed);
            }
            queue.count_unacked(true);
            self.unacked.insert(
                tag,
                Unacked {
                    queue: queue.clone(),
                    message: item.message.clone(),
                    deadline: item.deadline,
                    stored: item.stored,
                    consumer: consumer.cloned(),
                },
            );
        }
        tag
    }
}

/// The part of a channel that queues deliver into.
#[derive(Debug)]
pub struct DeliveryChannel {
    /// Channel number.
    pub number: u16,
    /// Negotiated frame_max, for splitting bodies.
    pub frame_max: u32,
    /// Id of the owning connection.
    pub connection_id: u64,
    /// Whether the client announced `consumer_cancel_notify`.
    pub cancel_notify: bool,
    /// Where the encoded deliveries go.
    pub sink: Arc<dyn DeliverySink>,
    /// Tags, unacked messages, limits.
    pub state: Mutex<DeliveryState>,
    /// What the channel did: publishes by its client, deliveries and acks.
    pub stats: crate::stats::Stats,
}

impl DeliveryChannel {
    /// A channel's delivery half.
    pub fn new(
        number: u16,
        frame_max: u32,
        connection_id: u64,
        cancel_notify: bool,
        sink: Arc<dyn DeliverySink>,
    ) -> Arc<DeliveryChannel> {
        Arc::new(DeliveryChannel {
            number,
            frame_max,
            connection_id,
            cancel_notify,
            sink,
            state: Mutex::new(DeliveryState {
                flow_active: true,
                ..DeliveryState::default()
            }),
            stats: crate::stats::Stats::default(),
        })
    }
}

/// One `basic.consume`.
#[derive(Debug)]
pub struct Consumer {
    /// The consumer tag.
    pub tag: ShortStr,
    /// The channel deliveries go to.
    pub channel: Arc<DeliveryChannel>,
    /// The queue consumed from.
    pub queue: Arc<Queue>,
    /// Deliveries need no ack.
    pub no_ack: bool,
    /// Exclusive consumer.
    pub exclusive: bool,
    /// Per-consumer prefetch (0 = unlimited).
    pub prefetch: u16,
    /// Unacked deliveries of this consumer (changed under the channel's state lock).
    pub unacked: AtomicU32,
}

impl Consumer {
    /// Delivers `item` if this consumer has credit. Called with the queue's lock held.
    pub(crate) fn try_deliver(self: &Arc<Self>, queue: &Arc<Queue>, item: &Queued) -> bool {
        let channel = &self.channel;
        if !channel.sink.accepts_deliveries() {
            return false;
        }
        let mut st = channel.state.lock();
        if st.closed || !st.flow_active {
            return false;
        }
        if !self.no_ack {
            let mine = self.unacked.load(Ordering::Relaxed);
            if self.prefetch != 0 && mine >= u32::from(self.prefetch) {
                return false;
            }
            if st.global_prefetch != 0 && st.unacked.len() >= usize::from(st.global_prefetch) {
                return false;
            }
        }
        let tag = st.record(queue, item, self.no_ack, Some(self));
        let kind = if self.no_ack {
            Counter::DeliverNoAck
        } else {
            Counter::Deliver
        };
        count_delivery(&channel.stats, queue, kind, item.redelivered);
        let message = item.message.parts();
        let deliver = Deliver {
            consumer_tag: &self.tag,
            delivery_tag: tag,
            redelivered: item.redelivered,
            exchange: message.exchange,
            routing_key: message.routing_key,
        };
        channel.sink.push_frames(&mut |out| {
            encode_deliver(
                out,
                channel.number,
                channel.frame_max,
                &deliver,
                message.properties,
                &[message.body],
            )
        });
        true
    }

    /// The queue went away: forget this consumer on its channel and tell the client
    /// (`basic.cancel`), if it announced `consumer_cancel_notify`.
    pub(crate) fn cancelled_by_server(&self) {
        let channel = &self.channel;
        let mut st = channel.state.lock();
        if st.closed || st.consumers.remove(&self.tag).is_none() {
            return;
        }
        drop(st);
        if channel.cancel_notify {
            let method = AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                consumer_tag: self.tag.as_str().into(),
                nowait: true,
            }));
            channel.sink.push_frames(&mut |out| {
                if let Err(e) = encode_method(out, channel.number, &method) {
                    tracing::error!("cannot encode basic.cancel: {e}");
                }
            });
        }
    }
}
