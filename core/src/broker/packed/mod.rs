//! The packed formats kept messages use: one allocation holding every byte of a message,
//! so that nothing kept points into a connection's socket read buffer.
//!
//! Why: a message's exchange, routing key, properties and (single-frame) body arrive as
//! slices of the read buffer, and one slice keeps the whole buffer alive. Small messages kept
//! among large ones then pin buffers far larger than themselves (the report behind issue 12:
//! 2 MB of 100-byte messages kept among 60 KB ones held 1.26 GB of RSS). Two formats copy
//! the bytes out once and share these building blocks:
//! - [`crate::broker::Message`], refcounted, what queues, dead letters and transactions keep;
//! - `delayed::held::Held`, unique, a delayed message (plus its CC/BCC keys) for the wait.
//!
//! Lengths are LEB128 ([`put_len`]: one byte below 128), and a body over
//! [`MAX_PACKED_BODY`] is not copied but moved in as a `bytes::Bytes` value
//! ([`put_shared`], [`peek_shared`]); see the constant for why.

pub mod thin;

use std::mem::ManuallyDrop;
use std::ops::Range;

use bytes::Bytes;

/// Largest body copied into a packed allocation. 64 KiB is the connection's read-buffer
/// step (`server::connection` reserves 64 KiB at a time): a larger body was either joined
/// from several frames into its own allocation, or is most of the buffer it arrived in, so
/// sharing it pins little beyond itself, while copying it would cost a large `memcpy` per
/// publish for no memory gained. At or below it, copying once is what frees the read buffer,
/// and a small body sliced from a 64 KiB buffer is exactly the case that must not pin it.
pub const MAX_PACKED_BODY: usize = 64 * 1024;

/// Bytes a moved-in shared body takes.
pub const SHARED_LEN: usize = size_of::<Bytes>();

/// Bytes LEB128 takes for `len`.
pub fn len_len(mut len: usize) -> usize {
    let mut n = 1;
    while len >= 0x80 {
        len >>= 7;
        n += 1;
    }
    n
}

/// Bytes `bytes` takes with its length prefix.
pub fn sized(bytes: &[u8]) -> usize {
    len_len(bytes.len()) + bytes.len()
}

/// Writes `len` as LEB128 at `out[*at..]`.
pub fn put_len(out: &mut [u8], at: &mut usize, mut len: usize) {
    loop {
        let more = len >= 0x80;
        out[*at] = (len & 0x7f) as u8 | if more { 0x80 } else { 0 };
        *at += 1;
        len >>= 7;
        if !more {
            return;
        }
    }
}

/// Reads a LEB128 length at `bytes[*at..]`.
pub fn get_len(bytes: &[u8], at: &mut usize) -> usize {
    let mut len = 0;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        len |= usize::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return len;
        }
        shift += 7;
    }
}

/// Writes `bytes` with its length prefix.
pub fn put_bytes(out: &mut [u8], at: &mut usize, bytes: &[u8]) {
    put_len(out, at, bytes.len());
    out[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

/// The range of a length-prefixed section at `bytes[*at..]`, stepping past it.
pub fn get_range(bytes: &[u8], at: &mut usize) -> Range<usize> {
    let len = get_len(bytes, at);
    let range = *at..*at + len;
    *at += len;
    range
}

/// Moves a clone of `body` into `out[*at..*at + SHARED_LEN]` by bitwise copy.
///
/// The caller's format must record (a flag) that a `Bytes` value lives there, and read it
/// back exactly once with [`take_shared`] (or leak its reference count).
pub fn put_shared(out: &mut [u8], at: &mut usize, body: &Bytes) {
    let slot = &mut out[*at..*at + SHARED_LEN];
    // SAFETY: `SHARED_LEN` bytes are in bounds (the slice above is checked); moving a `Bytes`
    // by bitwise copy is sound, and the caller takes it back once (see above).
    unsafe { std::ptr::write_unaligned(slot.as_mut_ptr().cast::<Bytes>(), body.clone()) };
    *at += SHARED_LEN;
}

/// The shared body at `bytes` (written by [`put_shared`]), without taking it: a bitwise copy
/// that must not be dropped.
///
/// # Safety
/// `bytes` must be exactly the `SHARED_LEN` bytes `put_shared` wrote, not yet taken.
pub unsafe fn peek_shared(bytes: &[u8]) -> ManuallyDrop<Bytes> {
    debug_assert_eq!(bytes.len(), SHARED_LEN);
    // SAFETY: the caller's contract; `ManuallyDrop` leaves the reference count untouched.
    ManuallyDrop::new(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Bytes>()) })
}

/// Takes the shared body back (its reference is then the caller's, dropped with it).
///
/// # Safety
/// As [`peek_shared`], and the bytes must never be read as a `Bytes` again.
pub unsafe fn take_shared(bytes: &[u8]) -> Bytes {
    // SAFETY: the caller's contract.
    ManuallyDrop::into_inner(unsafe { peek_shared(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_every_width() {
        for len in [0, 1, 127, 128, 16_383, 16_384, 1 << 40] {
            let mut out = [0u8; 10];
            let mut at = 0;
            put_len(&mut out, &mut at, len);
            assert_eq!(at, len_len(len));
            let mut back = 0;
            assert_eq!(get_len(&out, &mut back), len);
            assert_eq!(back, at);
        }
    }

    #[test]
    fn a_shared_body_moves_in_and_out_once() {
        let mut body = Bytes::from(vec![3u8; 100]);
        let mut out = [0u8; SHARED_LEN];
        let mut at = 0;
        put_shared(&mut out, &mut at, &body);
        assert!(!body.is_unique());
        // SAFETY: written just above, taken once.
        let back = unsafe { take_shared(&out) };
        assert_eq!(back, body);
        drop(back);
        assert!(body.is_unique());
        body.truncate(0);
    }
}
