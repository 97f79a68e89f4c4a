//! Declare arguments: RabbitMQ's equivalence rules and error texts.
//!
//! A redeclare must match the existing entity; where it does not, clients print the exact
//! reply text, so it is built here in RabbitMQ's words (`inequivalent arg 'x' for queue 'q'
//! in vhost '/': received … but current is …`). Integer widths compare equal (pika sends
//! 32-bit ints, Java 64-bit ones); a float never equals an integer.

use crate::protocol::type_name;
use amq_protocol::types::{AMQPValue, FieldTable};

use super::replies;
use crate::error::AmqpError;

/// Exchange arguments RabbitMQ compares on redeclare.
pub const EXCHANGE_EQUIVALENCE_ARGS: &[&str] = &["alternate-exchange"];

/// The value as an integer, whatever its width.
pub fn as_integer(value: &AMQPValue) -> Option<i128> {
    Some(match value {
        AMQPValue::ShortShortInt(v) => i128::from(*v),
        AMQPValue::ShortShortUInt(v) => i128::from(*v),
        AMQPValue::ShortInt(v) => i128::from(*v),
        AMQPValue::ShortUInt(v) => i128::from(*v),
        AMQPValue::LongInt(v) => i128::from(*v),
        AMQPValue::LongUInt(v) => i128::from(*v),
        AMQPValue::LongLongInt(v) => i128::from(*v),
        AMQPValue::Timestamp(v) => i128::from(*v),
        _ => return None,
    })
}

/// The value as text (long or short string), if it is one and is UTF-8.
pub fn as_text(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// How RabbitMQ prints a value inside an error text.
pub fn display_value(value: &AMQPValue) -> String {
    if let Some(i) = as_integer(value) {
        return i.to_string();
    }
    match value {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::Float(f) => f.to_string(),
        AMQPValue::Double(f) => f.to_string(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}

/// Whether two argument values are equivalent under RabbitMQ's rules.
pub fn values_equivalent(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (as_integer(a), as_integer(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => match (as_text(a), as_text(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        _ => false,
    }
}

fn describe(value: Option<&AMQPValue>) -> String {
    match value {
        Some(v) => format!(
            "the value '{}' of type '{}'",
            display_value(v),
            type_name(v)
        ),
        None => "none".to_owned(),
    }
}

/// Compares the listed arguments of a redeclare with the current ones.
pub fn check_args_equivalence(
    what: &str,
    vhost: &str,
    name: &str,
    keys: &[&str],
    received: &FieldTable,
    current: &FieldTable,
) -> Result<(), AmqpError> {
    for key in keys {
        let r = received.inner().get(*key);
        let c = current.inner().get(*key);
        let same = match (r, c) {
            (None, None) => true,
            (Some(r), Some(c)) => values_equivalent(r, c),
            // RabbitMQ 3.10 takes a missing `x-queue-type` as its default, `classic`.
            (Some(v), None) | (None, Some(v)) => {
                *key == "x-queue-type" && as_text(v) == Some("classic")
            }
        };
        if !same {
            // RabbitMQ 3.10's wording: values only when both sides have one, the value and
            // its type when the other side has none.
            let (received, current) = match (r, c) {
                (Some(r), Some(c)) => (
                    format!("'{}'", display_value(r)),
                    format!("'{}'", display_value(c)),
                ),
                _ => (describe(r), describe(c)),
            };
            return Err(replies::inequivalent_arg(
                what, vhost, name, key, &received, &current,
            ));
        }
    }
    Ok(())
}

/// Looks up a string argument (`alternate-exchange`, `x-queue-type`).
pub fn text_arg<'a>(table: &'a FieldTable, key: &str) -> Option<&'a str> {
    table.inner().get(key).and_then(as_text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::queue::arguments::QUEUE_EQUIVALENCE_ARGS;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    #[test]
    fn integer_widths_compare_equal() {
        let a = table(&[("x-message-ttl", AMQPValue::LongInt(10))]);
        let b = table(&[("x-message-ttl", AMQPValue::LongLongInt(10))]);
        assert!(check_args_equivalence("queue", "/", "q", QUEUE_EQUIVALENCE_ARGS, &a, &b).is_ok());
    }

    #[test]
    fn float_is_not_an_integer() {
        let a = table(&[("x-message-ttl", AMQPValue::Double(10.0))]);
        let b = table(&[("x-message-ttl", AMQPValue::LongLongInt(10))]);
        assert!(check_args_equivalence("queue", "/", "q", QUEUE_EQUIVALENCE_ARGS, &a, &b).is_err());
    }

    #[test]
    fn inequivalent_text_is_rabbitmqs() {
        let a = table(&[("x-message-ttl", AMQPValue::LongLongInt(20))]);
        let b = table(&[("x-message-ttl", AMQPValue::LongLongInt(10))]);
        let e = check_args_equivalence("queue", "/", "q", QUEUE_EQUIVALENCE_ARGS, &a, &b)
            .expect_err("differs");
        assert_eq!(
            e.reply_text(),
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': \
             received '20' but current is '10'"
        );
    }

    #[test]
    fn a_missing_side_is_described_with_its_type() {
        let a = FieldTable::default();
        let b = table(&[("x-message-ttl", AMQPValue::LongInt(10))]);
        let e = check_args_equivalence("queue", "/", "q", QUEUE_EQUIVALENCE_ARGS, &a, &b)
            .expect_err("differs");
        assert!(
            e.text
                .ends_with("received none but current is the value '10' of type 'signedint'")
        );
    }

    #[test]
    fn a_missing_queue_type_is_classic() {
        let classic = table(&[("x-queue-type", AMQPValue::LongString("classic".into()))]);
        let quorum = table(&[("x-queue-type", AMQPValue::LongString("quorum".into()))]);
        let none = FieldTable::default();
        let check = |a, b| check_args_equivalence("queue", "/", "q", QUEUE_EQUIVALENCE_ARGS, a, b);
        assert!(check(&classic, &none).is_ok());
        assert!(check(&none, &classic).is_ok());
        assert!(check(&quorum, &none).is_err());
    }

    #[test]
    fn unlisted_arguments_are_ignored() {
        let a = table(&[("x-foo", AMQPValue::LongLongInt(1))]);
        let b = FieldTable::default();
        assert!(check_args_equivalence("queue", "/", "q", QUEUE_EQUIVALENCE_ARGS, &a, &b).is_ok());
    }
}
