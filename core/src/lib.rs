//! Warren, an AMQP 0-9-1 broker. See `docs/ARCHITECTURE.md` for the map of this crate.

pub mod alarm;
pub mod auth;
pub mod broker;
pub mod clock;
pub mod config;
pub mod definitions;
pub mod error;
pub mod http;
pub mod metrics;
pub mod plugin;
pub mod protocol;
pub mod scheduler;
pub mod server;
pub mod stats;
pub mod store;
pub mod tls;
