//! `basic.publish` on a channel: the method, then a content header, then body frames, put
//! together into one [`Message`] and handed to the vhost's one publish path (or held for
//! `tx.commit`).
//!
//! Hot path: the exchange handle comes from a per-channel cache keyed by name and
//! revalidated by the exchange's `deleted` flag, the publish path's buffers are the
//! channel's and reused, a single-frame body is kept as the frame's slice, and a confirm is
//! not written per message but flushed once per batch of frames read (see [`super::tx`]).
//!
//! Permission: write on the exchange published to (the default exchange as `amq.default`, a
//! delayed exchange as itself), checked when the method arrives, before the exchange is looked
//! up (so a refused user cannot probe which exchanges exist) and before any content is taken.
//! The channel remembers the exchange whose write it last checked and the permission
//! generation of that check, so a publisher sending to one exchange pays a pointer compare
//! and an atomic load per message, not a scan of names. Where the message goes next (an
//! alternate exchange, a dead-letter exchange) is not checked per message: RabbitMQ checks
//! those links once, when they are declared.

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, basic};
use bytes::{Bytes, BytesMut};

use super::tx::TxOp;
use super::{Channel, ConnCtx};
use crate::auth::{Operation, ResourceKind};
use crate::broker::queue::expiration::parse_expiration;
use crate::broker::{
    Durably, Exchange, Message, Origin, Outcome, Publish as BrokerPublish, Queue, Routed,
    RoutingKeys, replies,
};
use crate::error::AmqpError;
use crate::protocol::{ContentHeader, Publish, ReplyCode};
use crate::server::budget::{Account, Charge};
use crate::stats::Counter;

/// A publish waiting for its content frames.
#[derive(Debug)]
pub(super) struct PendingPublish {
    publish: Publish,
    exchange: Arc<Exchange>,
    header: Option<ContentHeader>,
    body_size: usize,
    first: Option<Bytes>,
    joined: Option<BytesMut>,
    received: usize,
    /// The declared body size, held against the connection's bound on unfinished content
    /// from the content header until the message is complete or dropped.
    reserved: Charge,
}

fn unexpected(text: &'static str) -> AmqpError {
    AmqpError::new(ReplyCode::UnexpectedFrame, text)
}

impl Channel {
    /// When a publish is waiting for content frames, what a method frame now violates
    /// (RabbitMQ's 505 texts).
    pub fn content_expected(&self) -> Option<&'static str> {
        self.pending.as_ref().map(|p| match p.header {
            None => "expected content header for class 60, got non content header frame instead",
            Some(_) => "expected content body, got non content body frame instead",
        })
    }

    /// The exchange `name` to publish to, once the user may write to it.
    fn publish_target(
        &mut self,
        ctx: &mut ConnCtx,
        name: &str,
    ) -> Result<Arc<Exchange>, AmqpError> {
        let generation = ctx.broker.auth().generation();
        if let Some(ex) = self.exchanges.get(name).filter(|ex| !ex.is_deleted())
            && self
                .write_granted
                .as_ref()
                .is_some_and(|(last, at)| *at == generation && Arc::ptr_eq(last, ex))
        {
            return Ok(ex.clone());
        }
        // Checked before the lookup, so a refused user cannot tell which exchanges exist.
        ctx.check(ResourceKind::Exchange, Operation::Write, name)?;
        let exchange = self.exchange_handle(ctx, name)?;
        self.write_granted = Some((exchange.clone(), generation));
        Ok(exchange)
    }

    fn exchange_handle(&mut self, ctx: &ConnCtx, name: &str) -> Result<Arc<Exchange>, AmqpError> {
        if let Some(ex) = self.exchanges.get(name)
            && !ex.is_deleted()
        {
            return Ok(ex.clone());
        }
        let ex = ctx.vhost()?.existing_exchange(name)?;
        if self.exchanges.len() > 1024 {
            self.exchanges.clear();
        }
        self.exchanges.insert(name.to_owned(), ex.clone());
        Ok(ex)
    }

    pub(super) fn start_publish(
        &mut self,
        ctx: &mut ConnCtx,
        publish: Publish,
    ) -> Result<(), AmqpError> {
        if publish.immediate {
            return Err(replies::not_implemented("immediate=true"));
        }
        ctx.published = true;
        let exchange = self.publish_target(ctx, publish.exchange.as_str())?;
        if exchange.spec.internal {
            return Err(replies::internal_exchange(
                ctx.vhost()?.name(),
                exchange.name(),
            ));
        }
        self.pending = Some(PendingPublish {
            publish,
            exchange,
            header: None,
            body_size: 0,
            first: None,
            joined: None,
            received: 0,
            reserved: ctx.budget.charge(Account::Assembling),
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
            return Err(unexpected(
                "expected method frame, got non method frame instead",
            ));
        };
        if pending.header.is_some() {
            return Err(unexpected(
                "expected content body, got non content body frame instead",
            ));
        }
        let size = header.body_size();
        if size > ctx.max_message_size as u64 {
            self.pending = None;
            return Err(replies::message_too_large(size, ctx.max_message_size).during(60, 40));
        }
        // Every channel of a connection could otherwise hold a message of up to the maximum
        // size half received. Assembly completes only when more frames are read, so waiting
        // here would wedge the connection: the header that would cross the bound is refused
        // instead, before any of its body is buffered.
        let held = ctx.budget.held(Account::Assembling);
        let limit = ctx.budget.assembly_limit();
        if held.saturating_add(size as usize) > limit {
            self.pending = None;
            return Err(replies::assembly_over_limit(size, held, limit).during(60, 40));
        }
        pending.reserved.add(size as usize);
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
            return Err(unexpected(
                "expected method frame, got non method frame instead",
            ));
        };
        if pending.header.is_none() {
            return Err(unexpected(
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
        let bytes = body.len();
        let mut properties = header
            .map(ContentHeader::into_properties)
            .unwrap_or_default();
        let distribution = RoutingKeys::at_publish(&properties)
            .map_err(|e| AmqpError::new(e.reply_code(), e.to_string()).during(60, 40))?;
        if let Some(stored) = distribution.properties {
            properties = stored;
        }
        if let Some(raw) = properties.expiration()
            && let Err(e) = parse_expiration(raw)
        {
            return Err(e.to_amqp_error(raw).during(60, 40));
        }
        // RabbitMQ's validated user-id: a message can only claim the publisher's login.
        if let Some(claimed) = properties.shortstr(crate::protocol::Property::UserId) {
            let user = ctx.grants.as_ref().map(|g| g.user()).unwrap_or_default();
            if claimed != user.as_bytes() {
                return Err(
                    replies::user_id_mismatch(&String::from_utf8_lossy(claimed), user)
                        .during(60, 40),
                );
            }
        }
        // The one copy between socket and queue: the message stops pointing into the read
        // buffer here (see `broker::message`).
        let message = Message::new(&publish.exchange, &publish.routing_key, &properties, &body);
        let keys = distribution.keys;
        if let Some(tx) = &mut self.tx {
            let op = TxOp::Publish {
                exchange,
                message,
                keys,
                mandatory: publish.mandatory,
            };
            return tx
                .push(&ctx.budget, op, bytes)
                .map_err(|e| e.during(60, 40));
        }
        let (refused, durably) = self
            .publish_one(ctx, &exchange, message, &keys, publish.mandatory)
            .map_err(|e| e.during(60, 40))?;
        self.numbered(refused, durably, bytes);
        Ok(())
    }

    /// Publishes one message through the vhost and acts on the outcome: `basic.return` for
    /// an unroutable `mandatory` message, flow control for a backlogged queue. Returns
    /// whether it was refused (a full queue, a failed store: its confirm is then a nack) and
    /// the store write its confirm waits for.
    pub(super) fn publish_one(
        &mut self,
        ctx: &ConnCtx,
        exchange: &Arc<Exchange>,
        message: Message,
        keys: &RoutingKeys,
        mandatory: bool,
    ) -> Result<(bool, Option<Durably>), AmqpError> {
        let outcome = ctx.vhost()?.publish(
            BrokerPublish {
                exchange,
                message,
                keys,
                mandatory,
                origin: Origin::Client,
            },
            &mut self.scratch,
        )?;
        self.count_publish(&outcome, mandatory);
        if let Some(returned) = &outcome.returned {
            self.send_return(ctx, returned);
        }
        if outcome.backlogged.is_some() {
            self.backlogged = outcome.backlogged.clone();
        }
        Ok((outcome.refused, outcome.durably))
    }

    /// Counts a publish on the channel: what the client sent, and where it went.
    fn count_publish(&self, outcome: &Outcome, mandatory: bool) {
        let counters = &self.delivery.stats.counters;
        counters.incr(Counter::Publish);
        if self.confirms.is_some() {
            counters.incr(Counter::PublishConfirm);
        }
        match outcome.routed {
            Routed::Queues(n) if n > 0 => counters.incr(Counter::Routed),
            Routed::Held | Routed::Queues(_) => {}
            Routed::Unroutable if mandatory && outcome.returned.is_some() => {
                counters.incr(Counter::ReturnUnroutable)
            }
            Routed::Unroutable => counters.incr(Counter::DropUnroutable),
        }
    }

    /// Returns an unroutable `mandatory` message (312 NO_ROUTE).
    fn send_return(&self, ctx: &ConnCtx, message: &Message) {
        let method = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
            reply_code: ReplyCode::NoRoute.code(),
            reply_text: "NO_ROUTE".into(),
            exchange: message.exchange().into(),
            routing_key: message.routing_key().into(),
        }));
        ctx.send_with_content(self.number, &method, message);
    }

    /// A backlogged queue published to since the last call, if any (flow control).
    pub fn take_backlogged(&mut self) -> Option<Arc<Queue>> {
        self.backlogged.take()
    }
}
