//! The catalogue methods of a channel: `exchange.declare/delete/bind/unbind` and
//! `queue.declare/bind/unbind/purge/delete`, each one call on the connection's vhost plus
//! the reply.

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, exchange, queue};

use super::{Channel, ConnCtx};
use crate::broker::replies;
use crate::broker::vhost::{BindTarget, ExchangeDeclare, QueueDeclare};
use crate::broker::{Queue, VHost};
use crate::error::AmqpError;

impl Channel {
    pub(super) fn exchange_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: exchange::AMQPMethod,
    ) -> Result<(), AmqpError> {
        use exchange::AMQPMethod as M;
        let vhost = ctx.vhost()?.clone();
        let reply = match m {
            M::Declare(d) => {
                vhost.declare_exchange(&ExchangeDeclare {
                    name: d.exchange.as_str(),
                    kind: d.kind.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: &d.arguments,
                })?;
                (!d.nowait).then_some(M::DeclareOk(exchange::DeclareOk {}))
            }
            M::Delete(d) => {
                vhost.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                self.exchanges.remove(d.exchange.as_str());
                (!d.nowait).then_some(M::DeleteOk(exchange::DeleteOk {}))
            }
            M::Bind(b) => {
                let target = BindTarget::Exchange(b.destination.as_str());
                let (source, key) = (b.source.as_str(), b.routing_key.as_str());
                vhost.bind(ctx.id, target, source, key, &b.arguments)?;
                (!b.nowait).then_some(M::BindOk(exchange::BindOk {}))
            }
            M::Unbind(b) => {
                let target = BindTarget::Exchange(b.destination.as_str());
                let (source, key) = (b.source.as_str(), b.routing_key.as_str());
                vhost.unbind(ctx.id, target, source, key, &b.arguments)?;
                (!b.nowait).then_some(M::UnbindOk(exchange::UnbindOk {}))
            }
            _ => return Err(replies::unexpected_method("exchange method")),
        };
        ctx.hold_for_definitions();
        if let Some(reply) = reply {
            self.send(ctx, AMQPClass::Exchange(reply));
        }
        Ok(())
    }

    /// An empty queue name means the last queue declared on this channel.
    pub(super) fn queue_name<'a>(&'a self, name: &'a str) -> Result<&'a str, AmqpError> {
        if !name.is_empty() {
            return Ok(name);
        }
        self.last_queue
            .as_deref()
            .ok_or_else(replies::no_previous_queue)
    }

    /// The queue `name` (or the last declared), if this connection may use it.
    pub(super) fn find_queue(&self, ctx: &ConnCtx, name: &str) -> Result<Arc<Queue>, AmqpError> {
        ctx.vhost()?.usable_queue(ctx.id, self.queue_name(name)?)
    }

    /// `(messages, consumers)` of `queue` for a reply, dead-lettering what expired meanwhile.
    fn counts(vhost: &VHost, queue: &Arc<Queue>) -> (u32, u32) {
        let ((messages, consumers), deaths) = queue.counts();
        vhost.bury(queue, deaths);
        (messages as u32, consumers as u32)
    }

    pub(super) fn queue_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: queue::AMQPMethod,
    ) -> Result<(), AmqpError> {
        use queue::AMQPMethod as M;
        let vhost = ctx.vhost()?.clone();
        let reply = match m {
            M::Declare(d) => {
                let name = if d.passive && d.queue.as_str().is_empty() {
                    self.queue_name("")?.to_owned()
                } else {
                    d.queue.as_str().to_owned()
                };
                let queue = vhost.declare_queue(
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
                (!d.nowait).then(|| {
                    let (message_count, consumer_count) = Self::counts(&vhost, &queue);
                    M::DeclareOk(queue::DeclareOk {
                        queue: queue.name().into(),
                        message_count,
                        consumer_count,
                    })
                })
            }
            M::Bind(b) => {
                let target = BindTarget::Queue(self.queue_name(b.queue.as_str())?);
                let (source, key) = (b.exchange.as_str(), b.routing_key.as_str());
                vhost.bind(ctx.id, target, source, key, &b.arguments)?;
                (!b.nowait).then_some(M::BindOk(queue::BindOk {}))
            }
            M::Unbind(b) => {
                let target = BindTarget::Queue(self.queue_name(b.queue.as_str())?);
                let (source, key) = (b.exchange.as_str(), b.routing_key.as_str());
                vhost.unbind(ctx.id, target, source, key, &b.arguments)?;
                Some(M::UnbindOk(queue::UnbindOk {}))
            }
            M::Purge(p) => {
                let queue = self.find_queue(ctx, p.queue.as_str())?;
                let count = queue.purge();
                (!p.nowait).then_some(M::PurgeOk(queue::PurgeOk {
                    message_count: count as u32,
                }))
            }
            M::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?.to_owned();
                let count = vhost.delete_queue(ctx.id, &name, d.if_unused, d.if_empty)?;
                ctx.exclusive_queues.retain(|q| !q.is_deleted());
                (!d.nowait).then_some(M::DeleteOk(queue::DeleteOk {
                    message_count: count as u32,
                }))
            }
            _ => return Err(replies::unexpected_method("queue method")),
        };
        ctx.hold_for_definitions();
        if let Some(reply) = reply {
            self.send(ctx, AMQPClass::Queue(reply));
        }
        Ok(())
    }
}
