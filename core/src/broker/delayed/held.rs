//! [`Held`]: a delayed message packed for the wait — routing key, properties, body and
//! CC/BCC keys copied into one allocation behind one thin pointer.
//!
//! Why not keep the publish's `Arc<Message>`: its exchange, routing key and properties (and a
//! single-frame body) are slices of the connection's socket read buffer, and a slice keeps the
//! whole buffer alive. A message routed at once lets go within microseconds; a held one would
//! pin its read buffer for the whole delay, and with every message of a buffer pending that is
//! the full wire size plus the buffer's slack, on top of the `Arc`, four `Bytes` handles and a
//! boxed key list. Measured at 1 M pending 16-byte messages: ≈ 310 B per message beyond the
//! body before this format, 81 B after (see `docs/BENCHMARKS.md`).
//!
//! Format (all lengths LEB128, see [`put_len`]):
//!
//! ```text
//! flags: u8
//! store id:     u64 (little-endian)    only if STORED
//! routing key:  len, bytes
//! properties:   len, bytes (the raw wire form, so headers stay byte-for-byte as published)
//! exchange:     len, bytes             only if OTHER_EXCHANGE
//! body:         len, bytes             or, if SHARED_BODY, a moved-in `bytes::Bytes` value
//! extra keys:   count, (len, bytes)*   only if EXTRA_KEYS
//! ```
//!
//! The exchange name is normally left out: every message held by a delayed exchange was
//! published to it, so the driver supplies the name (cached once per exchange) at fire time.
//! Any other name is stored, so nothing depends on that.
//!
//! Bodies over [`MAX_PACKED_BODY`] (64 KiB) are kept as the publish's `Bytes`, shared, not
//! copied. 64 KiB is the connection's read-buffer step (`server::connection` reserves 64 KiB
//! at a time): a body larger than that was either joined from several frames into its own
//! allocation, or is most of the buffer it arrived in, so sharing it pins little beyond
//! itself while copying it would cost a large `memcpy` per publish for no memory gained. At or
//! below it, copying once (the body is still held once — queues share the rebuilt message)
//! is what frees the read buffer, and a small body sliced from a 64 KiB buffer is exactly the
//! case that must not pin it.
//!
//! At fire time [`Held::into_parts`] turns the allocation into a `Bytes` owner
//! (`Bytes::from_owner`) and slices routing key, properties and body out of it: one
//! allocation for the owner and one for the `Arc<Message>`, no second copy.

use std::mem::ManuallyDrop;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::super::message::Message;
use super::thin::ThinBytes;
use crate::protocol::{Properties, ShortStr};
use crate::store::HeldId;

/// Largest body copied into the packed allocation; larger ones are shared (see module docs).
pub const MAX_PACKED_BODY: usize = 64 * 1024;

const SHARED_BODY: u8 = 1;
const OTHER_EXCHANGE: u8 = 2;
const EXTRA_KEYS: u8 = 4;
const STORED: u8 = 8;
const ID_LEN: usize = size_of::<u64>();

const SHARED_LEN: usize = size_of::<Bytes>();

/// A held message: one thin pointer (8 bytes), so a timer-wheel entry stays 32 bytes.
pub struct Held {
    packed: ThinBytes,
}

/// Where each part sits in the packed bytes.
struct Sections {
    flags: u8,
    routing_key: Range<usize>,
    properties: Range<usize>,
    exchange: Option<Range<usize>>,
    /// The inline body, or (if `SHARED_BODY`) the moved-in `Bytes` value's bytes.
    body: Range<usize>,
    extra_keys: Option<Range<usize>>,
}

/// A fired message, rebuilt: what the queues take, and the extra routing keys (packed; read
/// them with [`extra_keys`]).
pub struct Unpacked {
    pub message: Arc<Message>,
    pub extra_keys: Option<Bytes>,
    /// Its id in the held store, if it was written there.
    pub stored: Option<HeldId>,
}

fn len_len(mut len: usize) -> usize {
    let mut n = 1;
    while len >= 0x80 {
        len >>= 7;
        n += 1;
    }
    n
}

/// Writes `len` as LEB128 at `out[*at..]`.
fn put_len(out: &mut [u8], at: &mut usize, mut len: usize) {
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

fn get_len(bytes: &[u8], at: &mut usize) -> usize {
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

fn put_bytes(out: &mut [u8], at: &mut usize, bytes: &[u8]) {
    put_len(out, at, bytes.len());
    out[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

fn get_range(bytes: &[u8], at: &mut usize) -> Range<usize> {
    let len = get_len(bytes, at);
    let range = *at..*at + len;
    *at += len;
    range
}

fn sized(bytes: &[u8]) -> usize {
    len_len(bytes.len()) + bytes.len()
}

/// The extra routing keys of a packed key list ([`Unpacked::extra_keys`]).
pub fn extra_keys(packed: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    let count = if packed.is_empty() {
        0
    } else {
        get_len(packed, &mut at)
    };
    (0..count).map(move |_| {
        let range = get_range(packed, &mut at);
        &packed[range]
    })
}

impl Held {
    /// Packs `message` (published to the exchange named `exchange`) and its extra routing
    /// keys, with its id in the held store if it was written there.
    pub fn pack(
        message: &Message,
        keys: &[&[u8]],
        exchange: &ShortStr,
        stored: Option<HeldId>,
    ) -> Held {
        let extra_keys = keys;
        let shared = message.body.len() > MAX_PACKED_BODY;
        let other_exchange = message.exchange != *exchange;
        let flags = if shared { SHARED_BODY } else { 0 }
            | if other_exchange { OTHER_EXCHANGE } else { 0 }
            | if extra_keys.is_empty() { 0 } else { EXTRA_KEYS }
            | if stored.is_some() { STORED } else { 0 };
        let routing_key = message.routing_key.as_bytes();
        let properties = message.properties.raw();
        let id_len = if stored.is_some() { ID_LEN } else { 0 };
        let mut len = 1 + id_len + sized(routing_key) + sized(properties);
        if other_exchange {
            len += sized(message.exchange.as_bytes());
        }
        len += if shared {
            SHARED_LEN
        } else {
            sized(&message.body)
        };
        if !extra_keys.is_empty() {
            len += len_len(extra_keys.len()) + extra_keys.iter().map(|k| sized(k)).sum::<usize>();
        }
        let packed = ThinBytes::build(len, |out| {
            let mut at = 1;
            out[0] = flags;
            if let Some(HeldId(id)) = stored {
                out[1..1 + ID_LEN].copy_from_slice(&id.to_le_bytes());
                at += ID_LEN;
            }
            put_bytes(out, &mut at, routing_key);
            put_bytes(out, &mut at, properties);
            if other_exchange {
                put_bytes(out, &mut at, message.exchange.as_bytes());
            }
            if shared {
                // SAFETY: `SHARED_LEN` bytes are in bounds (sized above); moving a `Bytes`
                // by bitwise copy is sound, and `Held` reads it back out exactly once (in
                // `into_parts` or `drop`), as the `SHARED_BODY` flag records.
                unsafe {
                    std::ptr::write_unaligned(
                        out[at..at + SHARED_LEN].as_mut_ptr().cast::<Bytes>(),
                        message.body.clone(),
                    );
                }
                at += SHARED_LEN;
            } else {
                put_bytes(out, &mut at, &message.body);
            }
            if !extra_keys.is_empty() {
                put_len(out, &mut at, extra_keys.len());
                for key in extra_keys {
                    put_bytes(out, &mut at, key);
                }
            }
            debug_assert_eq!(at, out.len());
        });
        Held { packed }
    }

    fn sections(&self) -> Sections {
        let bytes = self.packed.as_slice();
        let flags = bytes[0];
        let mut at = if flags & STORED != 0 { 1 + ID_LEN } else { 1 };
        let routing_key = get_range(bytes, &mut at);
        let properties = get_range(bytes, &mut at);
        let exchange = (flags & OTHER_EXCHANGE != 0).then(|| get_range(bytes, &mut at));
        let body = if flags & SHARED_BODY != 0 {
            at += SHARED_LEN;
            at - SHARED_LEN..at
        } else {
            get_range(bytes, &mut at)
        };
        let extra_keys = (flags & EXTRA_KEYS != 0).then_some(at..bytes.len());
        Sections {
            flags,
            routing_key,
            properties,
            exchange,
            body,
            extra_keys,
        }
    }

    /// The moved-in shared body, without taking it (a bitwise copy that must not be dropped).
    fn peek_shared(&self, body: &Range<usize>) -> ManuallyDrop<Bytes> {
        let bytes = &self.packed.as_slice()[body.clone()];
        // SAFETY: written by `pack` under `SHARED_BODY`, and not taken yet (taking consumes
        // `self`); the copy is `ManuallyDrop`, so the reference count is untouched.
        ManuallyDrop::new(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Bytes>()) })
    }

    /// Its id in the held store, if it was written there.
    pub fn stored(&self) -> Option<HeldId> {
        let bytes = self.packed.as_slice();
        (bytes[0] & STORED != 0).then(|| {
            let mut id = [0; ID_LEN];
            id.copy_from_slice(&bytes[1..1 + ID_LEN]);
            HeldId(u64::from_le_bytes(id))
        })
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        let range = self.sections().routing_key;
        // Packed from a `ShortStr`, so UTF-8; a failure here would be a packing bug.
        std::str::from_utf8(&self.packed.as_slice()[range]).unwrap_or_default()
    }

    /// Body size in bytes.
    pub fn body_len(&self) -> usize {
        let s = self.sections();
        if s.flags & SHARED_BODY != 0 {
            self.peek_shared(&s.body).len()
        } else {
            s.body.len()
        }
    }

    /// The message as published to `exchange` (the name [`Held::pack`] was given), ready for
    /// the queues, and its extra routing keys.
    pub fn into_parts(self, exchange: &ShortStr) -> Result<Unpacked, String> {
        let s = self.sections();
        let stored = self.stored();
        let shared_body = (s.flags & SHARED_BODY != 0)
            .then(|| ManuallyDrop::into_inner(self.peek_shared(&s.body)));
        // The shared body (if any) is now owned by `shared_body`: `Held::drop` must not run.
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the `ThinBytes` moves out once.
        let packed = unsafe { std::ptr::read(&this.packed) };
        let all = Bytes::from_owner(packed);
        let exchange = match s.exchange {
            None => exchange.clone(),
            Some(range) => ShortStr::from_bytes(all.slice(range)).map_err(|e| e.to_string())?,
        };
        let routing_key =
            ShortStr::from_bytes(all.slice(s.routing_key)).map_err(|e| e.to_string())?;
        let properties = Properties::parse(all.slice(s.properties)).map_err(|e| e.to_string())?;
        let body = shared_body.unwrap_or_else(|| all.slice(s.body));
        Ok(Unpacked {
            message: Arc::new(Message {
                exchange,
                routing_key,
                properties,
                body,
            }),
            extra_keys: s.extra_keys.map(|range| all.slice(range)),
            stored,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let s = self.sections();
        if s.flags & SHARED_BODY != 0 {
            drop(ManuallyDrop::into_inner(self.peek_shared(&s.body)));
        }
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("routing_key", &self.routing_key())
            .field("body_len", &self.body_len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use amq_protocol::types::{AMQPValue, FieldTable, LongString};

    use super::*;

    fn name(s: &str) -> ShortStr {
        ShortStr::copy_from_str(s).expect("short")
    }

    fn properties_with_headers() -> Properties {
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), AMQPValue::LongLongInt(20_000));
        headers.insert("tag".into(), AMQPValue::LongString(LongString::from("é-ü")));
        let table = crate::protocol::encode_table_body(&headers).expect("encodes");
        Properties::empty()
            .edit()
            .set_headers(&table[..])
            .finish()
            .expect("properties")
    }

    fn message(exchange: &str, body: Bytes) -> Message {
        Message {
            exchange: name(exchange),
            routing_key: name("orders.eu"),
            properties: properties_with_headers(),
            body,
        }
    }

    fn round_trip(message: &Message, keys: &[Vec<u8>], exchange: &str) -> Unpacked {
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let held = Held::pack(message, &keys, &name(exchange), None);
        assert_eq!(held.stored(), None);
        assert_eq!(held.routing_key(), message.routing_key.as_str());
        assert_eq!(held.body_len(), message.body.len());
        held.into_parts(&name(exchange)).expect("unpacks")
    }

    fn assert_same(a: &Message, b: &Message) {
        assert_eq!(a.exchange, b.exchange);
        assert_eq!(a.routing_key, b.routing_key);
        assert_eq!(
            a.properties.raw(),
            b.properties.raw(),
            "headers byte-for-byte"
        );
        assert_eq!(a.properties.headers(), b.properties.headers());
        assert_eq!(a.body, b.body);
    }

    #[test]
    fn is_one_pointer() {
        assert_eq!(size_of::<Held>(), size_of::<usize>());
    }

    #[test]
    fn round_trips_routing_key_properties_body_and_extra_keys() {
        let published = message("d", Bytes::from_static(b"sixteen byte msg"));
        let keys = vec![b"cc.one".to_vec(), Vec::new(), vec![b'k'; 300]];
        let out = round_trip(&published, &keys, "d");
        assert_same(&out.message, &published);
        let packed = out.extra_keys.expect("keys");
        assert_eq!(extra_keys(&packed).collect::<Vec<_>>(), keys);
    }

    #[test]
    fn no_extra_keys_and_empty_body_and_properties() {
        let published = Message {
            exchange: name("d"),
            routing_key: ShortStr::empty(),
            properties: Properties::empty(),
            body: Bytes::new(),
        };
        let out = round_trip(&published, &[], "d");
        assert_same(&out.message, &published);
        assert!(out.extra_keys.is_none());
    }

    #[test]
    fn another_exchange_name_is_kept() {
        let published = message("elsewhere", Bytes::from_static(b"x"));
        let out = round_trip(&published, &[], "d");
        assert_eq!(out.message.exchange.as_str(), "elsewhere");
    }

    #[test]
    fn bodies_up_to_the_limit_are_copied_larger_ones_shared() {
        let at_limit = Bytes::from(vec![7u8; MAX_PACKED_BODY]);
        let out = round_trip(&message("d", at_limit.clone()), &[], "d");
        assert_eq!(out.message.body, at_limit);
        assert_ne!(out.message.body.as_ptr(), at_limit.as_ptr(), "copied");

        let large = Bytes::from(vec![9u8; MAX_PACKED_BODY + 1]);
        let published = message("d", large.clone());
        let out = round_trip(&published, &[b"cc".to_vec()], "d");
        assert_same(&out.message, &published);
        assert_eq!(
            out.message.body.as_ptr(),
            large.as_ptr(),
            "shared, not copied"
        );
        assert_eq!(extra_keys(&out.extra_keys.expect("keys")).count(), 1);
    }

    #[test]
    fn a_stored_message_keeps_its_store_id_and_everything_else() {
        for body in [
            Bytes::from_static(b"small"),
            Bytes::from(vec![7u8; MAX_PACKED_BODY + 1]),
        ] {
            let m = message("d", body);
            let keys: [&[u8]; 1] = [b"cc.key"];
            let held = Held::pack(&m, &keys, &name("d"), Some(HeldId(u64::MAX - 3)));
            assert_eq!(held.stored(), Some(HeldId(u64::MAX - 3)));
            assert_eq!(held.routing_key(), "orders.eu");
            assert_eq!(held.body_len(), m.body.len());
            let back = held.into_parts(&name("d")).expect("unpacks");
            assert_eq!(back.stored, Some(HeldId(u64::MAX - 3)));
            assert_same(&back.message, &m);
            let extra: Vec<&[u8]> =
                extra_keys(back.extra_keys.as_deref().unwrap_or_default()).collect();
            assert_eq!(extra, keys);
        }
    }

    #[test]
    fn dropping_a_held_large_body_releases_it() {
        let mut large = Bytes::from(vec![1u8; MAX_PACKED_BODY + 1]);
        let held = Held::pack(&message("d", large.clone()), &[], &name("d"), None);
        assert!(!large.is_unique());
        drop(held);
        assert!(large.is_unique(), "the held reference was dropped");
        large.truncate(1);
    }

    #[test]
    fn the_message_outlives_nothing_it_was_packed_from() {
        // The rebuilt message must not point into the publish's buffers.
        let buffer = Bytes::from(b"xxxxorders.eusixteen byte msg".to_vec());
        let published = Message {
            exchange: name("d"),
            routing_key: ShortStr::from_bytes(buffer.slice(4..13)).expect("short"),
            properties: Properties::empty(),
            body: buffer.slice(13..),
        };
        let held = Held::pack(&published, &[], &name("d"), None);
        drop(published);
        let mut buffer = buffer;
        assert!(
            buffer.is_unique(),
            "packing kept no slice of the read buffer"
        );
        buffer.truncate(0);
        let out = held.into_parts(&name("d")).expect("unpacks");
        assert_eq!(out.message.body.as_ref(), b"sixteen byte msg");
    }
}
