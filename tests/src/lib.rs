//! Support for Warren's end-to-end tests and benchmarks: building the plugin libraries the
//! tests load, encoding AMQP field tables the way a client would, a broker per test
//! (`broker`), helpers for the delayed exchange's tests (`delayed`), and a raw-socket AMQP
//! client for what real clients never send (`raw`).

pub mod broker;
pub mod delayed;
pub mod dylibs;
pub mod queues;
pub mod raw;
pub mod tables;
pub mod workloads;
