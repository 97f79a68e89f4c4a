//! Helpers shared by the `queue_*` tests (TTL, dead-lettering, length limits, priorities,
//! queue expiry, argument validation): declaring queues with arguments, publishing and
//! fetching, waiting for a queue to empty or disappear, and decoding `x-death` into a typed
//! entry whose every field a test can assert.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer, ExchangeKind};

use crate::broker::{PATIENCE, QUIET, TestBroker, next_delivery, unique};

/// How often a waiting test polls the broker.
const POLL: Duration = Duration::from_millis(20);

/// A table from `(key, value)` pairs (queue arguments, headers).
pub fn args<'a>(entries: impl IntoIterator<Item = (&'a str, AMQPValue)>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(key), value);
    }
    table
}

/// A long (`l`) value, the width most clients send integers as.
pub fn long(n: i64) -> AMQPValue {
    AMQPValue::LongLongInt(n)
}

/// A long-string (`S`) value.
pub fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// An array of long strings (a `CC` header).
pub fn strings(items: &[&str]) -> AMQPValue {
    let mut array = FieldArray::default();
    for item in items {
        array.push(string(item));
    }
    AMQPValue::FieldArray(array)
}

/// A channel in confirm mode on a fresh connection.
pub async fn confirming(broker: &TestBroker) -> (Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirm.select");
    (conn, ch)
}

/// Declares an exclusive queue (gone with the test's connection) with `arguments`.
pub async fn declare(ch: &Channel, arguments: FieldTable) -> String {
    let q = unique("q");
    ch.queue_declare(
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        arguments,
    )
    .await
    .expect("queue.declare");
    q
}

/// Declares a non-exclusive queue named `q` with `arguments` (for `x-expires` tests, where
/// the queue must outlive nothing but its own timer); returns the declare result.
pub async fn declare_shared(ch: &Channel, q: &str, arguments: FieldTable) -> lapin::Result<()> {
    ch.queue_declare(q, QueueDeclareOptions::default(), arguments)
        .await
        .map(|_| ())
}

/// Declares a fresh exchange of `kind`, auto-deleted once its last binding goes.
pub async fn exchange(ch: &Channel, kind: ExchangeKind) -> String {
    let x = unique("x");
    ch.exchange_declare(
        &x,
        kind,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    x
}

/// Binds `q` to `x` with `key`.
pub async fn bind(ch: &Channel, q: &str, x: &str, key: &str) {
    ch.queue_bind(
        q,
        x,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind");
}

/// Publishes and waits for the broker's confirm (the channel must be in confirm mode).
pub async fn publish_to(
    ch: &Channel,
    x: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Confirmation {
    ch.basic_publish(x, key, BasicPublishOptions::default(), body, props)
        .await
        .expect("basic.publish")
        .await
        .expect("publisher confirm")
}

/// Publishes to `q` through the default exchange and asserts the confirm is an ack.
pub async fn publish(ch: &Channel, q: &str, body: &[u8], props: BasicProperties) {
    let confirm = publish_to(ch, "", q, body, props).await;
    assert!(confirm.is_ack(), "publish of {body:?} to {q} was not acked");
}

/// Properties with the per-message `expiration` property set to `ms`.
pub fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ShortString::from(ms))
}

/// Properties with `priority`.
pub fn priority(p: u8) -> BasicProperties {
    BasicProperties::default().with_priority(p)
}

/// One message from `q` by basic.get with auto-ack, if any.
pub async fn get(ch: &Channel, q: &str) -> Option<lapin::message::Delivery> {
    ch.basic_get(q, BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .map(|m| m.delivery)
}

/// Polls `q` with basic.get until a message arrives; panics after [`PATIENCE`].
pub async fn wait_get(ch: &Channel, q: &str) -> lapin::message::Delivery {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(d) = get(ch, q).await {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived in {q} within {PATIENCE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts `q` stays empty (basic.get finds nothing) for [`QUIET`].
pub async fn assert_empty(ch: &Channel, q: &str) {
    let until = Instant::now() + QUIET;
    loop {
        if let Some(d) = get(ch, q).await {
            panic!(
                "{q} should be empty, got {:?}",
                String::from_utf8_lossy(&d.data)
            );
        }
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The message count a passive `queue.declare` reports for `q`.
pub async fn count(ch: &Channel, q: &str) -> u32 {
    ch.queue_declare(
        q,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive queue.declare")
    .message_count()
}

/// Polls the passive-declare count of `q` until it is `n`; panics after [`PATIENCE`].
pub async fn wait_count(ch: &Channel, q: &str, n: u32) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = count(ch, q).await;
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{q} holds {got} messages, expected {n} within {PATIENCE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Starts a consumer on `q` with manual acknowledgement.
pub async fn consume(ch: &Channel, q: &str) -> Consumer {
    ch.basic_consume(
        q,
        &unique("ctag"),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("basic.consume")
}

/// The next `n` deliveries of `consumer` (each must arrive within [`PATIENCE`]).
pub async fn collect(consumer: &mut Consumer, n: usize) -> Vec<lapin::message::Delivery> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_delivery(consumer).await);
    }
    out
}

/// The bodies of `deliveries` as strings, for order assertions.
pub fn bodies(deliveries: &[lapin::message::Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect()
}

/// Drains `q` by basic.get; returns the bodies in the order they came.
pub async fn drain(ch: &Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(d) = get(ch, q).await {
        out.push(String::from_utf8_lossy(&d.data).into_owned());
    }
    out
}

/// Whether a queue named `q` exists, probed with a mandatory publish (returned with
/// NO_ROUTE once the queue is gone). Unlike a declare or basic.get, publishing is not a use
/// of the queue, so probing does not keep an `x-expires` queue alive. The channel must be in
/// confirm mode.
pub async fn exists_by_publish(ch: &Channel, q: &str) -> bool {
    let confirm = ch
        .basic_publish(
            "",
            q,
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            b"probe",
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish")
        .await
        .expect("publisher confirm");
    confirm.take_message().is_none()
}

/// Waits until `q` is gone (see [`exists_by_publish`]); panics after [`PATIENCE`].
pub async fn wait_deleted(ch: &Channel, q: &str) {
    let deadline = Instant::now() + PATIENCE;
    while exists_by_publish(ch, q).await {
        assert!(
            Instant::now() < deadline,
            "{q} still exists after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seconds since the Unix epoch, to bound an `x-death` `time`.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The headers of `props` (an empty table when there are none).
pub fn headers(props: &BasicProperties) -> FieldTable {
    props.headers().clone().unwrap_or_default()
}

/// A long-string header of `props`, if present (panics on another type).
pub fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    headers(props).inner().get(key).map(|v| long_string(v, key))
}

fn long_string(v: &AMQPValue, what: &str) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("{what} should be a long string, got {other:?}"),
    }
}

/// One `x-death` entry, decoded strictly: every field must have the type RabbitMQ writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// `count` (a long).
    pub count: i64,
    /// `reason`: `rejected`, `expired` or `maxlen`.
    pub reason: String,
    /// `queue` the message died in.
    pub queue: String,
    /// `time` (a timestamp, seconds).
    pub time: u64,
    /// `exchange` the message had been published to before this death.
    pub exchange: String,
    /// `routing-keys` (CC included).
    pub routing_keys: Vec<String>,
    /// `original-expiration`, only when the message had an `expiration`.
    pub original_expiration: Option<String>,
}

impl Death {
    /// Decodes one entry; panics on a missing field, a wrong type or an unexpected field.
    pub fn decode(table: &FieldTable) -> Death {
        let fields = table.inner();
        let mut keys: Vec<&str> = fields.keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        let mut expected = vec![
            "count",
            "exchange",
            "queue",
            "reason",
            "routing-keys",
            "time",
        ];
        if fields.contains_key("original-expiration") {
            expected.push("original-expiration");
        }
        expected.sort_unstable();
        assert_eq!(keys, expected, "x-death entry fields: {table:?}");
        let field = |k: &str| fields.get(k).expect("checked above");
        let count = match field("count") {
            AMQPValue::LongLongInt(n) => *n,
            other => panic!("x-death count should be a long, got {other:?}"),
        };
        let time = match field("time") {
            AMQPValue::Timestamp(t) => *t,
            other => panic!("x-death time should be a timestamp, got {other:?}"),
        };
        let routing_keys = match field("routing-keys") {
            AMQPValue::FieldArray(a) => a
                .as_slice()
                .iter()
                .map(|v| long_string(v, "routing key"))
                .collect(),
            other => panic!("x-death routing-keys should be an array, got {other:?}"),
        };
        Death {
            count,
            reason: long_string(field("reason"), "x-death reason"),
            queue: long_string(field("queue"), "x-death queue"),
            time,
            exchange: long_string(field("exchange"), "x-death exchange"),
            routing_keys,
            original_expiration: fields
                .get("original-expiration")
                .map(|v| long_string(v, "x-death original-expiration")),
        }
    }

    /// The fields a test states, for comparing whole entries (`time` checked separately).
    pub fn summary(&self) -> (i64, &str, &str, &str, Vec<&str>, Option<&str>) {
        (
            self.count,
            self.reason.as_str(),
            self.queue.as_str(),
            self.exchange.as_str(),
            self.routing_keys.iter().map(String::as_str).collect(),
            self.original_expiration.as_deref(),
        )
    }
}

/// The `x-death` header of `props`, decoded; panics if it is absent or not an array of
/// tables.
pub fn x_death(props: &BasicProperties) -> Vec<Death> {
    let headers = headers(props);
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => Death::decode(t),
                other => panic!("x-death items should be tables, got {other:?}"),
            })
            .collect(),
        other => panic!("x-death should be an array, got {other:?} in {headers:?}"),
    }
}

/// The `(queue, reason, count)` of each `x-death` entry, in order.
pub fn death_path(props: &BasicProperties) -> Vec<(String, String, i64)> {
    x_death(props)
        .into_iter()
        .map(|d| (d.queue, d.reason, d.count))
        .collect()
}

/// `(queue, reason, count)` with borrowed names, to compare against [`death_path`].
pub fn step(queue: &str, reason: &str, count: i64) -> (String, String, i64) {
    (queue.to_owned(), reason.to_owned(), count)
}
