//! `ShortStr`: an AMQP shortstr (at most 255 bytes of UTF-8) that borrows its bytes from a
//! frame instead of owning a `String`.
//!
//! Exchange names and routing keys ride along with every published message, through routing
//! into every queue and out again in `basic.deliver`. Keeping them as `Bytes` slices of the
//! method frame they arrived in means publishing never allocates for them, cloning one is a
//! reference-count increment, and the deliver encoder writes them back byte-for-byte.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// A shortstr: at most 255 bytes, valid UTF-8, held as a shared `Bytes` slice.
///
/// Invariant (checked by every constructor): `len() <= 255` and the bytes are UTF-8, so the
/// encoders can write the length as one octet and `as_str` cannot fail.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShortStr(Bytes);

/// Why bytes are not a shortstr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShortStrError {
    /// More than 255 bytes.
    #[error("shortstr longer than 255 bytes")]
    TooLong,
    /// Not UTF-8.
    #[error("shortstr is not valid UTF-8")]
    InvalidUtf8,
}

impl ShortStr {
    /// The longest shortstr, in bytes.
    pub const MAX_LEN: usize = 255;

    /// The empty shortstr (the default exchange's name).
    pub const fn empty() -> ShortStr {
        ShortStr(Bytes::new())
    }

    /// A shortstr from a static string, without copying. Panics at compile time (in const
    /// contexts) or at once if longer than 255 bytes: only for literals in server code.
    pub const fn from_static(s: &'static str) -> ShortStr {
        assert!(s.len() <= Self::MAX_LEN, "shortstr longer than 255 bytes");
        ShortStr(Bytes::from_static(s.as_bytes()))
    }

    /// Checks `bytes` and wraps them without copying.
    pub fn from_bytes(bytes: Bytes) -> Result<ShortStr, ShortStrError> {
        if bytes.len() > Self::MAX_LEN {
            return Err(ShortStrError::TooLong);
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ShortStrError::InvalidUtf8);
        }
        Ok(ShortStr(bytes))
    }

    /// Copies a string into a new shortstr (for server-generated names such as consumer
    /// tags; not for the publish path).
    pub fn copy_from_str(s: &str) -> Result<ShortStr, ShortStrError> {
        if s.len() > Self::MAX_LEN {
            return Err(ShortStrError::TooLong);
        }
        Ok(ShortStr(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks that the bytes are UTF-8 (`from_bytes`) or takes
        // them from a `str` (`from_static`, `copy_from_str`), and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The raw bytes (what goes on the wire after the length octet).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer, for handing on without a copy.
    pub fn as_shared(&self) -> &Bytes {
        &self.0
    }

    /// Length in bytes (0..=255).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The length octet written before the bytes on the wire.
    pub(crate) fn len_u8(&self) -> u8 {
        // The constructor invariant keeps len() <= 255.
        self.0.len() as u8
    }

    /// Detaches from the (possibly large) buffer the bytes were sliced from, so a long-lived
    /// holder does not keep a whole read buffer alive for a few bytes.
    pub fn compact(&self) -> ShortStr {
        ShortStr(Bytes::copy_from_slice(&self.0))
    }
}

impl Deref for ShortStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ShortStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl TryFrom<&str> for ShortStr {
    type Error = ShortStrError;
    fn try_from(s: &str) -> Result<ShortStr, ShortStrError> {
        ShortStr::copy_from_str(s)
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_enforce_length_and_utf8() {
        assert_eq!(
            ShortStr::from_bytes(Bytes::from(vec![b'a'; 256])),
            Err(ShortStrError::TooLong)
        );
        assert_eq!(
            ShortStr::from_bytes(Bytes::from_static(&[0xff])),
            Err(ShortStrError::InvalidUtf8)
        );
        let s = ShortStr::from_bytes(Bytes::from(vec![b'a'; 255])).unwrap();
        assert_eq!(s.len_u8(), 255);
        assert_eq!(ShortStr::from_static("amq.direct"), "amq.direct");
        assert!(ShortStr::empty().is_empty());
        assert_eq!(
            ShortStr::copy_from_str(&"x".repeat(256)),
            Err(ShortStrError::TooLong)
        );
    }

    #[test]
    fn slices_share_the_frame_buffer() {
        let frame = Bytes::from_static(b"xxhello");
        let s = ShortStr::from_bytes(frame.slice(2..)).unwrap();
        assert_eq!(s.as_bytes().as_ptr(), frame[2..].as_ptr());
        assert_ne!(s.compact().as_bytes().as_ptr(), frame[2..].as_ptr());
    }
}
