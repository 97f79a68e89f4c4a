//! The `headers` exchange type: routes on the message's `headers` property, ignoring the
//! routing key, with the semantics of RabbitMQ's `rabbit_exchange_type_headers`.
//!
//! A binding's arguments are its pattern. `x-match` says how the other entries combine:
//! `all` (the default) needs every entry to match, `any` needs one. Keys starting with `x-`
//! are not matched unless `x-match` is `all-with-x` or `any-with-x`; `x-match` itself never
//! is. A pattern entry with a void value matches on the header's presence alone. So `all`
//! with nothing left to match routes every message, and `any` with nothing routes none.
//!
//! Values are equal when RabbitMQ's decoded Erlang terms would be equal, except across the
//! integer/float line:
//! - every integer width (and a timestamp, which RabbitMQ decodes to an integer) is one class
//!   and compares by numeric value: `5` sent as a byte matches `5` bound as a long;
//! - `f32` and `f64` are one class, compared as `f64`;
//! - long strings and byte arrays are one class (both are binaries), compared bytewise;
//! - nested tables and arrays compare by their encoded bytes;
//! - anything else (bool, decimal) matches only its own type with the same value.
//!
//! RabbitMQ compares with Erlang's `==`, under which `5 == 5.0`; we keep integers and floats
//! apart, because a pattern that matches `5.0` by accident of a client's number encoding is a
//! routing bug waiting to happen, and the two representations are never both deliberate.
//!
//! Each binding's arguments are parsed once, when it is added. Bindings with byte-identical
//! arguments share one compiled pattern, so routing to many queues bound alike checks the
//! pattern once. Every key some pattern mentions gets a small number; routing decodes the
//! message's headers once, keeps only the entries whose key has a number, and then walks the
//! patterns comparing numbers and value fingerprints, touching a pattern's bytes only when the
//! fingerprints agree.
//!
//! Architecture invariant: `route` does no heap allocation and decodes each header entry once,
//! however many bindings there are.

use rustc_hash::{FxHashMap, FxHasher};
use std::fmt::Write as _;
use std::hash::Hasher;
use std::ops::Range;
use warren_plugin_api::{
    Binding, DestinationId, Destinations, ExchangeType, FieldArray, FieldTable, FieldValue,
    Message, PluginError,
};

warren_plugin_api::export_exchange_types! {
    name: "warren-headers",
    version: env!("CARGO_PKG_VERSION"),
    types: [HeadersExchange],
}

/// One `headers` exchange: its bindings compiled into patterns.
#[derive(Debug, Default)]
pub struct HeadersExchange {
    /// Walked in full by every `route`; kept dense so that walk stays in cache.
    patterns: Vec<Pattern>,
    /// The entries of all patterns, each pattern's in one run, so that the walk reads them
    /// in order from one allocation rather than chasing one per pattern.
    entries: Vec<Entry>,
    /// Where each distinct argument table's pattern sits in `patterns`, for add and removal.
    by_arguments: FxHashMap<Box<[u8]>, usize>,
    /// The numbers of the keys the patterns match on.
    keys: KeyIds,
}

impl ExchangeType for HeadersExchange {
    const NAME: &'static str = "headers";
    const DESCRIPTION: &'static str = "AMQP headers exchange, as per the AMQP specification";

    fn create(_exchange: &str, _arguments: &FieldTable<'_>) -> Result<Self, PluginError> {
        Ok(HeadersExchange::default())
    }

    fn validate_binding(&self, binding: &Binding) -> Result<(), PluginError> {
        Pattern::compile(binding.arguments()).map(drop)
    }

    fn add_binding(&mut self, binding: &Binding) -> Result<(), PluginError> {
        let arguments = binding.arguments();
        let index = match self.by_arguments.get(arguments.as_bytes()) {
            Some(&index) => index,
            None => {
                let (mut pattern, mut entries) = Pattern::compile(arguments)?;
                for entry in &mut entries {
                    entry.key_id = self.keys.acquire(&entry.key);
                    pattern.keys_mask |= key_bit(entry.key_id);
                }
                pattern.entries = self.entries.len()..self.entries.len() + entries.len();
                self.entries.append(&mut entries);
                self.by_arguments
                    .insert(arguments.as_bytes().into(), self.patterns.len());
                self.patterns.push(pattern);
                self.patterns.len() - 1
            }
        };
        let destinations = &mut self.patterns[index].destinations;
        match destinations
            .iter_mut()
            .find(|(d, _)| *d == binding.destination())
        {
            Some((_, count)) => *count += 1,
            None => destinations.push((binding.destination(), 1)),
        }
        Ok(())
    }

    fn remove_bindings(&mut self, bindings: &[Binding]) -> Result<(), PluginError> {
        for binding in bindings {
            self.remove(binding.destination(), binding.arguments().as_bytes());
        }
        Ok(())
    }

    fn route(
        &self,
        message: &Message,
        destinations: &mut Destinations<'_>,
    ) -> Result<(), PluginError> {
        if self.patterns.is_empty() {
            return Ok(());
        }
        let headers = Headers::decode(message.headers(), &self.keys);
        for pattern in &self.patterns {
            if pattern.matches(&self.entries[pattern.entries.clone()], &headers) {
                destinations.extend(pattern.destinations.iter().map(|&(d, _)| d));
            }
        }
        Ok(())
    }
}

impl HeadersExchange {
    /// Drops one reference to the binding `(destination, arguments)`. A binding the exchange
    /// does not know is ignored: removal must not fail halfway through a batch.
    fn remove(&mut self, destination: DestinationId, arguments: &[u8]) {
        let Some(&index) = self.by_arguments.get(arguments) else {
            return;
        };
        let destinations = &mut self.patterns[index].destinations;
        let Some(at) = destinations.iter().position(|&(d, _)| d == destination) else {
            return;
        };
        destinations[at].1 -= 1;
        if destinations[at].1 > 0 {
            return;
        }
        destinations.swap_remove(at);
        if !destinations.is_empty() {
            return;
        }
        self.by_arguments.remove(arguments);
        let removed = self.patterns.swap_remove(index).entries;
        for entry in self.entries.drain(removed.clone()) {
            self.keys.release(&entry.key);
        }
        for pattern in &mut self.patterns {
            if pattern.entries.start >= removed.end {
                pattern.entries =
                    pattern.entries.start - removed.len()..pattern.entries.end - removed.len();
            }
        }
        let moved = self.patterns.get(index);
        if let Some(slot) = moved.and_then(|m| self.by_arguments.get_mut(&m.arguments)) {
            *slot = index;
        }
    }
}

/// Numbers for the keys the patterns mention, counted so that a number is reused once no
/// pattern needs its key. Reuse keeps the numbers small, and small numbers give distinct
/// bits in the key masks (see [`key_bit`]) to the first 64 keys of an exchange.
#[derive(Debug, Default)]
struct KeyIds {
    ids: FxHashMap<Box<[u8]>, (u32, u32)>,
    free: Vec<u32>,
}

impl KeyIds {
    fn acquire(&mut self, key: &[u8]) -> u32 {
        if let Some((id, uses)) = self.ids.get_mut(key) {
            *uses += 1;
            return *id;
        }
        let id = self.free.pop().unwrap_or(self.ids.len() as u32);
        self.ids.insert(key.into(), (id, 1));
        id
    }

    fn release(&mut self, key: &[u8]) {
        let Some((id, uses)) = self.ids.get_mut(key) else {
            return;
        };
        *uses -= 1;
        if *uses == 0 {
            self.free.push(*id);
            self.ids.remove(key);
        }
    }

    #[inline]
    fn get(&self, key: &[u8]) -> Option<u32> {
        self.ids.get(key).map(|&(id, _)| id)
    }
}

/// The bit of a key number in the key masks: a pattern whose key bits are not all in the
/// message's mask needs a key the message does not have.
#[inline]
fn key_bit(key_id: u32) -> u64 {
    1 << (key_id % 64)
}

/// How a pattern's entries combine (`x-match`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// One binding argument table, compiled, and every destination bound with exactly it.
#[derive(Debug)]
struct Pattern {
    /// The encoded arguments, kept to find this pattern again when its bindings go away.
    arguments: Box<[u8]>,
    mode: Mode,
    /// Where the entries are in [`HeadersExchange::entries`].
    entries: Range<usize>,
    /// Union of the entries' key bits: rules out most patterns whose keys the message does
    /// not carry before any entry is looked at.
    keys_mask: u64,
    /// Each destination with the number of identical bindings that lead to it.
    destinations: Vec<(DestinationId, u32)>,
}

/// One entry of a pattern. `class` and `fingerprint` decide equality for every scalar; for
/// byte-carrying classes equal fingerprints are confirmed against `bytes`.
#[derive(Debug)]
struct Entry {
    key_id: u32,
    class: Class,
    fingerprint: u64,
    key: Box<[u8]>,
    bytes: Option<Box<[u8]>>,
}

/// What kind of value is compared, with RabbitMQ's equalities folded in (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// A void binding value: the header only has to be present.
    Present,
    Bool,
    /// Any integer width, or a timestamp, that fits in an `i64`.
    Integer,
    /// A timestamp above `i64::MAX`: only another such timestamp equals it.
    BigInteger,
    Float,
    Decimal,
    /// Long strings and byte arrays.
    Bytes,
    Array,
    Table,
    /// A void header or a NaN: equal to nothing.
    Unmatchable,
}

/// The class and fingerprint of a value. Equal fingerprints within a class mean equal values
/// for scalars; for `Bytes` and `Table` the fingerprint is a hash, and for `Array` it is 0
/// (the view does not expose the array's bytes), so those are confirmed byte for byte.
#[inline]
fn fingerprint(value: FieldValue<'_>) -> (Class, u64) {
    match value {
        FieldValue::Void => (Class::Unmatchable, 0),
        FieldValue::Bool(b) => (Class::Bool, b.into()),
        FieldValue::F32(f) => float_fingerprint(f.into()),
        FieldValue::F64(f) => float_fingerprint(f),
        FieldValue::Decimal { scale, value } => {
            (Class::Decimal, u64::from(scale) << 32 | u64::from(value))
        }
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => (Class::Bytes, bytes_hash(b)),
        FieldValue::Table(t) => (Class::Table, bytes_hash(t.as_bytes())),
        FieldValue::Array(_) => (Class::Array, 0),
        FieldValue::Timestamp(t) if t > i64::MAX as u64 => (Class::BigInteger, t),
        FieldValue::Timestamp(t) => (Class::Integer, t),
        v => (Class::Integer, v.as_i64().unwrap_or_default() as u64),
    }
}

fn float_fingerprint(f: f64) -> (Class, u64) {
    if f.is_nan() {
        (Class::Unmatchable, 0)
    } else if f == 0.0 {
        // -0.0 == 0.0.
        (Class::Float, 0)
    } else {
        (Class::Float, f.to_bits())
    }
}

fn bytes_hash(bytes: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

impl Pattern {
    /// Parses a binding's arguments. The entries' key numbers, the mask and the entries' place
    /// are left for `add_binding` to fill in.
    fn compile(arguments: FieldTable<'_>) -> Result<(Pattern, Vec<Entry>), PluginError> {
        arguments.validate().map_err(|e| {
            PluginError::precondition_failed(format!(
                "binding arguments are not a valid field table ({e})"
            ))
        })?;
        let (mode, with_x) = match arguments.get(b"x-match") {
            None => (Mode::All, false),
            Some(FieldValue::LongString(b"all")) => (Mode::All, false),
            Some(FieldValue::LongString(b"any")) => (Mode::Any, false),
            Some(FieldValue::LongString(b"all-with-x")) => (Mode::All, true),
            Some(FieldValue::LongString(b"any-with-x")) => (Mode::Any, true),
            Some(value @ FieldValue::LongString(_)) => {
                return Err(PluginError::precondition_failed(format!(
                    "Invalid x-match field value {}; expected all, any, all-with-x, or any-with-x",
                    erlang_term(&value)
                )));
            }
            Some(value) => {
                return Err(PluginError::precondition_failed(format!(
                    "Invalid x-match field type {} (value {}); expected longstr",
                    value.type_name(),
                    erlang_term(&value)
                )));
            }
        };
        let mut entries: Vec<Entry> = Vec::new();
        for entry in arguments.iter() {
            // `validate` above walked the whole table, so every entry decodes.
            let Ok((key, value)) = entry else { break };
            let ignored = key == b"x-match" || (!with_x && key.starts_with(b"x-"));
            // A repeated key counts once, with its first value, as in a header lookup.
            if ignored || entries.iter().any(|e| &*e.key == key) {
                continue;
            }
            let (class, fingerprint) = match value {
                FieldValue::Void => (Class::Present, 0),
                v => fingerprint(v),
            };
            let bytes = match value {
                FieldValue::LongString(b) | FieldValue::ByteArray(b) => Some(b.into()),
                FieldValue::Table(t) => Some(t.as_bytes().into()),
                FieldValue::Array(a) => {
                    let mut bytes = Vec::new();
                    encode_array_items(a, &mut bytes);
                    Some(bytes.into())
                }
                _ => None,
            };
            entries.push(Entry {
                key_id: 0,
                class,
                fingerprint,
                key: key.into(),
                bytes,
            });
        }
        let pattern = Pattern {
            arguments: arguments.as_bytes().into(),
            mode,
            entries: 0..0,
            keys_mask: 0,
            destinations: Vec::new(),
        };
        Ok((pattern, entries))
    }

    #[inline]
    fn matches(&self, entries: &[Entry], headers: &Headers<'_>) -> bool {
        let entry_matches = |e: &Entry| headers.get(e).is_some_and(|header| e.matches(header));
        match self.mode {
            // Any key the message lacks rules the pattern out; no entries means a match.
            Mode::All => {
                self.keys_mask & !headers.keys_mask == 0 && entries.iter().all(entry_matches)
            }
            // No key in common rules it out; no entries means no match.
            Mode::Any => {
                self.keys_mask & headers.keys_mask != 0 && entries.iter().any(entry_matches)
            }
        }
    }
}

impl Entry {
    #[inline]
    fn matches(&self, header: Header<'_>) -> bool {
        if self.class == Class::Present {
            return true;
        }
        if self.class != header.class || self.fingerprint != header.fingerprint {
            return false;
        }
        match (&self.bytes, header.value) {
            (None, _) => true,
            (Some(e), FieldValue::LongString(a) | FieldValue::ByteArray(a)) => **e == *a,
            (Some(e), FieldValue::Table(a)) => **e == *a.as_bytes(),
            (Some(e), FieldValue::Array(a)) => FieldArray::new(e) == a,
            (Some(_), _) => false,
        }
    }
}

/// Re-encodes an array's items. The lazy view does not hand out its bytes, and an array
/// pattern is compared with a header's array byte for byte, so we store what the client
/// sent in the canonical encoding (identical to it for every well-formed array).
fn encode_array_items(array: FieldArray<'_>, out: &mut Vec<u8>) {
    for item in array.iter().map_while(Result::ok) {
        encode_value(item, out);
    }
}

fn encode_value(value: FieldValue<'_>, out: &mut Vec<u8>) {
    fn put(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag);
        out.extend_from_slice(bytes);
    }
    fn long(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        put(out, tag, &(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    match value {
        FieldValue::Bool(b) => put(out, b't', &[b.into()]),
        FieldValue::I8(v) => put(out, b'b', &v.to_be_bytes()),
        FieldValue::U8(v) => put(out, b'B', &[v]),
        FieldValue::I16(v) => put(out, b's', &v.to_be_bytes()),
        FieldValue::U16(v) => put(out, b'u', &v.to_be_bytes()),
        FieldValue::I32(v) => put(out, b'I', &v.to_be_bytes()),
        FieldValue::U32(v) => put(out, b'i', &v.to_be_bytes()),
        FieldValue::I64(v) => put(out, b'l', &v.to_be_bytes()),
        FieldValue::F32(v) => put(out, b'f', &v.to_be_bytes()),
        FieldValue::F64(v) => put(out, b'd', &v.to_be_bytes()),
        FieldValue::Decimal { scale, value } => {
            put(out, b'D', &[scale]);
            out.extend_from_slice(&value.to_be_bytes());
        }
        FieldValue::LongString(b) => long(out, b'S', b),
        FieldValue::ByteArray(b) => long(out, b'x', b),
        FieldValue::Table(t) => long(out, b'F', t.as_bytes()),
        FieldValue::Array(a) => {
            let mut items = Vec::new();
            encode_array_items(a, &mut items);
            long(out, b'A', &items);
        }
        FieldValue::Timestamp(t) => put(out, b'T', &t.to_be_bytes()),
        FieldValue::Void => out.push(b'V'),
    }
}

/// How many header entries with a known key are decoded onto the stack; a message with more
/// keeps working, through a scan of the encoded table for keys beyond them.
const INLINE_HEADERS: usize = 16;

/// A header entry some pattern may look at, decoded.
#[derive(Clone, Copy)]
struct Header<'a> {
    key_id: u32,
    class: Class,
    fingerprint: u64,
    value: FieldValue<'a>,
}

/// A message's headers, decoded once per `route` into a fixed array so that checking
/// hundreds of patterns does not decode the table hundreds of times. Entries whose key no
/// pattern mentions are dropped: they cannot decide anything.
struct Headers<'a> {
    entries: [Header<'a>; INLINE_HEADERS],
    len: usize,
    /// Union of the kept keys' bits; all ones when some entries did not fit.
    keys_mask: u64,
    /// The whole table, when more entries with known keys than fit in `entries`.
    overflow: Option<FieldTable<'a>>,
}

impl<'a> Headers<'a> {
    fn decode(table: FieldTable<'a>, keys: &KeyIds) -> Headers<'a> {
        let empty = Header {
            key_id: 0,
            class: Class::Unmatchable,
            fingerprint: 0,
            value: FieldValue::Void,
        };
        let mut headers = Headers {
            entries: [empty; INLINE_HEADERS],
            len: 0,
            keys_mask: 0,
            overflow: None,
        };
        // A malformed entry ends the table, as it ends a `FieldTable::get` lookup.
        for (key, value) in table.iter().map_while(Result::ok) {
            let Some(key_id) = keys.get(key) else {
                continue;
            };
            if headers.len == INLINE_HEADERS {
                headers.overflow = Some(table);
                headers.keys_mask = u64::MAX;
                break;
            }
            let (class, fingerprint) = fingerprint(value);
            headers.entries[headers.len] = Header {
                key_id,
                class,
                fingerprint,
                value,
            };
            headers.keys_mask |= key_bit(key_id);
            headers.len += 1;
        }
        headers
    }

    /// The first header under `entry`'s key, as `FieldTable::get` would find it.
    #[inline]
    fn get(&self, entry: &Entry) -> Option<Header<'a>> {
        let found = self.entries[..self.len]
            .iter()
            .find(|h| h.key_id == entry.key_id);
        match (found, self.overflow) {
            (Some(&header), _) => Some(header),
            (None, Some(table)) => table.get(&entry.key).map(|value| {
                let (class, fingerprint) = fingerprint(value);
                Header {
                    key_id: entry.key_id,
                    class,
                    fingerprint,
                    value,
                }
            }),
            (None, None) => None,
        }
    }
}

/// Renders a value the way RabbitMQ's error texts print Erlang terms (`<<"foo">>`, `5`).
fn erlang_term(value: &FieldValue<'_>) -> String {
    match *value {
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => erlang_binary(b),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::F32(f) => format!("{f:?}"),
        FieldValue::F64(f) => format!("{f:?}"),
        FieldValue::Decimal { scale, value } => format!("{{{scale},{value}}}"),
        FieldValue::Void => "undefined".to_owned(),
        FieldValue::Table(_) | FieldValue::Array(_) => "[...]".to_owned(),
        FieldValue::Timestamp(t) => t.to_string(),
        v => v.as_i64().map(|i| i.to_string()).unwrap_or_default(),
    }
}

fn erlang_binary(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => {
            format!(
                "<<\"{}\">>",
                text.replace('\\', "\\\\").replace('"', "\\\"")
            )
        }
        _ => {
            let mut out = String::from("<<");
            for (i, b) in bytes.iter().enumerate() {
                let _ = write!(out, "{}{b}", if i == 0 { "" } else { "," });
            }
            out + ">>"
        }
    }
}

#[cfg(test)]
mod tests;
