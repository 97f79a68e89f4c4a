//! Lazy, zero-copy reading of AMQP 0-9-1 field tables.
//!
//! Headers and arguments cross the ABI as the raw encoded bytes the client sent, so the broker
//! never decodes a table a plugin does not look at. These views decode on demand: a lookup
//! walks the entries, borrowing keys and string values straight from the buffer.
//!
//! Type tags follow RabbitMQ's reading of the spec (the one every common client writes):
//! `t` bool, `b`/`B` i8/u8, `s`/`u` i16/u16, `I`/`i` i32/u32, `l` i64, `f` f32, `d` f64,
//! `D` decimal, `S` long string, `x` byte array, `A` array, `T` timestamp, `F` table, `V` void.

use core::fmt;

/// A field table: `(shortstr key, typed value)` pairs, not yet decoded.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldTable<'a> {
    bytes: &'a [u8],
}

/// A field array: typed values, not yet decoded.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldArray<'a> {
    bytes: &'a [u8],
}

/// One decoded value. Strings are borrowed bytes: AMQP does not promise UTF-8.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: `value × 10^-scale`.
    Decimal {
        /// Number of decimal places.
        scale: u8,
        /// Unscaled value.
        value: u32,
    },
    /// `S`
    LongString(&'a [u8]),
    /// `x`
    ByteArray(&'a [u8]),
    /// `A`
    Array(FieldArray<'a>),
    /// `T`: seconds since the Unix epoch.
    Timestamp(u64),
    /// `F`
    Table(FieldTable<'a>),
    /// `V`: no value (a header binding with a void value matches on presence alone).
    Void,
}

/// The bytes are not a well-formed field table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedTable {
    /// Offset of the first byte that could not be read.
    pub offset: usize,
}

impl fmt::Display for MalformedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed field table at byte {}", self.offset)
    }
}

impl<'a> FieldTable<'a> {
    /// A view of encoded table entries (the bytes after the 4-byte length prefix).
    pub const fn new(bytes: &'a [u8]) -> Self {
        FieldTable { bytes }
    }

    /// The encoded entries.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// True when the table has no entries.
    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Iterates over the entries in wire order. A malformed entry ends the iteration with an
    /// error item.
    pub fn iter(&self) -> TableIter<'a> {
        TableIter {
            reader: Reader {
                bytes: self.bytes,
                pos: 0,
            },
            failed: false,
        }
    }

    /// The value of the first entry named `key`; `None` when absent or when the table is
    /// malformed before it.
    pub fn get(&self, key: &[u8]) -> Option<FieldValue<'a>> {
        self.iter()
            .map_while(Result::ok)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Checks the whole table decodes.
    pub fn validate(&self) -> Result<(), MalformedTable> {
        for entry in self.iter() {
            let (_, value) = entry?;
            value.validate_nested()?;
        }
        Ok(())
    }
}

impl<'a> FieldArray<'a> {
    /// A view of encoded array items (the bytes after the 4-byte length prefix).
    pub const fn new(bytes: &'a [u8]) -> Self {
        FieldArray { bytes }
    }

    /// Iterates over the items. A malformed item ends the iteration with an error item.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            reader: Reader {
                bytes: self.bytes,
                pos: 0,
            },
            failed: false,
        }
    }
}

impl<'a> FieldValue<'a> {
    /// The value as an `i64` when it is any integer type (widths compare equal in AMQP
    /// brokers: a binding made with `5` as a long matches `5` sent as a byte).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v.into(),
            FieldValue::U8(v) => v.into(),
            FieldValue::I16(v) => v.into(),
            FieldValue::U16(v) => v.into(),
            FieldValue::I32(v) => v.into(),
            FieldValue::U32(v) => v.into(),
            FieldValue::I64(v) => v,
            _ => return None,
        })
    }

    /// The bytes of a long string (or byte array).
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// The value as UTF-8 text when it is a string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            FieldValue::LongString(b) => core::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The RabbitMQ name of the value's type, as used in error texts (`long`, `longstr`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Bool(_) => "bool",
            FieldValue::I8(_) => "byte",
            FieldValue::U8(_) => "unsignedbyte",
            FieldValue::I16(_) => "short",
            FieldValue::U16(_) => "unsignedshort",
            FieldValue::I32(_) => "signedint",
            FieldValue::U32(_) => "unsignedint",
            FieldValue::I64(_) => "long",
            FieldValue::F32(_) => "float",
            FieldValue::F64(_) => "double",
            FieldValue::Decimal { .. } => "decimal",
            FieldValue::LongString(_) => "longstr",
            FieldValue::ByteArray(_) => "binary",
            FieldValue::Array(_) => "array",
            FieldValue::Timestamp(_) => "timestamp",
            FieldValue::Table(_) => "table",
            FieldValue::Void => "void",
        }
    }

    fn validate_nested(&self) -> Result<(), MalformedTable> {
        match self {
            FieldValue::Table(t) => t.validate(),
            FieldValue::Array(a) => {
                for item in a.iter() {
                    item?.validate_nested()?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Iterator over a table's entries.
pub struct TableIter<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Iterator for TableIter<'a> {
    type Item = Result<(&'a [u8], FieldValue<'a>), MalformedTable>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_done() {
            return None;
        }
        let entry = self
            .reader
            .key()
            .and_then(|k| Ok((k, self.reader.value()?)));
        self.failed = entry.is_err();
        Some(entry)
    }
}

/// Iterator over an array's items.
pub struct ArrayIter<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Result<FieldValue<'a>, MalformedTable>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_done() {
            return None;
        }
        let item = self.reader.value();
        self.failed = item.is_err();
        Some(item)
    }
}

impl fmt::Debug for FieldTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for entry in self.iter() {
            match entry {
                Ok((k, v)) => map.entry(&String::from_utf8_lossy(k), &v),
                Err(e) => map.entry(&"<error>", &e),
            };
        }
        map.finish()
    }
}

impl fmt::Debug for FieldArray<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn is_done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MalformedTable> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(MalformedTable { offset: self.pos })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MalformedTable> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn key(&mut self) -> Result<&'a [u8], MalformedTable> {
        let [len] = self.array::<1>()?;
        self.take(len.into())
    }

    fn long_bytes(&mut self) -> Result<&'a [u8], MalformedTable> {
        let len = u32::from_be_bytes(self.array()?);
        self.take(len as usize)
    }

    fn value(&mut self) -> Result<FieldValue<'a>, MalformedTable> {
        let at = self.pos;
        let [tag] = self.array::<1>()?;
        Ok(match tag {
            b't' => FieldValue::Bool(self.array::<1>()?[0] != 0),
            b'b' => FieldValue::I8(i8::from_be_bytes(self.array()?)),
            b'B' => FieldValue::U8(u8::from_be_bytes(self.array()?)),
            b's' => FieldValue::I16(i16::from_be_bytes(self.array()?)),
            b'u' => FieldValue::U16(u16::from_be_bytes(self.array()?)),
            b'I' => FieldValue::I32(i32::from_be_bytes(self.array()?)),
            b'i' => FieldValue::U32(u32::from_be_bytes(self.array()?)),
            b'l' => FieldValue::I64(i64::from_be_bytes(self.array()?)),
            b'f' => FieldValue::F32(f32::from_be_bytes(self.array()?)),
            b'd' => FieldValue::F64(f64::from_be_bytes(self.array()?)),
            b'D' => {
                let [scale] = self.array::<1>()?;
                FieldValue::Decimal {
                    scale,
                    value: u32::from_be_bytes(self.array()?),
                }
            }
            b'S' => FieldValue::LongString(self.long_bytes()?),
            b'x' => FieldValue::ByteArray(self.long_bytes()?),
            b'A' => FieldValue::Array(FieldArray::new(self.long_bytes()?)),
            b'T' => FieldValue::Timestamp(u64::from_be_bytes(self.array()?)),
            b'F' => FieldValue::Table(FieldTable::new(self.long_bytes()?)),
            b'V' => FieldValue::Void,
            _ => return Err(MalformedTable { offset: at }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(out: &mut Vec<u8>, key: &str, tag: u8, value: &[u8]) {
        out.push(key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.push(tag);
        out.extend_from_slice(value);
    }

    fn long_str(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn reads_scalars_strings_and_nested_tables() {
        let mut inner = Vec::new();
        entry(&mut inner, "n", b'b', &[0xff]);
        let mut nested = (inner.len() as u32).to_be_bytes().to_vec();
        nested.extend_from_slice(&inner);

        let mut t = Vec::new();
        entry(&mut t, "format", b'S', &long_str("pdf"));
        entry(&mut t, "size", b'l', &42i64.to_be_bytes());
        entry(&mut t, "flag", b't', &[1]);
        entry(&mut t, "none", b'V', &[]);
        entry(&mut t, "inner", b'F', &nested);
        let table = FieldTable::new(&t);

        assert_eq!(table.get(b"format").and_then(|v| v.as_str()), Some("pdf"));
        assert_eq!(table.get(b"size").and_then(|v| v.as_i64()), Some(42));
        assert_eq!(table.get(b"flag"), Some(FieldValue::Bool(true)));
        assert_eq!(table.get(b"none"), Some(FieldValue::Void));
        assert_eq!(table.get(b"missing"), None);
        let Some(FieldValue::Table(inner)) = table.get(b"inner") else {
            panic!("not a table")
        };
        assert_eq!(inner.get(b"n"), Some(FieldValue::I8(-1)));
        assert!(table.validate().is_ok());
    }

    #[test]
    fn truncated_and_unknown_tags_are_reported_not_panicked() {
        let mut t = Vec::new();
        entry(&mut t, "a", b'S', &long_str("hello"));
        for cut in 0..t.len() {
            let table = FieldTable::new(&t[..cut]);
            if cut > 0 {
                assert!(
                    table.validate().is_err(),
                    "cut at {cut} should be malformed"
                );
            }
            assert_eq!(table.get(b"a"), None);
        }
        let mut bad = Vec::new();
        entry(&mut bad, "a", b'?', &[]);
        assert_eq!(
            FieldTable::new(&bad).validate(),
            Err(MalformedTable { offset: 2 })
        );
    }

    #[test]
    fn length_prefix_larger_than_buffer_is_malformed() {
        let mut t = Vec::new();
        entry(&mut t, "a", b'S', &u32::MAX.to_be_bytes());
        assert!(FieldTable::new(&t).validate().is_err());
    }
}
