//! The keys a message is routed with: its own routing key, then the sender-selected
//! distribution of its `CC` and `BCC` headers.
//!
//! RabbitMQ's rule (`rabbit_basic:header_routes/1`): a `CC` or `BCC` header counts only when
//! it is an array, and of its items only the long strings are keys; anything else is ignored,
//! never an error. `BCC` is removed from the headers before the message is stored, so no
//! consumer (and no dead-letter exchange) ever sees it; `CC` stays and routes again when the
//! message is dead-lettered without its own routing key.
//!
//! This is the one place those keys are read and assembled — for a publish, a delayed message
//! firing and a dead letter alike. The common message has neither header: then nothing is
//! parsed (the raw header bytes are searched for `CC` first) and nothing allocated.

use std::ops::Deref;

use warren_plugin_api::field_table::{FieldTable, FieldValue};

use crate::protocol::headers as raw;
use crate::protocol::{Properties, ProtocolError};

const CC: &[u8] = b"CC";
const BCC: &[u8] = b"BCC";

/// The keys a message is routed with beyond its own routing key: `CC` then `BCC` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingKeys {
    extra: Vec<Vec<u8>>,
}

/// Every key of one message, routing key first, as the router takes them.
#[derive(Debug)]
pub enum KeyList<'a> {
    /// Only the routing key (no allocation).
    One([&'a [u8]; 1]),
    /// The routing key and the extra keys.
    Many(Vec<&'a [u8]>),
}

impl<'a> Deref for KeyList<'a> {
    type Target = [&'a [u8]];

    fn deref(&self) -> &Self::Target {
        match self {
            KeyList::One(one) => one,
            KeyList::Many(many) => many,
        }
    }
}

/// What reading a published message's distribution found.
#[derive(Debug, Default)]
pub struct Distribution {
    /// The extra keys.
    pub keys: RoutingKeys,
    /// The properties to store instead of the published ones, when `BCC` had to be removed.
    pub properties: Option<Properties>,
}

/// The long-string items of an array-valued header named `key`, appended to `out`.
fn push_keys(table: &FieldTable<'_>, key: &[u8], out: &mut Vec<Vec<u8>>) {
    if let Some(FieldValue::Array(items)) = table.get(key) {
        for item in items.iter() {
            if let Ok(FieldValue::LongString(k)) = item {
                out.push(k.to_vec());
            }
        }
    }
}

/// Whether raw header bytes can hold a `CC` or `BCC` key at all (a cheap pre-check).
fn mentions_cc(headers: &[u8]) -> bool {
    headers.windows(CC.len()).any(|w| w == CC)
}

impl RoutingKeys {
    /// Extra keys as stored elsewhere (a held delayed message).
    pub fn from_extra(extra: Vec<Vec<u8>>) -> RoutingKeys {
        RoutingKeys { extra }
    }

    /// Reads `CC` and `BCC` from a message being published, and removes `BCC` from what will
    /// be stored. Fails only on headers that do not re-encode, which a parsed content header
    /// rules out.
    pub fn at_publish(properties: &Properties) -> Result<Distribution, ProtocolError> {
        let Some(headers) = properties.headers().filter(|h| mentions_cc(h)) else {
            return Ok(Distribution::default());
        };
        let table = FieldTable::new(headers);
        let mut extra = Vec::new();
        push_keys(&table, CC, &mut extra);
        let mut replaced = None;
        if table.get(BCC).is_some() {
            push_keys(&table, BCC, &mut extra);
            replaced = Some(without_bcc(properties, headers)?);
        }
        Ok(Distribution {
            keys: RoutingKeys { extra },
            properties: replaced,
        })
    }

    /// The `CC` keys of a stored message's headers (its `BCC` is gone already): what a dead
    /// letter routes with again.
    pub fn cc_of(headers: Option<&[u8]>) -> RoutingKeys {
        let mut extra = Vec::new();
        if let Some(headers) = headers.filter(|h| mentions_cc(h)) {
            push_keys(&FieldTable::new(headers), CC, &mut extra);
        }
        RoutingKeys { extra }
    }

    /// Whether there are no extra keys.
    pub fn is_empty(&self) -> bool {
        self.extra.is_empty()
    }

    /// The extra keys, in order.
    pub fn extra(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.extra.iter().map(Vec::as_slice)
    }

    /// `routing_key` followed by the extra keys.
    pub fn with<'a>(&'a self, routing_key: &'a [u8]) -> KeyList<'a> {
        if self.extra.is_empty() {
            KeyList::One([routing_key])
        } else {
            KeyList::Many(std::iter::once(routing_key).chain(self.extra()).collect())
        }
    }
}

/// `properties` with the `BCC` entry removed from `headers`, every other entry kept as the
/// publisher encoded it.
fn without_bcc(properties: &Properties, headers: &[u8]) -> Result<Properties, ProtocolError> {
    let entries =
        raw::entries(headers).ok_or(ProtocolError::MalformedProperties("headers table"))?;
    let kept: Vec<raw::Entry<'_>> = entries.into_iter().filter(|e| e.key != BCC).collect();
    let mut body = Vec::with_capacity(headers.len());
    raw::write_table(&mut body, &kept);
    properties.edit().set_headers(&body).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::{AMQPValue, FieldArray, FieldTable as Table};

    fn props(headers: Table) -> Properties {
        Properties::from_basic_properties(&BasicProperties::default().with_headers(headers))
            .expect("encodes")
    }

    fn keys(items: &[&str]) -> AMQPValue {
        AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(|k| AMQPValue::LongString((*k).into()))
                .collect::<Vec<_>>(),
        ))
    }

    fn all(keys: &RoutingKeys, key: &str) -> Vec<String> {
        keys.with(key.as_bytes())
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn bcc_is_routed_and_stripped_and_cc_kept() {
        let mut h = Table::default();
        h.insert("CC".into(), keys(&["a"]));
        h.insert("BCC".into(), keys(&["b"]));
        h.insert("x".into(), AMQPValue::LongLongInt(1));
        let d = RoutingKeys::at_publish(&props(h)).expect("parses");
        assert_eq!(all(&d.keys, "k"), ["k", "a", "b"]);
        let stored = d.properties.expect("BCC removed");
        let table = FieldTable::new(stored.headers().expect("headers"));
        assert!(table.get(b"CC").is_some());
        assert!(table.get(b"BCC").is_none());
        assert!(table.get(b"x").is_some());
        assert_eq!(all(&RoutingKeys::cc_of(stored.headers()), "k"), ["k", "a"]);
    }

    #[test]
    fn only_long_strings_in_an_array_are_keys() {
        let mut h = Table::default();
        h.insert(
            "CC".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongString("yes".into()),
                AMQPValue::LongInt(7),
            ])),
        );
        h.insert("BCC".into(), AMQPValue::LongString("not-an-array".into()));
        let d = RoutingKeys::at_publish(&props(h)).expect("parses");
        assert_eq!(all(&d.keys, "k"), ["k", "yes"]);
    }

    #[test]
    fn no_cc_means_no_parsing_and_one_key() {
        let mut h = Table::default();
        h.insert("x".into(), AMQPValue::LongLongInt(1));
        let d = RoutingKeys::at_publish(&props(h)).expect("parses");
        assert!(d.keys.is_empty() && d.properties.is_none());
        assert!(matches!(d.keys.with(b"k"), KeyList::One(_)));
        assert!(RoutingKeys::cc_of(None).is_empty());
    }
}
