//! One AMQP channel: its methods, the publish assembly (method → header → body frames),
//! publisher confirms, transactions and the acknowledgement of deliveries.
//!
//! A channel is owned by its connection's task, so everything here is plain `&mut self`; only
//! the delivery half ([`DeliveryChannel`]) is shared with the queues that deliver into it.
//! Errors are [`AmqpError`]s; the connection decides from the code whether they close this
//! channel or the whole connection.
//!
//! Hot path (`basic.publish`): the exchange handle comes from a per-channel cache keyed by
//! name and revalidated by the exchange's `deleted` flag, the routing buffers are reused, a
//! single-frame body is kept as the frame's slice, and a confirm is not written per message
//! but flushed once per batch of frames read (`multiple=true` when several are due).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, exchange, queue, tx};
use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;

use super::content::distribution;
use super::outbox::Outbox;
use crate::broker::vhost::{BindTarget, ExchangeDeclare, QueueDeclare, no_exchange, no_queue};
use crate::broker::{
    Broker, Consumer, DeliveryChannel, Enqueued, Exchange, Message, Queue, RouteScratch, Unacked,
    names,
};
use crate::dead_letter::parse_expiration;
use crate::error::AmqpError;
use crate::exchange::RouteRequest;
use crate::protocol::{
    ContentHeader, Publish, RawMethod, ReplyCode, ShortStr, encode_basic_ack, encode_basic_nack,
    encode_content, encode_method,
};

/// What a channel needs from its connection.
#[derive(Debug)]
pub struct ConnCtx {
    /// Connection id (exclusive queue ownership).
    pub id: u64,
    /// The vhost.
    pub broker: Arc<Broker>,
    /// The connection's output.
    pub outbox: Arc<Outbox>,
    /// Negotiated frame_max.
    pub frame_max: u32,
    /// Largest body accepted.
    pub max_message_size: usize,
    /// Client capability `consumer_cancel_notify`.
    pub cancel_notify: bool,
    /// Exclusive queues declared by this connection (deleted with it).
    pub exclusive_queues: Vec<Arc<Queue>>,
}

impl ConnCtx {
    /// Sends a method frame.
    pub fn send(&self, channel: u16, method: &AMQPClass) {
        self.outbox.push(|out| {
            if let Err(e) = encode_method(out, channel, method) {
                tracing::error!("cannot encode {method:?}: {e}");
            }
        });
    }
}

/// A publish waiting for its content frames.
#[derive(Debug)]
struct PendingPublish {
    publish: Publish,
    exchange: Arc<Exchange>,
    header: Option<ContentHeader>,
    body_size: usize,
    first: Option<Bytes>,
    joined: Option<BytesMut>,
    received: usize,
}

/// A publish or acknowledgement held back until `tx.commit`.
#[derive(Debug)]
enum TxOp {
    Publish {
        exchange: Arc<Exchange>,
        message: Arc<Message>,
        extra_keys: Vec<Vec<u8>>,
        mandatory: bool,
    },
    Ack {
        tag: u64,
        multiple: bool,
    },
    Reject {
        tag: u64,
        multiple: bool,
        requeue: bool,
    },
}

/// Whether the channel is usable or waiting for the client's `channel.close-ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Open.
    Open,
    /// The server sent `channel.close`; everything but close/close-ok is ignored.
    Closing,
}

/// What the connection must do after a channel method.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing.
    Continue,
    /// The channel is finished (close-ok sent or received); remove it.
    Remove,
}

/// One channel.
#[derive(Debug)]
pub struct Channel {
    number: u16,
    /// Open or closing.
    pub phase: Phase,
    delivery: Arc<DeliveryChannel>,
    pending: Option<PendingPublish>,
    exchanges: FxHashMap<String, Arc<Exchange>>,
    last_queue: Option<String>,
    consumer_prefetch: u16,
    /// Confirm mode: the last publish sequence number, and the last one acked.
    confirm: Option<(u64, u64)>,
    tx: Option<Vec<TxOp>>,
    scratch: RouteScratch,
    routed: Vec<Arc<Queue>>,
    /// A queue this channel published to that is backlogged (flow control).
    backlogged: Option<Arc<Queue>>,
    /// Queues by name for publishes to the default exchange, revalidated by their
    /// `deleted` flag (saves the shared name map on the hot path).
    default_routes: FxHashMap<ShortStr, Arc<Queue>>,
}

fn method_ids(m: &AMQPClass) -> (u16, u16) {
    (m.get_amqp_class_id(), m.get_amqp_method_id())
}

fn unknown_tag(tag: u64) -> AmqpError {
    AmqpError::precondition_failed(format!("unknown delivery tag {tag}"))
}

impl Channel {
    /// A freshly opened channel.
    pub fn new(number: u16, ctx: &ConnCtx) -> Channel {
        Channel {
            number,
            phase: Phase::Open,
            delivery: DeliveryChannel::new(
                number,
                ctx.frame_max,
                ctx.id,
                ctx.cancel_notify,
                ctx.outbox.clone(),
            ),
            pending: None,
            exchanges: FxHashMap::default(),
            last_queue: None,
            consumer_prefetch: 0,
            confirm: None,
            tx: None,
            scratch: RouteScratch::default(),
            routed: Vec::new(),
            backlogged: None,
            default_routes: FxHashMap::default(),
        }
    }

    /// When a publish is waiting for content frames, what a method frame now violates
    /// (RabbitMQ's 505 texts).
    pub fn content_expected(&self) -> Option<&'static str> {
        self.pending.as_ref().map(|p| match p.header {
            None => "expected content header for class 60, got non content header frame instead",
            Some(_) => "expected content body, got non content body frame instead",
        })
    }

    fn send(&self, ctx: &ConnCtx, method: AMQPClass) {
        ctx.send(self.number, &method);
    }

    /// Handles a method frame on an open channel.
    pub fn handle_method(
        &mut self,
        ctx: &mut ConnCtx,
        method: &RawMethod,
    ) -> Result<Outcome, AmqpError> {
        if method.is_basic_publish() {
            let publish = method.decode_publish().map_err(protocol_error)?;
            self.start_publish(ctx, publish)
                .map_err(|e| e.during(60, 40))?;
            return Ok(Outcome::Continue);
        }
        let decoded = method.decode().map_err(protocol_error)?;
        let ids = method_ids(&decoded);
        self.dispatch(ctx, method, decoded).map_err(|e| {
            if e.class_method == (0, 0) {
                e.during(ids.0, ids.1)
            } else {
                e
            }
        })
    }

    fn dispatch(
        &mut self,
        ctx: &mut ConnCtx,
        raw: &RawMethod,
        method: AMQPClass,
    ) -> Result<Outcome, AmqpError> {
        use AMQPClass as C;
        match method {
            C::Channel(channel::AMQPMethod::Close(_)) => {
                let outbox = ctx.outbox.clone();
                self.flush_confirms(&outbox);
                self.close(ctx);
                self.send(
                    ctx,
                    C::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                return Ok(Outcome::Remove);
            }
            C::Channel(channel::AMQPMethod::CloseOk(_)) => {
                return Err(AmqpError::command_invalid("unimplemented method"));
            }
            C::Channel(channel::AMQPMethod::Open(_)) => {
                return Err(AmqpError::new(
                    ReplyCode::ChannelError,
                    "second 'channel.open' seen",
                ));
            }
            C::Channel(channel::AMQPMethod::Flow(f)) => {
                self.delivery.state.lock().flow_active = f.active;
                self.send(
                    ctx,
                    C::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: f.active,
                    })),
                );
                if f.active {
                    self.drain_consumers();
                }
            }
            C::Channel(channel::AMQPMethod::FlowOk(_)) => {}
            C::Exchange(m) => self.exchange_method(ctx, m)?,
            C::Queue(m) => self.queue_method(ctx, m)?,
            C::Basic(m) => self.basic_method(ctx, raw, m)?,
            C::Tx(m) => self.tx_method(ctx, m)?,
            C::Confirm(confirm::AMQPMethod::Select(s)) => {
                if self.tx.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                if self.confirm.is_none() {
                    self.confirm = Some((0, 0));
                }
                if !s.nowait {
                    self.send(
                        ctx,
                        C::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
            }
            other => {
                return Err(AmqpError::command_invalid(format!(
                    "unexpected method {}.{} on a channel",
                    other.get_amqp_class_id(),
                    other.get_amqp_method_id()
                )));
            }
        }
        Ok(Outcome::Continue)
    }

    fn exchange_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: exchange::AMQPMethod,
    ) -> Result<(), AmqpError> {
        use exchange::AMQPMethod as M;
        let broker = ctx.broker.clone();
        match m {
            M::Declare(d) => {
                broker.declare_exchange(&ExchangeDeclare {
                    name: d.exchange.as_str(),
                    kind: d.kind.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: &d.arguments,
                })?;
                if !d.nowait {
                    self.send(
                        ctx,
                        AMQPClass::Exchange(M::DeclareOk(exchange::DeclareOk {})),
                    );
                }
            }
            M::Delete(d) => {
                broker.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                self.exchanges.remove(d.exchange.as_str());
                if !d.nowait {
                    self.send(ctx, AMQPClass::Exchange(M::DeleteOk(exchange::DeleteOk {})));
                }
            }
            M::Bind(b) => {
                broker.bind(
                    ctx.id,
                    BindTarget::Exchange(b.destination.as_str()),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                if !b.nowait {
                    self.send(ctx, AMQPClass::Exchange(M::BindOk(exchange::BindOk {})));
                }
            }
            M::Unbind(b) => {
                broker.unbind(
                    ctx.id,
                    BindTarget::Exchange(b.destination.as_str()),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                if !b.nowait {
                    self.send(ctx, AMQPClass::Exchange(M::UnbindOk(exchange::UnbindOk {})));
                }
            }
            _ => return Err(AmqpError::command_invalid("unexpected exchange method")),
        }
        Ok(())
    }

    /// An empty queue name means the last queue declared on this channel.
    fn queue_name<'a>(&'a self, name: &'a str) -> Result<&'a str, AmqpError> {
        if !name.is_empty() {
            return Ok(name);
        }
        self.last_queue
            .as_deref()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    fn find_queue(&self, ctx: &ConnCtx, name: &str) -> Result<Arc<Queue>, AmqpError> {
        let name = self.queue_name(name)?;
        let queue = ctx.broker.queue(name).ok_or_else(|| no_queue(name))?;
        queue.check_access(ctx.id)?;
        Ok(queue)
    }

    fn queue_method(&mut self, ctx: &mut ConnCtx, m: queue::AMQPMethod) -> Result<(), AmqpError> {
        use queue::AMQPMethod as M;
        let broker = ctx.broker.clone();
        match m {
            M::Declare(d) => {
                let name = if d.passive && d.queue.as_str().is_empty() {
                    self.queue_name("")?.to_owned()
                } else {
                    d.queue.as_str().to_owned()
                };
                let queue = broker.declare_queue(
                    ctx.id,
                    &QueueDeclare {
                        name: &name,
                        passive: d.passive,
                        durable: d.durable,
                        exclusive: d.exclusive,
                        auto_delete: d.auto_delete,
                        arguments: &d.arguments,
                    },
                )?;
                if queue.spec.exclusive_owner == Some(ctx.id)
                    && !ctx.exclusive_queues.iter().any(|q| Arc::ptr_eq(q, &queue))
                {
                    ctx.exclusive_queues.push(queue.clone());
                }
                self.last_queue = Some(queue.name().to_owned());
                if !d.nowait {
                    let (messages, consumers) = queue.counts();
                    self.send(
                        ctx,
                        AMQPClass::Queue(M::DeclareOk(queue::DeclareOk {
                            queue: queue.name().into(),
                            message_count: messages as u32,
                            consumer_count: consumers as u32,
                        })),
                    );
                }
            }
            M::Bind(b) => {
                let name = self.queue_name(b.queue.as_str())?.to_owned();
                broker.bind(
                    ctx.id,
                    BindTarget::Queue(&name),
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                if !b.nowait {
                    self.send(ctx, AMQPClass::Queue(M::BindOk(queue::BindOk {})));
                }
            }
            M::Unbind(b) => {
                let name = self.queue_name(b.queue.as_str())?.to_owned();
                broker.unbind(
                    ctx.id,
                    BindTarget::Queue(&name),
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                self.send(ctx, AMQPClass::Queue(M::UnbindOk(queue::UnbindOk {})));
            }
            M::Purge(p) => {
                let queue = self.find_queue(ctx, p.queue.as_str())?;
                let count = queue.purge();
                if !p.nowait {
                    self.send(
                        ctx,
                        AMQPClass::Queue(M::PurgeOk(queue::PurgeOk {
                            message_count: count as u32,
                        })),
                    );
                }
            }
            M::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?.to_owned();
                let count = broker.delete_queue(ctx.id, &name, d.if_unused, d.if_empty)?;
                ctx.exclusive_queues.retain(|q| !q.is_deleted());
                if !d.nowait {
                    self.send(
                        ctx,
                        AMQPClass::Queue(M::DeleteOk(queue::DeleteOk {
                            message_count: count as u32,
                        })),
                    );
                }
            }
            _ => return Err(AmqpError::command_invalid("unexpected queue method")),
        }
        Ok(())
    }

    fn basic_method(
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
                    return Err(AmqpError::not_implemented(format!(
                        "prefetch_size!=0 ({size})"
                    )));
                }
                if q.global {
                    self.delivery.state.lock().global_prefetch = q.prefetch_count;
                } else {
                    self.consumer_prefetch = q.prefetch_count;
                }
                self.send(ctx, AMQPClass::Basic(M::QosOk(basic::QosOk {})));
                self.drain_consumers();
            }
            M::Consume(c) => self.consume(ctx, c)?,
            M::Cancel(c) => {
                let tag = ShortStr::copy_from_str(c.consumer_tag.as_str())
                    .map_err(|_| AmqpError::precondition_failed("bad consumer tag"))?;
                let consumer = self.delivery.state.lock().consumers.remove(&tag);
                if let Some(consumer) = consumer {
                    ctx.broker.remove_consumer(&consumer);
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
                    tx.push(TxOp::Ack {
                        tag: a.delivery_tag,
                        multiple: a.multiple,
                    });
                } else {
                    self.settle(ctx, a.delivery_tag, a.multiple, None)?;
                }
            }
            M::Nack(n) => self.reject(ctx, n.delivery_tag, n.multiple, n.requeue)?,
            M::Reject(r) => self.reject(ctx, r.delivery_tag, false, r.requeue)?,
            M::Recover(r) => {
                if !r.requeue {
                    return Err(AmqpError::not_implemented("requeue=false"));
                }
                // recover-ok goes out before the redeliveries it causes, as RabbitMQ's does
                // (clients such as lapin reset their consumers on it).
                self.send(ctx, AMQPClass::Basic(M::RecoverOk(basic::RecoverOk {})));
                self.recover(true)?;
            }
            M::RecoverAsync(r) => self.recover(r.requeue)?,
            _ => return Err(AmqpError::command_invalid("unexpected basic method")),
        }
        Ok(())
    }

    fn consume(&mut self, ctx: &mut ConnCtx, c: basic::Consume) -> Result<(), AmqpError> {
        let queue = self.find_queue(ctx, c.queue.as_str())?;
        let tag_text = if c.consumer_tag.as_str().is_empty() {
            names::generate(names::CONSUMER_TAG_PREFIX)
        } else {
            c.consumer_tag.as_str().to_owned()
        };
        let tag = ShortStr::copy_from_str(&tag_text)
            .map_err(|_| AmqpError::precondition_failed("bad consumer tag"))?;
        if self.delivery.state.lock().consumers.contains_key(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag_text}'"
            )));
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
        if let Err(e) = queue.add_consumer(consumer.clone()) {
            self.delivery.state.lock().consumers.remove(&consumer.tag);
            return Err(e);
        }
        Ok(())
    }

    fn get(&mut self, ctx: &mut ConnCtx, queue: &str, no_ack: bool) -> Result<(), AmqpError> {
        let queue = self.find_queue(ctx, queue)?;
        let Some((item, remaining)) = queue.get() else {
            self.send(
                ctx,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let message = item.message;
        let mut st = self.delivery.state.lock();
        st.next_tag += 1;
        let tag = st.next_tag;
        if !no_ack {
            st.unacked.insert(
                tag,
                Unacked {
                    queue: queue.clone(),
                    message: message.clone(),
                    deadline: item.deadline,
                    consumer: None,
                },
            );
        }
        let method = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
            delivery_tag: tag,
            redelivered: item.redelivered,
            exchange: message.exchange.as_str().into(),
            routing_key: message.routing_key.as_str().into(),
            message_count: remaining as u32,
        }));
        let (number, frame_max) = (self.number, ctx.frame_max);
        ctx.outbox.push(|out| {
            if encode_method(out, number, &method).is_ok() {
                encode_content(
                    out,
                    number,
                    frame_max,
                    &message.properties,
                    &[&message.body],
                );
            }
        });
        Ok(())
    }

    /// Removes acknowledged deliveries (`requeue` = `None` for ack, `Some(_)` for
    /// reject/nack) and gives their consumers credit back.
    fn settle(
        &mut self,
        ctx: &ConnCtx,
        tag: u64,
        multiple: bool,
        requeue: Option<bool>,
    ) -> Result<(), AmqpError> {
        let removed = take_unacked(&self.delivery, tag, multiple)?;
        let _ = ctx;
        for u in &removed {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        match requeue {
            Some(true) => requeue_all(removed),
            Some(false) => reject_all(removed),
            None => {}
        }
        self.drain_consumers();
        Ok(())
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
            tx.push(TxOp::Reject {
                tag,
                multiple,
                requeue,
            });
            return Ok(());
        }
        self.settle(ctx, tag, multiple, Some(requeue))
    }

    fn recover(&mut self, requeue: bool) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let removed: Vec<Unacked> = {
            let mut st = self.delivery.state.lock();
            std::mem::take(&mut st.unacked).into_values().collect()
        };
        for u in &removed {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        requeue_all(removed);
        self.drain_consumers();
        Ok(())
    }

    fn tx_method(&mut self, ctx: &mut ConnCtx, m: tx::AMQPMethod) -> Result<(), AmqpError> {
        use tx::AMQPMethod as M;
        match m {
            M::Select(_) => {
                if self.confirm.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if self.tx.is_none() {
                    self.tx = Some(Vec::new());
                }
                self.send(ctx, AMQPClass::Tx(M::SelectOk(tx::SelectOk {})));
            }
            M::Commit(_) => {
                let Some(ops) = self.tx.replace(Vec::new()) else {
                    return Err(AmqpError::precondition_failed(
                        "channel is not transactional",
                    ));
                };
                for op in ops {
                    match op {
                        TxOp::Publish {
                            exchange,
                            message,
                            extra_keys,
                            mandatory,
                        } => {
                            self.route_and_enqueue(
                                ctx,
                                &exchange,
                                message,
                                &extra_keys,
                                mandatory,
                            )?;
                        }
                        TxOp::Ack { tag, multiple } => self.settle(ctx, tag, multiple, None)?,
                        TxOp::Reject {
                            tag,
                            multiple,
                            requeue,
                        } => self.settle(ctx, tag, multiple, Some(requeue))?,
                    }
                }
                self.send(ctx, AMQPClass::Tx(M::CommitOk(tx::CommitOk {})));
            }
            M::Rollback(_) => {
                if self.tx.replace(Vec::new()).is_none() {
                    return Err(AmqpError::precondition_failed(
                        "channel is not transactional",
                    ));
                }
                self.send(ctx, AMQPClass::Tx(M::RollbackOk(tx::RollbackOk {})));
            }
            _ => return Err(AmqpError::command_invalid("unexpected tx method")),
        }
        Ok(())
    }

    fn drain_consumers(&self) {
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
        for q in queues {
            q.drain();
        }
    }

    /// Resumes deliveries after the outbox drained.
    pub fn resume(&self) {
        self.drain_consumers();
    }

    fn exchange_handle(&mut self, ctx: &ConnCtx, name: &str) -> Result<Arc<Exchange>, AmqpError> {
        if let Some(ex) = self.exchanges.get(name)
            && !ex.is_deleted()
        {
            return Ok(ex.clone());
        }
        let ex = ctx.broker.exchange(name).ok_or_else(|| no_exchange(name))?;
        if self.exchanges.len() > 1024 {
            self.exchanges.clear();
        }
        self.exchanges.insert(name.to_owned(), ex.clone());
        Ok(ex)
    }

    fn start_publish(&mut self, ctx: &ConnCtx, publish: Publish) -> Result<(), AmqpError> {
        if publish.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        let exchange = self.exchange_handle(ctx, publish.exchange.as_str())?;
        if exchange.spec.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{}' in vhost '/'",
                exchange.name()
            )));
        }
        self.pending = Some(PendingPublish {
            publish,
            exchange,
            header: None,
            body_size: 0,
            first: None,
            joined: None,
            received: 0,
        });
        Ok(())
    }

    /// Handles a content header frame. `Err` with 505 if none was expected.
    pub fn handle_header(
        &mut self,
        ctx: &mut ConnCtx,
        header: ContentHeader,
    ) -> Result<(), AmqpError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                "expected method frame, got non method frame instead",
            ));
        };
        if pending.header.is_some() {
            return Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                "expected content body, got non content body frame instead",
            ));
        }
        let size = header.body_size();
        if size > ctx.max_message_size as u64 {
            self.pending = None;
            return Err(AmqpError::precondition_failed(format!(
                "message size {size} is larger than configured max size {}",
                ctx.max_message_size
            ))
            .during(60, 40));
        }
        pending.body_size = size as usize;
        pending.header = Some(header);
        if size == 0 {
            return self.finish_publish(ctx);
        }
        Ok(())
    }

    /// Handles a content body frame. `Err` with 505 if none was expected.
    pub fn handle_body(&mut self, ctx: &mut ConnCtx, payload: Bytes) -> Result<(), AmqpError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                "expected method frame, got non method frame instead",
            ));
        };
        if pending.header.is_none() {
            return Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                "expected content header for class 60, got non content header frame instead",
            ));
        }
        pending.received += payload.len();
        if pending.received > pending.body_size {
            return Err(AmqpError::new(
                ReplyCode::FrameError,
                "content body larger than the size in its header",
            ));
        }
        match (&mut pending.first, &mut pending.joined) {
            (None, None) => pending.first = Some(payload),
            (Some(first), None) => {
                // The declared size is only a claim: reserve at most a few MiB up front so a
                // peer cannot make every channel hold max_message_size for a trickle.
                let mut joined = BytesMut::with_capacity(pending.body_size.min(4 << 20));
                joined.extend_from_slice(first);
                joined.extend_from_slice(&payload);
                pending.first = None;
                pending.joined = Some(joined);
            }
            (_, Some(joined)) => joined.extend_from_slice(&payload),
        }
        if pending.received == pending.body_size {
            self.finish_publish(ctx)?;
        }
        Ok(())
    }

    fn finish_publish(&mut self, ctx: &mut ConnCtx) -> Result<(), AmqpError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let PendingPublish {
            publish,
            exchange,
            header,
            first,
            joined,
            ..
        } = pending;
        let body = match (first, joined) {
            (_, Some(joined)) => joined.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        };
        let mut properties = header
            .map(ContentHeader::into_properties)
            .unwrap_or_default();
        let mut extra_keys = Vec::new();
        if let Some(d) = distribution(&properties) {
            extra_keys = d.keys;
            if let Some(p) = d.properties {
                properties = p;
            }
        }
        if let Some(raw) = properties.expiration()
            && let Err(e) = parse_expiration(raw)
        {
            return Err(e.to_amqp_error(raw).during(60, 40));
        }
        let message = Arc::new(Message {
            exchange: publish.exchange,
            routing_key: publish.routing_key,
            properties,
            body,
        });
        if let Some(tx) = &mut self.tx {
            tx.push(TxOp::Publish {
                exchange,
                message,
                extra_keys,
                mandatory: publish.mandatory,
            });
            return Ok(());
        }
        let result =
            self.route_and_enqueue(ctx, &exchange, message, &extra_keys, publish.mandatory);
        if let Some((seq, _)) = &mut self.confirm {
            *seq += 1;
        }
        if let Ok(true) = result {
            self.nack_last(&ctx.outbox);
        }
        result.map(drop).map_err(|e| e.during(60, 40))
    }

    /// In confirm mode, nacks the publish just numbered (a queue refused it), after acking
    /// everything before it so confirms stay in order.
    fn nack_last(&mut self, outbox: &Outbox) {
        if let Some((seq, acked)) = &mut self.confirm {
            let (tag, number) = (*seq, self.number);
            let before = tag - 1;
            if before > *acked {
                let multiple = before - *acked > 1;
                outbox.push(|out| encode_basic_ack(out, number, before, multiple));
            }
            outbox.push(|out| encode_basic_nack(out, number, tag, false, false));
            *acked = tag;
        }
    }

    /// Routes and enqueues one message; `Ok(true)` if a full `reject-publish` queue
    /// refused it (its publisher gets a nack in confirm mode).
    fn route_and_enqueue(
        &mut self,
        ctx: &ConnCtx,
        exchange: &Arc<Exchange>,
        message: Arc<Message>,
        extra_keys: &[Vec<u8>],
        mandatory: bool,
    ) -> Result<bool, AmqpError> {
        let single = [message.routing_key.as_bytes()];
        let many: Vec<&[u8]>;
        let keys: &[&[u8]] = if extra_keys.is_empty() {
            &single
        } else {
            many = std::iter::once(message.routing_key.as_bytes())
                .chain(extra_keys.iter().map(Vec::as_slice))
                .collect();
            &many
        };
        let request = RouteRequest {
            exchange: message.exchange.as_bytes(),
            routing_keys: keys,
            headers: message.properties.headers().unwrap_or_default(),
        };
        let mut routed = std::mem::take(&mut self.routed);
        routed.clear();
        if let Some(delayed) = exchange.delayed()
            && let Some(due) = delayed.due(exchange.name(), message.properties.headers())
        {
            // `mandatory` is judged against the bindings of now; a message that routes
            // nowhere now is returned and not held (see `broker::delayed`).
            if mandatory {
                ctx.broker
                    .route(exchange, &request, &mut self.scratch, &mut routed)?;
                let routable = !routed.is_empty();
                routed.clear();
                self.routed = routed;
                if !routable {
                    self.send_return(ctx, &message);
                    return Ok(false);
                }
            } else {
                self.routed = routed;
            }
            delayed.hold(due, message, extra_keys);
            return Ok(false);
        }
        if exchange.is_default() && extra_keys.is_empty() {
            match self.default_routes.get(&message.routing_key) {
                Some(q) if !q.is_deleted() => routed.push(q.clone()),
                _ => {
                    if let Some(q) = ctx.broker.queue(message.routing_key.as_str()) {
                        if self.default_routes.len() > 1024 {
                            self.default_routes.clear();
                        }
                        self.default_routes
                            .insert(message.routing_key.compact(), q.clone());
                        routed.push(q);
                    } else {
                        self.default_routes.remove(&message.routing_key);
                    }
                }
            }
        } else {
            ctx.broker
                .route(exchange, &request, &mut self.scratch, &mut routed)?;
        }
        let mut refused = false;
        if routed.is_empty() {
            if mandatory {
                self.send_return(ctx, &message);
            }
        } else {
            for queue in routed.drain(..) {
                refused |= queue.enqueue(message.clone()) == Enqueued::Refused;
                if queue.is_backlogged() {
                    self.backlogged = Some(queue);
                }
            }
        }
        self.routed = routed;
        Ok(refused)
    }

    /// Returns an unroutable `mandatory` message (312 NO_ROUTE).
    fn send_return(&self, ctx: &ConnCtx, message: &Message) {
        let method = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
            reply_code: ReplyCode::NoRoute.code(),
            reply_text: "NO_ROUTE".into(),
            exchange: message.exchange.as_str().into(),
            routing_key: message.routing_key.as_str().into(),
        }));
        let (number, frame_max) = (self.number, ctx.frame_max);
        ctx.outbox.push(|out| {
            if encode_method(out, number, &method).is_ok() {
                encode_content(
                    out,
                    number,
                    frame_max,
                    &message.properties,
                    &[&message.body],
                );
            }
        });
    }

    /// A backlogged queue published to since the last call, if any (flow control).
    pub fn take_backlogged(&mut self) -> Option<Arc<Queue>> {
        self.backlogged.take()
    }

    /// Writes the confirm acks due since the last flush (one frame, `multiple` if several).
    pub fn flush_confirms(&mut self, outbox: &Outbox) {
        if let Some((seq, acked)) = &mut self.confirm
            && *seq > *acked
        {
            let multiple = *seq - *acked > 1;
            let (tag, number) = (*seq, self.number);
            outbox.push(|out| encode_basic_ack(out, number, tag, multiple));
            *acked = *seq;
        }
    }

    /// Closes the channel's state: consumers cancelled, unacked messages requeued.
    pub fn close(&mut self, ctx: &ConnCtx) {
        self.pending = None;
        let (consumers, unacked) = {
            let mut st = self.delivery.state.lock();
            st.closed = true;
            (
                std::mem::take(&mut st.consumers),
                std::mem::take(&mut st.unacked),
            )
        };
        for consumer in consumers.into_values() {
            ctx.broker.remove_consumer(&consumer);
        }
        requeue_all(unacked.into_values().collect());
    }
}

fn protocol_error(e: crate::protocol::ProtocolError) -> AmqpError {
    let (class, method) = e.class_method();
    AmqpError::new(e.reply_code(), e.to_string()).during(class, method)
}

fn check_tag(delivery: &DeliveryChannel, tag: u64, multiple: bool) -> Result<(), AmqpError> {
    let st = delivery.state.lock();
    if (multiple && tag == 0) || st.unacked.contains_key(&tag) {
        Ok(())
    } else {
        Err(unknown_tag(tag))
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
            return Err(unknown_tag(tag));
        }
        let rest = st.unacked.split_off(&(tag + 1));
        let taken = std::mem::replace(&mut st.unacked, rest);
        Ok(taken.into_values().collect())
    } else {
        match st.unacked.remove(&tag) {
            Some(u) => Ok(vec![u]),
            None => Err(unknown_tag(tag)),
        }
    }
}

/// Settled deliveries of one queue, oldest first: each message with its deadline.
type QueueGroup = (Arc<Queue>, Vec<(Arc<Message>, u64)>);

/// Groups settled deliveries by the queue they came from.
fn by_queue(unacked: Vec<Unacked>) -> Vec<QueueGroup> {
    let mut groups: Vec<QueueGroup> = Vec::new();
    for u in unacked {
        let item = (u.message, u.deadline);
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, items)) => items.push(item),
            None => groups.push((u.queue, vec![item])),
        }
    }
    groups
}

/// Puts messages back into their queues, oldest first, with their deadlines.
fn requeue_all(unacked: Vec<Unacked>) {
    for (queue, items) in by_queue(unacked) {
        queue.requeue(items.into_iter());
    }
}

/// Dead-letters rejected messages (reject/nack without requeue) through their queues.
fn reject_all(unacked: Vec<Unacked>) {
    for (queue, items) in by_queue(unacked) {
        queue.reject(items.into_iter().map(|(message, _)| message));
    }
}
