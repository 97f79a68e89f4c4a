//! Validation of the arguments behind TTL, queue expiry, length limits, priorities and
//! dead-lettering, and of the `expiration` property: invalid values close the channel with
//! 406 and RabbitMQ 3.10's exact text; boundary values are accepted; arguments take part in
//! redeclare equivalence, with integer widths comparing equal.

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use warren_tests::broker::{Exceptions, TestBroker, reply_of, unique};
use warren_tests::queues::{args, expiring, get, long, string};

/// Declares a fresh queue `q` with one argument on a new channel; returns the reply code and
/// text of the refusal.
async fn refusal(broker: &TestBroker, q: &str, key: &str, value: AMQPValue) -> (u16, String) {
    let (_conn, ch) = broker.channel().await;
    let err = ch
        .queue_declare(q, QueueDeclareOptions::default(), args([(key, value)]))
        .await
        .expect_err("the broker must refuse this argument");
    reply_of(&err)
}

/// Asserts that declaring a queue with `key: value` is refused with
/// `PRECONDITION_FAILED - invalid arg '<key>' for queue '<q>' in vhost '/': <term>`.
async fn assert_invalid_arg(key: &str, value: AMQPValue, term: &str) {
    let broker = TestBroker::start().await;
    let q = unique("q");
    assert_eq!(
        refusal(&broker, &q, key, value).await,
        (
            406,
            format!(
                "PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/': {term}"
            )
        )
    );
    assert!(!exists(&broker, &q).await, "a refused queue is not created");
}

/// Whether queue `q` exists (a passive declare on a throwaway channel).
async fn exists(broker: &TestBroker, q: &str) -> bool {
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        q,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .is_ok()
}

/// A negative `x-message-ttl` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_message_ttl_is_406() {
    assert_invalid_arg("x-message-ttl", long(-10), "{value_negative,-10}").await;
}

/// A string `x-message-ttl` is refused, naming the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_message_ttl_is_406() {
    assert_invalid_arg(
        "x-message-ttl",
        string("1000"),
        "\"expected integer, got longstr\"",
    )
    .await;
}

/// A floating-point `x-message-ttl` is refused, naming the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_message_ttl_is_406() {
    assert_invalid_arg(
        "x-message-ttl",
        AMQPValue::Double(1000.0),
        "\"expected integer, got double\"",
    )
    .await;
}

/// An `x-message-ttl` over ten years is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ttl_over_ten_years_is_406() {
    assert_invalid_arg(
        "x-message-ttl",
        long(315_360_000_001),
        "{value_too_large,315360000001}",
    )
    .await;
}

/// `x-expires` 0 is refused (it must be > 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_expires_is_406() {
    assert_invalid_arg("x-expires", long(0), "{value_zero,0}").await;
}

/// A negative `x-expires` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_expires_is_406() {
    assert_invalid_arg("x-expires", long(-1), "{value_negative,-1}").await;
}

/// A negative `x-max-length` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_max_length_is_406() {
    assert_invalid_arg("x-max-length", long(-1), "{value_negative,-1}").await;
}

/// A boolean `x-max-length-bytes` is refused, naming the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boolean_max_length_bytes_is_406() {
    assert_invalid_arg(
        "x-max-length-bytes",
        AMQPValue::Boolean(true),
        "\"expected integer, got bool\"",
    )
    .await;
}

/// An unknown `x-overflow` mode is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_overflow_is_406() {
    assert_invalid_arg("x-overflow", string("drop-tail"), "invalid_overflow").await;
}

/// A non-string `x-overflow` is refused, naming the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_overflow_is_406() {
    assert_invalid_arg(
        "x-overflow",
        AMQPValue::LongInt(1),
        "{unacceptable_type,signedint}",
    )
    .await;
}

/// `x-max-priority` above 255 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_priority_256_is_406() {
    assert_invalid_arg("x-max-priority", long(256), "{max_value_exceeded,256}").await;
}

/// A negative `x-max-priority` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_max_priority_is_406() {
    assert_invalid_arg("x-max-priority", long(-1), "{value_negative,-1}").await;
}

/// A non-string `x-dead-letter-routing-key` is refused, naming the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_dead_letter_routing_key_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    let err = ch
        .queue_declare(
            &q,
            QueueDeclareOptions::default(),
            args([
                ("x-dead-letter-exchange", string("dlx")),
                ("x-dead-letter-routing-key", AMQPValue::LongInt(5)),
            ]),
        )
        .await
        .expect_err("refused");
    assert_eq!(
        reply_of(&err),
        (
            406,
            format!(
                "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '{q}' \
                 in vhost '/': {{unacceptable_type,signedint}}"
            )
        )
    );
}

/// A non-string `x-dead-letter-exchange` is refused with RabbitMQ's type text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_dead_letter_exchange_is_406() {
    let broker = TestBroker::start().await;
    let q = unique("q");
    assert_eq!(
        refusal(&broker, &q, "x-dead-letter-exchange", AMQPValue::LongInt(5)).await,
        (
            406,
            format!(
                "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' \
                 in queue '{q}' in vhost '/'"
            )
        )
    );
}

/// With several invalid arguments, `x-expires` is reported before `x-message-ttl`
/// (RabbitMQ's checking order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_invalid_argument_in_rabbitmqs_order_is_reported() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    let err = ch
        .queue_declare(
            &q,
            QueueDeclareOptions::default(),
            args([("x-message-ttl", long(-1)), ("x-expires", long(0))]),
        )
        .await
        .expect_err("refused");
    assert_eq!(
        reply_of(&err),
        (
            406,
            format!(
                "PRECONDITION_FAILED - invalid arg 'x-expires' for queue '{q}' in vhost '/': \
                 {{value_zero,0}}"
            )
        )
    );
}

/// Boundary values are accepted: TTL 0 and ten years, `x-expires` 1, `x-max-length` 0,
/// `x-max-priority` 0 and 255, `x-dead-letter-exchange` "" with a routing key, every
/// `x-overflow` mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_values_are_accepted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let cases: Vec<FieldTable> = vec![
        args([("x-message-ttl", long(0))]),
        args([("x-message-ttl", long(315_360_000_000))]),
        args([("x-expires", long(1))]),
        args([("x-max-length", long(0))]),
        args([("x-max-length-bytes", long(0))]),
        args([("x-max-priority", long(0))]),
        args([("x-max-priority", long(255))]),
        args([
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string("k")),
        ]),
        args([("x-overflow", string("drop-head"))]),
        args([("x-overflow", string("reject-publish"))]),
        args([("x-overflow", string("reject-publish-dlx"))]),
    ];
    for arguments in cases {
        ch.queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            arguments.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{arguments:?} should be accepted: {e}"));
    }
}

/// Publishes with `expiration` on a fresh channel; returns the exception that closes it.
async fn publish_refusal(broker: &TestBroker, expiration: &str) -> (u16, String) {
    let (conn, ch) = broker.channel().await;
    let mut errors = Exceptions::watch(&conn);
    let _ = ch
        .basic_publish(
            "",
            &unique("nowhere"),
            BasicPublishOptions::default(),
            b"m",
            expiring(expiration),
        )
        .await;
    errors.next().await
}

/// A non-numeric `expiration` closes the channel with 406.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_numeric_expiration_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    assert_eq!(
        publish_refusal(&broker, "soon").await,
        (
            406,
            "PRECONDITION_FAILED - invalid expiration 'soon': no_integer".to_string()
        )
    );
}

/// A negative `expiration` closes the channel with 406.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_expiration_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    assert_eq!(
        publish_refusal(&broker, "-5").await,
        (
            406,
            "PRECONDITION_FAILED - invalid expiration '-5': {value_negative,-5}".to_string()
        )
    );
}

/// An `expiration` with trailing garbage closes the channel with 406.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_with_trailing_characters_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    assert_eq!(
        publish_refusal(&broker, "5x").await,
        (
            406,
            "PRECONDITION_FAILED - invalid expiration '5x': {leftover_string,\"x\"}".to_string()
        )
    );
}

/// An `expiration` over ten years closes the channel with 406.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_over_ten_years_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    assert_eq!(
        publish_refusal(&broker, "315360000001").await,
        (
            406,
            "PRECONDITION_FAILED - invalid expiration '315360000001': \
             {value_too_large,315360000001}"
                .to_string()
        )
    );
}

/// Leading zeros and a plus sign are valid `expiration` values (RabbitMQ 3.10 parses with
/// `string:to_integer`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_with_leading_zeros_or_plus_is_accepted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = warren_tests::queues::confirming(&broker).await;
    let q = warren_tests::queues::declare(&ch, args([])).await;
    for value in ["007000", "+60000"] {
        warren_tests::queues::publish(&ch, &q, value.as_bytes(), expiring(value)).await;
    }
    assert_eq!(
        warren_tests::queues::drain(&ch, &q).await,
        ["007000", "+60000"]
    );
    assert!(get(&ch, &q).await.is_none());
}

/// Declares queue `q` (non-exclusive, deleted at the end by the caller) with `arguments`.
async fn declare_plain(ch: &lapin::Channel, q: &str, arguments: FieldTable) -> lapin::Result<()> {
    ch.queue_declare(
        q,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        arguments,
    )
    .await
    .map(|_| ())
}

/// Redeclaring with the same integer in another width is equivalent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclare_with_another_integer_width_is_equivalent() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    declare_plain(
        &ch,
        &q,
        args([("x-message-ttl", AMQPValue::LongInt(60_000))]),
    )
    .await
    .expect("declare");
    for same in [
        AMQPValue::LongLongInt(60_000),
        AMQPValue::LongUInt(60_000),
        AMQPValue::LongInt(60_000),
    ] {
        declare_plain(&ch, &q, args([("x-message-ttl", same.clone())]))
            .await
            .unwrap_or_else(|e| panic!("{same:?} is equivalent: {e}"));
    }
    declare_plain(
        &ch,
        &q,
        args([("x-max-priority", AMQPValue::ShortShortUInt(3))]),
    )
    .await
    .expect_err("adding an argument is inequivalent");
    ch.queue_delete(&q, Default::default()).await.ok();
    let (_c2, ch2) = broker.channel().await;
    ch2.queue_delete(&q, Default::default()).await.ok();
}

/// Redeclaring with a different value is refused with 406 `inequivalent arg`, naming both
/// values. RabbitMQ 3.10: for the integer limit arguments the text is `received '20' but
/// current is '10'` (no types), unlike the `the value '…' of type '…'` form of other
/// arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclare_with_a_different_value_is_406_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    declare_plain(&ch, &q, args([("x-message-ttl", long(10))]))
        .await
        .expect("declare");
    let err = declare_plain(&ch, &q, args([("x-message-ttl", long(20))]))
        .await
        .expect_err("inequivalent");
    assert_eq!(
        reply_of(&err),
        (
            406,
            format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in \
                 vhost '/': received '20' but current is '10'"
            )
        )
    );
    let (_c2, ch2) = broker.channel().await;
    ch2.queue_delete(&q, Default::default()).await.ok();
}

/// Different values in different widths: still inequivalent, and the text shows the values
/// only (RabbitMQ 3.10 compares and prints the integers, not their types).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inequivalent_integer_arg_in_another_width_shows_values_only() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    declare_plain(&ch, &q, args([("x-max-length", AMQPValue::LongInt(10))]))
        .await
        .expect("declare");
    let err = declare_plain(&ch, &q, args([("x-max-length", long(20))]))
        .await
        .expect_err("inequivalent");
    assert_eq!(
        reply_of(&err),
        (
            406,
            format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in \
                 vhost '/': received '20' but current is '10'"
            )
        )
    );
    let (_c2, ch2) = broker.channel().await;
    ch2.queue_delete(&q, Default::default()).await.ok();
}

/// Leaving out an argument the queue was declared with is inequivalent too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclare_without_an_argument_is_406_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    declare_plain(&ch, &q, args([("x-dead-letter-exchange", string("dlx"))]))
        .await
        .expect("declare");
    let err = declare_plain(&ch, &q, FieldTable::default())
        .await
        .expect_err("inequivalent");
    assert_eq!(
        reply_of(&err),
        (
            406,
            format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue \
                 '{q}' in vhost '/': received none but current is the value 'dlx' of type \
                 'longstr'"
            )
        )
    );
    let (_c2, ch2) = broker.channel().await;
    ch2.queue_delete(&q, Default::default()).await.ok();
}

/// A passive redeclare ignores the arguments it carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_redeclare_ignores_arguments() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    declare_plain(&ch, &q, args([("x-message-ttl", long(10))]))
        .await
        .expect("declare");
    ch.queue_declare(
        &q,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        args([(
            "x-message-ttl",
            AMQPValue::LongString(LongString::from("whatever")),
        )]),
    )
    .await
    .expect("passive declare ignores arguments");
    ch.queue_delete(&q, Default::default()).await.ok();
}

/// An invalid `expiration` closes only the channel: the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_expiration_leaves_the_connection_open() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let mut errors = Exceptions::watch(&conn);
    let _ = ch
        .basic_publish(
            "",
            "anything",
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default().with_expiration("soon".into()),
        )
        .await;
    assert_eq!(errors.next().await.0, 406);
    let other = conn.create_channel().await.expect("connection still open");
    other
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("another channel works");
}

/// Leaving out an integer argument the queue was declared with is inequivalent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclare_without_an_integer_argument_is_406_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    declare_plain(&ch, &q, args([("x-message-ttl", long(10))]))
        .await
        .expect("declare");
    let err = declare_plain(&ch, &q, FieldTable::default())
        .await
        .expect_err("inequivalent");
    assert_eq!(
        reply_of(&err),
        (
            406,
            format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in \
                 vhost '/': received none but current is the value '10' of type 'long'"
            )
        )
    );
    let (_c2, ch2) = broker.channel().await;
    ch2.queue_delete(&q, Default::default()).await.ok();
}
