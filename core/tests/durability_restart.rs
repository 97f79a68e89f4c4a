//! Durability end to end: the real `warren` binary on a data directory of the test's own,
//! stopped — gracefully (SIGTERM) or not at all (SIGKILL) — and started again on it, and what
//! an AMQP client (lapin) and the management API see afterwards.
//!
//! Every test has its own broker, directory and ephemeral ports. Waits for something that
//! must happen poll with a generous bound; nothing asserts how fast anything is.

// This file uses the broker harness, not the one-shot helpers beside it.
#[allow(dead_code)]
mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeBindOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::mpsc;
use warren::broker::PendingInfo;

use common::broker_process::{BrokerProcess, TempDataDir};

/// How long a test waits for something that must happen before calling it a failure.
const PATIENCE: Duration = Duration::from_secs(15);

/// How a test takes the broker down before starting it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: the broker syncs and exits on its own.
    Graceful,
    /// SIGKILL: nothing runs after the signal.
    Kill,
}

impl Stop {
    fn apply(self, broker: &mut BrokerProcess) {
        match self {
            Stop::Graceful => {
                broker.stop();
            }
            Stop::Kill => {
                broker.kill9();
            }
        }
    }
}

/// A broker on a directory of its own. The broker is dropped (killed if still running)
/// before the directory is removed.
struct Fixture {
    broker: BrokerProcess,
    dir: TempDataDir,
}

impl Fixture {
    fn start(name: &str) -> Fixture {
        let dir = TempDataDir::new(name);
        let broker = BrokerProcess::start(dir.path());
        Fixture { broker, dir }
    }

    /// Takes the broker down as `stop` says and starts it again on the same directory.
    fn bounce(&mut self, stop: Stop) {
        stop.apply(&mut self.broker);
        self.broker.restart();
    }
}

/// `fut`, or a failure naming `what` after [`PATIENCE`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {PATIENCE:?}"),
    }
}

/// A connection and a channel in confirm mode.
async fn connect(broker: &BrokerProcess) -> (Connection, Channel) {
    let uri = broker.amqp_uri();
    let conn = within(
        "connect",
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("connecting to {uri}: {e}"));
    let ch = within("channel.open", conn.create_channel())
        .await
        .expect("channel opens");
    within(
        "confirm.select",
        ch.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .expect("confirm.select");
    (conn, ch)
}

/// A durable queue declare with `args`.
async fn durable_queue(ch: &Channel, name: &str, args: FieldTable) {
    declare_queue(
        ch,
        name,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap_or_else(|e| panic!("declaring durable queue {name}: {e}"));
}

async fn declare_queue(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    args: FieldTable,
) -> lapin::Result<lapin::Queue> {
    within("queue.declare", ch.queue_declare(name, options, args)).await
}

async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    durable: bool,
    args: FieldTable,
) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        durable,
        ..Default::default()
    };
    within(
        "exchange.declare",
        ch.exchange_declare(name, kind, options, args),
    )
    .await
}

async fn bind_queue(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    within(
        "queue.bind",
        ch.queue_bind(queue, exchange, key, QueueBindOptions::default(), args),
    )
    .await
    .unwrap_or_else(|e| panic!("binding {queue} to {exchange}: {e}"));
}

async fn bind_exchange(ch: &Channel, destination: &str, source: &str, key: &str) {
    within(
        "exchange.bind",
        ch.exchange_bind(
            destination,
            source,
            key,
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("binding {destination} to {source}: {e}"));
}

/// Publishes on a confirming channel and waits for the confirm (which must be an ack).
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
    mandatory: bool,
) -> Confirmation {
    let options = BasicPublishOptions {
        mandatory,
        ..Default::default()
    };
    let confirm = within("basic.publish", async {
        ch.basic_publish(exchange, key, options, body, props)
            .await
            .expect("publish sent")
            .await
            .expect("publish confirmed")
    })
    .await;
    assert!(confirm.is_ack(), "publish to '{exchange}' was nacked");
    confirm
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    publish_confirmed(ch, exchange, key, body, props, false).await;
}

/// Publishes with `mandatory` and tells whether the message was routed (not returned).
async fn publish_routed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> bool {
    publish_confirmed(ch, exchange, key, body, props, true)
        .await
        .take_message()
        .is_none()
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn transient() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(1)
}

/// One message by basic.get, acknowledged by the get itself.
async fn get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        "basic.get",
        ch.basic_get(queue, BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap_or_else(|e| panic!("basic.get on {queue}: {e}"))
}

/// One message by basic.get, left unacknowledged.
async fn get_unacked(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        "basic.get",
        ch.basic_get(queue, BasicGetOptions { no_ack: false }),
    )
    .await
    .unwrap_or_else(|e| panic!("basic.get on {queue}: {e}"))
}

/// Polls `queue` until a message comes (within `patience`).
async fn wait_get(ch: &Channel, queue: &str, patience: Duration) -> BasicGetMessage {
    poll_get(ch, queue, patience, true).await
}

/// Polls `queue` until a message comes, or `patience` has passed.
async fn try_wait_get(ch: &Channel, queue: &str, patience: Duration) -> Option<BasicGetMessage> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(message) = get(ch, queue).await {
            return Some(message);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `queue` until a message comes (within `patience`), acknowledged by the get if
/// `no_ack`.
async fn poll_get(ch: &Channel, queue: &str, patience: Duration, no_ack: bool) -> BasicGetMessage {
    let deadline = Instant::now() + patience;
    loop {
        let got = if no_ack {
            get(ch, queue).await
        } else {
            get_unacked(ch, queue).await
        };
        if let Some(message) = got {
            return message;
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived in '{queue}' within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Everything in `queue`, in order, until a get finds it empty.
async fn drain(ch: &Channel, queue: &str) -> Vec<BasicGetMessage> {
    let mut all = Vec::new();
    while let Some(message) = get(ch, queue).await {
        all.push(message);
    }
    all
}

fn bodies(messages: &[BasicGetMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
        .collect()
}

/// The reply code of the AMQP exception behind `err`.
fn reply_code(err: &lapin::Error) -> u16 {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => e.get_id(),
        other => panic!("expected an AMQP exception, got {other:?}"),
    }
}

/// The reply code of a passive declare of queue `name` on a fresh channel (0 if it exists).
async fn queue_probe(conn: &Connection, name: &str) -> u16 {
    let ch = within("channel.open", conn.create_channel())
        .await
        .expect("channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match declare_queue(&ch, name, options, FieldTable::default()).await {
        Ok(_) => 0,
        Err(e) => reply_code(&e),
    }
}

/// The reply code of a passive declare of exchange `name` on a fresh channel (0 if it
/// exists).
async fn exchange_probe(conn: &Connection, name: &str) -> u16 {
    let ch = within("channel.open", conn.create_channel())
        .await
        .expect("channel");
    let options = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = within(
        "exchange.declare",
        ch.exchange_declare(name, ExchangeKind::Direct, options, FieldTable::default()),
    )
    .await;
    match declared {
        Ok(()) => 0,
        Err(e) => reply_code(&e),
    }
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (key, value) in entries {
        t.insert(key.into(), value);
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(key)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as u64
}

// ---------------------------------------------------------------------------------------
// 1. Messages and queues

/// Properties using every field, and headers with every value type lapin round-trips,
/// nested tables and arrays included. `i` makes each message's differ.
fn rich_properties(i: u8) -> BasicProperties {
    let leaf = table(vec![
        ("leaf", AMQPValue::Boolean(false)),
        ("n", AMQPValue::LongLongInt(-1)),
    ]);
    let nested = table(vec![
        ("depth", AMQPValue::ShortShortUInt(2)),
        (
            "list",
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::FieldTable(leaf),
                text("in an array"),
                AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongInt(7)])),
            ])),
        ),
    ]);
    let headers = table(vec![
        ("index", AMQPValue::ShortShortUInt(i)),
        ("bool", AMQPValue::Boolean(true)),
        ("i8", AMQPValue::ShortShortInt(-5)),
        ("i16", AMQPValue::ShortInt(-300)),
        ("u16", AMQPValue::ShortUInt(60_000)),
        ("i32", AMQPValue::LongInt(-70_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-(1 << 40))),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12_345,
            }),
        ),
        ("text", text("héllo, wörld")),
        ("empty", text("")),
        ("when", AMQPValue::Timestamp(1_700_000_000)),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0, 1, 254, 255])),
        ),
        ("void", AMQPValue::Void),
        ("nested", AMQPValue::FieldTable(nested)),
        (
            "array",
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::ShortShortUInt(1),
                text("two"),
                AMQPValue::Double(3.0),
                AMQPValue::Void,
            ])),
        ),
    ]);
    BasicProperties::default()
        .with_content_type(ShortString::from("application/x-e2e"))
        .with_content_encoding(ShortString::from("identity"))
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(i % 10)
        .with_correlation_id(ShortString::from(format!("correlation-{i}")))
        .with_reply_to(ShortString::from("replies"))
        .with_expiration(ShortString::from("86400000"))
        .with_message_id(ShortString::from(format!("message-{i}")))
        .with_timestamp(1_700_000_000 + u64::from(i))
        .with_type(ShortString::from("e2e.kind"))
        .with_user_id(ShortString::from("guest"))
        .with_app_id(ShortString::from("durability_restart"))
}

async fn persistent_messages_survive(stop: Stop) {
    let mut f = Fixture::start("messages");
    let (conn, ch) = connect(&f.broker).await;
    durable_queue(&ch, "keep", FieldTable::default()).await;
    let non_durable = QueueDeclareOptions::default();
    declare_queue(&ch, "forget", non_durable, FieldTable::default())
        .await
        .expect("non-durable queue");
    let exclusive = QueueDeclareOptions {
        durable: true,
        exclusive: true,
        ..Default::default()
    };
    declare_queue(&ch, "exclusive", exclusive, FieldTable::default())
        .await
        .expect("exclusive durable queue");

    let mut sent = Vec::new();
    for i in 0..3u8 {
        let body = format!("persistent {i}").into_bytes();
        let props = rich_properties(i);
        publish(&ch, "", "keep", &body, props.clone()).await;
        publish(
            &ch,
            "",
            "keep",
            format!("transient {i}").as_bytes(),
            transient(),
        )
        .await;
        sent.push((body, props));
    }
    publish(&ch, "", "forget", b"in a non-durable queue", persistent()).await;
    publish(&ch, "", "exclusive", b"in an exclusive queue", persistent()).await;

    f.bounce(stop);
    drop(conn);
    let (conn, ch) = connect(&f.broker).await;
    let kept = drain(&ch, "keep").await;
    assert_eq!(
        bodies(&kept),
        ["persistent 0", "persistent 1", "persistent 2"],
        "the persistent messages, in order, and no transient one"
    );
    for (got, (body, props)) in kept.iter().zip(&sent) {
        assert_eq!(&got.delivery.data, body);
        assert_eq!(
            got.delivery.properties,
            *props,
            "the properties of '{}' as published",
            String::from_utf8_lossy(body)
        );
        assert!(!got.delivery.redelivered, "never delivered before");
        assert_eq!(got.delivery.exchange.as_str(), "");
        assert_eq!(got.delivery.routing_key.as_str(), "keep");
    }
    assert_eq!(queue_probe(&conn, "forget").await, 404, "non-durable queue");
    assert_eq!(
        queue_probe(&conn, "exclusive").await,
        404,
        "exclusive queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_survive_a_graceful_stop_with_every_property() {
    persistent_messages_survive(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_survive_a_kill_with_every_property() {
    persistent_messages_survive(Stop::Kill).await;
}

// ---------------------------------------------------------------------------------------
// 2. Exchanges and bindings

fn kind_header(kind: &str) -> BasicProperties {
    persistent().with_headers(table(vec![("kind", text(kind))]))
}

fn alternate(name: &str) -> FieldTable {
    table(vec![("alternate-exchange", text(name))])
}

fn ttl(ms: i32) -> FieldTable {
    table(vec![("x-message-ttl", AMQPValue::LongInt(ms))])
}

async fn exchanges_and_bindings_survive(stop: Stop) {
    let mut f = Fixture::start("topology");
    let (conn, ch) = connect(&f.broker).await;
    // direct --a.b--> fanout --> topic --a.*--> headers --kind=x--> queue "routed"
    let durable = true;
    declare_exchange(
        &ch,
        "e.direct",
        ExchangeKind::Direct,
        durable,
        alternate("ae"),
    )
    .await
    .expect("direct");
    let none = FieldTable::default;
    declare_exchange(&ch, "e.fanout", ExchangeKind::Fanout, durable, none())
        .await
        .expect("fanout");
    declare_exchange(&ch, "e.topic", ExchangeKind::Topic, durable, none())
        .await
        .expect("topic");
    declare_exchange(&ch, "e.headers", ExchangeKind::Headers, durable, none())
        .await
        .expect("headers");
    declare_exchange(&ch, "e.transient", ExchangeKind::Direct, false, none())
        .await
        .expect("non-durable exchange");
    durable_queue(&ch, "routed", ttl(3_600_000)).await;
    bind_exchange(&ch, "e.fanout", "e.direct", "a.b").await;
    bind_exchange(&ch, "e.topic", "e.fanout", "").await;
    bind_exchange(&ch, "e.headers", "e.topic", "a.*").await;
    let match_kind_x = table(vec![("x-match", text("all")), ("kind", text("x"))]);
    bind_queue(&ch, "routed", "e.headers", "", match_kind_x).await;
    bind_queue(&ch, "routed", "e.transient", "t", none()).await;
    assert!(
        publish_routed(&ch, "e.direct", "a.b", b"before", kind_header("x")).await,
        "the chain routes before the restart"
    );
    assert_eq!(bodies(&drain(&ch, "routed").await), ["before"]);

    f.bounce(stop);
    drop(conn);
    let (conn, ch) = connect(&f.broker).await;
    assert!(
        publish_routed(&ch, "e.direct", "a.b", b"after", kind_header("x")).await,
        "the chain routes after the restart"
    );
    assert_eq!(bodies(&drain(&ch, "routed").await), ["after"]);
    assert!(
        !publish_routed(&ch, "e.direct", "a.b", b"wrong kind", kind_header("y")).await,
        "the headers binding kept its arguments"
    );
    assert!(
        !publish_routed(&ch, "e.direct", "b.b", b"wrong key", kind_header("x")).await,
        "the exchange binding kept its key"
    );
    assert_eq!(exchange_probe(&conn, "e.transient").await, 404);
    for name in ["e.direct", "e.fanout", "e.topic", "e.headers"] {
        assert_eq!(exchange_probe(&conn, name).await, 0, "{name} is back");
    }

    // Redeclaring as stored is fine; with other arguments it is refused (they were stored).
    declare_exchange(&ch, "e.direct", ExchangeKind::Direct, true, alternate("ae"))
        .await
        .expect("the same declare again");
    durable_queue(&ch, "routed", ttl(3_600_000)).await;
    let err = declare_exchange(
        &ch,
        "e.direct",
        ExchangeKind::Direct,
        true,
        alternate("other"),
    )
    .await
    .expect_err("an exchange redeclared with another alternate-exchange");
    assert_eq!(reply_code(&err), 406, "{err}");
    let ch = within("channel.open", conn.create_channel())
        .await
        .expect("channel");
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let err = declare_queue(&ch, "routed", options, ttl(1_000))
        .await
        .expect_err("a queue redeclared with another x-message-ttl");
    assert_eq!(reply_code(&err), 406, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_and_bindings_survive_a_graceful_stop() {
    exchanges_and_bindings_survive(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_and_bindings_survive_a_kill() {
    exchanges_and_bindings_survive(Stop::Kill).await;
}

// ---------------------------------------------------------------------------------------
// 3. Delivered but unacknowledged

async fn unacked_messages_come_back_redelivered(stop: Stop) {
    let mut f = Fixture::start("unacked");
    let (conn, ch) = connect(&f.broker).await;
    durable_queue(&ch, "work", FieldTable::default()).await;
    publish(&ch, "", "work", b"acked", persistent()).await;
    publish(&ch, "", "work", b"unacked", persistent()).await;

    let consuming = within("channel.open", conn.create_channel())
        .await
        .expect("channel");
    within(
        "basic.qos",
        consuming.basic_qos(10, BasicQosOptions::default()),
    )
    .await
    .expect("qos");
    let consumer = within(
        "basic.consume",
        consuming.basic_consume(
            "work",
            "worker",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("consume");
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    consumer.set_delegate(move |delivery: lapin::message::DeliveryResult| {
        let tx = tx.clone();
        async move {
            if let Ok(Some(delivery)) = delivery {
                let _ = tx.send(delivery);
            }
        }
    });
    // The delegate runs one task per delivery, so they may arrive here in any order.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(within("a delivery", rx.recv()).await.expect("delivered"));
    }
    got.sort_by_key(|d| d.delivery_tag);
    let (first, second) = (&got[0], &got[1]);
    assert_eq!(first.data, b"acked");
    assert_eq!(second.data, b"unacked");
    within("basic.ack", first.ack(BasicAckOptions::default()))
        .await
        .expect("ack sent");
    tokio::time::sleep(Duration::from_millis(300)).await;

    f.bounce(stop);
    drop((consumer, consuming, conn));
    let (_conn, ch) = connect(&f.broker).await;
    let back = drain(&ch, "work").await;
    assert_eq!(bodies(&back), ["unacked"], "the acked message is gone");
    assert!(back[0].delivery.redelivered, "it was delivered before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_come_back_redelivered_after_a_graceful_stop() {
    unacked_messages_come_back_redelivered(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_come_back_redelivered_after_a_kill() {
    unacked_messages_come_back_redelivered(Stop::Kill).await;
}

// ---------------------------------------------------------------------------------------
// 4. TTL and dead letters

fn dead_letter_to(exchange: &str, extra: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut args = table(extra);
    args.insert("x-dead-letter-exchange".into(), text(exchange));
    args
}

/// The first entry of the `x-death` header of `props`.
fn first_death(props: &BasicProperties) -> &FieldTable {
    match header(props, "x-death") {
        Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
            Some(AMQPValue::FieldTable(death)) => death,
            other => panic!("x-death holds {other:?}"),
        },
        other => panic!("no x-death array: {other:?} in {props:?}"),
    }
}

fn text_field(t: &FieldTable, key: &str) -> String {
    match t.inner().get(key) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => panic!("'{key}' is {other:?}"),
    }
}

async fn ttl_runs_while_down(stop: Stop) {
    let mut f = Fixture::start("ttl");
    let (conn, ch) = connect(&f.broker).await;
    let none = FieldTable::default;
    declare_exchange(&ch, "dlx", ExchangeKind::Fanout, true, none())
        .await
        .expect("dlx");
    durable_queue(&ch, "dlq", none()).await;
    bind_queue(&ch, "dlq", "dlx", "", none()).await;
    let ttl_2s = vec![("x-message-ttl", AMQPValue::LongInt(2_000))];
    durable_queue(&ch, "short-lived", dead_letter_to("dlx", ttl_2s)).await;
    // A message dead-lettered (rejected) before the restart, sitting in its own DLQ.
    declare_exchange(&ch, "dlx-rejected", ExchangeKind::Fanout, true, none())
        .await
        .expect("dlx-rejected");
    durable_queue(&ch, "dlq-rejected", none()).await;
    bind_queue(&ch, "dlq-rejected", "dlx-rejected", "", none()).await;
    durable_queue(&ch, "rejecting", dead_letter_to("dlx-rejected", vec![])).await;
    publish(&ch, "", "rejecting", b"rejected", persistent()).await;
    let rejected = get_unacked(&ch, "rejecting").await.expect("to reject");
    within(
        "basic.reject",
        rejected
            .delivery
            .reject(BasicRejectOptions { requeue: false }),
    )
    .await
    .expect("rejected");
    // Read its x-death, then put it back where it sits.
    let dead = poll_get(&ch, "dlq-rejected", PATIENCE, false).await;
    assert_eq!(
        text_field(first_death(&dead.delivery.properties), "reason"),
        "rejected"
    );
    let dead_props = dead.delivery.properties.clone();
    within(
        "basic.reject",
        dead.delivery.reject(BasicRejectOptions { requeue: true }),
    )
    .await
    .expect("requeued");
    // Same channel: this answers after the requeue is done.
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let dlq = declare_queue(&ch, "dlq-rejected", passive, FieldTable::default())
        .await
        .expect("passive declare");
    assert_eq!(
        dlq.message_count(),
        1,
        "the dead letter is back in its queue"
    );
    // No confirm covers a dead letter: give it a moment to sit in its queue.
    tokio::time::sleep(Duration::from_millis(300)).await;

    publish(&ch, "", "short-lived", b"expires while down", persistent()).await;
    let published = Instant::now();
    stop.apply(&mut f.broker);
    drop(conn);
    tokio::time::sleep(
        (published + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
    )
    .await;
    f.broker.restart();

    let (_conn, ch) = connect(&f.broker).await;
    assert!(
        get(&ch, "short-lived").await.is_none(),
        "an expired message is never delivered from its queue"
    );
    let Some(expired) = try_wait_get(&ch, "dlq", PATIENCE).await else {
        panic!(
            "the expired message never reached the dead-letter queue within {PATIENCE:?} (and \
             'short-lived' is empty: {})",
            get(&ch, "short-lived").await.is_none()
        );
    };
    assert_eq!(expired.delivery.data, b"expires while down");
    let death = first_death(&expired.delivery.properties);
    assert_eq!(text_field(death, "reason"), "expired");
    assert_eq!(text_field(death, "queue"), "short-lived");
    assert!(get(&ch, "short-lived").await.is_none());
    assert!(get(&ch, "dlq").await.is_none(), "dead-lettered once");

    let kept = drain(&ch, "dlq-rejected").await;
    assert_eq!(bodies(&kept), ["rejected"]);
    assert_eq!(
        kept[0].delivery.properties, dead_props,
        "x-death and every other property from before the restart, as they were"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_keeps_running_while_stopped_gracefully() {
    ttl_runs_while_down(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_keeps_running_while_killed() {
    ttl_runs_while_down(Stop::Kill).await;
}

// ---------------------------------------------------------------------------------------
// 5. Delayed messages

fn delayed_args(inner: &str) -> FieldTable {
    table(vec![("x-delayed-type", text(inner))])
}

fn delay(ms: i64, props: BasicProperties) -> BasicProperties {
    props.with_headers(table(vec![("x-delay", AMQPValue::LongLongInt(ms))]))
}

/// `GET /api/scheduled/%2f/{exchange}`.
fn pending(broker: &BrokerProcess, exchange: &str) -> Vec<PendingInfo> {
    let url = format!(
        "{}/api/scheduled/%2f/{exchange}?page_size=10000",
        broker.admin_url()
    );
    let body = ureq::get(&url)
        .set("Authorization", GUEST)
        .timeout(PATIENCE)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .expect("a body");
    let page: warren::http::scheduled::Page =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e} in {body}"));
    page.items
}

/// Basic auth of the default user.
const GUEST: &str = "Basic Z3Vlc3Q6Z3Vlc3Q=";

/// `DELETE /api/scheduled/%2f/{exchange}/{id}`.
fn cancel(broker: &BrokerProcess, exchange: &str, id: u64) {
    let url = format!("{}/api/scheduled/%2f/{exchange}/{id}", broker.admin_url());
    let response = ureq::delete(&url)
        .set("Authorization", GUEST)
        .timeout(PATIENCE)
        .call()
        .unwrap_or_else(|e| panic!("DELETE {url}: {e}"));
    assert_eq!(response.status(), 204, "DELETE {url}");
}

/// A durable delayed exchange "later" (over direct) bound to durable queue "due" with each
/// of `keys`.
async fn delayed_topology(ch: &Channel, keys: &[&str]) {
    declare_exchange(
        ch,
        "later",
        ExchangeKind::Custom("x-delayed-message".into()),
        true,
        delayed_args("direct"),
    )
    .await
    .expect("delayed exchange");
    durable_queue(ch, "due", FieldTable::default()).await;
    for key in keys {
        bind_queue(ch, "due", "later", key, FieldTable::default()).await;
    }
}

fn summary(list: &[PendingInfo]) -> Vec<(String, u64, usize)> {
    list.iter()
        .map(|p| (p.routing_key.clone(), p.due_ms, p.body_size))
        .collect()
}

async fn delayed_messages_keep_their_due_time(stop: Stop) {
    let mut f = Fixture::start("delayed");
    let (conn, ch) = connect(&f.broker).await;
    delayed_topology(&ch, &["soon", "hour", "far"]).await;
    publish(&ch, "later", "soon", b"in 3 s", delay(3_000, persistent())).await;
    publish(
        &ch,
        "later",
        "hour",
        b"in an hour",
        delay(3_600_000, persistent()),
    )
    .await;
    publish(
        &ch,
        "later",
        "far",
        b"in 2^33 ms",
        delay(1 << 33, persistent()),
    )
    .await;
    let before = pending(&f.broker, "later");
    assert_eq!(before.len(), 3, "{before:?}");

    f.bounce(stop);
    drop(conn);
    let after = pending(&f.broker, "later");
    let soon_due = before
        .iter()
        .find(|p| p.routing_key == "soon")
        .expect("listed")
        .due_ms;
    let still_waiting: Vec<_> = summary(&before)
        .into_iter()
        .filter(|(key, ..)| key != "soon")
        .collect();
    let (_conn, ch) = connect(&f.broker).await;
    let fired = wait_get(&ch, "due", Duration::from_secs(3) + PATIENCE).await;
    let arrived = now_ms();
    assert_eq!(fired.delivery.data, b"in 3 s");
    // The broker's clock and ours are the same wall clock; a few ms for rounding.
    assert!(
        arrived + 5 >= soon_due,
        "fired {} ms before it was due",
        soon_due - arrived
    );
    let listed_after: Vec<_> = summary(&after)
        .into_iter()
        .filter(|(key, ..)| key != "soon")
        .collect();
    assert_eq!(
        listed_after, still_waiting,
        "the same due times after the restart"
    );
    assert_eq!(
        summary(&pending(&f.broker, "later")),
        still_waiting,
        "the other two still wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_keep_their_due_time_over_a_graceful_stop() {
    delayed_messages_keep_their_due_time(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_keep_their_due_time_over_a_kill() {
    delayed_messages_keep_their_due_time(Stop::Kill).await;
}

async fn delayed_messages_due_while_down_fire_at_start(stop: Stop) {
    let mut f = Fixture::start("delayed-down");
    let (conn, ch) = connect(&f.broker).await;
    // Published out of due order; each has its own key so the list tells them apart.
    let delays = [
        ("d1500", 1_500),
        ("d1000", 1_000),
        ("d1300", 1_300),
        ("d1100", 1_100),
    ];
    let mut keys: Vec<&str> = delays.iter().map(|(key, _)| *key).collect();
    keys.extend(["cancelled", "transient"]);
    delayed_topology(&ch, &keys).await;
    for (key, ms) in delays {
        publish(&ch, "later", key, key.as_bytes(), delay(ms, persistent())).await;
    }
    publish(
        &ch,
        "later",
        "cancelled",
        b"cancelled",
        delay(1_200, persistent()),
    )
    .await;
    publish(
        &ch,
        "later",
        "transient",
        b"transient",
        delay(1_200, transient()),
    )
    .await;
    let published = Instant::now();
    let listed = pending(&f.broker, "later");
    let cancelled = listed
        .iter()
        .find(|p| p.routing_key == "cancelled")
        .expect("listed");
    cancel(&f.broker, "later", cancelled.id);
    let mut expected: Vec<&PendingInfo> = listed
        .iter()
        .filter(|p| p.routing_key.starts_with('d'))
        .collect();
    expected.sort_by_key(|p| (p.due_ms, p.id));
    let expected: Vec<String> = expected.iter().map(|p| p.routing_key.clone()).collect();

    stop.apply(&mut f.broker);
    drop(conn);
    // Down until well after the last one was due.
    tokio::time::sleep(
        (published + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
    )
    .await;
    f.broker.restart();
    let (_conn, ch) = connect(&f.broker).await;
    let mut fired = Vec::new();
    while fired.len() < expected.len() {
        match try_wait_get(&ch, "due", PATIENCE).await {
            Some(message) => fired.push(message),
            None => panic!(
                "only {:?} of {expected:?} arrived within {PATIENCE:?} of the last; still \
                 pending (admin list): {:?}",
                bodies(&fired),
                summary(&pending(&f.broker, "later"))
            ),
        }
    }
    assert_eq!(bodies(&fired), expected, "in due order");
    // Anything else would have been due already, so it would be there with them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bodies(&drain(&ch, "due").await),
        Vec::<String>::new(),
        "neither the cancelled nor the transient message"
    );
    assert!(
        pending(&f.broker, "later").is_empty(),
        "nothing left pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_due_while_stopped_fire_at_start_in_due_order() {
    delayed_messages_due_while_down_fire_at_start(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_due_while_killed_fire_at_start_in_due_order() {
    delayed_messages_due_while_down_fire_at_start(Stop::Kill).await;
}

// ---------------------------------------------------------------------------------------
// 6. Damaged message log

const LOGGED: usize = 200;

/// Body of the `i`th message: 1 KiB, unique, findable in a segment file.
fn kib_body(i: usize) -> Vec<u8> {
    let mut body = format!("message {i:04}:").into_bytes();
    body.extend((0..1024 - body.len()).map(|j| ((i * 7 + j * 13) % 251) as u8));
    body
}

/// Starts a broker, fills durable queue "log" with [`LOGGED`] persistent 1 KiB messages and
/// stops it gracefully.
async fn filled_log(name: &str) -> Fixture {
    let mut f = Fixture::start(name);
    let (conn, ch) = connect(&f.broker).await;
    durable_queue(&ch, "log", FieldTable::default()).await;
    for i in 0..LOGGED {
        publish(&ch, "", "log", &kib_body(i), persistent()).await;
    }
    f.broker.stop();
    drop(conn);
    f
}

/// The message log's segment files, in name order.
fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let dir = data_dir.join("messages");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no segment files in {}", dir.display());
    found
}

/// Every file under `dir` whose name contains `part`.
fn files_named(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().contains(part) {
                found.push(path);
            }
        }
    }
    found
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// The index of a [`kib_body`], if `body` is exactly one.
fn kib_index(body: &[u8]) -> Option<usize> {
    let digits = body.get(b"message ".len()..b"message 0000".len())?;
    let i: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (i < LOGGED && kib_body(i) == body).then_some(i)
}

/// Empties "log" and returns what it held as message indexes (panics on a body that is not
/// one of ours: a damaged message must never be delivered).
async fn logged_indexes(ch: &Channel) -> Vec<usize> {
    drain(ch, "log")
        .await
        .iter()
        .map(|m| {
            let body = &m.delivery.data;
            kib_index(body).unwrap_or_else(|| {
                panic!(
                    "a message that was never published ({} bytes): {:?}…",
                    body.len(),
                    String::from_utf8_lossy(&body[..32.min(body.len())])
                )
            })
        })
        .collect()
}

/// After a start that repaired the log (and [`logged_indexes`] emptied "log"): the acks
/// stick and new messages are kept over another restart.
async fn log_still_works(f: &mut Fixture) {
    let fresh = [LOGGED - 3, LOGGED - 2, LOGGED - 1];
    let (conn, ch) = connect(&f.broker).await;
    for i in fresh {
        publish(&ch, "", "log", &kib_body(i), persistent()).await;
    }
    f.broker.stop();
    drop(conn);
    f.broker.restart();
    let (_conn, ch) = connect(&f.broker).await;
    assert_eq!(logged_indexes(&ch).await, fresh, "only the new messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_truncated_and_what_precedes_it_is_kept() {
    let mut f = filled_log("torn").await;
    let last = segments(f.dir.path()).pop().expect("a segment");
    let len = std::fs::metadata(&last).expect("segment").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("segment opens");
    file.set_len(len - 10).expect("truncated");
    drop(file);

    f.broker.restart();
    let name = file_name(&last);
    let run = f.broker.run_output();
    assert!(
        run.lines().any(|l| {
            let l_lower = l.to_lowercase();
            l.contains("WARN")
                && l.contains(&name)
                && ["truncat", "torn", "cut"]
                    .iter()
                    .any(|w| l_lower.contains(w))
        }),
        "a warning naming {name} and the truncation (the torn tail cut off)"
    );
    let (conn, ch) = connect(&f.broker).await;
    let recovered = logged_indexes(&ch).await;
    assert_eq!(
        recovered,
        (0..LOGGED - 1).collect::<Vec<_>>(),
        "every message before the torn one"
    );
    drop(conn);
    log_still_works(&mut f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_is_reported_and_set_aside_and_what_precedes_it_is_kept() {
    let mut f = filled_log("bitflip").await;
    let damaged = LOGGED / 2;
    let body = kib_body(damaged);
    let (segment, at) = segments(f.dir.path())
        .into_iter()
        .find_map(|path| {
            let bytes = std::fs::read(&path).expect("segment");
            let at = bytes.windows(body.len()).position(|w| w == body)?;
            Some((path, at))
        })
        .unwrap_or_else(|| panic!("message {damaged}'s body in no segment file"));
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes[at + body.len() / 2] ^= 0x10;
    std::fs::write(&segment, &bytes).expect("written back");

    f.broker.restart();
    let name = file_name(&segment);
    let run = f.broker.run_output();
    assert!(
        run.lines().any(|l| l.contains("ERROR")
            && l.contains(&name)
            && l.to_lowercase().contains("offset")),
        "an error naming {name} and an offset"
    );
    let set_aside = files_named(f.dir.path(), ".damaged");
    assert!(!set_aside.is_empty(), "a *.damaged* file");
    let (conn, ch) = connect(&f.broker).await;
    let recovered = logged_indexes(&ch).await;
    assert_eq!(
        recovered[..damaged.min(recovered.len())],
        (0..damaged).collect::<Vec<_>>(),
        "every message before the damaged one, in order"
    );
    assert!(!recovered.contains(&damaged), "not the damaged message");
    assert!(
        recovered.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates: {recovered:?}"
    );
    assert!(f.broker.is_running(), "the broker runs on");
    assert!(!f.broker.output().contains("panicked"));
    drop(conn);
    log_still_works(&mut f).await;
}
