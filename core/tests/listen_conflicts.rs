//! The `warren` binary refusing to start on an address that is taken: it must exit non-zero
//! with a message naming the address and the flag that changes it, and must not have claimed
//! to be listening first.
//!
//! These run the real binary (Cargo builds it for this package's integration tests), so they
//! live here rather than in `warren-tests`, which cannot ask Cargo for another package's
//! binary.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Output;

use common::{exit_of, spawn_warren, text};

/// A port this test holds for as long as the listener lives.
fn taken() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    let addr = listener.local_addr().expect("bound");
    (listener, addr)
}

/// Runs `warren` with `args` (plus a fresh data directory) and returns its output once it
/// exits.
fn run_warren(args: &[&str]) -> Output {
    let data_dir = std::env::temp_dir().join(format!(
        "warren-listen-test-{}-{}",
        std::process::id(),
        args.join("_").replace(['/', ':', '.'], "-")
    ));
    let output = exit_of(spawn_warren(args, &data_dir), "on a taken address");
    let _ = std::fs::remove_dir_all(&data_dir);
    output
}

#[test]
fn a_taken_management_port_is_named_with_its_flag() {
    let (_held, addr) = taken();
    let output = run_warren(&[
        "--listen",
        "127.0.0.1:0",
        "--management-listen",
        &addr.to_string(),
    ]);
    let log = text(&output);
    assert!(!output.status.success(), "exit status {:?}", output.status);
    assert!(
        log.contains(&format!("cannot listen for the management API on {addr}: ")),
        "{log}"
    );
    assert!(
        log.contains("choose another address with --management-listen"),
        "{log}"
    );
    assert!(
        !log.contains("listening"),
        "nothing may claim to listen: {log}"
    );
}

#[test]
fn a_taken_amqp_port_is_named_with_its_flag() {
    let (_held, addr) = taken();
    let output = run_warren(&[
        "--listen",
        &addr.to_string(),
        "--management-listen",
        "127.0.0.1:0",
    ]);
    let log = text(&output);
    assert!(!output.status.success(), "exit status {:?}", output.status);
    assert!(
        log.contains(&format!("cannot listen for AMQP connections on {addr}: ")),
        "{log}"
    );
    assert!(
        log.contains("choose another address with --listen"),
        "{log}"
    );
    assert!(
        !log.contains("listening"),
        "nothing may claim to listen: {log}"
    );
}

#[test]
fn a_taken_prometheus_port_is_named_with_its_flag() {
    let (_held, addr) = taken();
    let output = run_warren(&[
        "--listen",
        "127.0.0.1:0",
        "--management-listen",
        "127.0.0.1:0",
        "--prometheus-listen",
        &addr.to_string(),
    ]);
    let log = text(&output);
    assert!(!output.status.success(), "exit status {:?}", output.status);
    assert!(
        log.contains(&format!(
            "cannot listen for the Prometheus endpoint on {addr}: "
        )),
        "{log}"
    );
    assert!(
        log.contains("choose another address with --prometheus-listen"),
        "{log}"
    );
    assert!(
        !log.contains("listening"),
        "nothing may claim to listen: {log}"
    );
}
