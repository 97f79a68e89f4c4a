//! [`ThinBytes`]: an immutable byte string behind one *thin* pointer.
//!
//! A held delayed message is a timer-wheel payload, and the wheel stores payloads inline in
//! its slab entries: an 8-byte payload keeps an entry at 32 bytes, a 16-byte one (`Box<[u8]>`,
//! `Vec` is 24) makes it 40. At a million pending messages that is 8 MB, most of what the
//! `held` format saves elsewhere. So the length lives *in* the allocation, as a LEB128 prefix
//! (one byte below 128), instead of beside the pointer. `std::boxed::ThinBox` would do this
//! but is unstable, hence this small amount of `unsafe`.
//!
//! Invariant: `ptr` points to an allocation of exactly `prefix + len` bytes, alignment 1,
//! where the first `prefix` bytes are `len` in LEB128 and every byte is initialised.

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::fmt;
use std::ptr::NonNull;

/// An owned, immutable byte string whose handle is one pointer (`size_of == 8` on 64-bit).
pub struct ThinBytes {
    ptr: NonNull<u8>,
}

// SAFETY: `ThinBytes` uniquely owns plain bytes, exactly like `Box<[u8]>`.
unsafe impl Send for ThinBytes {}
// SAFETY: shared access is read-only.
unsafe impl Sync for ThinBytes {}

/// Bytes LEB128 takes for `len`.
fn prefix_len(mut len: usize) -> usize {
    let mut n = 1;
    while len >= 0x80 {
        len >>= 7;
        n += 1;
    }
    n
}

fn layout(len: usize) -> Layout {
    // `isize::MAX` bytes cannot be asked for by any caller that holds them elsewhere first.
    match Layout::from_size_align(prefix_len(len) + len, 1) {
        Ok(layout) => layout,
        Err(_) => panic!("ThinBytes of {len} bytes"),
    }
}

impl ThinBytes {
    /// `len` bytes written by `fill` (which is handed a zeroed buffer of exactly `len` bytes).
    pub fn build(len: usize, fill: impl FnOnce(&mut [u8])) -> ThinBytes {
        let layout = layout(len);
        // SAFETY: the layout's size is at least 1 (the prefix).
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        let prefix = prefix_len(len);
        // SAFETY: the allocation is `prefix + len` initialised (zeroed) bytes, owned here.
        let all = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), prefix + len) };
        let mut rest = len;
        for byte in &mut all[..prefix] {
            *byte = (rest & 0x7f) as u8 | if rest >= 0x80 { 0x80 } else { 0 };
            rest >>= 7;
        }
        fill(&mut all[prefix..]);
        ThinBytes { ptr }
    }

    /// A copy of `bytes`.
    #[cfg(test)]
    pub fn copy_from_slice(bytes: &[u8]) -> ThinBytes {
        ThinBytes::build(bytes.len(), |out| out.copy_from_slice(bytes))
    }

    /// (prefix length, content length), decoded from the allocation.
    fn header(&self) -> (usize, usize) {
        let mut len = 0;
        let mut shift = 0;
        let mut at = 0;
        loop {
            // SAFETY: the prefix was written by `build` and ends with a byte below 0x80, so
            // every byte read here is inside the allocation.
            let byte = unsafe { *self.ptr.as_ptr().add(at) };
            len |= usize::from(byte & 0x7f) << shift;
            at += 1;
            if byte < 0x80 {
                return (at, len);
            }
            shift += 7;
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        let (prefix, len) = self.header();
        // SAFETY: the invariant: `len` initialised bytes follow the prefix.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(prefix), len) }
    }
}

impl Drop for ThinBytes {
    fn drop(&mut self) {
        let (_, len) = self.header();
        // SAFETY: allocated in `build` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout(len)) }
    }
}

impl AsRef<[u8]> for ThinBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for ThinBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThinBytes")
            .field("len", &self.as_slice().len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_one_pointer() {
        assert_eq!(size_of::<ThinBytes>(), size_of::<usize>());
        assert_eq!(size_of::<Option<ThinBytes>>(), size_of::<usize>());
    }

    #[test]
    fn round_trips_every_prefix_width() {
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let thin = ThinBytes::copy_from_slice(&bytes);
            assert_eq!(thin.as_slice(), &bytes[..], "len {len}");
        }
    }

    #[test]
    fn prefix_is_leb128() {
        assert_eq!(prefix_len(0), 1);
        assert_eq!(prefix_len(127), 1);
        assert_eq!(prefix_len(128), 2);
        assert_eq!(prefix_len(16_384), 3);
    }
}
