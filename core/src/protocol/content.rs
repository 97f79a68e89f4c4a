//! The content header (the frame between `basic.publish` and the body) and the message
//! properties it carries, kept as the raw bytes the publisher sent.
//!
//! Architecture invariants:
//! - Properties are never decoded into a struct on the publish → route → deliver path. They
//!   stay the `Bytes` slice of the header frame they arrived in, are validated once when the
//!   frame is decoded ([`Properties::parse`]: flags, every length, the `headers` table's
//!   structure, no trailing bytes), and go back out byte-for-byte in `basic.deliver`.
//! - The accessors ([`Properties::headers`], [`Properties::expiration`], ...) walk the flag
//!   word and skip over the fields before the one asked for; they never allocate and, since
//!   the bytes were validated, never fail.
//! - Only dead-lettering rewrites properties ([`Properties::edit`]); it copies the untouched
//!   fields verbatim.
//!
//! Like RabbitMQ, shortstr property values are opaque bytes (not required to be UTF-8); only
//! the structure is checked. Flags with the continuation bit or the unused 15th flag set are
//! refused (502 SYNTAX_ERROR): AMQP 0-9-1's basic class has 14 properties, so a continuation
//! word can only be garbage.

use std::fmt;

use amq_protocol::protocol::BasicProperties;
use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;
use super::table::{self, TableError};

/// The class id of `basic`, the only AMQP 0-9-1 class whose methods carry content.
pub const BASIC_CLASS_ID: u16 = 60;

/// Length of a content header payload before the properties: class id, weight, body size.
const HEADER_FIXED_LEN: usize = 12;

/// One of the 14 basic properties, in wire order (flag bit 15 first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Property {
    /// `content-type` (shortstr).
    ContentType,
    /// `content-encoding` (shortstr).
    ContentEncoding,
    /// `headers` (field table).
    Headers,
    /// `delivery-mode` (octet: 1 transient, 2 persistent).
    DeliveryMode,
    /// `priority` (octet).
    Priority,
    /// `correlation-id` (shortstr).
    CorrelationId,
    /// `reply-to` (shortstr).
    ReplyTo,
    /// `expiration` (shortstr; per-message TTL in ms as a decimal string).
    Expiration,
    /// `message-id` (shortstr).
    MessageId,
    /// `timestamp` (u64, seconds).
    Timestamp,
    /// `type` (shortstr).
    Type,
    /// `user-id` (shortstr).
    UserId,
    /// `app-id` (shortstr).
    AppId,
    /// `cluster-id` (shortstr, deprecated).
    ClusterId,
}

/// How a property's value is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ShortStr,
    Table,
    Octet,
    Timestamp,
}

impl Property {
    /// All properties in wire order.
    pub const ALL: [Property; 14] = [
        Property::ContentType,
        Property::ContentEncoding,
        Property::Headers,
        Property::DeliveryMode,
        Property::Priority,
        Property::CorrelationId,
        Property::ReplyTo,
        Property::Expiration,
        Property::MessageId,
        Property::Timestamp,
        Property::Type,
        Property::UserId,
        Property::AppId,
        Property::ClusterId,
    ];

    /// The property's bit in the flag word.
    pub const fn flag(self) -> u16 {
        1 << (15 - self as u16)
    }

    const fn kind(self) -> Kind {
        match self {
            Property::Headers => Kind::Table,
            Property::DeliveryMode | Property::Priority => Kind::Octet,
            Property::Timestamp => Kind::Timestamp,
            _ => Kind::ShortStr,
        }
    }
}

/// Flag bits that no basic property uses: bit 0 (continuation) and bit 1.
const UNKNOWN_FLAGS: u16 = 0b11;

/// A content header frame's payload: class `basic`, the body size, and the properties.
///
/// Invariant: `properties` are validated (see [`Properties::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentHeader {
    body_size: u64,
    properties: Properties,
}

impl ContentHeader {
    /// A header for a body of `body_size` bytes.
    pub fn new(body_size: u64, properties: Properties) -> ContentHeader {
        ContentHeader {
            body_size,
            properties,
        }
    }

    /// Parses a content header frame payload; `payload` is sliced, never copied.
    ///
    /// The payload must be at least 14 bytes (checked by the frame decoder, which knows the
    /// channel for the error); shorter input is reported as malformed properties.
    pub fn parse(payload: Bytes) -> Result<ContentHeader, ProtocolError> {
        if payload.len() < HEADER_FIXED_LEN {
            return Err(ProtocolError::MalformedProperties(
                "content header truncated",
            ));
        }
        let class_id = u16::from_be_bytes([payload[0], payload[1]]);
        if class_id != BASIC_CLASS_ID {
            return Err(ProtocolError::UnexpectedContentClass { class_id });
        }
        let weight = u16::from_be_bytes([payload[2], payload[3]]);
        if weight != 0 {
            return Err(ProtocolError::NonZeroWeight { weight });
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&payload[4..HEADER_FIXED_LEN]);
        let properties = Properties::parse(payload.slice(HEADER_FIXED_LEN..))?;
        Ok(ContentHeader {
            body_size: u64::from_be_bytes(size),
            properties,
        })
    }

    /// Always [`BASIC_CLASS_ID`].
    pub fn class_id(&self) -> u16 {
        BASIC_CLASS_ID
    }

    /// The total body size announced; the body frames that follow must add up to it.
    pub fn body_size(&self) -> u64 {
        self.body_size
    }

    /// The message properties.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    /// The message properties, by value.
    pub fn into_properties(self) -> Properties {
        self.properties
    }

    /// Length of the frame payload this header encodes to.
    pub fn payload_len(&self) -> usize {
        HEADER_FIXED_LEN + self.properties.raw.len()
    }

    /// Writes the frame payload (class, weight, body size, raw properties).
    pub(crate) fn write_payload(&self, out: &mut BytesMut) {
        write_header_payload(out, self.body_size, &self.properties);
    }
}

/// Writes a content header payload without building a [`ContentHeader`].
pub(crate) fn write_header_payload(out: &mut BytesMut, body_size: u64, properties: &Props) {
    out.put_u16(BASIC_CLASS_ID);
    out.put_u16(0);
    out.put_u64(body_size);
    out.put_slice(properties.raw());
}

/// Basic properties as the raw wire bytes: the 16-bit flag word and the property list.
///
/// Invariant: the bytes were validated by [`Properties::parse`] (or built by this module),
/// so every accessor's walk stays in bounds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Properties {
    raw: Bytes,
}

impl Default for Properties {
    fn default() -> Properties {
        Properties::empty()
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Validated basic properties, borrowed: the read side of [`Properties`], for bytes that live
/// elsewhere (a queued message's packed allocation, see `broker::message`). `Properties`
/// dereferences to it, so every accessor is written once.
///
/// Invariant: the bytes passed [`Properties::parse`]'s checks (or are a verbatim copy of bytes
/// that did), so every accessor's walk stays in bounds.
#[derive(PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Props([u8]);

impl std::ops::Deref for Properties {
    type Target = Props;

    fn deref(&self) -> &Props {
        Props::from_validated(&self.raw)
    }
}

impl fmt::Debug for Props {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Properties");
        for p in Property::ALL {
            if let Some(field) = self.field(p) {
                d.field(&format!("{p:?}"), &field.value());
            }
        }
        d.finish()
    }
}

/// A located field: where its value lives inside `raw`.
#[derive(Clone, Copy)]
struct Field<'a> {
    kind: Kind,
    /// The encoded field, including any length prefix.
    encoded: &'a [u8],
    /// Offset of `encoded` within the raw properties.
    offset: usize,
}

impl<'a> Field<'a> {
    /// The value without its length prefix.
    fn value(self) -> &'a [u8] {
        match self.kind {
            Kind::ShortStr => &self.encoded[1..],
            Kind::Table => &self.encoded[4..],
            Kind::Octet | Kind::Timestamp => self.encoded,
        }
    }

    fn value_offset(self) -> usize {
        self.offset + (self.encoded.len() - self.value().len())
    }
}

/// Length of the encoded field of `kind` at the start of `rest`, if it fits.
fn field_len(kind: Kind, rest: &[u8]) -> Result<usize, &'static str> {
    let len = match kind {
        Kind::ShortStr => 1 + usize::from(*rest.first().ok_or("shortstr truncated")?),
        Kind::Table => {
            let (body, end) = table::long_slice(rest, 0).map_err(TableError::describe)?;
            table::check_table(body).map_err(TableError::describe)?;
            end
        }
        Kind::Octet => 1,
        Kind::Timestamp => 8,
    };
    if len > rest.len() {
        return Err(match kind {
            Kind::ShortStr => "shortstr truncated",
            _ => "property truncated",
        });
    }
    Ok(len)
}

impl Properties {
    /// No properties at all (flag word 0).
    pub fn empty() -> Properties {
        Properties {
            raw: Bytes::from_static(&[0, 0]),
        }
    }

    /// Validates raw property bytes (flag word + property list) and wraps them, uncopied.
    ///
    /// Refused with 502 SYNTAX_ERROR: fewer than 2 bytes, the continuation bit or the unused
    /// 15th flag set, a field running past the end, a malformed `headers` table (a length
    /// past its end, an unknown type tag, nesting deeper than
    /// [`MAX_TABLE_DEPTH`](super::MAX_TABLE_DEPTH)), or bytes left over after the last field.
    pub fn parse(raw: Bytes) -> Result<Properties, ProtocolError> {
        Self::check(&raw).map_err(ProtocolError::MalformedProperties)?;
        Ok(Properties { raw })
    }

    fn check(raw: &[u8]) -> Result<(), &'static str> {
        let [hi, lo, ..] = *raw else {
            return Err("property flags truncated");
        };
        let flags = u16::from_be_bytes([hi, lo]);
        if flags & 1 != 0 {
            return Err("property flags continuation bit set");
        }
        if flags & UNKNOWN_FLAGS != 0 {
            return Err("unknown property flag set");
        }
        let mut pos = 2;
        for p in Property::ALL {
            if flags & p.flag() != 0 {
                pos += field_len(p.kind(), &raw[pos..])?;
            }
        }
        if pos != raw.len() {
            return Err("trailing bytes after properties");
        }
        Ok(())
    }

    /// The raw bytes, exactly as published (flag word first).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// [`headers`](Props::headers) as a zero-copy `Bytes` slice of the header frame.
    pub fn headers_shared(&self) -> Option<Bytes> {
        let field = self.field(Property::Headers)?;
        let start = field.value_offset();
        Some(self.raw.slice(start..start + field.value().len()))
    }

    /// Encodes amq-protocol properties (allocates; for server-built messages and tests).
    pub fn from_basic_properties(props: &BasicProperties) -> Result<Properties, ProtocolError> {
        use amq_protocol::protocol::basic::gen_properties;
        let strings = [
            props.content_type(),
            props.content_encoding(),
            props.correlation_id(),
            props.reply_to(),
            props.expiration(),
            props.message_id(),
            props.kind(),
            props.user_id(),
            props.app_id(),
            props.cluster_id(),
        ];
        if strings
            .iter()
            .any(|s| s.as_ref().is_some_and(|s| s.as_str().len() > 255))
        {
            return Err(ProtocolError::Encode(
                "property shortstr longer than 255 bytes",
            ));
        }
        if let Some(headers) = props.headers() {
            // Checks key lengths, which amq-protocol would silently wrap.
            table::encode_table_body(headers)?;
        }
        let raw = table::cookie_gen(gen_properties(props))?;
        Properties::parse(Bytes::from(raw))
            .map_err(|_| ProtocolError::Encode("amq-protocol generated invalid properties"))
    }
}

impl Props {
    /// Bytes that passed [`Properties::parse`]'s checks, or a verbatim copy of such bytes
    /// (the invariant every accessor relies on; a violation reads garbage, never out of
    /// bounds, since the walks are checked).
    pub(crate) fn from_validated(raw: &[u8]) -> &Props {
        // SAFETY: `Props` is a `repr(transparent)` wrapper of `[u8]`.
        unsafe { &*(std::ptr::from_ref::<[u8]>(raw) as *const Props) }
    }

    /// The raw bytes, exactly as published (flag word first).
    pub fn raw(&self) -> &[u8] {
        &self.0
    }

    /// An owned copy.
    pub fn to_properties(&self) -> Properties {
        Properties {
            raw: Bytes::copy_from_slice(&self.0),
        }
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.flags() == 0
    }

    /// The flag word.
    pub fn flags(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }

    /// Whether `property` is present.
    pub fn contains(&self, property: Property) -> bool {
        self.flags() & property.flag() != 0
    }

    /// Finds `property` by walking the fields before it.
    fn field(&self, property: Property) -> Option<Field<'_>> {
        let flags = self.flags();
        if flags & property.flag() == 0 {
            return None;
        }
        let mut pos = 2;
        for p in Property::ALL {
            if flags & p.flag() == 0 {
                continue;
            }
            let rest = self.0.get(pos..)?;
            // Validated at construction: this walk cannot fail, but stays panic-free anyway.
            let len = skip_len(p.kind(), rest)?;
            if p == property {
                return Some(Field {
                    kind: p.kind(),
                    encoded: rest.get(..len)?,
                    offset: pos,
                });
            }
            pos += len;
        }
        None
    }

    /// The raw value of a shortstr property (`None` if absent or not a shortstr property).
    pub fn shortstr(&self, property: Property) -> Option<&[u8]> {
        match property.kind() {
            Kind::ShortStr => self.field(property).map(Field::value),
            _ => None,
        }
    }

    /// The `headers` table's body: the bytes after its 4-byte length, as published.
    /// Exchange-type plugins receive exactly these bytes.
    pub fn headers(&self) -> Option<&[u8]> {
        self.field(Property::Headers).map(Field::value)
    }

    /// The `expiration` property's raw bytes (RabbitMQ: a decimal number of milliseconds;
    /// parsing and rejecting it is the queue's business).
    pub fn expiration(&self) -> Option<&[u8]> {
        self.shortstr(Property::Expiration)
    }

    /// The `priority` property.
    pub fn priority(&self) -> Option<u8> {
        self.octet(Property::Priority)
    }

    /// The `delivery-mode` property (2 = persistent).
    pub fn delivery_mode(&self) -> Option<u8> {
        self.octet(Property::DeliveryMode)
    }

    /// Whether `delivery-mode` is 2.
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode() == Some(2)
    }

    /// The `timestamp` property.
    pub fn timestamp(&self) -> Option<u64> {
        let value = self.field(Property::Timestamp)?.value();
        Some(u64::from_be_bytes(value.try_into().ok()?))
    }

    fn octet(&self, property: Property) -> Option<u8> {
        self.field(property)
            .and_then(|f| f.value().first().copied())
    }

    /// Starts a rewrite of these properties (for dead-lettering): untouched fields are
    /// copied verbatim, in wire order.
    pub fn edit(&self) -> PropertiesEditor<'_> {
        PropertiesEditor {
            base: self,
            changes: Default::default(),
        }
    }

    /// Decodes fully with amq-protocol (allocates; for management and tests, not the hot
    /// path). Fails where amq-protocol is stricter than Warren: non-UTF-8 strings.
    pub fn to_basic_properties(&self) -> Result<BasicProperties, ProtocolError> {
        use amq_protocol::protocol::basic::parse_properties;
        match parse_properties(&self.0[..]) {
            Ok(([], props)) => Ok(props),
            _ => Err(ProtocolError::MalformedProperties(
                "properties not representable by amq-protocol",
            )),
        }
    }
}

/// Length of the (already validated) field at the start of `rest`.
fn skip_len(kind: Kind, rest: &[u8]) -> Option<usize> {
    let len = match kind {
        Kind::ShortStr => 1 + usize::from(*rest.first()?),
        Kind::Table => {
            let len: [u8; 4] = rest.get(..4)?.try_into().ok()?;
            4 + u32::from_be_bytes(len) as usize
        }
        Kind::Octet => 1,
        Kind::Timestamp => 8,
    };
    (len <= rest.len()).then_some(len)
}

/// One pending change of a [`PropertiesEditor`].
#[derive(Clone, Copy, Debug, Default)]
enum Change<'a> {
    #[default]
    Keep,
    Remove,
    /// The new value, without length prefix (shortstr bytes, table body, octet, 8 bytes).
    Set(Value<'a>),
}

#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    Bytes(&'a [u8]),
    Octet(u8),
    Timestamp(u64),
}

/// Builds modified properties from existing ones; see [`Properties::edit`].
#[derive(Debug)]
pub struct PropertiesEditor<'a> {
    base: &'a Props,
    changes: [Change<'a>; 14],
}

impl<'a> PropertiesEditor<'a> {
    /// Removes `property` (e.g. `expiration` when dead-lettering).
    pub fn remove(mut self, property: Property) -> Self {
        self.changes[property as usize] = Change::Remove;
        self
    }

    /// Sets the `headers` table, given as its body (the same form
    /// [`Properties::headers`] returns; see [`encode_table_body`](super::encode_table_body)).
    pub fn set_headers(mut self, table_body: &'a [u8]) -> Self {
        self.changes[Property::Headers as usize] = Change::Set(Value::Bytes(table_body));
        self
    }

    /// Sets a shortstr property; fails at [`finish`](Self::finish) if `property` is not a
    /// shortstr or `value` is longer than 255 bytes.
    pub fn set_shortstr(mut self, property: Property, value: &'a [u8]) -> Self {
        self.changes[property as usize] = Change::Set(Value::Bytes(value));
        self
    }

    /// Sets `priority` or `delivery-mode`.
    pub fn set_octet(mut self, property: Property, value: u8) -> Self {
        self.changes[property as usize] = Change::Set(Value::Octet(value));
        self
    }

    /// Sets `timestamp`.
    pub fn set_timestamp(mut self, value: u64) -> Self {
        self.changes[Property::Timestamp as usize] = Change::Set(Value::Timestamp(value));
        self
    }

    /// Writes the new property bytes and validates them.
    pub fn finish(self) -> Result<Properties, ProtocolError> {
        // Sized for the result (new values included), so it is written without regrowing.
        let added: usize = self
            .changes
            .iter()
            .map(|c| match c {
                Change::Set(Value::Bytes(b)) => b.len() + 4,
                _ => 8,
            })
            .sum();
        let mut out = BytesMut::with_capacity(self.base.len() + added);
        out.put_u16(0); // flags, patched below
        let mut flags = 0u16;
        for p in Property::ALL {
            match self.changes[p as usize] {
                Change::Remove => {}
                Change::Keep => {
                    if let Some(field) = self.base.field(p) {
                        flags |= p.flag();
                        out.put_slice(field.encoded);
                    }
                }
                Change::Set(value) => {
                    flags |= p.flag();
                    match (p.kind(), value) {
                        (Kind::ShortStr, Value::Bytes(b)) => {
                            let len = u8::try_from(b.len()).map_err(|_| {
                                ProtocolError::Encode("property shortstr longer than 255 bytes")
                            })?;
                            out.put_u8(len);
                            out.put_slice(b);
                        }
                        (Kind::Table, Value::Bytes(b)) => {
                            let len = u32::try_from(b.len())
                                .map_err(|_| ProtocolError::Encode("headers table too large"))?;
                            out.put_u32(len);
                            out.put_slice(b);
                        }
                        (Kind::Octet, Value::Octet(v)) => out.put_u8(v),
                        (Kind::Timestamp, Value::Timestamp(v)) => out.put_u64(v),
                        _ => return Err(ProtocolError::Encode("property value of the wrong type")),
                    }
                }
            }
        }
        out[..2].copy_from_slice(&flags.to_be_bytes());
        Properties::parse(out.freeze())
            .map_err(|_| ProtocolError::Encode("edited properties are invalid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testutil::XorShift;
    use amq_protocol::protocol::basic::parse_properties;
    use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

    fn sample_headers() -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            ShortString::from("x-match"),
            AMQPValue::LongString(LongString::from("any")),
        );
        t.insert(ShortString::from("n"), AMQPValue::LongInt(-7));
        t
    }

    fn full_props() -> BasicProperties {
        BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_content_encoding("gzip".into())
            .with_headers(sample_headers())
            .with_delivery_mode(2)
            .with_priority(7)
            .with_correlation_id("corr".into())
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_expiration("60000".into())
            .with_message_id("m-1".into())
            .with_timestamp(1_700_000_000)
            .with_type("order".into())
            .with_user_id("guest".into())
            .with_app_id("app".into())
            .with_cluster_id("c".into())
    }

    /// Properties with each field present or not according to the bits of `mask`.
    fn props_from_mask(mask: u16, rng: &mut XorShift) -> BasicProperties {
        let s = |rng: &mut XorShift| -> ShortString {
            let len = rng.below(12) as usize;
            ShortString::from(
                (0..len)
                    .map(|_| (b'a' + rng.below(26) as u8) as char)
                    .collect::<String>(),
            )
        };
        let mut p = BasicProperties::default();
        let has = |i: u16| mask & (1 << i) != 0;
        if has(0) {
            p = p.with_content_type(s(rng));
        }
        if has(1) {
            p = p.with_content_encoding(s(rng));
        }
        if has(2) {
            p = p.with_headers(sample_headers());
        }
        if has(3) {
            p = p.with_delivery_mode(rng.below(3) as u8);
        }
        if has(4) {
            p = p.with_priority(rng.below(256) as u8);
        }
        if has(5) {
            p = p.with_correlation_id(s(rng));
        }
        if has(6) {
            p = p.with_reply_to(s(rng));
        }
        if has(7) {
            p = p.with_expiration(ShortString::from(rng.below(100_000).to_string()));
        }
        if has(8) {
            p = p.with_message_id(s(rng));
        }
        if has(9) {
            p = p.with_timestamp(rng.next());
        }
        if has(10) {
            p = p.with_type(s(rng));
        }
        if has(11) {
            p = p.with_user_id(s(rng));
        }
        if has(12) {
            p = p.with_app_id(s(rng));
        }
        if has(13) {
            p = p.with_cluster_id(s(rng));
        }
        p
    }

    fn assert_accessors_agree(ours: &Properties, theirs: &BasicProperties) {
        let str_of = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().as_bytes().to_vec());
        assert_eq!(
            ours.expiration().map(<[u8]>::to_vec),
            str_of(theirs.expiration())
        );
        assert_eq!(ours.priority(), *theirs.priority());
        assert_eq!(ours.delivery_mode(), *theirs.delivery_mode());
        assert_eq!(ours.timestamp(), *theirs.timestamp());
        assert_eq!(
            ours.shortstr(Property::ContentType).map(<[u8]>::to_vec),
            str_of(theirs.content_type())
        );
        assert_eq!(
            ours.shortstr(Property::ClusterId).map(<[u8]>::to_vec),
            str_of(theirs.cluster_id())
        );
        assert_eq!(
            ours.shortstr(Property::ReplyTo).map(<[u8]>::to_vec),
            str_of(theirs.reply_to())
        );
        match (ours.headers(), theirs.headers()) {
            (None, None) => {}
            (Some(body), Some(table)) => {
                // The raw body, re-read by amq-protocol, is the table it decoded.
                let mut framed = (body.len() as u32).to_be_bytes().to_vec();
                framed.extend_from_slice(body);
                let (rest, reparsed) =
                    amq_protocol::types::parsing::parse_field_table(&framed[..]).unwrap();
                assert!(rest.is_empty());
                assert_eq!(&reparsed, table);
                assert_eq!(ours.headers_shared().as_deref(), Some(body));
            }
            other => panic!("headers disagree: {other:?}"),
        }
        assert_eq!(ours.flags(), theirs.bitmask());
    }

    #[test]
    fn accessors_agree_with_amq_protocol_for_every_flag_combination() {
        let mut rng = XorShift::new(7);
        for mask in 0..(1u16 << 14) {
            let theirs = props_from_mask(mask, &mut rng);
            let ours = Properties::from_basic_properties(&theirs).unwrap();
            assert_accessors_agree(&ours, &theirs);
            assert_eq!(ours.to_basic_properties().unwrap(), theirs);
        }
    }

    #[test]
    fn parse_agrees_with_amq_protocol_on_mutated_inputs() {
        let mut rng = XorShift::new(99);
        let seeds: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                let mask = rng.below(1 << 14) as u16;
                Properties::from_basic_properties(&props_from_mask(mask, &mut rng))
                    .unwrap()
                    .raw()
                    .to_vec()
            })
            .collect();
        let (mut both_ok, mut both_err) = (0, 0);
        for i in 0..100_000 {
            let mut bytes = seeds[i % seeds.len()].clone();
            rng.mutate(&mut bytes);
            let ours = Properties::parse(Bytes::from(bytes.clone()));
            let theirs = match parse_properties(&bytes[..]) {
                Ok(([], p)) => Some(p),
                _ => None,
            };
            match (ours, theirs) {
                (Ok(ours), Some(theirs)) => {
                    assert_accessors_agree(&ours, &theirs);
                    both_ok += 1;
                }
                (Err(e), None) => {
                    assert_eq!(e.reply_code(), crate::protocol::ReplyCode::SyntaxError);
                    both_err += 1;
                }
                // amq-protocol ignores the two unused flag bits; Warren refuses them.
                (Err(_), Some(_)) => assert_ne!(u16::from_be_bytes([bytes[0], bytes[1]]) & 3, 0),
                // amq-protocol insists on UTF-8; Warren, like RabbitMQ, does not.
                (Ok(_), None) => assert!(bytes.iter().any(|&b| b >= 0x80), "{bytes:?}"),
            }
        }
        assert!(both_ok > 1_000 && both_err > 1_000, "{both_ok} {both_err}");
    }

    #[test]
    fn flag_word_problems_are_syntax_errors() {
        for raw in [&[][..], &[0x80], &[0, 1], &[0, 2], &[0x80, 1, 0]] {
            let e = Properties::parse(Bytes::copy_from_slice(raw)).unwrap_err();
            assert_eq!(
                e.reply_code(),
                crate::protocol::ReplyCode::SyntaxError,
                "{raw:?}"
            );
        }
        // Trailing bytes, and a field running past the end.
        assert!(Properties::parse(Bytes::from_static(&[0, 0, 1])).is_err());
        assert!(Properties::parse(Bytes::from_static(&[0x80, 0, 5, b'a'])).is_err());
        assert!(
            Properties::parse(Bytes::from_static(&[0, 0]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn editing_removes_expiration_and_replaces_headers_keeping_the_rest_verbatim() {
        let original = Properties::from_basic_properties(&full_props()).unwrap();
        let mut new_headers = FieldTable::default();
        new_headers.insert(
            ShortString::from("x-first-death-reason"),
            AMQPValue::LongString("expired".into()),
        );
        let body = crate::protocol::encode_table_body(&new_headers).unwrap();
        let edited = original
            .edit()
            .remove(Property::Expiration)
            .set_headers(&body)
            .finish()
            .unwrap();
        let expected = full_props_without_expiration().with_headers(new_headers);
        assert_eq!(edited.to_basic_properties().unwrap(), expected);
        assert_eq!(edited.expiration(), None);
        assert_eq!(edited.headers(), Some(&body[..]));

        // Editing nothing reproduces the bytes exactly.
        assert_eq!(original.edit().finish().unwrap().raw(), original.raw());
        // Type mismatches and over-long strings are refused.
        assert!(
            original
                .edit()
                .set_octet(Property::Expiration, 1)
                .finish()
                .is_err()
        );
        let long = [b'x'; 256];
        assert!(
            original
                .edit()
                .set_shortstr(Property::Expiration, &long)
                .finish()
                .is_err()
        );
        let edited = original
            .edit()
            .set_shortstr(Property::Expiration, b"5")
            .set_octet(Property::Priority, 9)
            .set_timestamp(1)
            .remove(Property::Headers)
            .finish()
            .unwrap();
        assert_eq!(edited.expiration(), Some(&b"5"[..]));
        assert_eq!(edited.priority(), Some(9));
        assert_eq!(edited.timestamp(), Some(1));
        assert_eq!(edited.headers(), None);
    }

    fn full_props_without_expiration() -> BasicProperties {
        BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_content_encoding("gzip".into())
            .with_delivery_mode(2)
            .with_priority(7)
            .with_correlation_id("corr".into())
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_message_id("m-1".into())
            .with_timestamp(1_700_000_000)
            .with_type("order".into())
            .with_user_id("guest".into())
            .with_app_id("app".into())
            .with_cluster_id("c".into())
    }

    #[test]
    fn content_header_checks_class_and_weight() {
        let mut payload = BytesMut::new();
        write_header_payload(&mut payload, 5, &Properties::empty());
        let header = ContentHeader::parse(payload.clone().freeze()).unwrap();
        assert_eq!(header.body_size(), 5);
        assert_eq!(header.class_id(), BASIC_CLASS_ID);
        assert_eq!(header.payload_len(), 14);

        let mut wrong_class = payload.clone();
        wrong_class[1] = 50;
        let e = ContentHeader::parse(wrong_class.freeze()).unwrap_err();
        assert_eq!(e, ProtocolError::UnexpectedContentClass { class_id: 50 });
        let mut weighted = payload;
        weighted[3] = 1;
        let e = ContentHeader::parse(weighted.freeze()).unwrap_err();
        assert_eq!(e.reply_code(), crate::protocol::ReplyCode::UnexpectedFrame);
    }

    #[test]
    fn non_utf8_shortstrs_pass_through_like_rabbitmq() {
        let raw = Bytes::from_static(&[0x01, 0x00, 2, 0xff, 0xfe]); // expiration = ff fe
        let p = Properties::parse(raw).unwrap();
        assert_eq!(p.expiration(), Some(&[0xff, 0xfe][..]));
        assert!(p.to_basic_properties().is_err());
    }
}
