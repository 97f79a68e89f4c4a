//! Warren, an AMQP 0-9-1 broker. See `docs/ARCHITECTURE.md` for the map of this crate.

pub mod error;
pub mod exchange;
pub mod protocol;
