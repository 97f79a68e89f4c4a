//! Exchanges: which types exist (the registry, fed by built-in crates and loaded libraries)
//! and the host side of the plugin ABI that routes through them.

#[cfg(target_os = "linux")]
mod elf;
pub mod exchange_type;
pub mod loader;
pub mod registry;

pub use exchange_type::{ExchangeRouter, ExchangeType, Origin, RouteRequest};
pub use loader::LoadError;
pub use registry::ExchangeTypeRegistry;
