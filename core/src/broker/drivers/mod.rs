//! The tasks that act when time passes, one per object that has timers, started by the vhost
//! that owns the object and holding it (and the vhost) only weakly:
//!
//! - [`expiry`]: a queue's message deadlines (TTL) and its `x-expires`;
//! - [`firing`]: a delayed exchange's held messages coming due.
//!
//! They are the "caller" of the objects' timed work: the queue or the delayed exchange says
//! what is due and when to come back, the driver acts on it through the vhost (dead-letters,
//! deletes the unused queue, publishes what fired). Time is epoch milliseconds
//! ([`crate::clock`]); the runtime's monotonic timer only paces the sleeps.

pub mod expiry;
pub mod firing;
