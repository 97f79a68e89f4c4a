//! Allocation-free checking of AMQP field tables and arrays, as raw bytes.
//!
//! Message `headers` are kept as the bytes the publisher sent (exchange-type plugins receive
//! exactly those bytes), so instead of decoding them into maps we only walk them once, at
//! receive time, to prove they are well formed: every length inside its parent, every type
//! tag known, nesting bounded. Whoever reads the bytes later may then rely on that.
//!
//! The accepted type tags are those of RabbitMQ's `rabbit_binary_parser` plus `U` (a signed
//! short, which amq-protocol — lapin's parser — also accepts): `t b B s u U I i l L f d D T
//! V S x F A`. Keys and string values are not required to be UTF-8, as in RabbitMQ.
//!
//! Nesting is limited to [`MAX_DEPTH`] levels because a 128 KiB frame could otherwise hold
//! ~25 000 levels, and recursive decoders (ours, amq-protocol's) would overflow the stack.

use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;

/// Deepest nesting of tables/arrays accepted (the outermost table is depth 1).
pub const MAX_DEPTH: usize = 64;

/// Why a table's bytes are malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TableError {
    /// A length points past the end of its container.
    Truncated,
    /// A value type tag that is not known.
    UnknownType,
    /// Tables/arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl TableError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            TableError::Truncated => "field table truncated",
            TableError::UnknownType => "unknown field value type",
            TableError::TooDeep => "field tables nested too deeply",
        }
    }
}

/// Checks the body of a field table (the bytes after its 4-byte length).
pub(crate) fn check_table(body: &[u8]) -> Result<(), TableError> {
    check_table_at(body, 1)
}

fn check_table_at(body: &[u8], depth: usize) -> Result<(), TableError> {
    if depth > MAX_DEPTH {
        return Err(TableError::TooDeep);
    }
    let mut pos = 0;
    while pos < body.len() {
        let key_len = usize::from(body[pos]);
        pos = pos
            .checked_add(1 + key_len)
            .filter(|&p| p < body.len()) // the key must be followed by a type tag
            .ok_or(TableError::Truncated)?;
        pos = skip_value(body, pos, depth)?;
    }
    Ok(())
}

fn check_array_at(body: &[u8], depth: usize) -> Result<(), TableError> {
    if depth > MAX_DEPTH {
        return Err(TableError::TooDeep);
    }
    let mut pos = 0;
    while pos < body.len() {
        pos = skip_value(body, pos, depth)?;
    }
    Ok(())
}

/// Skips the tagged value at `pos`, returning the position after it. Nested tables and
/// arrays are checked on the way, `depth` levels down already.
pub(crate) fn skip_value(buf: &[u8], pos: usize, depth: usize) -> Result<usize, TableError> {
    let tag = *buf.get(pos).ok_or(TableError::Truncated)?;
    let pos = pos + 1;
    let fixed = match tag {
        b'V' => 0,
        b't' | b'b' | b'B' => 1,
        b's' | b'u' | b'U' => 2,
        b'I' | b'i' | b'f' => 4,
        b'D' => 5,
        b'l' | b'L' | b'd' | b'T' => 8,
        b'S' | b'x' | b'F' | b'A' => {
            let (inner, end) = long_slice(buf, pos)?;
            match tag {
                b'F' => check_table_at(inner, depth + 1)?,
                b'A' => check_array_at(inner, depth + 1)?,
                _ => {}
            }
            return Ok(end);
        }
        _ => return Err(TableError::UnknownType),
    };
    let end = pos + fixed;
    if end > buf.len() {
        return Err(TableError::Truncated);
    }
    Ok(end)
}

/// The `u32`-length-prefixed slice at `pos`, and the position after it.
pub(crate) fn long_slice(buf: &[u8], pos: usize) -> Result<(&[u8], usize), TableError> {
    let len_bytes: [u8; 4] = buf
        .get(pos..pos + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or(TableError::Truncated)?;
    let start = pos + 4;
    let end = start
        .checked_add(u32::from_be_bytes(len_bytes) as usize)
        .filter(|&e| e <= buf.len())
        .ok_or(TableError::Truncated)?;
    Ok((&buf[start..end], end))
}

/// Decodes a table body (the form [`encode_table_body`] writes: no length prefix) into an
/// amq-protocol table — for arguments read back from a store.
pub fn decode_table_body(body: &[u8]) -> Result<FieldTable, super::ProtocolError> {
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(body);
    match amq_protocol::types::parsing::parse_field_table(&framed[..]) {
        Ok((&[], table)) => Ok(table),
        _ => Err(super::ProtocolError::Encode(
            "stored field table does not parse",
        )),
    }
}

/// Encodes an amq-protocol table into the raw body form used by
/// [`Properties::headers`](super::Properties::headers) (no length prefix) — for the
/// dead-lettering path, which builds `x-death` as a `FieldTable`.
///
/// Fails if the table cannot be put on the wire faithfully (amq-protocol silently wraps
/// over-long keys' length octets, so those are refused here).
pub fn encode_table_body(table: &FieldTable) -> Result<Bytes, super::ProtocolError> {
    use amq_protocol::types::generation::gen_field_table;
    if !table_fits(table) {
        return Err(super::ProtocolError::Encode(
            "field table key longer than 255 bytes",
        ));
    }
    let written = cookie_gen(gen_field_table(table))?;
    // Drop the 4-byte length prefix the generator writes.
    let body = Bytes::from(written).slice(4..);
    check_table(&body).map_err(|_| super::ProtocolError::Encode("generated table invalid"))?;
    Ok(body)
}

/// Whether every key and shortstr in `table` fits a length octet.
fn table_fits(table: &FieldTable) -> bool {
    table
        .inner()
        .iter()
        .all(|(k, v)| k.as_str().len() <= 255 && value_fits(v))
}

fn value_fits(value: &AMQPValue) -> bool {
    match value {
        AMQPValue::FieldTable(t) => table_fits(t),
        AMQPValue::FieldArray(a) => a.as_slice().iter().all(value_fits),
        AMQPValue::ShortString(s) => s.as_str().len() <= 255,
        _ => true,
    }
}

/// Runs an amq-protocol generator into a fresh `Vec`.
pub(crate) fn cookie_gen<F>(f: F) -> Result<Vec<u8>, super::ProtocolError>
where
    F: amq_protocol::frame::SerializeFn<Vec<u8>>,
{
    let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
    f(ctx)
        .map(|ctx| ctx.write)
        .map_err(|_| super::ProtocolError::Encode("amq-protocol generator failed"))
}

/// RabbitMQ's name for a field value's type, as its error texts print it (`long`,
/// `longstr`, `signedint`, …). Shared by every argument check so the texts agree.
pub fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        // amq-protocol never decodes a shortstr out of a table; one built locally is sent
        // as a long string, so it is named as one.
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{FieldArray, LongString, ShortString};

    fn sample() -> FieldTable {
        let mut inner = FieldTable::default();
        inner.insert(ShortString::from("count"), AMQPValue::LongLongInt(3));
        let mut t = FieldTable::default();
        t.insert(
            ShortString::from("x-match"),
            AMQPValue::LongString(LongString::from("all")),
        );
        t.insert(
            ShortString::from("x-death"),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(inner)])),
        );
        t.insert(ShortString::from("flag"), AMQPValue::Boolean(true));
        t.insert(
            ShortString::from("dec"),
            AMQPValue::DecimalValue(amq_protocol::types::DecimalValue { scale: 2, value: 5 }),
        );
        t.insert(ShortString::from("void"), AMQPValue::Void);
        t
    }

    #[test]
    fn generated_tables_check_out() {
        let body = encode_table_body(&sample()).unwrap();
        assert_eq!(check_table(&body), Ok(()));
        assert_eq!(check_table(&[]), Ok(()));
    }

    #[test]
    fn truncations_and_bad_tags_are_rejected() {
        let body = encode_table_body(&sample()).unwrap();
        // Every prefix of a valid table: fine exactly where amq-protocol (lapin's parser)
        // also finds a whole number of entries.
        for cut in 0..body.len() {
            let mut framed = (cut as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&body[..cut]);
            let theirs = amq_protocol::types::parsing::parse_field_table(&framed[..]).is_ok();
            assert_eq!(check_table(&body[..cut]).is_ok(), theirs, "cut at {cut}");
        }
        assert_eq!(check_table(&[1, b'k']), Err(TableError::Truncated));
        assert_eq!(check_table(&[1, b'k', b'?']), Err(TableError::UnknownType));
        assert_eq!(check_table(&[1, b'k', b'I', 0]), Err(TableError::Truncated));
        assert_eq!(
            check_table(&[1, b'k', b'S', 0, 0, 0, 9, b'a']),
            Err(TableError::Truncated)
        );
        assert_eq!(
            check_table(&[1, b'k', b'S', 0xff, 0xff, 0xff, 0xff]),
            Err(TableError::Truncated)
        );
    }

    #[test]
    fn nesting_is_bounded() {
        fn nested(levels: usize) -> Vec<u8> {
            // An array holding an array holding ... an empty array.
            let mut body: Vec<u8> = Vec::new();
            for _ in 0..levels {
                let mut outer = vec![b'A'];
                outer.extend_from_slice(&(body.len() as u32).to_be_bytes());
                outer.extend_from_slice(&body);
                body = outer;
            }
            let mut table = vec![1, b'k'];
            table.extend_from_slice(&body);
            table
        }
        assert_eq!(check_table(&nested(MAX_DEPTH - 1)), Ok(()));
        assert_eq!(check_table(&nested(MAX_DEPTH)), Err(TableError::TooDeep));
        assert_eq!(check_table(&nested(20_000)), Err(TableError::TooDeep));
    }
}
