//! Entry-level access to encoded field tables, for rewriting `headers` without decoding them.
//!
//! Why not amq-protocol's `FieldTable`: it is a `BTreeMap`, so it can neither keep the
//! publisher's encoding of untouched headers nor write an `x-death` entry in RabbitMQ's
//! unsorted field order (`count, reason, queue, time, ...`). Why not the plugin-api reader:
//! it decodes values but does not hand out an entry's encoded bytes, which are what we copy.
//!
//! The input was validated when the content header arrived (`Properties::parse`), so every
//! `None` here is unreachable in practice; callers still turn it into an error, never a panic.

/// One table entry: the key and the encoded value (type tag first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub key: &'a [u8],
    pub value: std::borrow::Cow<'a, [u8]>,
}

/// Position after the tagged value at `pos`; `None` for bytes that are not a value.
fn skip_value(buf: &[u8], pos: usize) -> Option<usize> {
    crate::protocol::skip_table_value(buf, pos, 0).ok()
}

/// Splits a table body into its entries, in wire order.
pub(crate) fn entries(body: &[u8]) -> Option<Vec<Entry<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let key_len = usize::from(body[pos]);
        let key = body.get(pos + 1..pos + 1 + key_len)?;
        let start = pos + 1 + key_len;
        let end = skip_value(body, start)?;
        out.push(Entry {
            key,
            value: body[start..end].into(),
        });
        pos = end;
    }
    Some(out)
}

/// Splits an array body into its encoded items (type tag first).
pub(crate) fn items(body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let end = skip_value(body, pos)?;
        out.push(&body[pos..end]);
        pos = end;
    }
    Some(out)
}

/// The payload of an encoded `F` or `A` value (after tag and length), if it is one.
pub(crate) fn nested(value: &[u8], tag: u8) -> Option<&[u8]> {
    match value {
        [t, _, _, _, _, rest @ ..] if *t == tag => Some(rest),
        _ => None,
    }
}

/// A value as Erlang compares it with `=:=` after RabbitMQ decoded it: strings and byte
/// arrays are both binaries, every integer width is an integer, the rest compare by encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Term<'a> {
    Binary(&'a [u8]),
    Integer(i128),
    Other(&'a [u8]),
}

impl<'a> Term<'a> {
    pub fn of(value: &'a [u8]) -> Term<'a> {
        match value {
            [b'S' | b'x', _, _, _, _, rest @ ..] => Term::Binary(rest),
            _ => match integer(value) {
                Some(n) => Term::Integer(n),
                None => Term::Other(value),
            },
        }
    }
}

/// The integer held by an encoded value of any integer type (`U` and `L` included).
pub(crate) fn integer(value: &[u8]) -> Option<i128> {
    let payload = value.get(1..)?;
    let be = |n: usize| -> Option<[u8; 8]> {
        let bytes = payload.get(..n)?;
        let mut out = [0u8; 8];
        out[8 - n..].copy_from_slice(bytes);
        Some(out)
    };
    Some(match value.first()? {
        b'b' => i128::from(*payload.first()? as i8),
        b'B' => i128::from(*payload.first()?),
        b's' | b'U' => i128::from(i16::from_be_bytes(payload.get(..2)?.try_into().ok()?)),
        b'u' => i128::from(u16::from_be_bytes(payload.get(..2)?.try_into().ok()?)),
        b'I' => i128::from(i32::from_be_bytes(payload.get(..4)?.try_into().ok()?)),
        b'i' => i128::from(u64::from_be_bytes(be(4)?)),
        b'l' | b'L' => i128::from(i64::from_be_bytes(be(8)?)),
        _ => return None,
    })
}

/// The first entry named `key` (RabbitMQ's `lists:keysearch`).
pub(crate) fn lookup<'e, 'a>(entries: &'e [Entry<'a>], key: &[u8]) -> Option<&'e Entry<'a>> {
    entries.iter().find(|e| e.key == key)
}

/// The encoded value of the first entry named `key` in a table body, borrowed from it.
pub(crate) fn get<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut pos = 0;
    while pos < body.len() {
        let key_len = usize::from(body[pos]);
        let start = pos + 1 + key_len;
        let end = skip_value(body, start)?;
        if body.get(pos + 1..start)? == key {
            return Some(&body[start..end]);
        }
        pos = end;
    }
    None
}

/// Encodes `entries` as a table body.
pub(crate) fn write_table(out: &mut Vec<u8>, entries: &[Entry<'_>]) {
    for e in entries {
        out.push(e.key.len() as u8);
        out.extend_from_slice(e.key);
        out.extend_from_slice(&e.value);
    }
}

/// An encoded value: `tag`, then a 32-bit length and `body`.
pub(crate) fn long(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    put_long(&mut out, tag, body);
    out
}

/// Appends `tag`, a 32-bit length and `body` (a longstr, array or table value).
pub(crate) fn put_long(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// Appends a table key (length-prefixed).
pub(crate) fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    out.push(key.len() as u8);
    out.extend_from_slice(key);
}

/// Starts a `tag`ged value whose length is not known yet; [`end_long`] patches it.
pub(crate) fn begin_long(out: &mut Vec<u8>, tag: u8) -> usize {
    out.push(tag);
    out.extend_from_slice(&[0; 4]);
    out.len()
}

/// Writes the length of the value started by [`begin_long`] at `start`.
pub(crate) fn end_long(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u32;
    out[start - 4..start].copy_from_slice(&len.to_be_bytes());
}

/// An encoded `l` (long) value.
pub(crate) fn long_int(v: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    put_long_int(&mut out, v);
    out
}

/// Appends an `l` (long) value.
pub(crate) fn put_long_int(out: &mut Vec<u8>, v: i64) {
    out.push(b'l');
    out.extend_from_slice(&v.to_be_bytes());
}
