//! Transactions (`tx.select/commit/rollback`) and publisher confirms (`confirm.select`).
//!
//! Confirms are numbered per channel in publish order and sent in that order. A publish
//! written to a store (a persistent message that reached a durable queue, or held by a
//! durable delayed exchange) is confirmed only once that write is durable — so, confirms
//! being in order, so is everything published after it on the channel. A publish that a
//! full `reject-publish` queue refused, or whose store write failed, is nacked; the others
//! are acked in one `basic.ack multiple=true` per batch ([`Channel::flush_confirms`], called
//! by the connection after each batch of frames read and whenever a store's durability
//! moves), not one per message.
//!
//! `tx.commit-ok` is likewise sent only once the transaction's stored publishes are durable
//! (the connection holds its output until then, see `server::outbox`).
//!
//! In a transaction, publishes and acknowledgements are held as [`TxOp`]s and applied at
//! `tx.commit`, each publish through the same vhost publish path as outside one.

use std::collections::VecDeque;
use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, confirm, tx};

use super::{Channel, ConnCtx, Outbox};
use crate::broker::{Durably, Exchange, Message, RoutingKeys, replies};
use crate::error::AmqpError;
use crate::protocol::{encode_basic_ack, encode_basic_nack};
use crate::server::budget::{Account, Budget, Charge, MAX_UNCOMMITTED_OPS};
use crate::stats::Counter;
use crate::store::Stores;

/// A publish or acknowledgement held back until `tx.commit`.
#[derive(Debug)]
pub(super) enum TxOp {
    Publish {
        exchange: Arc<Exchange>,
        message: Message,
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

/// A transaction's held operations, charged to the connection's budget (bytes of published
/// bodies and a count of operations): nothing but a commit or rollback drains them, so past
/// the budget an operation is refused rather than paced.
#[derive(Debug)]
pub(super) struct Tx {
    ops: Vec<TxOp>,
    bytes: Charge,
    count: Charge,
}

impl Tx {
    fn new(budget: &Arc<Budget>) -> Tx {
        Tx {
            ops: Vec::new(),
            bytes: budget.charge(Account::Uncommitted),
            count: budget.charge(Account::UncommittedOps),
        }
    }

    /// Holds `op` (a publish of `bytes` body bytes, or an acknowledgement with 0) until
    /// commit; 406 past the connection's bounds.
    pub(super) fn push(
        &mut self,
        budget: &Budget,
        op: TxOp,
        bytes: usize,
    ) -> Result<(), AmqpError> {
        if budget.held(Account::UncommittedOps) >= MAX_UNCOMMITTED_OPS {
            return Err(replies::transaction_ops_over_limit(MAX_UNCOMMITTED_OPS));
        }
        let held = budget.held(Account::Uncommitted);
        let limit = budget.uncommitted_limit();
        if bytes > 0 && held.saturating_add(bytes) > limit {
            return Err(replies::transaction_bytes_over_limit(bytes, held, limit));
        }
        self.bytes.add(bytes);
        self.count.add(1);
        self.ops.push(op);
        Ok(())
    }

    /// The held operations, for commit or rollback; their charges are given back.
    fn take(&mut self) -> Vec<TxOp> {
        self.bytes.release(self.bytes.amount());
        self.count.release(self.count.amount());
        std::mem::take(&mut self.ops)
    }
}

/// A channel in confirm mode: the last publish sequence number, the last one confirmed, and
/// the publishes whose confirm is not simply an ack yet.
#[derive(Debug)]
pub(super) struct Confirms {
    seq: u64,
    confirmed: u64,
    /// In publish order: a nack to send, or a store write to wait for.
    undecided: VecDeque<(u64, Undecided)>,
    /// How many of `undecided` wait for a store.
    waits: usize,
    /// Those waits, counted in the connection's budget (messages, body bytes): past its
    /// bound the connection stops reading until stores catch up.
    waiting: Charge,
    waiting_bytes: Charge,
}

impl Confirms {
    fn new(budget: &Arc<Budget>) -> Confirms {
        Confirms {
            seq: 0,
            confirmed: 0,
            undecided: VecDeque::new(),
            waits: 0,
            waiting: budget.charge(Account::Unconfirmed),
            waiting_bytes: budget.charge(Account::UnconfirmedBytes),
        }
    }
}

#[derive(Debug)]
enum Undecided {
    Nack,
    /// A store write, and the body bytes of the message it stores.
    Wait(Durably, usize),
}

impl Channel {
    pub(super) fn confirm_select(&mut self, ctx: &ConnCtx, nowait: bool) -> Result<(), AmqpError> {
        if self.tx.is_some() {
            return Err(replies::mode_switch("tx", "confirm"));
        }
        if self.confirms.is_none() {
            self.confirms = Some(Confirms::new(&ctx.budget));
            if let Some(listed) = self.listing() {
                listed.set_confirm();
            }
        }
        if !nowait {
            self.send(
                ctx,
                AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
            );
        }
        Ok(())
    }

    /// In confirm mode, numbers the publish just made (of `bytes` body bytes): a refused one
    /// will be nacked, a stored one waits for its write (see [`Channel::flush_confirms`]).
    pub(super) fn numbered(&mut self, refused: bool, durably: Option<Durably>, bytes: usize) {
        let Some(c) = &mut self.confirms else {
            return;
        };
        c.seq += 1;
        match (refused, durably) {
            (true, _) => c.undecided.push_back((c.seq, Undecided::Nack)),
            (false, Some(write)) => {
                c.undecided
                    .push_back((c.seq, Undecided::Wait(write, bytes)));
                c.waits += 1;
                c.waiting.add(1);
                c.waiting_bytes.add(bytes);
            }
            (false, None) => {}
        }
    }

    /// Whether a confirm waits for a store write.
    pub fn confirms_waiting(&self) -> bool {
        self.confirms.as_ref().is_some_and(|c| c.waits > 0)
    }

    /// Writes the confirms that are decided, in order: acks as one `multiple` frame up to
    /// the first publish still waiting for its store, nacks one by one.
    pub fn flush_confirms(&mut self, outbox: &Outbox, stores: &Stores) {
        let number = self.number;
        let Some(c) = &mut self.confirms else {
            return;
        };
        // Messages acked, counted once per flush.
        let mut acked = 0;
        let ack_to = |c: &mut Confirms, tag: u64| {
            if tag <= c.confirmed {
                return 0;
            }
            let n = tag - c.confirmed;
            outbox.push(|out| encode_basic_ack(out, number, tag, n > 1));
            c.confirmed = tag;
            n
        };
        while let Some(&(tag, ref undecided)) = c.undecided.front() {
            let nack = match undecided {
                Undecided::Nack => true,
                &Undecided::Wait(write, bytes) => match stores.is_durable(write) {
                    Some(durable) => {
                        c.waits -= 1;
                        c.waiting.release(1);
                        c.waiting_bytes.release(bytes);
                        !durable
                    }
                    None => {
                        acked += ack_to(c, tag - 1);
                        self.delivery.stats.counters.add(Counter::Confirm, acked);
                        return;
                    }
                },
            };
            c.undecided.pop_front();
            if nack {
                acked += ack_to(c, tag - 1);
                outbox.push(|out| encode_basic_nack(out, number, tag, false, false));
                c.confirmed = tag;
            }
        }
        let seq = c.seq;
        acked += ack_to(c, seq);
        if acked > 0 {
            self.delivery.stats.counters.add(Counter::Confirm, acked);
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
                    self.tx = Some(Tx::new(&ctx.budget));
                    if let Some(listed) = self.listing() {
                        listed.set_transactional();
                    }
                }
                self.send(ctx, AMQPClass::Tx(M::SelectOk(tx::SelectOk {})));
            }
            M::Commit(_) => {
                let ops = self
                    .tx
                    .as_mut()
                    .map(Tx::take)
                    .ok_or_else(replies::not_transactional)?;
                for op in ops {
                    match op {
                        TxOp::Publish {
                            exchange,
                            message,
                            keys,
                            mandatory,
                        } => {
                            let (_, durably) =
                                self.publish_one(ctx, &exchange, message, &keys, mandatory)?;
                            if let Some(write) = durably {
                                // commit-ok leaves once the commit's writes are durable.
                                ctx.hold_output_until(write);
                            }
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
                    .as_mut()
                    .map(Tx::take)
                    .ok_or_else(replies::not_transactional)?;
                self.send(ctx, AMQPClass::Tx(M::RollbackOk(tx::RollbackOk {})));
            }
            _ => return Err(replies::unexpected_method("tx method")),
        }
        Ok(())
    }
}
