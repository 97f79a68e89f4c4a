//! # Warren exchange-type plugins
//!
//! This crate is everything an exchange-type author depends on, and nothing of the broker:
//! the broker depends on it, never the reverse.
//!
//! - [`abi`]: the versioned C ABI. A library exports one symbol,
//!   `warren_exchange_plugin_v<MAJOR>`, returning a [`PluginHeader`](abi::PluginHeader) that
//!   names the library and lists its exchange types as vtables. Only C types cross: byte views,
//!   integers, opaque handles. Whoever allocates frees.
//! - [`sdk`]: the safe trait, [`ExchangeType`], that a Rust plugin implements.
//! - [`export_exchange_types!`]: generates the header, the static vtables and panic-catching
//!   trampolines from a list of types.
//! - [`testing`]: drive a type from its own unit tests without `unsafe`.
//! - [`field_table`]: lazy views of AMQP field tables, since headers and arguments cross the
//!   boundary as the raw bytes the client sent.
//!
//! The built-in `direct`, `fanout`, `topic` and `headers` types are written against this crate
//! alone and registered by the broker through the same vtables a loaded library provides.
//!
//! ## Versioning
//! The major version is in the entry symbol's name and in the header; the host also compares a
//! hash of every struct's layout ([`abi::LAYOUT_HASH`]). A library with another major, a newer
//! minor or a different layout is refused with a log line saying which.

#![deny(missing_docs)]

pub mod abi;
mod destination_set;
pub mod export;
pub mod field_table;
pub mod sdk;
pub mod testing;

pub use destination_set::DestinationSet;
pub use field_table::{FieldArray, FieldTable, FieldValue};
pub use sdk::{
    Binding, DestinationId, Destinations, ExchangeType, Message, PluginError, reply_code,
};
