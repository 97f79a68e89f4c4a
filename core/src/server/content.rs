//! Sender-selected distribution: the `CC` and `BCC` headers of a published message.
//!
//! Their entries are extra routing keys (after the publish routing key); `BCC` is removed
//! from the headers before the message is stored, so consumers never see it. The headers
//! table is only decoded when its raw bytes contain `CC` at all, which keeps the common path
//! free of any table parsing.

use amq_protocol::types::{AMQPValue, FieldTable};

use crate::protocol::{Properties, encode_table_body};

/// Extra routing keys from `CC`/`BCC`, and the properties to store (BCC stripped).
#[derive(Debug, Default)]
pub struct Distribution {
    /// CC then BCC entries.
    pub keys: Vec<Vec<u8>>,
    /// Replacement properties when BCC had to be removed.
    pub properties: Option<Properties>,
}

fn parse_headers(body: &[u8]) -> Option<FieldTable> {
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(body);
    match amq_protocol::types::parsing::parse_field_table(&framed[..]) {
        Ok(([], table)) => Some(table),
        _ => None,
    }
}

fn push_keys(value: Option<&AMQPValue>, keys: &mut Vec<Vec<u8>>) {
    let Some(AMQPValue::FieldArray(array)) = value else {
        return;
    };
    for v in array.as_slice() {
        match v {
            AMQPValue::LongString(s) => keys.push(s.as_bytes().to_vec()),
            AMQPValue::ShortString(s) => keys.push(s.as_str().as_bytes().to_vec()),
            _ => {}
        }
    }
}

/// Reads `CC`/`BCC` from `properties`; `None` when there are none (the common case).
pub fn distribution(properties: &Properties) -> Option<Distribution> {
    let headers = properties.headers()?;
    if !headers.windows(2).any(|w| w == b"CC") {
        return None;
    }
    let table = parse_headers(headers)?;
    let mut out = Distribution::default();
    push_keys(table.inner().get("CC"), &mut out.keys);
    if table.inner().contains_key("BCC") {
        push_keys(table.inner().get("BCC"), &mut out.keys);
        let mut stripped = FieldTable::default();
        for (k, v) in table.inner() {
            if k.as_str() != "BCC" {
                stripped.insert(k.clone(), v.clone());
            }
        }
        if let Ok(body) = encode_table_body(&stripped) {
            out.properties = properties.edit().set_headers(&body).finish().ok();
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::FieldArray;

    fn props(headers: FieldTable) -> Properties {
        Properties::from_basic_properties(&BasicProperties::default().with_headers(headers))
            .expect("encodes")
    }

    #[test]
    fn bcc_is_routed_and_stripped() {
        let mut h = FieldTable::default();
        h.insert(
            "CC".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString("a".into())])),
        );
        h.insert(
            "BCC".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString("b".into())])),
        );
        h.insert("x".into(), AMQPValue::LongLongInt(1));
        let d = distribution(&props(h)).expect("has CC");
        assert_eq!(d.keys, vec![b"a".to_vec(), b"b".to_vec()]);
        let stripped = d.properties.expect("BCC removed");
        let table = parse_headers(stripped.headers().expect("headers")).expect("parses");
        assert!(table.inner().contains_key("CC"));
        assert!(!table.inner().contains_key("BCC"));
        assert!(table.inner().contains_key("x"));
    }

    #[test]
    fn no_cc_means_no_parsing() {
        let mut h = FieldTable::default();
        h.insert("x".into(), AMQPValue::LongLongInt(1));
        assert!(distribution(&props(h)).is_none());
    }
}
