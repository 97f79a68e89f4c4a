//! Transactions (`tx.select/commit/rollback`) and publisher confirms (`confirm.select`).
//!
//! Confirms are numbered per channel in publish order. A publish that a full
//! `reject-publish` queue refused is nacked at once — after acking everything before it, so
//! confirms stay in order; the others are acked in one `basic.ack multiple=true` per batch of
//! frames read ([`Channel::flush_confirms`], called by the connection), not one per message.
//!
//! In a transaction, publishes and acknowledgements are held as [`TxOp`]s and applied at
//! `tx.commit`, each publish through the same vhost publish path as outside one.

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, confirm, tx};

use super::{Channel, ConnCtx, Outbox};
use crate::broker::{Exchange, Message, RoutingKeys, replies};
use crate::error::AmqpError;
use crate::protocol::{encode_basic_ack, encode_basic_nack};

/// A publish or acknowledgement held back until `tx.commit`.
#[derive(Debug)]
pub(super) enum TxOp {
    Publish {
        exchange: Arc<Exchange>,
        message: Arc<Message>,
        keys: RoutingKeys,
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

/// A channel in confirm mode: the last publish sequence number and the last one confirmed.
#[derive(Debug, Default)]
pub(super) struct Confirms {
    seq: u64,
    confirmed: u64,
}

impl Channel {
    pub(super) fn confirm_select(&mut self, ctx: &ConnCtx, nowait: bool) -> Result<(), AmqpError> {
        if self.tx.is_some() {
            return Err(replies::mode_switch("tx", "confirm"));
        }
        if self.confirms.is_none() {
            self.confirms = Some(Confirms::default());
        }
        if !nowait {
            self.send(
                ctx,
                AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
            );
        }
        Ok(())
    }

    /// In confirm mode, numbers the publish just made; a refused one is nacked at once,
    /// after acking everything before it so that confirms stay in order.
    pub(super) fn numbered(&mut self, outbox: &Outbox, refused: bool) {
        let Some(c) = &mut self.confirms else {
            return;
        };
        c.seq += 1;
        if !refused {
            return;
        }
        let (tag, number) = (c.seq, self.number);
        let before = tag - 1;
        if before > c.confirmed {
            let multiple = before - c.confirmed > 1;
            outbox.push(|out| encode_basic_ack(out, number, before, multiple));
        }
        outbox.push(|out| encode_basic_nack(out, number, tag, false, false));
        c.confirmed = tag;
    }

    /// Writes the confirm acks due since the last flush (one frame, `multiple` if several).
    pub fn flush_confirms(&mut self, outbox: &Outbox) {
        if let Some(c) = &mut self.confirms
            && c.seq > c.confirmed
        {
            let multiple = c.seq - c.confirmed > 1;
            let (tag, number) = (c.seq, self.number);
            outbox.push(|out| encode_basic_ack(out, number, tag, multiple));
            c.confirmed = c.seq;
        }
    }

    pub(super) fn tx_method(
        &mut self,
        ctx: &mut ConnCtx,
        m: tx::AMQPMethod,
    ) -> Result<(), AmqpError> {
        use tx::AMQPMethod as M;
        match m {
            M::Select(_) => {
                if self.confirms.is_some() {
                    return Err(replies::mode_switch("confirm", "tx"));
                }
                if self.tx.is_none() {
                    self.tx = Some(Vec::new());
                }
                self.send(ctx, AMQPClass::Tx(M::SelectOk(tx::SelectOk {})));
            }
            M::Commit(_) => {
                let ops = self
                    .tx
                    .replace(Vec::new())
                    .ok_or_else(replies::not_transactional)?;
                for op in ops {
                    match op {
                        TxOp::Publish {
                            exchange,
                            message,
                            keys,
                            mandatory,
                        } => {
                            self.publish_one(ctx, &exchange, message, &keys, mandatory)?;
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
                self.tx
                    .replace(Vec::new())
                    .ok_or_else(replies::not_transactional)?;
                self.send(ctx, AMQPClass::Tx(M::RollbackOk(tx::RollbackOk {})));
            }
            _ => return Err(replies::unexpected_method("tx method")),
        }
        Ok(())
    }
}
