//! Helpers shared by the `delayed_*` tests: declaring an `x-delayed-message` exchange,
//! publishing with delay headers, waiting for what is due, and the admin API (blocking HTTP
//! run off the test's runtime).

use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

use crate::broker::{TestBroker, unique};

/// How long a test waits for a delayed message that is due.
pub const DUE_PATIENCE: Duration = Duration::from_secs(5);

/// Declare arguments naming `inner` as the delayed type.
pub fn delayed_args(inner: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-delayed-type".into(),
        AMQPValue::LongString(LongString::from(inner)),
    );
    args
}

/// Declares a fresh `x-delayed-message` exchange over `inner`; returns its name.
pub async fn delayed_exchange(ch: &Channel, inner: &str) -> String {
    let x = unique("delayed");
    ch.exchange_declare(
        &x,
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions::default(),
        delayed_args(inner),
    )
    .await
    .expect("delayed exchange declare");
    x
}

/// Declares an exclusive server-named queue.
pub async fn queue(ch: &Channel) -> String {
    ch.queue_declare(
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue declare")
    .name()
    .to_string()
}

/// Binds `q` to `x` with `key` and `args`.
pub async fn bind(ch: &Channel, q: &str, x: &str, key: &str, args: FieldTable) {
    ch.queue_bind(q, x, key, QueueBindOptions::default(), args)
        .await
        .expect("bind");
}

/// Headers with one entry.
pub fn header(key: &str, value: AMQPValue) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(key.into(), value);
    t
}

/// Headers `x-delay: ms` (a long).
pub fn delay_ms(ms: i64) -> FieldTable {
    header("x-delay", AMQPValue::LongLongInt(ms))
}

/// Properties carrying `headers`.
pub fn with_headers(headers: FieldTable) -> BasicProperties {
    BasicProperties::default().with_headers(headers)
}

/// Publishes on a confirming channel and waits for the confirm.
pub async fn publish(ch: &Channel, x: &str, key: &str, body: &[u8], props: BasicProperties) {
    let confirm = ch
        .basic_publish(x, key, BasicPublishOptions::default(), body, props)
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack(), "publish confirmed with an ack");
}

/// A channel in confirm mode.
pub async fn confirming(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(Default::default())
        .await
        .expect("confirm.select");
    (conn, ch)
}

/// One message from `q` by basic.get, if any.
pub async fn get(ch: &Channel, q: &str) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(q, BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
}

/// Polls `q` until a message arrives, panicking after [`DUE_PATIENCE`]; returns it and when
/// it arrived.
pub async fn wait_get(ch: &Channel, q: &str) -> (lapin::message::BasicGetMessage, Instant) {
    let deadline = Instant::now() + DUE_PATIENCE;
    loop {
        if let Some(m) = get(ch, q).await {
            return (m, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived in {q} within {DUE_PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts `q` stays empty for `quiet`.
pub async fn assert_empty_for(ch: &Channel, q: &str, quiet: Duration) {
    let until = Instant::now() + quiet;
    while Instant::now() < until {
        if let Some(m) = get(ch, q).await {
            panic!("{q} should be empty, got {:?}", m.delivery.data);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The admin interface's URL; panics for an external broker (tests check first).
pub fn admin_url(broker: &TestBroker) -> String {
    broker
        .admin_url()
        .expect("in-process Warren has an admin interface")
}

/// Pending count of exchange `x` from `GET /api/delayed` (0 if not listed).
pub async fn pending_count(admin: &str, x: &str) -> usize {
    let (admin, x) = (admin.to_owned(), x.to_owned());
    tokio::task::spawn_blocking(move || {
        warren::admin::client::counts(&admin)
            .expect("admin counts")
            .into_iter()
            .find(|c| c.exchange == x)
            .map_or(0, |c| c.pending)
    })
    .await
    .expect("admin call")
}

/// `GET /api/delayed/%2f/{x}`.
pub async fn pending_list(admin: &str, x: &str) -> Vec<warren::broker::PendingInfo> {
    let (admin, x) = (admin.to_owned(), x.to_owned());
    tokio::task::spawn_blocking(move || warren::admin::client::list(&admin, &x))
        .await
        .expect("admin call")
        .expect("admin list")
}

/// `DELETE /api/delayed/%2f/{x}/{id}`: whether it was cancelled.
pub async fn cancel(
    admin: &str,
    x: &str,
    id: u64,
) -> Result<(), warren::admin::client::ClientError> {
    let (admin, x) = (admin.to_owned(), x.to_owned());
    tokio::task::spawn_blocking(move || warren::admin::client::cancel(&admin, &x, id))
        .await
        .expect("admin call")
}
