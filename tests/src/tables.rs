//! Field tables as a client sends them, encoded with amq-protocol (the broker's codec), and
//! cut to the form that crosses the plugin ABI: the entries without the length prefix.

use amq_protocol::types::generation::gen_field_table;
pub use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Encodes `table` and strips its 4-byte length prefix.
pub fn encode(table: &FieldTable) -> Vec<u8> {
    let bytes = cookie_factory::gen_simple(gen_field_table(table), Vec::new())
        .expect("a field table always encodes");
    bytes[4..].to_vec()
}

/// Builds a table from `(key, value)` pairs.
pub fn table<'a>(entries: impl IntoIterator<Item = (&'a str, AMQPValue)>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(key), value);
    }
    table
}

/// A long-string value.
pub fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}
