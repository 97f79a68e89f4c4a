//! `warren-perf`: a load generator for AMQP 0-9-1 brokers, in the spirit of RabbitMQ's
//! PerfTest and `lavinmqperf throughput`, so Warren and RabbitMQ can be measured side by
//! side with the same load. See `--help` for the flags; `run` has the shape of a run.

mod broker;
mod cli;
mod consumer;
mod dead_letters;
mod delay;
mod error;
mod expiry;
mod expiry_report;
mod in_flight;
mod producer;
mod report;
mod run;
mod stall;
mod stamp;
mod stats;
mod stop;
mod timeline;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let plan = match cli::Cli::parse().into_plan() {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("warren-perf: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("warren-perf: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("warren-perf: {failure}");
            ExitCode::FAILURE
        }
    }
}
