//! One AMQP channel: its state machine and its methods, split by concern:
//!
//! - [`catalogue`]: `exchange.*` and `queue.*` (declare, delete, bind, purge);
//! - [`publish`]: `basic.publish` with its content frames, handed to the vhost's one
//!   publish path;
//! - [`deliveries`]: consumers, `basic.get`, acks, rejects, `basic.recover`, `basic.qos`;
//! - [`tx`]: transactions and publisher confirms.
//!
//! A channel is owned by its connection's task, so everything here is plain `&mut self`; only
//! the delivery half ([`DeliveryChannel`]) is shared with the queues that deliver into it.
//! Errors are [`AmqpError`]s; the connection decides from the code whether they close this
//! channel or the whole connection.

mod catalogue;
mod deliveries;
mod publish;
mod tx;

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, channel, confirm};
use rustc_hash::FxHashMap;

use super::budget::Budget;
use super::outbox::Outbox;
use crate::auth::{Grants, Operation, ResourceKind};
use crate::broker::connections::{ChannelEntry, ChannelRegistered};
use crate::broker::{
    Broker, DeliveryChannel, Durably, Exchange, Message, PublishScratch, Queue, VHost, replies,
};
use crate::error::AmqpError;
use crate::protocol::{RawMethod, encode_content, encode_method};
use publish::PendingPublish;
use tx::{Confirms, Tx};

/// What a channel needs from its connection.
#[derive(Debug)]
pub struct ConnCtx {
    /// Connection id (exclusive queue ownership).
    pub id: u64,
    /// The broker.
    pub broker: Arc<Broker>,
    /// The vhost `connection.open` chose (none before it).
    pub vhost: Option<Arc<VHost>>,
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
    /// A message was published on this connection (an alarm then blocks it).
    pub published: bool,
    /// The store writes the connection's held output waits for (see [`ConnCtx::hold_output_until`]).
    pub holds: Vec<Durably>,
    /// What the user may do in the vhost (set with the vhost at `connection.open`).
    pub grants: Option<Grants>,
    /// What the client has made the connection hold (see [`crate::server::budget`]).
    pub budget: Arc<Budget>,
}

impl ConnCtx {
    /// Checks that the connection's user may do `operation` on the `kind` named `name`
    /// (403 ACCESS_REFUSED otherwise); cached, see [`Grants`].
    pub fn check(
        &mut self,
        kind: ResourceKind,
        operation: Operation,
        name: &str,
    ) -> Result<(), AmqpError> {
        match &mut self.grants {
            Some(grants) => grants.check(self.broker.auth(), kind, operation, name),
            None => Err(replies::channel_not_open()),
        }
    }

    /// Sends a method frame.
    pub fn send(&self, channel: u16, method: &AMQPClass) {
        self.outbox.push(|out| {
            if let Err(e) = encode_method(out, channel, method) {
                tracing::error!("cannot encode {method:?}: {e}");
            }
        });
    }

    /// Sends a method frame followed by `message`'s content (`basic.get-ok`,
    /// `basic.return`).
    pub fn send_with_content(&self, channel: u16, method: &AMQPClass, message: &Message) {
        let frame_max = self.frame_max;
        self.outbox
            .push(|out| match encode_method(out, channel, method) {
                Ok(()) => {
                    let parts = message.parts();
                    encode_content(out, channel, frame_max, parts.properties, &[parts.body]);
                }
                Err(e) => tracing::error!("cannot encode {method:?}: {e}"),
            });
    }

    /// Keeps everything sent from now on from the socket until `write` is durable (a reply
    /// that promises it: `declare-ok` of a durable object, `tx.commit-ok`); nothing is held
    /// for a write that is durable already. The connection releases the output.
    pub fn hold_output_until(&mut self, write: Durably) {
        if self.broker.stores().is_durable(write) == Some(true) {
            return;
        }
        self.outbox.hold();
        self.holds.push(write);
    }

    /// After a catalogue change: its reply waits until the vhost's definition writes are
    /// durable.
    pub fn hold_for_definitions(&mut self) {
        if let Some(vhost) = &self.vhost {
            let written = vhost.definitions_written();
            if written.0 > 0 {
                self.hold_output_until(Durably::Definitions(written));
            }
        }
    }

    /// The connection's vhost. Channels exist only after `connection.open` chose it, so the
    /// error is for a broken invariant, not for a client.
    pub fn vhost(&self) -> Result<&Arc<VHost>, AmqpError> {
        self.vhost
            .as_ref()
            .ok_or_else(|| AmqpError::internal("channel used before connection.open"))
    }
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
    /// Confirm mode: the publish sequence and what was confirmed.
    confirms: Option<Confirms>,
    tx: Option<Tx>,
    scratch: PublishScratch,
    /// A queue this channel published to that is backlogged (flow control).
    backlogged: Option<Arc<Queue>>,
    /// The exchange this channel last found the user may write to, with the permission
    /// generation of that check: the publish path's check without a scan of names.
    write_granted: Option<(Arc<Exchange>, u64)>,
    /// This channel in its connection's list (the management API's view); unlisted when the
    /// channel is dropped, however it ends.
    listed: Option<ChannelRegistered>,
}

fn method_ids(m: &AMQPClass) -> (u16, u16) {
    (m.get_amqp_class_id(), m.get_amqp_method_id())
}

impl Channel {
    /// A freshly opened channel.
    pub fn new(number: u16, ctx: &ConnCtx) -> Channel {
        let delivery = DeliveryChannel::new(
            number,
            ctx.frame_max,
            ctx.id,
            ctx.cancel_notify,
            ctx.outbox.clone(),
        );
        let listed = ctx
            .broker
            .connections()
            .by_id(ctx.id)
            .map(|connection| connection.open_channel(delivery.clone()));
        Channel {
            number,
            phase: Phase::Open,
            delivery,
            pending: None,
            exchanges: FxHashMap::default(),
            last_queue: None,
            consumer_prefetch: 0,
            confirms: None,
            tx: None,
            scratch: PublishScratch::default(),
            backlogged: None,
            write_granted: None,
            listed,
        }
    }

    /// This channel's entry in the management API's view, to record a mode change in.
    fn listing(&self) -> Option<&Arc<ChannelEntry>> {
        self.listed.as_ref().map(ChannelRegistered::entry)
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
                self.flush_confirms(&outbox, ctx.broker.stores());
                self.close(ctx);
                self.send(
                    ctx,
                    C::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                return Ok(Outcome::Remove);
            }
            C::Channel(channel::AMQPMethod::CloseOk(_)) => {
                return Err(replies::unimplemented_method());
            }
            C::Channel(channel::AMQPMethod::Open(_)) => {
                return Err(replies::second_channel_open());
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
                    self.drain_consumers(ctx)?;
                }
            }
            C::Channel(channel::AMQPMethod::FlowOk(_)) => {}
            C::Exchange(m) => self.exchange_method(ctx, m)?,
            C::Queue(m) => self.queue_method(ctx, m)?,
            C::Basic(m) => self.basic_method(ctx, raw, m)?,
            C::Tx(m) => self.tx_method(ctx, m)?,
            C::Confirm(confirm::AMQPMethod::Select(s)) => self.confirm_select(ctx, s.nowait)?,
            other => {
                let (class, method) = method_ids(&other);
                return Err(replies::unexpected_method(&format!(
                    "method {class}.{method} on a channel"
                )));
            }
        }
        Ok(Outcome::Continue)
    }

    /// Resumes deliveries after the outbox drained.
    pub fn resume(&self, ctx: &ConnCtx) {
        if let Err(e) = self.drain_consumers(ctx) {
            tracing::error!("cannot resume deliveries: {e}");
        }
    }

    /// Closes the channel's state: consumers cancelled, unacked messages requeued.
    pub fn close(&mut self, ctx: &ConnCtx) {
        // What was being assembled or held for a commit is given back to the budget now,
        // not when the client gets round to its close-ok.
        self.pending = None;
        self.tx = None;
        let (consumers, unacked) = {
            let mut st = self.delivery.state.lock();
            st.closed = true;
            (
                std::mem::take(&mut st.consumers),
                std::mem::take(&mut st.unacked),
            )
        };
        let unacked: Vec<_> = unacked.into_values().collect();
        deliveries::release_credit(&unacked);
        let Ok(vhost) = ctx.vhost() else {
            return;
        };
        for consumer in consumers.into_values() {
            vhost.remove_consumer(&consumer);
        }
        deliveries::requeue_all(vhost, unacked);
    }
}

fn protocol_error(e: crate::protocol::ProtocolError) -> AmqpError {
    let (class, method) = e.class_method();
    AmqpError::new(e.reply_code(), e.to_string()).during(class, method)
}
