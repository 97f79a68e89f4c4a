//! The delivery side of a channel: `basic.consume/cancel`, `basic.get`, `basic.qos`, acks,
//! rejects and nacks, `basic.recover`.
//!
//! Tags and unacked bookkeeping live in the channel's [`DeliveryChannel`] (shared with the
//! queues that deliver into it); `basic.get` records its delivery through the same
//! `DeliveryState::record` a consumer's delivery uses. Whatever a queue hands back as dead
//! (a rejected message, an expired one found while delivering) goes to the vhost to be
//! dead-lettered once the queue's lock is released.
//!
//! Consuming and getting need read permission on the queue, checked (as RabbitMQ does) before
//! the queue is even looked up, so a user without it learns nothing of whether it exists.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use amq_protocol::protocol::{AMQPClass, basic};

use super::tx::TxOp;
use super::{Channel, ConnCtx};
use crate::auth::{Operation, ResourceKind};
use crate::broker::queue::consumer::count_delivery;
use crate::broker::{Consumer, DeliveryChannel, Message, Queue, Unacked, VHost, names, replies};
use crate::error::AmqpError;
use crate::protocol::{RawMethod, ShortStr};
use crate::stats::Counter;
use crate::store::MessageId;

impl Channel {
    pub(super) fn basic_method(
        &mut self,
        ctx: &mut ConnCtx,
        raw: &RawMethod,
        m: basic::AMQPMethod,
    ) -> Result<(), AmqpError> {
        use basic::AMQPMethod as M;
        match m {
            M::Qos(q) => {
                // amq-protocol drops prefetch_size; read it from the payload (after the ids).
                let size = raw
                    .payload()
                    .get(4..8)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if size != 0 {
                    return Err(replies::not_implemented(&format!(
                        "prefetch_size!=0 ({size})"
                    )));
                }
                if q.global {
                    self.delivery.state.lock().global_prefetch = q.prefetch_count;
                } else {
                    self.consumer_prefetch = q.prefetch_count;
                    if let Some(listed) = self.listing() {
                        listed.set_prefetch_count(q.prefetch_count);
                    }
                }
                self.send(ctx, AMQPClass::Basic(M::QosOk(basic::QosOk {})));
                self.drain_consumers(ctx)?;
            }
            M::Consume(c) => self.consume(ctx, c)?,
            M::Cancel(c) => {
                let tag = ShortStr::copy_from_str(c.consumer_tag.as_str())
                    .map_err(|_| replies::bad_consumer_tag())?;
                let consumer = self.delivery.state.lock().consumers.remove(&tag);
                if let Some(consumer) = consumer {
                    ctx.vhost()?.remove_consumer(&consumer);
                }
                if !c.nowait {
                    self.send(
                        ctx,
                        AMQPClass::Basic(M::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag,
                        })),
                    );
                }
            }
            M::Get(g) => self.get(ctx, g.queue.as_str(), g.no_ack)?,
            M::Ack(a) => {
                if let Some(tx) = &mut self.tx {
                    check_tag(&self.delivery, a.delivery_tag, a.multiple)?;
                    tx.push(
                        &ctx.budget,
                        TxOp::Ack {
                            tag: a.delivery_tag,
                            multiple: a.multiple,
                        },
                        0,
                    )?;
                } else {
                    self.settle(ctx, a.delivery_tag, a.multiple, None)?;
                }
            }
            M::Nack(n) => self.reject(ctx, n.delivery_tag, n.multiple, n.requeue)?,
            M::Reject(r) => self.reject(ctx, r.delivery_tag, false, r.requeue)?,
            M::Recover(r) => {
                if !r.requeue {
                    return Err(replies::not_implemented("requeue=false"));
                }
                // recover-ok goes out before the redeliveries it causes, as RabbitMQ's does
                // (clients such as lapin reset their consumers on it).
                self.send(ctx, AMQPClass::Basic(M::RecoverOk(basic::RecoverOk {})));
                self.recover(ctx, true)?;
            }
            M::RecoverAsync(r) => self.recover(ctx, r.requeue)?,
            _ => return Err(replies::unexpected_method("basic method")),
        }
        Ok(())
    }

    fn consume(&mut self, ctx: &mut ConnCtx, c: basic::Consume) -> Result<(), AmqpError> {
        // As RabbitMQ: the limit is checked first, unless the tag is a reused one (which has
        // its own error).
        let max_consumers = ctx.broker.limits().max_consumers_per_channel;
        {
            let st = self.delivery.state.lock();
            let reused = ShortStr::copy_from_str(c.consumer_tag.as_str())
                .is_ok_and(|tag| st.consumers.contains_key(&tag));
            if !reused && crate::broker::limits::reached(st.consumers.len(), max_consumers) {
                return Err(replies::consumer_limit(max_consumers));
            }
        }
        let name = self.queue_name(c.queue.as_str())?;
        ctx.check(ResourceKind::Queue, Operation::Read, name)?;
        let queue = self.find_queue(ctx, name)?;
        let tag_text = if c.consumer_tag.as_str().is_empty() {
            names::generate(names::CONSUMER_TAG_PREFIX)
        } else {
            c.consumer_tag.as_str().to_owned()
        };
        let tag = ShortStr::copy_from_str(&tag_text).map_err(|_| replies::bad_consumer_tag())?;
        if self.delivery.state.lock().consumers.contains_key(&tag) {
            return Err(replies::consumer_tag_reused(&tag_text));
        }
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            channel: self.delivery.clone(),
            queue: queue.clone(),
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            prefetch: self.consumer_prefetch,
            unacked: Default::default(),
        });
        queue.check_can_consume(c.exclusive)?;
        self.delivery
            .state
            .lock()
            .consumers
            .insert(tag, consumer.clone());
        if !c.nowait {
            self.send(
                ctx,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: tag_text.as_str().into(),
                })),
            );
        }
        let (added, deaths) = queue.add_consumer(consumer.clone());
        ctx.vhost()?.bury(&queue, deaths);
        if let Err(e) = added {
            self.delivery.state.lock().consumers.remove(&consumer.tag);
            return Err(e);
        }
        Ok(())
    }

    fn get(&mut self, ctx: &mut ConnCtx, queue: &str, no_ack: bool) -> Result<(), AmqpError> {
        let name = self.queue_name(queue)?;
        ctx.check(ResourceKind::Queue, Operation::Read, name)?;
        let queue = self.find_queue(ctx, name)?;
        let (got, deaths) = queue.get();
        ctx.vhost()?.bury(&queue, deaths);
        let Some((item, remaining)) = got else {
            self.delivery.stats.counters.incr(Counter::GetEmpty);
            self.send(
                ctx,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let tag = self
            .delivery
            .state
            .lock()
            .record(&queue, &item, no_ack, None);
        let kind = if no_ack {
            Counter::GetNoAck
        } else {
            Counter::Get
        };
        count_delivery(&self.delivery.stats, &queue, kind, item.redelivered);
        let message = item.message;
        let method = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
            delivery_tag: tag,
            redelivered: item.redelivered,
            exchange: message.exchange().into(),
            routing_key: message.routing_key().into(),
            message_count: remaining as u32,
        }));
        ctx.send_with_content(self.number, &method, &message);
        Ok(())
    }

    /// Removes acknowledged deliveries (`requeue` = `None` for ack, `Some(_)` for
    /// reject/nack) and gives their consumers credit back.
    pub(super) fn settle(
        &mut self,
        ctx: &ConnCtx,
        tag: u64,
        multiple: bool,
        requeue: Option<bool>,
    ) -> Result<(), AmqpError> {
        let removed = take_unacked(&self.delivery, tag, multiple)?;
        release_credit(&removed);
        let vhost = ctx.vhost()?;
        match requeue {
            Some(true) => requeue_all(vhost, removed),
            Some(false) => reject_all(vhost, removed),
            None => {
                self.delivery
                    .stats
                    .counters
                    .add(Counter::Ack, removed.len() as u64);
                for u in &removed {
                    u.queue.stats().counters.incr(Counter::Ack);
                    u.queue.settled(u.stored);
                }
            }
        }
        self.drain_consumers(ctx)
    }

    fn reject(
        &mut self,
        ctx: &ConnCtx,
        tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> Result<(), AmqpError> {
        if let Some(tx) = &mut self.tx {
            check_tag(&self.delivery, tag, multiple)?;
            tx.push(
                &ctx.budget,
                TxOp::Reject {
                    tag,
                    multiple,
                    requeue,
                },
                0,
            )?;
            return Ok(());
        }
        self.settle(ctx, tag, multiple, Some(requeue))
    }

    fn recover(&mut self, ctx: &ConnCtx, requeue: bool) -> Result<(), AmqpError> {
        if !requeue {
            return Err(replies::not_implemented("requeue=false"));
        }
        let removed: Vec<Unacked> = {
            let mut st = self.delivery.state.lock();
            std::mem::take(&mut st.unacked).into_values().collect()
        };
        release_credit(&removed);
        requeue_all(ctx.vhost()?, removed);
        self.drain_consumers(ctx)
    }

    /// Lets the queues this channel consumes from deliver to consumers with credit again.
    pub(super) fn drain_consumers(&self, ctx: &ConnCtx) -> Result<(), AmqpError> {
        let queues: Vec<Arc<Queue>> = {
            let st = self.delivery.state.lock();
            let mut queues: Vec<Arc<Queue>> = Vec::with_capacity(st.consumers.len());
            for c in st.consumers.values() {
                if !queues.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                    queues.push(c.queue.clone());
                }
            }
            queues
        };
        if queues.is_empty() {
            return Ok(());
        }
        let vhost = ctx.vhost()?;
        for q in queues {
            let deaths = q.drain();
            vhost.bury(&q, deaths);
        }
        Ok(())
    }
}

fn check_tag(delivery: &DeliveryChannel, tag: u64, multiple: bool) -> Result<(), AmqpError> {
    let st = delivery.state.lock();
    if (multiple && tag == 0) || st.unacked.contains_key(&tag) {
        Ok(())
    } else {
        Err(replies::unknown_delivery_tag(tag))
    }
}

fn take_unacked(
    delivery: &DeliveryChannel,
    tag: u64,
    multiple: bool,
) -> Result<Vec<Unacked>, AmqpError> {
    let mut st = delivery.state.lock();
    if multiple {
        if tag == 0 {
            return Ok(std::mem::take(&mut st.unacked).into_values().collect());
        }
        if !st.unacked.contains_key(&tag) {
            return Err(replies::unknown_delivery_tag(tag));
        }
        let rest = st.unacked.split_off(&(tag + 1));
        let taken = std::mem::replace(&mut st.unacked, rest);
        Ok(taken.into_values().collect())
    } else {
        match st.unacked.remove(&tag) {
            Some(u) => Ok(vec![u]),
            None => Err(replies::unknown_delivery_tag(tag)),
        }
    }
}

/// Gives the consumers of settled deliveries their credit back, and their queues the count
/// of what awaits an ack. Every delivery leaving a channel's unacked map passes here once.
pub(super) fn release_credit(settled: &[Unacked]) {
    for u in settled {
        if let Some(c) = &u.consumer {
            c.unacked.fetch_sub(1, Ordering::Relaxed);
        }
        u.queue.count_unacked(false);
    }
}

/// Settled deliveries of one queue, oldest first: each message with its deadline and store id.
type QueueGroup = (Arc<Queue>, Vec<(Message, u64, Option<MessageId>)>);

/// Groups settled deliveries by the queue they came from.
fn by_queue(unacked: Vec<Unacked>) -> Vec<QueueGroup> {
    let mut groups: Vec<QueueGroup> = Vec::new();
    for u in unacked {
        let item = (u.message, u.deadline, u.stored);
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, items)) => items.push(item),
            None => groups.push((u.queue, vec![item])),
        }
    }
    groups
}

/// Puts messages back into their queues, oldest first, with their deadlines.
pub(super) fn requeue_all(vhost: &VHost, unacked: Vec<Unacked>) {
    for (queue, items) in by_queue(unacked) {
        let deaths = queue.requeue(items.into_iter());
        vhost.bury(&queue, deaths);
    }
}

/// Dead-letters rejected messages (reject/nack without requeue) through their queues.
fn reject_all(vhost: &VHost, unacked: Vec<Unacked>) {
    for (queue, items) in by_queue(unacked) {
        let deaths = queue.reject(
            items
                .into_iter()
                .map(|(message, _, stored)| (message, stored)),
        );
        vhost.bury(&queue, deaths);
    }
}
