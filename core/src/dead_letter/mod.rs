//! Dead-lettering's wire-level rules, as RabbitMQ 3.10 applies them: the `x-death` history a
//! dead-lettered message carries ([`x_death`]), when a dead-letter cycle drops the message
//! ([`cycle`]), and the validation of the per-message `expiration` property and of the queue
//! arguments that configure TTL, length limits and dead-lettering ([`expiration`],
//! [`queue_args`]).
//!
//! Everything here is pure: no queue, no clock, no routing. The queue decides *when* a message
//! dies and where it goes; this module decides what the message looks like afterwards and
//! whether RabbitMQ would have dropped it.
//!
//! The facts these modules rely on were read from RabbitMQ 3.10.8's own code
//! (`rabbit_dead_letter`, `rabbit_basic`, `rabbit_misc`, `rabbit_amqqueue`, `rabbit_channel`,
//! decompiled from the shipped `.beam` files) and then checked against a running 3.10.8 broker
//! with a client; the captured bytes and texts are the golden values in the unit tests.

pub mod cycle;
pub mod expiration;
pub mod queue_args;
mod raw;
mod term;
pub mod x_death;

pub use cycle::{PastDeath, drops_as_cycle, history, is_cycle};
pub use expiration::{ExpirationError, MAX_EXPIRY_MS, parse_expiration};
pub use queue_args::{Overflow, QueueLimits};
pub use x_death::{Death, Reason, dead_letter_properties, death_routing_keys};
