//! Validation of the `queue.declare` arguments behind TTL, length limits, priorities and
//! dead-lettering, with RabbitMQ 3.10's 406 texts, into typed [`QueueLimits`].
//!
//! RabbitMQ 3.10.8 (`rabbit_channel` then `rabbit_amqqueue:check_declare_arguments/2`; texts
//! captured on the broker, after `PRECONDITION_FAILED - `):
//! - first, only when the queue is created: a non-longstr `x-dead-letter-exchange` →
//!   `invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'`;
//! - then in this order, the first failure wins: `x-expires`, `x-message-ttl`,
//!   `x-dead-letter-exchange`, `x-dead-letter-routing-key`, `x-max-length`,
//!   `x-max-length-bytes`, `x-max-priority`, `x-overflow`, each as
//!   `invalid arg 'x-message-ttl' for queue 'q' in vhost '/': <term>` where `<term>` is
//!   - a non-integer where an integer belongs: `"expected integer, got longstr"` (quoted;
//!     also `bool`, `decimal`, `binary`, `void`, `array`, `table`, `timestamp`, `float`,
//!     `double`);
//!   - `{value_negative,-10}`, `{value_too_large,315360000001}` (TTLs over 10 years),
//!     `{value_zero,0}` (`x-expires` only), `{max_value_exceeded,256}` (`x-max-priority`);
//!   - `invalid_overflow` (a longstr other than `drop-head`, `reject-publish`,
//!     `reject-publish-dlx`), `{unacceptable_type,signedint}` (a non-longstr overflow or
//!     routing key);
//!   - `routing_key_but_no_dlx_defined` (`x-dead-letter-routing-key` without
//!     `x-dead-letter-exchange`).
//! - Accepted: `x-message-ttl` 0 and 315360000000, `x-expires` 1, `x-max-length` 0,
//!   `x-max-priority` 0 and 255, `x-dead-letter-exchange` `""`.
//!
//! Integer arguments may use any integer width (`b B s u I i l`); RabbitMQ caps a max
//! priority of 0 as a one-level priority queue, which behaves like a plain queue.

use crate::protocol::type_name;
use amq_protocol::types::{AMQPValue, FieldTable};

use crate::error::AmqpError;

use super::expiration::check_expiry;
use crate::broker::args::text_arg;
use crate::broker::replies::{self, term::Term};

/// Queue arguments RabbitMQ compares on redeclare; others are ignored.
pub const QUEUE_EQUIVALENCE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-queue-version",
    "x-single-active-consumer",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
];

/// What a queue does when a length limit is reached (`x-overflow`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (and dead-letter as `maxlen`) the oldest ready message. The default.
    #[default]
    DropHead,
    /// Refuse the new message (nack in confirm mode).
    RejectPublish,
    /// Refuse the new message and dead-letter it as `maxlen`.
    RejectPublishDlx,
}

/// The validated TTL, limit and dead-letter arguments of a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueLimits {
    /// `x-message-ttl`, ms (0 … 10 years).
    pub message_ttl: Option<u64>,
    /// `x-expires`, ms (1 … 10 years).
    pub expires: Option<u64>,
    /// `x-max-length`, ready messages.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`, ready body bytes.
    pub max_length_bytes: Option<u64>,
    /// `x-overflow`.
    pub overflow: Overflow,
    /// `x-dead-letter-exchange` (`""` is the default exchange).
    pub dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<String>,
    /// `x-max-priority` (0 … 255).
    pub max_priority: Option<u8>,
}

fn integer(value: &AMQPValue) -> Option<i128> {
    Some(match *value {
        AMQPValue::ShortShortInt(v) => v.into(),
        AMQPValue::ShortShortUInt(v) => v.into(),
        AMQPValue::ShortInt(v) => v.into(),
        AMQPValue::ShortUInt(v) => v.into(),
        AMQPValue::LongInt(v) => v.into(),
        AMQPValue::LongUInt(v) => v.into(),
        AMQPValue::LongLongInt(v) => v.into(),
        _ => return None,
    })
}

fn string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// `check_int_arg/2`.
fn int_arg(value: &AMQPValue) -> Result<i128, Term> {
    integer(value).ok_or_else(|| {
        Term::Str(format!("expected integer, got {}", type_name(value)).into_bytes())
    })
}

/// `check_non_neg_int_arg/2`.
fn non_neg_int_arg(value: &AMQPValue) -> Result<u64, Term> {
    let n = int_arg(value)?;
    if n < 0 {
        return Err(Term::tuple(Term::Atom("value_negative"), Term::Int(n)));
    }
    Ok(n as u64)
}

fn unacceptable(value: &AMQPValue) -> Term {
    Term::tuple(
        Term::Atom("unacceptable_type"),
        Term::Atom(type_name(value)),
    )
}

impl QueueLimits {
    /// Validates the arguments of a `queue.declare` that creates queue `queue` in `vhost`.
    /// Other arguments are ignored here.
    pub fn from_arguments(
        queue: &str,
        vhost: &str,
        args: &FieldTable,
    ) -> Result<QueueLimits, AmqpError> {
        let get = |key: &str| args.inner().get(key);
        let invalid = |key: &str, term: Term| replies::invalid_queue_arg(vhost, queue, key, &term);
        let mut limits = QueueLimits::default();

        if let Some(v) = get("x-dead-letter-exchange") {
            match string(v) {
                Some(name) => limits.dead_letter_exchange = Some(name),
                None => {
                    return Err(replies::invalid_queue_arg_type(
                        vhost,
                        queue,
                        "x-dead-letter-exchange",
                        type_name(v),
                    ));
                }
            }
        }
        if let Some(v) = get("x-expires") {
            let n = int_arg(v).map_err(|t| invalid("x-expires", t))?;
            if n == 0 {
                let zero = Term::tuple(Term::Atom("value_zero"), Term::Int(0));
                return Err(invalid("x-expires", zero));
            }
            limits.expires = Some(check_expiry(n).map_err(|t| invalid("x-expires", t))?);
        }
        if let Some(v) = get("x-message-ttl") {
            let n = int_arg(v).map_err(|t| invalid("x-message-ttl", t))?;
            limits.message_ttl = Some(check_expiry(n).map_err(|t| invalid("x-message-ttl", t))?);
        }
        if let Some(v) = get("x-dead-letter-routing-key") {
            let key =
                string(v).ok_or_else(|| invalid("x-dead-letter-routing-key", unacceptable(v)))?;
            if limits.dead_letter_exchange.is_none() {
                let term = Term::Atom("routing_key_but_no_dlx_defined");
                return Err(invalid("x-dead-letter-routing-key", term));
            }
            limits.dead_letter_routing_key = Some(key);
        }
        if let Some(v) = get("x-max-length") {
            limits.max_length = Some(non_neg_int_arg(v).map_err(|t| invalid("x-max-length", t))?);
        }
        if let Some(v) = get("x-max-length-bytes") {
            let n = non_neg_int_arg(v).map_err(|t| invalid("x-max-length-bytes", t))?;
            limits.max_length_bytes = Some(n);
        }
        if let Some(v) = get("x-max-priority") {
            let n = non_neg_int_arg(v).map_err(|t| invalid("x-max-priority", t))?;
            let max = u8::try_from(n).map_err(|_| {
                let term = Term::tuple(Term::Atom("max_value_exceeded"), Term::Int(n.into()));
                invalid("x-max-priority", term)
            })?;
            limits.max_priority = Some(max);
        }
        if let Some(v) = get("x-overflow") {
            let s = string(v).ok_or_else(|| invalid("x-overflow", unacceptable(v)))?;
            limits.overflow = match s.as_str() {
                "drop-head" => Overflow::DropHead,
                "reject-publish" => Overflow::RejectPublish,
                "reject-publish-dlx" => Overflow::RejectPublishDlx,
                _ => return Err(invalid("x-overflow", Term::Atom("invalid_overflow"))),
            };
        }
        Ok(limits)
    }
}

/// Everything a new queue takes from its `queue.declare`: the validated limits, and whether
/// it has a single active consumer. The one place queue arguments are judged (a redeclare is
/// only compared, against [`QUEUE_EQUIVALENCE_ARGS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueArguments {
    /// TTL, length limits, priorities and dead-lettering.
    pub limits: QueueLimits,
    /// `x-single-active-consumer`.
    pub single_active: bool,
}

/// The flags of a `queue.declare` that the arguments are judged with.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeclareFlags {
    /// Durable.
    pub durable: bool,
    /// Exclusive.
    pub exclusive: bool,
    /// Auto-delete.
    pub auto_delete: bool,
}

impl QueueArguments {
    /// Validates the arguments of a `queue.declare` that creates `queue` in `vhost`, in
    /// RabbitMQ's order: limits first, then the queue type and single-active-consumer.
    pub fn parse(
        vhost: &str,
        queue: &str,
        flags: DeclareFlags,
        args: &FieldTable,
    ) -> Result<QueueArguments, AmqpError> {
        let limits = QueueLimits::from_arguments(queue, vhost, args)?;
        let invalid_type = |key: &str, value: &AMQPValue| {
            replies::unacceptable_queue_arg(vhost, queue, key, type_name(value))
        };
        if let Some(value) = args.inner().get("x-queue-type") {
            if !matches!(value, AMQPValue::LongString(_) | AMQPValue::ShortString(_)) {
                return Err(invalid_type("x-queue-type", value));
            }
            match text_arg(args, "x-queue-type") {
                Some("classic") => {}
                Some("quorum") => {
                    let property = if !flags.durable {
                        Some("non-durable")
                    } else if flags.exclusive {
                        Some("exclusive-owner")
                    } else if flags.auto_delete {
                        Some("auto-delete")
                    } else {
                        None
                    };
                    if let Some(property) = property {
                        return Err(replies::invalid_queue_property(vhost, queue, property));
                    }
                }
                other => {
                    return Err(replies::unsupported_queue_type(
                        vhost,
                        queue,
                        other.unwrap_or_default(),
                    ));
                }
            }
        }
        let single_active = match args.inner().get("x-single-active-consumer") {
            None => false,
            Some(AMQPValue::Boolean(b)) => *b,
            Some(other) => return Err(invalid_type("x-single-active-consumer", other)),
        };
        Ok(QueueArguments {
            limits,
            single_active,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{DecimalValue, FieldArray, LongString, ShortString};

    fn args(pairs: Vec<(&str, AMQPValue)>) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(k), v);
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    fn err(pairs: Vec<(&str, AMQPValue)>) -> String {
        let e = QueueLimits::from_arguments("q", "/", &args(pairs)).unwrap_err();
        assert_eq!(e.code, crate::protocol::ReplyCode::PreconditionFailed);
        e.reply_text()
    }

    /// Every text below was produced by RabbitMQ 3.10.8 for the same arguments.
    #[test]
    fn invalid_arguments_fail_with_rabbitmq_texts() {
        let p = |arg: &str, term: &str| {
            format!("PRECONDITION_FAILED - invalid arg '{arg}' for queue 'q' in vhost '/': {term}")
        };
        let ttl = "x-message-ttl";
        let cases: Vec<(Vec<(&str, AMQPValue)>, String)> = vec![
            (
                vec![(ttl, AMQPValue::LongInt(-10))],
                p(ttl, "{value_negative,-10}"),
            ),
            (
                vec![(ttl, AMQPValue::LongLongInt(315_360_000_001))],
                p(ttl, "{value_too_large,315360000001}"),
            ),
            (
                vec![(ttl, s("abc"))],
                p(ttl, "\"expected integer, got longstr\""),
            ),
            (
                vec![(ttl, AMQPValue::Boolean(true))],
                p(ttl, "\"expected integer, got bool\""),
            ),
            (
                vec![(
                    ttl,
                    AMQPValue::DecimalValue(DecimalValue {
                        scale: 1,
                        value: 15,
                    }),
                )],
                p(ttl, "\"expected integer, got decimal\""),
            ),
            (
                vec![(ttl, AMQPValue::ByteArray(b"12".to_vec().into()))],
                p(ttl, "\"expected integer, got binary\""),
            ),
            (
                vec![(ttl, AMQPValue::Void)],
                p(ttl, "\"expected integer, got void\""),
            ),
            (
                vec![(ttl, AMQPValue::FieldArray(FieldArray::default()))],
                p(ttl, "\"expected integer, got array\""),
            ),
            (
                vec![(ttl, AMQPValue::FieldTable(FieldTable::default()))],
                p(ttl, "\"expected integer, got table\""),
            ),
            (
                vec![(ttl, AMQPValue::Timestamp(1))],
                p(ttl, "\"expected integer, got timestamp\""),
            ),
            (
                vec![("x-expires", AMQPValue::LongInt(0))],
                p("x-expires", "{value_zero,0}"),
            ),
            (
                vec![("x-expires", AMQPValue::LongInt(-1))],
                p("x-expires", "{value_negative,-1}"),
            ),
            (
                vec![("x-expires", s("x"))],
                p("x-expires", "\"expected integer, got longstr\""),
            ),
            (
                vec![("x-expires", AMQPValue::LongLongInt(315_360_000_001))],
                p("x-expires", "{value_too_large,315360000001}"),
            ),
            (
                vec![("x-max-length", AMQPValue::LongInt(-1))],
                p("x-max-length", "{value_negative,-1}"),
            ),
            (
                vec![("x-max-length", s("x"))],
                p("x-max-length", "\"expected integer, got longstr\""),
            ),
            (
                vec![("x-max-length-bytes", AMQPValue::LongInt(-1))],
                p("x-max-length-bytes", "{value_negative,-1}"),
            ),
            (
                vec![("x-overflow", s("foo"))],
                p("x-overflow", "invalid_overflow"),
            ),
            (
                vec![("x-overflow", AMQPValue::LongInt(5))],
                p("x-overflow", "{unacceptable_type,signedint}"),
            ),
            (
                vec![(
                    "x-overflow",
                    AMQPValue::ByteArray(b"drop-head".to_vec().into()),
                )],
                p("x-overflow", "{unacceptable_type,binary}"),
            ),
            (
                vec![("x-dead-letter-routing-key", s("rk"))],
                p(
                    "x-dead-letter-routing-key",
                    "routing_key_but_no_dlx_defined",
                ),
            ),
            (
                vec![("x-dead-letter-routing-key", AMQPValue::LongInt(5))],
                p("x-dead-letter-routing-key", "{unacceptable_type,signedint}"),
            ),
            (
                vec![
                    ("x-dead-letter-exchange", s("d")),
                    ("x-dead-letter-routing-key", AMQPValue::LongInt(5)),
                ],
                p("x-dead-letter-routing-key", "{unacceptable_type,signedint}"),
            ),
            (
                vec![("x-max-priority", AMQPValue::LongInt(256))],
                p("x-max-priority", "{max_value_exceeded,256}"),
            ),
            (
                vec![("x-max-priority", AMQPValue::LongInt(-1))],
                p("x-max-priority", "{value_negative,-1}"),
            ),
            (
                vec![("x-max-priority", s("x"))],
                p("x-max-priority", "\"expected integer, got longstr\""),
            ),
            // Order: x-expires before x-message-ttl; x-max-length before priority and overflow.
            (
                vec![
                    (ttl, AMQPValue::LongInt(-1)),
                    ("x-expires", AMQPValue::LongInt(0)),
                ],
                p("x-expires", "{value_zero,0}"),
            ),
            (
                vec![
                    ("x-max-priority", AMQPValue::LongInt(300)),
                    ("x-overflow", s("bad")),
                    ("x-max-length", AMQPValue::LongInt(-5)),
                ],
                p("x-max-length", "{value_negative,-5}"),
            ),
            (
                vec![("x-max-length", s("x")), (ttl, s("y"))],
                p(ttl, "\"expected integer, got longstr\""),
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(err(pairs), expected);
        }
    }

    #[test]
    fn a_non_string_dead_letter_exchange_is_refused_first() {
        let text = "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'";
        assert_eq!(
            err(vec![("x-dead-letter-exchange", AMQPValue::LongInt(5))]),
            text
        );
        assert_eq!(
            err(vec![
                ("x-dead-letter-exchange", AMQPValue::LongInt(5)),
                ("x-dead-letter-routing-key", s("rk"))
            ]),
            text
        );
        assert_eq!(
            err(vec![(
                "x-dead-letter-exchange",
                AMQPValue::ByteArray(b"x".to_vec().into())
            )]),
            "PRECONDITION_FAILED - invalid type 'binary' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
    }

    #[test]
    fn valid_arguments_become_typed_limits() {
        let limits = QueueLimits::from_arguments(
            "q",
            "/",
            &args(vec![
                ("x-message-ttl", AMQPValue::LongLongInt(315_360_000_000)),
                ("x-expires", AMQPValue::ShortShortUInt(1)),
                ("x-max-length", AMQPValue::LongInt(0)),
                ("x-max-length-bytes", AMQPValue::LongUInt(10)),
                ("x-overflow", s("reject-publish-dlx")),
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s("rk")),
                ("x-max-priority", AMQPValue::ShortInt(255)),
            ]),
        )
        .unwrap();
        assert_eq!(
            limits,
            QueueLimits {
                message_ttl: Some(315_360_000_000),
                expires: Some(1),
                max_length: Some(0),
                max_length_bytes: Some(10),
                overflow: Overflow::RejectPublishDlx,
                dead_letter_exchange: Some(String::new()),
                dead_letter_routing_key: Some("rk".into()),
                max_priority: Some(255),
            }
        );
        let zero = args(vec![
            ("x-message-ttl", AMQPValue::LongInt(0)),
            ("x-max-priority", AMQPValue::LongInt(0)),
        ]);
        let limits = QueueLimits::from_arguments("q", "/", &zero).unwrap();
        assert_eq!(
            (limits.message_ttl, limits.max_priority),
            (Some(0), Some(0))
        );
        assert_eq!(
            QueueLimits::from_arguments("q", "/", &FieldTable::default()).unwrap(),
            QueueLimits::default()
        );
    }
}
