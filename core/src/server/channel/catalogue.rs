//! The catalogue methods of a channel: `exchange.declare/delete/bind/unbind` and
//! `queue.declare/bind/unbind/purge/delete`, each one call on the connection's vhost plus
//! the reply.
//!
//! Every method first checks the user's permissions as RabbitMQ does (configure to declare or
//! delete, write on a binding's destination and read on its source, read to purge), before
//! the vhost is asked to do anything, so a refusal leaves nothing half done. Passive declares
//! are not checked. A new exchange with an `alternate-exchange`, or a new queue with an
//! `x-dead-letter-exchange`, also needs read on itself and write on the exchange it names:
//! those messages are later routed there without any per-message check.

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, exchange, queue};

use super::{Channel, ConnCtx};
use crate::auth::{Operation, ResourceKind};
use crate::broker::args::text_arg;
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
                let name = d.exchange.as_str();
                // The default exchange is refused by the vhost, and a passive declare needs no
                // permission.
                if !d.passive && !name.is_empty() {
                    ctx.check(ResourceKind::Exchange, Operation::Configure, name)?;
                    // RabbitMQ checks the reserved prefix before the alternate exchange's
                    // permissions, and only for an exchange it is about to create.
                    if let Some(alternate) = text_arg(&d.arguments, "alternate-exchange")
                        && !name.starts_with("amq.")
                        && vhost.exchange(name).is_none()
                    {
                        ctx.check(ResourceKind::Exchange, Operation::Read, name)?;
                        ctx.check(ResourceKind::Exchange, Operation::Write, alternate)?;
                    }
                }
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
                let name = d.exchange.as_str();
                // The default and `amq.*` exchanges are refused by the vhost whatever the
                // permissions, as RabbitMQ refuses them before it checks.
                if !name.is_empty() && !name.starts_with("amq.") {
                    ctx.check(ResourceKind::Exchange, Operation::Configure, name)?;
                }
                vhost.delete_exchange(name, d.if_unused)?;
                self.exchanges.remove(d.exchange.as_str());
                (!d.nowait).then_some(M::DeleteOk(exchange::DeleteOk {}))
            }
            M::Bind(b) => {
                let target = BindTarget::Exchange(b.destination.as_str());
                let (source, key) = (b.source.as_str(), b.routing_key.as_str());
                check_binding(ctx, ResourceKind::Exchange, b.destination.as_str(), source)?;
                vhost.bind(ctx.id, target, source, key, &b.arguments)?;
                (!b.nowait).then_some(M::BindOk(exchange::BindOk {}))
            }
            M::Unbind(b) => {
                let target = BindTarget::Exchange(b.destination.as_str());
                let (source, key) = (b.source.as_str(), b.routing_key.as_str());
                check_binding(ctx, ResourceKind::Exchange, b.destination.as_str(), source)?;
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
                let declare = QueueDeclare {
                    name: &name,
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: &d.arguments,
                };
                let queue = vhost.declare_queue_checked(ctx.id, &declare, |name, exists| {
                    check_queue_declare(ctx, &declare, name, exists)
                })?;
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
                let queue = self.queue_name(b.queue.as_str())?;
                let (source, key) = (b.exchange.as_str(), b.routing_key.as_str());
                check_binding(ctx, ResourceKind::Queue, queue, source)?;
                let target = BindTarget::Queue(queue);
                vhost.bind(ctx.id, target, source, key, &b.arguments)?;
                (!b.nowait).then_some(M::BindOk(queue::BindOk {}))
            }
            M::Unbind(b) => {
                let queue = self.queue_name(b.queue.as_str())?;
                let (source, key) = (b.exchange.as_str(), b.routing_key.as_str());
                check_binding(ctx, ResourceKind::Queue, queue, source)?;
                let target = BindTarget::Queue(queue);
                vhost.unbind(ctx.id, target, source, key, &b.arguments)?;
                Some(M::UnbindOk(queue::UnbindOk {}))
            }
            M::Purge(p) => {
                let name = self.queue_name(p.queue.as_str())?;
                ctx.check(ResourceKind::Queue, Operation::Read, name)?;
                let queue = self.find_queue(ctx, name)?;
                let count = queue.purge();
                (!p.nowait).then_some(M::PurgeOk(queue::PurgeOk {
                    message_count: count as u32,
                }))
            }
            M::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?.to_owned();
                ctx.check(ResourceKind::Queue, Operation::Configure, &name)?;
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

/// The permissions a binding needs (`queue.bind/unbind`, `exchange.bind/unbind`): write on the
/// destination, then read on the source exchange. A binding from the default exchange is
/// refused by the vhost whatever the permissions, and RabbitMQ refuses it before it checks
/// the source, so the source check is skipped for it.
fn check_binding(
    ctx: &mut ConnCtx,
    destination_kind: ResourceKind,
    destination: &str,
    source: &str,
) -> Result<(), AmqpError> {
    ctx.check(destination_kind, Operation::Write, destination)?;
    if !source.is_empty() && !destination.is_empty() {
        ctx.check(ResourceKind::Exchange, Operation::Read, source)?;
    }
    Ok(())
}

/// The permissions a non-passive `queue.declare` needs, given the queue's final name
/// (generated for a server-named queue) and whether it exists: configure on it; for a queue
/// about to be created with a dead-letter exchange, also read on the queue and write on that
/// exchange. A new queue with a reserved name is left to the vhost, which refuses it with
/// RabbitMQ's text before any permission is looked at.
fn check_queue_declare(
    ctx: &mut ConnCtx,
    declare: &QueueDeclare<'_>,
    name: &str,
    exists: bool,
) -> Result<(), AmqpError> {
    if declare.passive || (!exists && declare.name.starts_with("amq.")) {
        return Ok(());
    }
    ctx.check(ResourceKind::Queue, Operation::Configure, name)?;
    if !exists && let Some(dead_letter) = text_arg(declare.arguments, "x-dead-letter-exchange") {
        ctx.check(ResourceKind::Queue, Operation::Read, name)?;
        ctx.check(ResourceKind::Exchange, Operation::Write, dead_letter)?;
    }
    Ok(())
}
