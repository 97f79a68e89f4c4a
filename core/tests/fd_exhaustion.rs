//! The real binary out of file descriptors: run under `prlimit --nofile=64:64`, flooded with
//! connections until `accept` fails, it must log the episode once (not once per attempt),
//! back off, and accept again once connections close (saying so once accepting has worked
//! for a second).
//!
//! Runs the built binary, so it lives with this package's integration tests (see
//! `listen_conflicts.rs`).

#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::broker_process::{BrokerProcess, TempDataDir};

/// The descriptor limit the broker runs under: enough to start, soon exhausted.
const NOFILE: u32 = 64;
/// More connections than the limit leaves room for.
const FLOOD: usize = 2 * NOFILE as usize;

/// Lines of the broker's log containing `needle`.
fn count(broker: &BrokerProcess, needle: &str) -> usize {
    broker
        .output()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits (bounded) for a log line containing `needle`; the line.
fn wait_for(broker: &BrokerProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = broker.output().lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}; the log:\n{}",
            broker.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a connection to `addr` is served: the protocol header is answered with a
/// `connection.start` method frame (type 1 on channel 0).
fn served(addr: SocketAddr) -> bool {
    let Ok(mut socket) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
    if socket.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut frame_start = [0u8; 3];
    socket.read_exact(&mut frame_start).is_ok() && frame_start == [1, 0, 0]
}

#[test]
fn running_out_of_descriptors_is_logged_once_and_accepting_resumes() {
    let dir = TempDataDir::new("fd-exhaustion");
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let broker = BrokerProcess::start_with(dir.path(), &[], &["prlimit", &nofile, "--"]);
    let addr = broker.amqp_addr();
    let limit_line = wait_for(&broker, "open file limit");
    assert!(limit_line.contains(&NOFILE.to_string()), "{limit_line}");
    // Connections beyond the broker's descriptors wait in the listen backlog: connect()
    // succeeds, accept() fails on the broker's side.
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map_while(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(
        flood.len() > NOFILE as usize,
        "only {} connected",
        flood.len()
    );
    wait_for(&broker, "out of file descriptors");
    // Let the back-off retry a few times (10 ms, 20 ms, 40 ms, … between attempts).
    std::thread::sleep(Duration::from_millis(700));
    drop(flood);
    // The backlog drains; the episode is over once accepting worked for a second without a
    // failure, which the next accepted connection reports.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&broker, "accepting connections again after") == 0 {
        assert!(Instant::now() < deadline, "{}", broker.output());
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            served(addr),
            "a new connection is served once descriptors are free"
        );
    }
    let again = wait_for(&broker, "accepting connections again after");
    let failures: u64 = again
        .rsplit("after ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {again:?}"));
    assert!(failures >= 2, "the episode had retries: {again}");
    assert_eq!(
        count(&broker, "out of file descriptors"),
        1,
        "one warning for an episode of {failures} failures; the log:\n{}",
        broker.output()
    );
    assert_eq!(count(&broker, "accept failed"), 0);
}
