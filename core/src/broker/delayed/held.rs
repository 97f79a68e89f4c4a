//! [`Held`]: a delayed message packed for the wait — routing key, properties, body and
//! CC/BCC keys copied into one allocation behind one thin pointer.
//!
//! Why not keep the publish's [`Message`]: it already owns its bytes (`broker::message`, no
//! slice of a read buffer), but a held message is a timer-wheel payload, and this format
//! keeps a wheel entry at 32 bytes (one pointer), leaves out the exchange name every held
//! message shares, and carries the CC/BCC keys and the held-store id in the same allocation.
//! Measured at 1 M pending 16-byte messages: ≈ 310 B per message beyond the body before this
//! format (when messages were slices of the read buffer), 81 B after (see
//! `docs/BENCHMARKS.md`). Holding costs one more allocation and copy of a small body at
//! publish (from the packed message into this format).
//!
//! Format (all lengths LEB128, see `broker::packed::put_len`):
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
//! copied, by the rule every packed format follows (see `broker::packed`).
//!
//! At fire time [`Held::into_parts`] packs a new [`Message`] from this allocation (one
//! allocation, one copy of a small body) and frees it.

use std::mem::ManuallyDrop;
use std::ops::Range;

use bytes::Bytes;

use crate::broker::message::Message;
pub use crate::broker::packed::MAX_PACKED_BODY;
use crate::broker::packed::thin::ThinBytes;
use crate::broker::packed::{
    SHARED_LEN, get_len, get_range, len_len, peek_shared, put_bytes, put_len, put_shared, sized,
    take_shared,
};
use crate::protocol::{Props, ShortStr};
use crate::store::HeldId;

const SHARED_BODY: u8 = 1;
const OTHER_EXCHANGE: u8 = 2;
const EXTRA_KEYS: u8 = 4;
const STORED: u8 = 8;
const ID_LEN: usize = size_of::<u64>();

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
    pub message: Message,
    pub extra_keys: Option<Bytes>,
    /// Its id in the held store, if it was written there.
    pub stored: Option<HeldId>,
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
        let parts = message.parts();
        let shared = (parts.body.len() > MAX_PACKED_BODY).then(|| message.body_bytes());
        let other_exchange = parts.exchange != exchange.as_str();
        let flags = if shared.is_some() { SHARED_BODY } else { 0 }
            | if other_exchange { OTHER_EXCHANGE } else { 0 }
            | if extra_keys.is_empty() { 0 } else { EXTRA_KEYS }
            | if stored.is_some() { STORED } else { 0 };
        let routing_key = parts.routing_key.as_bytes();
        let properties = parts.properties.raw();
        let id_len = if stored.is_some() { ID_LEN } else { 0 };
        let mut len = 1 + id_len + sized(routing_key) + sized(properties);
        if other_exchange {
            len += sized(parts.exchange.as_bytes());
        }
        len += if shared.is_some() {
            SHARED_LEN
        } else {
            sized(parts.body)
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
                put_bytes(out, &mut at, parts.exchange.as_bytes());
            }
            // `Held` takes a shared body back exactly once (in `into_parts` or `drop`), as
            // the `SHARED_BODY` flag records.
            match &shared {
                Some(body) => put_shared(out, &mut at, body),
                None => put_bytes(out, &mut at, parts.body),
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
        // SAFETY: written by `pack` under `SHARED_BODY`, and not taken yet (taking consumes
        // `self`).
        unsafe { peek_shared(&self.packed.as_slice()[body.clone()]) }
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
    /// the queues, and its extra routing keys. The message is packed anew (one allocation, a
    /// copy of a small body); this allocation is freed.
    pub fn into_parts(self, exchange: &ShortStr) -> Result<Unpacked, String> {
        let s = self.sections();
        let stored = self.stored();
        let bytes = self.packed.as_slice();
        let name = |range: Range<usize>| {
            std::str::from_utf8(&bytes[range]).map_err(|_| "a held name is not UTF-8".to_owned())
        };
        let exchange = match s.exchange {
            None => exchange.as_str(),
            Some(range) => name(range)?,
        };
        let routing_key = name(s.routing_key)?;
        // Copied verbatim from a message's validated properties by `pack`.
        let properties = Props::from_validated(&bytes[s.properties]);
        let shared = (s.flags & SHARED_BODY != 0).then(|| self.peek_shared(&s.body));
        let body = match &shared {
            Some(shared) => &shared[..],
            None => &bytes[s.body],
        };
        let message = Message::pack(exchange, routing_key, properties, body, shared.as_deref());
        let extra_keys = s
            .extra_keys
            .map(|range| Bytes::copy_from_slice(&bytes[range]));
        Ok(Unpacked {
            message,
            extra_keys,
            stored,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let s = self.sections();
        if s.flags & SHARED_BODY != 0 {
            // SAFETY: written by `pack` under `SHARED_BODY`, taken only here, once.
            drop(unsafe { take_shared(&self.packed.as_slice()[s.body]) });
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
    use crate::protocol::Properties;

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
        Message::new(
            &name(exchange),
            &name("orders.eu"),
            &properties_with_headers(),
            &body,
        )
    }

    fn round_trip(message: &Message, keys: &[Vec<u8>], exchange: &str) -> Unpacked {
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let held = Held::pack(message, &keys, &name(exchange), None);
        assert_eq!(held.stored(), None);
        assert_eq!(held.routing_key(), message.routing_key());
        assert_eq!(held.body_len(), message.body_len());
        held.into_parts(&name(exchange)).expect("unpacks")
    }

    fn assert_same(a: &Message, b: &Message) {
        assert_eq!(a.exchange(), b.exchange());
        assert_eq!(a.routing_key(), b.routing_key());
        assert_eq!(
            a.properties().raw(),
            b.properties().raw(),
            "headers byte-for-byte"
        );
        assert_eq!(a.properties().headers(), b.properties().headers());
        assert_eq!(a.body(), b.body());
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
        let published = Message::new(
            &name("d"),
            &ShortStr::empty(),
            &Properties::empty(),
            &Bytes::new(),
        );
        let out = round_trip(&published, &[], "d");
        assert_same(&out.message, &published);
        assert!(out.extra_keys.is_none());
    }

    #[test]
    fn another_exchange_name_is_kept() {
        let published = message("elsewhere", Bytes::from_static(b"x"));
        let out = round_trip(&published, &[], "d");
        assert_eq!(out.message.exchange(), "elsewhere");
    }

    #[test]
    fn bodies_up_to_the_limit_are_copied_larger_ones_shared() {
        let at_limit = Bytes::from(vec![7u8; MAX_PACKED_BODY]);
        let out = round_trip(&message("d", at_limit.clone()), &[], "d");
        assert_eq!(out.message.body(), &at_limit[..]);
        assert_ne!(out.message.body().as_ptr(), at_limit.as_ptr(), "copied");

        let large = Bytes::from(vec![9u8; MAX_PACKED_BODY + 1]);
        let published = message("d", large.clone());
        let out = round_trip(&published, &[b"cc".to_vec()], "d");
        assert_same(&out.message, &published);
        assert_eq!(
            out.message.body().as_ptr(),
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
            assert_eq!(held.body_len(), m.body_len());
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
        let published = Message::new(
            &name("d"),
            &ShortStr::from_bytes(buffer.slice(4..13)).expect("short"),
            &Properties::empty(),
            &buffer.slice(13..),
        );
        let held = Held::pack(&published, &[], &name("d"), None);
        drop(published);
        let mut buffer = buffer;
        assert!(
            buffer.is_unique(),
            "packing kept no slice of the read buffer"
        );
        buffer.truncate(0);
        let out = held.into_parts(&name("d")).expect("unpacks");
        assert_eq!(out.message.body(), b"sixteen byte msg");
    }
}
