//! Reading request bodies, one way for every resource: JSON as RabbitMQ's API takes it — an
//! empty body is `{}` (so `curl -X PUT` without a body declares with the defaults), the
//! content type is not looked at (clients send JSON under any of them), malformed JSON is 400
//! `not_json`, a field of the wrong type is 400 naming it — and the looser forms its clients
//! send: booleans and counts as strings (`rabbitmqadmin` passes every `key=value` as a
//! string), tags as a comma-separated string or a list, empty arguments as `[]`.

use amq_protocol::types::FieldTable;
use axum::body::Bytes;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::json_table::from_json;
use super::{ApiError, ApiResult};
use crate::auth::user::parse_tags;

/// A request body as `T` (see the module docs for what is accepted).
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("not_json: {e}")))?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Arguments from a body: an object, or `null`/absent/`[]` (RabbitMQ's empty list) for none.
pub fn arguments_of(value: Option<&Value>) -> ApiResult<FieldTable> {
    match value {
        None => Ok(FieldTable::default()),
        Some(Value::Array(items)) if items.is_empty() => Ok(FieldTable::default()),
        Some(value) => from_json(value).map_err(ApiError::bad_request),
    }
}

/// The body of a PUT or POST as a JSON object: RabbitMQ's `not_json` for what does not
/// parse, an empty object for an empty body.
pub fn json_object(body: &Bytes) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "not_json: the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!("not_json: {e}"))),
    }
}

/// Tags as RabbitMQ takes them: a comma-separated string or a list of strings.
pub fn tags_from(value: &Value, what: &str) -> ApiResult<Vec<String>> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(parse_tags(text)),
        Value::Array(items) => {
            let mut tags = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(tag) = item else {
                    return Err(ApiError::bad_request(format!(
                        "{what} must be strings, not {item}"
                    )));
                };
                tags.extend(parse_tags(tag));
            }
            Ok(tags)
        }
        other => Err(ApiError::bad_request(format!(
            "{what} must be a comma-separated string or a list, not {other}"
        ))),
    }
}

/// A string field of `body` (absent: `None`; present but not a string: 400).
pub fn string_field<'a>(body: &'a Map<String, Value>, key: &str) -> ApiResult<Option<&'a str>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a string, not {other}"
        ))),
    }
}

/// A boolean field as RabbitMQ's API reads it: `true`/`false`, or the strings `"true"` and
/// `"false"` (what `rabbitmqadmin` sends, as it passes every `key=value` as a string).
pub fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(D::Error::custom(format!(
            "expected a boolean (true or false), got {other}"
        ))),
    }
}

/// A count as RabbitMQ's API reads it: a number or a string of digits (`rabbitmqadmin`).
pub fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(d)? {
        Value::Number(n) if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
        Value::String(s) if s.trim().parse::<u64>().is_ok() => {
            Ok(s.trim().parse().unwrap_or_default())
        }
        other => Err(D::Error::custom(format!(
            "expected a whole number, got {other}"
        ))),
    }
}

/// [`lenient_u64`] for an optional field (`null` is absent).
pub fn lenient_opt_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::{Error as _, IntoDeserializer};
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        other => lenient_u64(other.into_deserializer())
            .map(Some)
            .map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_counts_may_come_as_strings() {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(deserialize_with = "lenient_bool")]
            durable: bool,
            #[serde(deserialize_with = "lenient_u64")]
            count: u64,
        }
        let body: Body =
            serde_json::from_str(r#"{"durable": "true", "count": "3"}"#).expect("reads");
        assert!(body.durable && body.count == 3);
        let body: Body = serde_json::from_str(r#"{"durable": false, "count": 1}"#).expect("reads");
        assert!(!body.durable && body.count == 1);
        assert!(serde_json::from_str::<Body>(r#"{"durable": "yes", "count": 1}"#).is_err());
    }
}
