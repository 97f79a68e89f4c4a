//! The message body format shared by producers and consumers.
//!
//! Latency is measured end to end from the body alone, so it works through any exchange
//! type and does not depend on the broker preserving properties or headers:
//!
//! ```text
//! [0..8)   publish time, u64 nanoseconds since the UNIX epoch, big-endian
//! [8..16)  delayed mode only: the requested delay, u64 milliseconds, big-endian
//! [..size) zero padding up to --size
//! ```
//!
//! The delay is carried in the body as well as in the `x-delay` header because brokers
//! rewrite that header on delivery (RabbitMQ's plugin negates it).

use std::time::{SystemTime, UNIX_EPOCH};

/// Smallest body that can carry a publish time.
pub const STAMP_LEN: usize = 8;
/// Smallest body that can carry a publish time and a delay.
pub const DELAYED_LEN: usize = 16;

/// Wall-clock nanoseconds since the epoch: producers and consumers may be different
/// processes on one host, so a monotonic `Instant` cannot be shared through the body.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn write_stamp(body: &mut [u8], nanos: u64) {
    body[..STAMP_LEN].copy_from_slice(&nanos.to_be_bytes());
}

pub fn write_delay(body: &mut [u8], delay_ms: u64) {
    body[STAMP_LEN..DELAYED_LEN].copy_from_slice(&delay_ms.to_be_bytes());
}

/// The publish time, if the body is long enough to have one (foreign messages may not be).
pub fn read_stamp(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(..STAMP_LEN)?.try_into().ok()?))
}

pub fn read_delay(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        body.get(STAMP_LEN..DELAYED_LEN)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_and_delay_round_trip_big_endian() {
        let mut body = vec![0u8; 32];
        write_stamp(&mut body, 0x0102_0304_0506_0708);
        write_delay(&mut body, 25_000);
        assert_eq!(body[0], 0x01);
        assert_eq!(read_stamp(&body), Some(0x0102_0304_0506_0708));
        assert_eq!(read_delay(&body), Some(25_000));
    }

    #[test]
    fn short_bodies_have_no_stamp() {
        assert_eq!(read_stamp(&[1, 2, 3]), None);
        assert_eq!(read_delay(&[0; 8]), None);
    }
}
