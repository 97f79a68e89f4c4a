//! The broker's state: one virtual host (`/`) of exchanges, queues and bindings, and the
//! operations AMQP methods perform on them.
//!
//! - [`vhost`]: the catalogue (declare, delete, bind) and routing across exchanges.
//! - [`exchange`]: one exchange — plugin router, bindings, destinations.
//! - [`delayed`]: the `x-delayed-message` type — held messages, their timer wheel and driver.
//! - [`queue`]: one queue — ready messages by priority, consumers, round-robin delivery,
//!   TTL, length limits, `x-expires` (its driver task).
//! - `dead_lettering`: republishing a dead message to its queue's dead-letter exchange.
//! - [`consumer`]: consumers and the delivery half of a channel (tags, unacked, prefetch).
//! - [`message`]: a published message, shared by reference between queues.
//! - [`args`]: argument equivalence and RabbitMQ's texts; [`names`]: generated names.
//!
//! Lock order (never taken in the other direction):
//! `catalogue` → exchange bindings (`RwLock`) → queue state → channel delivery state → outbox;
//! a delayed exchange's wheel mutex is a leaf (never held while routing). A queue's lock is
//! never held while dead-lettering (which routes and locks other queues, or the same one):
//! what dies under it is collected and dead-lettered after it is released.
//! The publish path takes no catalogue lock: it reads an exchange's `RwLock` (shared), then
//! locks each destination queue in turn, one at a time.

pub mod args;
pub mod consumer;
mod dead_lettering;
pub mod delayed;
pub mod exchange;
pub mod message;
pub mod names;
pub mod queue;
pub mod vhost;

pub use consumer::{Consumer, DeliveryChannel, Unacked};
pub use delayed::{Delayed, PendingInfo};
pub use exchange::{Exchange, ExchangeSpec};
pub use message::Message;
pub use queue::{Dead, Enqueued, Queue, QueueSpec, Queued};
pub use vhost::{Broker, RouteScratch};
