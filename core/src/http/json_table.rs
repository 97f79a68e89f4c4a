//! AMQP field tables as JSON and back, the way RabbitMQ's management API writes them:
//! arguments, headers and client properties are JSON objects; strings are strings; every
//! integer is a number (and comes back as a signed 64-bit `long`, which every argument rule
//! accepts); decimals and floats are numbers; byte arrays are strings; void is `null`.

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

/// A field table as a JSON object.
pub fn to_json(table: &FieldTable) -> Value {
    let mut object = Map::new();
    for (key, value) in table.inner() {
        object.insert(key.to_string(), value_to_json(value));
    }
    Value::Object(object)
}

/// One field value as JSON.
pub fn value_to_json(value: &AMQPValue) -> Value {
    let text = |bytes: &[u8]| Value::String(String::from_utf8_lossy(bytes).into_owned());
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::Float(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let scaled = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            Number::from_f64(scaled).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::LongString(s) => text(s.as_bytes()),
        AMQPValue::ByteArray(b) => text(b.as_slice()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::FieldTable(t) => to_json(t),
        AMQPValue::Void => Value::Null,
    }
}

/// A JSON object as a field table; `null` or an absent value is the empty table. The reason
/// it cannot be one otherwise (not an object, a key longer than a short string).
pub fn from_json(value: &Value) -> Result<FieldTable, String> {
    match value {
        Value::Null => Ok(FieldTable::default()),
        Value::Object(object) => {
            let mut table = FieldTable::default();
            for (key, value) in object {
                if key.len() > 255 {
                    return Err(format!("argument name '{key}' is longer than 255 bytes"));
                }
                table.insert(ShortString::from(key.clone()), value_from_json(value)?);
            }
            Ok(table)
        }
        other => Err(format!("expected a JSON object of arguments, got {other}")),
    }
}

/// One JSON value as a field value.
pub fn value_from_json(value: &Value) -> Result<AMQPValue, String> {
    Ok(match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) if n.is_u64() => AMQPValue::Double(f),
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => return Err(format!("number {n} is out of range")),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.clone())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(value_from_json)
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Object(_) => AMQPValue::FieldTable(from_json(value)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_through_json() {
        let json = serde_json::json!({
            "x-message-ttl": 60000,
            "x-dead-letter-exchange": "dlx",
            "x-single-active-consumer": true,
            "nested": {"list": [1, "two", null], "ratio": 0.5}
        });
        let table = from_json(&json).expect("a table");
        assert_eq!(
            table.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(60000))
        );
        assert_eq!(to_json(&table), json);
    }

    #[test]
    fn non_objects_are_refused_with_a_reason() {
        assert!(
            from_json(&serde_json::json!([1]))
                .expect_err("array")
                .contains("object")
        );
        assert_eq!(
            from_json(&Value::Null).expect("empty"),
            FieldTable::default()
        );
    }
}
