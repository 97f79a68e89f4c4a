//! A client that speaks just enough AMQP 0-9-1 by hand to become the worst consumer there
//! is: it logs in, asks for a huge prefetch, consumes, and then never reads its socket. A
//! real client library would read in the background; this one lets the broker's writes pile
//! up, which is what the memory alarm has to survive.

// Every test crate that has `mod common;` compiles this; not every one uses all of it.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

/// A method frame on `channel`: class and method ids, then the arguments already encoded.
fn method(channel: u16, class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + args.len());
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(args);
    let mut frame = vec![1u8];
    frame.extend_from_slice(&channel.to_be_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    frame
}

fn shortstr(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn longstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// The frames that log in as guest (no heartbeats) and open channel 1.
fn login() -> Vec<u8> {
    login_plain(b"\0guest\0guest")
}

/// [`login`] with `response` as the PLAIN response (well-formed or not).
fn login_plain(response: &[u8]) -> Vec<u8> {
    let mut bytes = b"AMQP\x00\x00\x09\x01".to_vec();
    let mut start_ok = Vec::new();
    start_ok.extend_from_slice(&0u32.to_be_bytes()); // client-properties: empty table
    shortstr(&mut start_ok, "PLAIN");
    longstr(&mut start_ok, response);
    shortstr(&mut start_ok, "en_US");
    bytes.extend(method(0, 10, 11, &start_ok));
    let mut tune_ok = Vec::new();
    tune_ok.extend_from_slice(&2047u16.to_be_bytes());
    tune_ok.extend_from_slice(&131_072u32.to_be_bytes());
    tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeats
    bytes.extend(method(0, 10, 31, &tune_ok));
    let mut open = Vec::new();
    shortstr(&mut open, "/");
    shortstr(&mut open, "");
    open.push(0);
    bytes.extend(method(0, 10, 40, &open));
    bytes.extend(method(1, 20, 10, &[0])); // channel.open, reserved shortstr ""
    bytes
}

/// A connection that logs in, opens a channel and then does nothing (its few replies stay
/// unread in the socket).
pub fn idle(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(&login())?;
    Ok(stream)
}

/// Connects as guest, opens channel 1, sets `prefetch`, consumes `queue` with acks, and
/// returns the socket without having read a byte from it. Every frame goes out at once: the
/// broker handles them in order (start-ok after its start, tune-ok after its tune).
pub fn consume_without_reading(addr: SocketAddr, queue: &str, prefetch: u16) -> TcpStream {
    let mut bytes = login();
    let mut qos = Vec::new();
    qos.extend_from_slice(&0u32.to_be_bytes());
    qos.extend_from_slice(&prefetch.to_be_bytes());
    qos.push(0);
    bytes.extend(method(1, 60, 10, &qos));
    let mut consume = Vec::new();
    consume.extend_from_slice(&0u16.to_be_bytes());
    shortstr(&mut consume, queue);
    shortstr(&mut consume, "never-reads");
    consume.push(0); // no-local, no-ack, exclusive, no-wait: all off
    consume.extend_from_slice(&0u32.to_be_bytes()); // arguments: empty table
    bytes.extend(method(1, 60, 20, &consume));
    let mut stream = TcpStream::connect(addr).expect("the slow consumer connects");
    stream
        .write_all(&bytes)
        .expect("the slow consumer's frames are sent");
    stream
}

/// Logs in with `response` as the PLAIN response and reads what the broker sends until it
/// closes the socket (or 15 s pass): the reply code of its `connection.close`, if it sent
/// one.
pub fn close_code_for_plain(addr: SocketAddr, response: &[u8]) -> Option<u16> {
    use std::io::Read;
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .expect("a timeout");
    stream.write_all(&login_plain(response)).expect("sent");
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    // Method frames: type 1, channel, size, then class and method ids.
    let mut at = 0;
    while at + 7 <= got.len() {
        let size = u32::from_be_bytes(got[at + 3..at + 7].try_into().expect("4 bytes")) as usize;
        let payload = got.get(at + 7..at + 7 + size)?;
        if got[at] == 1 && payload.len() >= 6 && payload[..4] == [0, 10, 0, 50] {
            return Some(u16::from_be_bytes([payload[4], payload[5]]));
        }
        at += 7 + size + 1;
    }
    None
}

/// Logs in as guest, opens channel 1 and asks for `gets` messages of `queue` with
/// `basic.get` (manual ack), all in one write, then never reads: the broker may not let its
/// output for this connection grow with the number of gets.
pub fn get_without_reading(addr: SocketAddr, queue: &str, gets: usize) -> TcpStream {
    let mut bytes = login();
    let mut get = Vec::new();
    get.extend_from_slice(&0u16.to_be_bytes());
    shortstr(&mut get, queue);
    get.push(0); // no-ack off
    let frame = method(1, 60, 70, &get);
    for _ in 0..gets {
        bytes.extend_from_slice(&frame);
    }
    let mut stream = TcpStream::connect(addr).expect("the getter connects");
    stream.write_all(&bytes).expect("the gets are sent");
    stream
}
