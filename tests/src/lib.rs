//! Support for Warren's end-to-end tests and benchmarks: building the plugin libraries the
//! tests load, and encoding AMQP field tables the way a client would.

pub mod dylibs;
pub mod tables;

pub mod workloads;
