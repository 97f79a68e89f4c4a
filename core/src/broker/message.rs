//! A published message as the broker keeps it: every byte in one packed, refcounted
//! allocation behind one thin pointer.
//!
//! One [`Message`] per publish, shared by every queue it was routed to: enqueueing to N
//! queues bumps a reference count, never copies. It is built once, when the publish is
//! complete, by copying the exchange, routing key, properties and body out of the frames they
//! arrived in — the one copy of a small body between socket and queue.
//!
//! Why copy: those frames are slices of the connection's socket read buffer, and a slice
//! keeps the whole buffer alive. A message routed and delivered at once lets go within
//! microseconds, but a *kept* one (a queue with no consumer, an unacked delivery, a dead
//! letter, a transaction) would pin its read buffer for as long as it is kept: small
//! messages kept among large ones held 1.26 GB of RSS for 2 MB of messages (issue 12). Copied
//! into an allocation of their own, a kept message costs in proportion to its size. Bodies
//! over [`MAX_PACKED_BODY`] are shared instead of copied (see there for why that pins
//! nothing much). The building blocks are shared with the delayed exchange's held format
//! (`broker::packed`).
//!
//! Layout (alignment 8; lengths LEB128 unless noted):
//!
//! ```text
//! head:      u32   reference count (low 24 bits) | flags (high 8 bits, fixed at build)
//! store id:  4 bytes padding, then u64            only if STORE_SLOT (persistent messages)
//! exchange:  u8 len, bytes                        only unless DEFAULT_EXCHANGE
//! routing key: u8 len, bytes
//! properties:  len, bytes   (the raw wire form, so headers stay byte-for-byte as published)
//! body:        len, bytes   or, if SHARED_BODY, a moved-in `bytes::Bytes` value
//! ```
//!
//! The store id lives here because a publish is written to the message store once, under one
//! id, for all its durable queues (`broker::publish`); whether a given queue holds it stored
//! is that queue's bit. Only persistent messages (the only ones ever written) pay for the
//! slot.
//!
//! Sizes: the handle is 8 bytes (`Option<Message>` too). The allocation is 4 bytes of head
//! plus the fields: a 16-byte body published to the default exchange with a 15-byte routing
//! key and no properties is 40 bytes, a 48-byte glibc chunk. Measured at 1 M queued 16-byte
//! messages (`perf/scripts/rss-queued.sh`, see `docs/BENCHMARKS.md`): about 265 B of RSS per
//! message before this format (the `Message`, four `Bytes` handles, the pinned read
//! buffer's share, a 56-byte queue slot), and the figure recorded there after. The flags
//! share the head word with the count so that this case stays one chunk size down; the
//! count is therefore capped at 2^23 (overflowing it aborts, as `Arc` does at `isize::MAX`).

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use bytes::Bytes;

use super::packed::{
    MAX_PACKED_BODY, SHARED_LEN, peek_shared, put_bytes, put_shared, sized, take_shared,
};
use crate::protocol::{Props, ShortStr};
use crate::store::MessageId;

const SHARED_BODY: u32 = 1 << 24;
const STORE_SLOT: u32 = 2 << 24;
const DEFAULT_EXCHANGE: u32 = 4 << 24;
const REFS: u32 = (1 << 24) - 1;
/// Clones beyond this abort: far below the 24-bit field, so racing clones cannot reach it.
const MAX_REFS: u32 = 1 << 23;
/// Where the store id sits, if there is a slot for it.
const STORE_AT: usize = 8;
/// The store id of a message not (yet) written to the store.
const NOT_STORED: u64 = u64::MAX;

/// A published message. Cloning shares it (one atomic increment); it is immutable except
/// for its store id, written once when the publish is stored.
pub struct Message {
    ptr: NonNull<u8>,
}

// SAFETY: the allocation is immutable after `build` except through atomics, and freed once,
// by the last handle: the same contract as `Arc<[u8]>`.
unsafe impl Send for Message {}
// SAFETY: as above; shared access only reads, or writes through atomics.
unsafe impl Sync for Message {}

/// Borrowed views of a message's parts, found with one walk of the allocation.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    /// The exchange it was published to (delivered back in `basic.deliver`).
    pub exchange: &'a str,
    /// The routing key it was published with.
    pub routing_key: &'a str,
    /// The properties, byte-for-byte as published (BCC removed).
    pub properties: &'a Props,
    /// The whole body.
    pub body: &'a [u8],
}

/// Where each field sits (offsets into the allocation).
struct Sections {
    flags: u32,
    exchange: (usize, usize),
    routing_key: (usize, usize),
    properties: (usize, usize),
    /// The inline body, or (if `SHARED_BODY`) the moved-in `Bytes` value's bytes.
    body: (usize, usize),
}

impl Sections {
    fn end(&self) -> usize {
        self.body.1
    }
}

fn layout(size: usize) -> Layout {
    // A message's size is bounded by what a connection could hold before building it.
    match Layout::from_size_align(size, 8) {
        Ok(layout) => layout,
        Err(_) => panic!("message of {size} bytes"),
    }
}

/// A shortstr field's length byte. The names come from `ShortStr`s, so this never clamps.
fn short_len(s: &str) -> u8 {
    debug_assert!(s.len() <= 255, "a shortstr name");
    u8::try_from(s.len()).unwrap_or(u8::MAX)
}

impl Message {
    /// Packs a message published to `exchange` with `routing_key`; its properties (validated
    /// wire bytes) and body are copied, except a body over [`MAX_PACKED_BODY`], which is
    /// shared.
    pub fn new(
        exchange: &ShortStr,
        routing_key: &ShortStr,
        properties: &Props,
        body: &Bytes,
    ) -> Message {
        let share = (body.len() > MAX_PACKED_BODY).then_some(body);
        Message::pack(
            exchange.as_str(),
            routing_key.as_str(),
            properties,
            body,
            share,
        )
    }

    /// This message with `id` as its store id: itself when it has room for one (set now if
    /// unset), else a copy that has (a message stored although transient: only tests and
    /// stores that keep whatever they are given do that).
    pub fn stored_as(self, id: MessageId) -> Message {
        if self.store_id() == Some(id) || (self.store_id().is_none() && self.set_store_id(id)) {
            return self;
        }
        let p = self.parts();
        let shared = (p.body.len() > MAX_PACKED_BODY).then(|| self.body_bytes());
        let copy = Message::pack_with(
            p.exchange,
            p.routing_key,
            p.properties,
            p.body,
            shared.as_ref(),
            true,
        );
        copy.set_store_id(id);
        copy
    }

    /// As [`Message::new`], from names known to be shortstrs (at most 255 bytes each) and
    /// validated properties; `body` is copied unless `share` (the same bytes as a `Bytes`) is
    /// given, which is moved in instead.
    pub(crate) fn pack(
        exchange: &str,
        routing_key: &str,
        properties: &Props,
        body: &[u8],
        share: Option<&Bytes>,
    ) -> Message {
        let stored = properties.is_persistent();
        Message::pack_with(exchange, routing_key, properties, body, share, stored)
    }

    /// As [`Message::pack`], with a store id slot if `stored`.
    fn pack_with(
        exchange: &str,
        routing_key: &str,
        properties: &Props,
        body: &[u8],
        share: Option<&Bytes>,
        stored: bool,
    ) -> Message {
        let shared = share.is_some();
        let default_exchange = exchange.is_empty();
        let flags = if shared { SHARED_BODY } else { 0 }
            | if stored { STORE_SLOT } else { 0 }
            | if default_exchange {
                DEFAULT_EXCHANGE
            } else {
                0
            };
        let start = if stored { STORE_AT + 8 } else { 4 };
        let names = if default_exchange {
            0
        } else {
            1 + usize::from(short_len(exchange))
        } + 1
            + usize::from(short_len(routing_key));
        let body_len = if shared { SHARED_LEN } else { sized(body) };
        let size = start + names + sized(properties.raw()) + body_len;
        let layout = layout(size);
        // SAFETY: the layout's size is at least 4 (the head).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the allocation is `size` bytes, owned here; every byte is written below
        // before the slice is read (padding included).
        let out = unsafe {
            raw.write_bytes(0, start);
            std::slice::from_raw_parts_mut(raw, size)
        };
        out[..4].copy_from_slice(&(flags | 1).to_ne_bytes());
        if stored {
            out[STORE_AT..STORE_AT + 8].copy_from_slice(&NOT_STORED.to_ne_bytes());
        }
        let mut at = start;
        let put_name = |out: &mut [u8], at: &mut usize, name: &str| {
            let len = usize::from(short_len(name));
            out[*at] = len as u8;
            out[*at + 1..*at + 1 + len].copy_from_slice(&name.as_bytes()[..len]);
            *at += 1 + len;
        };
        if !default_exchange {
            put_name(out, &mut at, exchange);
        }
        put_name(out, &mut at, routing_key);
        put_bytes(out, &mut at, properties.raw());
        if let Some(share) = share {
            put_shared(out, &mut at, share);
        } else {
            put_bytes(out, &mut at, body);
        }
        debug_assert_eq!(at, size);
        Message { ptr }
    }

    /// This message's body under other names and properties (a dead letter): one new
    /// allocation, the body copied (or, over [`MAX_PACKED_BODY`], shared).
    pub fn rebuilt(&self, exchange: &ShortStr, routing_key: &str, properties: &Props) -> Message {
        let shared = (self.body_len() > MAX_PACKED_BODY).then(|| self.body_bytes());
        Message::pack(
            exchange.as_str(),
            routing_key,
            properties,
            self.body(),
            shared.as_ref(),
        )
    }

    fn head(&self) -> &AtomicU32 {
        // SAFETY: the allocation starts with the head word, 8-aligned, only ever accessed
        // atomically after `pack`.
        unsafe { &*self.ptr.as_ptr().cast::<AtomicU32>() }
    }

    fn flags(&self) -> u32 {
        // The flag bits never change after `pack`; increments stay below them (`MAX_REFS`).
        self.head().load(Ordering::Relaxed) & !REFS
    }

    /// The bytes from `from` to `to` of the allocation.
    fn bytes(&self, from: usize, to: usize) -> &[u8] {
        // SAFETY: callers pass offsets inside the fields `pack` wrote, which are immutable.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(from), to - from) }
    }

    fn sections(&self) -> Sections {
        let flags = self.flags();
        let mut at = if flags & STORE_SLOT != 0 {
            STORE_AT + 8
        } else {
            4
        };
        let name = |at: &mut usize| {
            let len = usize::from(self.bytes(*at, *at + 1)[0]);
            let range = (*at + 1, *at + 1 + len);
            *at = range.1;
            range
        };
        let exchange = if flags & DEFAULT_EXCHANGE != 0 {
            (at, at)
        } else {
            name(&mut at)
        };
        let routing_key = name(&mut at);
        let properties = self.section(&mut at);
        let body = if flags & SHARED_BODY != 0 {
            (at, at + SHARED_LEN)
        } else {
            self.section(&mut at)
        };
        Sections {
            flags,
            exchange,
            routing_key,
            properties,
            body,
        }
    }

    /// A LEB128-prefixed section at `*at`, stepping past it.
    fn section(&self, at: &mut usize) -> (usize, usize) {
        let mut len = 0;
        let mut shift = 0;
        loop {
            let byte = self.bytes(*at, *at + 1)[0];
            *at += 1;
            len |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
        }
        let start = *at;
        *at += len;
        (start, *at)
    }

    /// A name copied from a `ShortStr` by `pack`.
    fn name(&self, (from, to): (usize, usize)) -> &str {
        // Copied whole from a `ShortStr` (UTF-8) and never changed: this cannot fail.
        std::str::from_utf8(self.bytes(from, to)).unwrap_or_default()
    }

    /// Every part, with one walk of the allocation (what encoding a delivery uses).
    pub fn parts(&self) -> Parts<'_> {
        let s = self.sections();
        let body = if s.flags & SHARED_BODY != 0 {
            // SAFETY: `pack` moved a `Bytes` there under `SHARED_BODY`; only `drop` takes it.
            let shared = unsafe { peek_shared(self.bytes(s.body.0, s.body.1)) };
            // SAFETY: the moved-in `Bytes` keeps its data alive for as long as `self` is.
            unsafe { std::slice::from_raw_parts(shared.as_ptr(), shared.len()) }
        } else {
            self.bytes(s.body.0, s.body.1)
        };
        Parts {
            exchange: self.name(s.exchange),
            routing_key: self.name(s.routing_key),
            properties: Props::from_validated(self.bytes(s.properties.0, s.properties.1)),
            body,
        }
    }

    /// The exchange it was published to.
    pub fn exchange(&self) -> &str {
        self.parts().exchange
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        self.parts().routing_key
    }

    /// The properties, byte-for-byte as published (BCC removed).
    pub fn properties(&self) -> &Props {
        self.parts().properties
    }

    /// The whole body.
    pub fn body(&self) -> &[u8] {
        self.parts().body
    }

    /// Body size in bytes.
    pub fn body_len(&self) -> usize {
        self.parts().body.len()
    }

    /// The body as `Bytes`: the shared value of a large body, a copy of a small one (for
    /// callers that keep it apart from the message, e.g. a rebuilt dead letter).
    pub fn body_bytes(&self) -> Bytes {
        let s = self.sections();
        if s.flags & SHARED_BODY != 0 {
            // SAFETY: as in `parts`; the clone takes its own reference.
            let shared = unsafe { peek_shared(self.bytes(s.body.0, s.body.1)) };
            Bytes::clone(&shared)
        } else {
            Bytes::copy_from_slice(self.bytes(s.body.0, s.body.1))
        }
    }

    fn store_slot(&self) -> Option<&AtomicU64> {
        (self.flags() & STORE_SLOT != 0).then(|| {
            // SAFETY: under `STORE_SLOT`, bytes 8..16 hold the id, 8-aligned, only ever
            // accessed atomically after `pack`.
            unsafe { &*self.ptr.as_ptr().add(STORE_AT).cast::<AtomicU64>() }
        })
    }

    /// Its id in the message store, once written there (only persistent messages are).
    pub fn store_id(&self) -> Option<MessageId> {
        let id = self.store_slot()?.load(Ordering::Acquire);
        (id != NOT_STORED).then_some(MessageId(id))
    }

    /// Records its id in the message store: once per publish, before any queue holds it.
    /// Returns false (and records nothing) for a message with no room for it (transient:
    /// see [`Message::stored_as`]).
    pub fn set_store_id(&self, id: MessageId) -> bool {
        match self.store_slot() {
            Some(slot) => {
                debug_assert_eq!(slot.load(Ordering::Relaxed), NOT_STORED, "stored twice");
                slot.store(id.0, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Bytes this message's allocation takes (the head and fields; a shared body not
    /// counted), for tests and measurements.
    pub fn packed_len(&self) -> usize {
        self.sections().end()
    }
}

impl Clone for Message {
    fn clone(&self) -> Message {
        // Relaxed, as in `Arc`: a new handle is made from an existing one, which keeps the
        // allocation alive meanwhile.
        let old = self.head().fetch_add(1, Ordering::Relaxed);
        if old & REFS >= MAX_REFS {
            std::process::abort();
        }
        Message { ptr: self.ptr }
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if self.head().fetch_sub(1, Ordering::Release) & REFS != 1 {
            return;
        }
        // Every other handle's use happens before the free (as in `Arc`).
        fence(Ordering::Acquire);
        let s = self.sections();
        if s.flags & SHARED_BODY != 0 {
            // SAFETY: the last handle takes the moved-in `Bytes` once, then frees.
            drop(unsafe { take_shared(self.bytes(s.body.0, s.body.1)) });
        }
        // SAFETY: allocated in `pack` with this very layout (its size is `end`).
        unsafe { dealloc(self.ptr.as_ptr(), layout(s.end())) }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.parts();
        f.debug_struct("Message")
            .field("exchange", &p.exchange)
            .field("routing_key", &p.routing_key)
            .field("properties", &p.properties)
            .field("body_len", &p.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use amq_protocol::types::{AMQPValue, FieldTable};

    use super::*;
    use crate::protocol::Properties;

    fn name(s: &str) -> ShortStr {
        ShortStr::copy_from_str(s).expect("short")
    }

    fn persistent_with_headers() -> Properties {
        let mut headers = FieldTable::default();
        headers.insert("tag".into(), AMQPValue::LongLongInt(7));
        let table = crate::protocol::encode_table_body(&headers).expect("encodes");
        Properties::empty()
            .edit()
            .set_headers(&table[..])
            .set_octet(crate::protocol::Property::DeliveryMode, 2)
            .finish()
            .expect("properties")
    }

    /// An owner that records when the buffer it stands for is freed.
    struct Buffer {
        bytes: Vec<u8>,
        freed: Arc<AtomicBool>,
    }

    impl AsRef<[u8]> for Buffer {
        fn as_ref(&self) -> &[u8] {
            &self.bytes
        }
    }

    impl Drop for Buffer {
        fn drop(&mut self) {
            self.freed.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn is_one_pointer() {
        assert_eq!(size_of::<Message>(), size_of::<usize>());
        assert_eq!(size_of::<Option<Message>>(), size_of::<usize>());
    }

    #[test]
    fn a_kept_message_does_not_pin_the_read_buffer_it_arrived_in() {
        // A 64 KiB "socket read buffer" holding a header frame and a 100-byte body frame.
        let freed = Arc::new(AtomicBool::new(false));
        let mut bytes = vec![0u8; 64 * 1024];
        let props = Properties::empty()
            .edit()
            .set_octet(crate::protocol::Property::Priority, 3)
            .finish()
            .expect("properties");
        bytes[..props.len()].copy_from_slice(props.raw());
        bytes[1000..1011].copy_from_slice(b"orders.east");
        let read_buffer = Bytes::from_owner(Buffer {
            bytes,
            freed: freed.clone(),
        });
        let message = Message::new(
            &name("amq.topic"),
            &ShortStr::from_bytes(read_buffer.slice(1000..1011)).expect("short"),
            &Properties::parse(read_buffer.slice(..props.len())).expect("valid"),
            &read_buffer.slice(2000..2100),
        );
        drop(read_buffer);
        assert!(
            freed.load(Ordering::SeqCst),
            "the read buffer was freed while the message is kept"
        );
        let p = message.parts();
        assert_eq!(
            (p.exchange, p.routing_key, p.body.len()),
            ("amq.topic", "orders.east", 100)
        );
        assert_eq!(p.properties.priority(), Some(3));
        assert!(message.packed_len() < 140, "{}", message.packed_len());
    }

    #[test]
    fn round_trips_every_part_and_clones_share_one_allocation() {
        let props = persistent_with_headers();
        let body = Bytes::from(vec![5u8; 300]);
        let m = Message::new(&name("x"), &name("k.1"), &props, &body);
        let c = m.clone();
        assert_eq!(m.ptr, c.ptr);
        drop(m);
        assert_eq!(c.exchange(), "x");
        assert_eq!(c.routing_key(), "k.1");
        assert_eq!(c.properties().raw(), props.raw(), "byte-for-byte");
        assert_eq!(c.properties().headers(), props.headers());
        assert_eq!(c.body(), &body[..]);
        assert_eq!(c.body_bytes(), body);
        assert_ne!(c.body().as_ptr(), body.as_ptr(), "copied");
    }

    #[test]
    fn default_exchange_empty_fields_and_long_sections() {
        let m = Message::new(
            &ShortStr::empty(),
            &ShortStr::empty(),
            &Properties::empty(),
            &Bytes::new(),
        );
        assert_eq!((m.exchange(), m.routing_key(), m.body_len()), ("", "", 0));
        assert_eq!(m.packed_len(), 4 + 1 + 1 + 2 + 1);
        let long = "k".repeat(255);
        let body = Bytes::from(vec![1u8; MAX_PACKED_BODY]);
        let m = Message::new(&name(&long), &name(&long), &Properties::empty(), &body);
        assert_eq!((m.exchange(), m.routing_key()), (&long[..], &long[..]));
        assert_eq!(m.body(), &body[..]);
    }

    #[test]
    fn a_large_body_is_shared_and_released_with_the_last_handle() {
        let mut body = Bytes::from(vec![9u8; MAX_PACKED_BODY + 1]);
        let m = Message::new(&name("x"), &name("k"), &Properties::empty(), &body);
        assert_eq!(m.body().as_ptr(), body.as_ptr(), "shared, not copied");
        assert_eq!(m.body_bytes().as_ptr(), body.as_ptr());
        let c = m.clone();
        drop(m);
        assert!(!body.is_unique());
        assert_eq!(c.body_len(), MAX_PACKED_BODY + 1);
        drop(c);
        assert!(body.is_unique(), "the message's reference was dropped");
        body.truncate(0);
    }

    #[test]
    fn only_a_persistent_message_has_a_store_id_slot() {
        let persistent = Message::new(
            &name("x"),
            &name("k"),
            &persistent_with_headers(),
            &Bytes::from_static(b"b"),
        );
        assert_eq!(persistent.store_id(), None);
        assert!(persistent.clone().set_store_id(MessageId(41)));
        assert_eq!(persistent.store_id(), Some(MessageId(41)));
        assert_eq!(persistent.body(), b"b");
        let transient = Message::new(
            &name("x"),
            &name("k"),
            &Properties::empty(),
            &Bytes::from_static(b"b"),
        );
        assert!(!transient.set_store_id(MessageId(1)));
        assert_eq!(transient.store_id(), None);
    }

    #[test]
    fn the_measured_case_fits_a_48_byte_chunk() {
        // rss-queued.sh: 16-byte bodies, the default exchange, routing key "warren-perf-rss".
        let m = Message::new(
            &ShortStr::empty(),
            &name("warren-perf-rss"),
            &Properties::empty(),
            &Bytes::from_static(&[0; 16]),
        );
        assert_eq!(m.packed_len(), 40);
    }

    #[test]
    fn clones_across_threads_free_once() {
        let m = Message::new(
            &name("x"),
            &name("k"),
            &Properties::empty(),
            &Bytes::from(vec![1u8; MAX_PACKED_BODY + 10]),
        );
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        drop(m.clone());
                    }
                    m.body_len()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread"), MAX_PACKED_BODY + 10);
        }
        assert_eq!(m.head().load(Ordering::SeqCst) & REFS, 1);
    }
}
