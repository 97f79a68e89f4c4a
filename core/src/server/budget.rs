//! What one connection's client has made the broker hold for it, counted per connection so
//! that no number of channels multiplies a bound.
//!
//! Three things a client grows by sending, none of which any queue or store limit sees:
//!
//! - *content being assembled*: the declared sizes of messages whose header arrived and whose
//!   body has not finished. Assembly only completes when more frames are read, so pausing
//!   the socket at a bound would wedge the connection; instead a content header that would
//!   take the connection past [`Budget::assembly_limit`] is refused (406 on its channel)
//!   before any of its body is buffered. Reserving the declared size, not what arrived,
//!   makes the refusal happen at the header and never half way through a body.
//! - *uncommitted transactions*: publishes (bytes) and acknowledgements (operations) held
//!   until `tx.commit`. Nothing but a commit drains them, so past the bound the publish or
//!   ack is refused (406 on its channel, the transaction discarded with the channel).
//! - *unconfirmed publishes*: confirms waiting for a store write. These drain on their own
//!   when the store syncs, so past [`MAX_UNCONFIRMED`] messages or
//!   [`MAX_UNCONFIRMED_BYTES`] the connection stops taking frames until confirms are
//!   settled: paced, never closed, and the confirms still flow.
//!
//! Every amount is held by a [`Charge`] that gives it back when dropped, so a channel that
//! closes, however it closes, returns what it held. Only the connection's task touches a
//! budget; the counters are atomics only because charges share it through an `Arc` (which
//! needs `Sync`): they are never contended.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Publishes per connection waiting for a store write before their confirm, past which the
/// connection stops reading.
pub const MAX_UNCONFIRMED: usize = 16_384;
/// Body bytes of those publishes past which the connection stops reading.
pub const MAX_UNCONFIRMED_BYTES: usize = 64 << 20;
/// Acknowledgements and publishes held in uncommitted transactions per connection.
pub const MAX_UNCOMMITTED_OPS: usize = 1 << 20;
/// How many maximal messages' worth of content one connection may hold unfinished (being
/// assembled) and, separately, uncommitted.
pub const CONTENT_LIMIT_MESSAGES: usize = 2;

/// One connection's counters.
#[derive(Debug)]
pub struct Budget {
    max_message_size: usize,
    counts: [AtomicUsize; 5],
}

/// What a [`Charge`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Account {
    /// Declared body bytes of messages being assembled.
    Assembling,
    /// Body bytes of publishes in uncommitted transactions.
    Uncommitted,
    /// Publishes and acknowledgements in uncommitted transactions.
    UncommittedOps,
    /// Publishes whose confirm waits for a store write.
    Unconfirmed,
    /// Their body bytes.
    UnconfirmedBytes,
}

impl Budget {
    /// An empty budget for a connection accepting messages of up to `max_message_size`.
    pub fn new(max_message_size: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max_message_size,
            counts: Default::default(),
        })
    }

    fn counter(&self, account: Account) -> &AtomicUsize {
        &self.counts[account as usize]
    }

    /// What `account` holds now.
    pub fn held(&self, account: Account) -> usize {
        self.counter(account).load(Ordering::Relaxed)
    }

    /// Declared bytes of unfinished messages one connection may hold.
    pub fn assembly_limit(&self) -> usize {
        self.max_message_size.saturating_mul(CONTENT_LIMIT_MESSAGES)
    }

    /// Body bytes one connection's uncommitted transactions may hold.
    pub fn uncommitted_limit(&self) -> usize {
        self.assembly_limit()
    }

    /// Whether the connection must stop taking frames until confirms are settled.
    pub fn unconfirmed_full(&self) -> bool {
        self.held(Account::Unconfirmed) >= MAX_UNCONFIRMED
            || self.held(Account::UnconfirmedBytes) >= MAX_UNCONFIRMED_BYTES
    }

    /// An empty charge against `account`.
    pub fn charge(self: &Arc<Self>, account: Account) -> Charge {
        Charge {
            budget: self.clone(),
            account,
            amount: 0,
        }
    }
}

/// An amount held against one account of a budget, given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    account: Account,
    amount: usize,
}

impl Charge {
    /// Adds `amount`.
    pub fn add(&mut self, amount: usize) {
        self.amount += amount;
        self.budget
            .counter(self.account)
            .fetch_add(amount, Ordering::Relaxed);
    }

    /// Gives back `amount` (at most what this charge holds).
    pub fn release(&mut self, amount: usize) {
        let amount = amount.min(self.amount);
        self.amount -= amount;
        self.budget
            .counter(self.account)
            .fetch_sub(amount, Ordering::Relaxed);
    }

    /// What this charge holds.
    pub fn amount(&self) -> usize {
        self.amount
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release(self.amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_charge_gives_back_what_it_held() {
        let budget = Budget::new(1000);
        let mut a = budget.charge(Account::Assembling);
        let mut b = budget.charge(Account::Assembling);
        a.add(300);
        b.add(500);
        assert_eq!(budget.held(Account::Assembling), 800);
        a.release(1000);
        assert_eq!((a.amount(), budget.held(Account::Assembling)), (0, 500));
        drop(b);
        assert_eq!(budget.held(Account::Assembling), 0);
        assert_eq!(budget.assembly_limit(), 2000);
    }

    #[test]
    fn unconfirmed_is_full_at_either_bound() {
        let budget = Budget::new(1000);
        let mut n = budget.charge(Account::Unconfirmed);
        let mut bytes = budget.charge(Account::UnconfirmedBytes);
        n.add(MAX_UNCONFIRMED - 1);
        assert!(!budget.unconfirmed_full());
        n.add(1);
        assert!(budget.unconfirmed_full());
        n.release(MAX_UNCONFIRMED);
        bytes.add(MAX_UNCONFIRMED_BYTES);
        assert!(budget.unconfirmed_full());
        drop(bytes);
        assert!(!budget.unconfirmed_full());
    }
}
