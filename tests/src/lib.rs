//! Support for Warren's end-to-end tests and benchmarks: building the plugin libraries the
//! tests load, encoding AMQP field tables the way a client would, a broker per test
//! (`broker`), helpers for the delayed exchange's tests (`delayed`), a raw-socket AMQP
//! client for what real clients never send (`raw`), the management API as a user
//! (`management`), Prometheus scrapes (`prometheus`), users, vhosts and permissions made on the
//! in-process broker (`tenancy`), and a store that syncs and fails when a
//! test says so (`failing_store`).

pub mod broker;
pub mod delayed;
pub mod dylibs;
#[cfg(feature = "in-process")]
pub mod failing_store;
pub mod management;
pub mod prometheus;
pub mod queues;
pub mod raw;
pub mod tables;
#[cfg(feature = "in-process")]
pub mod tenancy;
pub mod workloads;
