//! Helpers shared by the `delayed_*` tests: declaring an `x-delayed-message` exchange,
//! publishing with delay headers, waiting for what is due, and `/api/scheduled` (blocking HTTP
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

/// The management API's URL; panics for an external broker (tests check first).
pub fn admin_url(broker: &TestBroker) -> String {
    broker
        .admin_url()
        .expect("in-process Warren has a management API")
}

/// Why an admin call failed: the status and `error` text the server answered with (0 when
/// it could not be reached).
#[derive(Debug)]
pub struct AdminError {
    /// HTTP status.
    pub status: u16,
    /// The server's error text, or why the call failed.
    pub message: String,
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

/// One admin call (blocking, so run it on a blocking thread): the body of a 2xx answer.
fn admin_call(method: &str, url: &str) -> Result<String, AdminError> {
    let failed = |message: String| AdminError { status: 0, message };
    match ureq::request(method, url)
        .set("Authorization", &crate::management::basic("guest", "guest"))
        .call()
    {
        Ok(answer) => answer.into_string().map_err(|e| failed(e.to_string())),
        Err(ureq::Error::Status(status, answer)) => {
            let body = answer.into_string().unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| Some(v.get("reason")?.as_str()?.to_owned()))
                .unwrap_or(body);
            Err(AdminError { status, message })
        }
        Err(e) => Err(failed(e.to_string())),
    }
}

/// `{admin}/api/scheduled/%2f/{x}` with the exchange name percent-encoded.
fn exchange_url(admin: &str, x: &str) -> String {
    format!(
        "{}/api/scheduled/%2f/{}",
        admin.trim_end_matches('/'),
        crate::management::segment(x)
    )
}

async fn admin_json<T: serde::de::DeserializeOwned + Send + 'static>(url: String) -> T {
    tokio::task::spawn_blocking(move || {
        let body = admin_call("GET", &url).expect("admin call");
        serde_json::from_str(&body).expect("admin JSON")
    })
    .await
    .expect("admin call")
}

/// Pending count of exchange `x` from `GET /api/scheduled` (0 if not listed).
pub async fn pending_count(admin: &str, x: &str) -> usize {
    let url = format!("{}/api/scheduled", admin.trim_end_matches('/'));
    let counts: Vec<warren::http::scheduled::ScheduledCount> = admin_json(url).await;
    counts
        .into_iter()
        .find(|c| c.exchange == x)
        .map_or(0, |c| c.pending)
}

/// `GET /api/scheduled/%2f/{x}` (one page, as large as the server serves).
pub async fn pending_list(admin: &str, x: &str) -> Vec<warren::broker::PendingInfo> {
    let page: warren::http::scheduled::Page =
        admin_json(format!("{}?page_size=10000", exchange_url(admin, x))).await;
    page.items
}

/// `DELETE /api/scheduled/%2f/{x}/{id}`: whether it was cancelled.
pub async fn cancel(admin: &str, x: &str, id: u64) -> Result<(), AdminError> {
    let url = format!("{}/{id}", exchange_url(admin, x));
    tokio::task::spawn_blocking(move || admin_call("DELETE", &url).map(drop))
        .await
        .expect("admin call")
}
