//! Reminders through a delayed exchange: declares an `x-delayed-message` exchange (routing
//! like `direct`) and a queue, schedules a few reminders — three with `x-delay` (1 s, 2.5 s,
//! 4 s, one of them written as a human duration) and one with `x-deliver-at` (an absolute
//! time, epoch milliseconds) — then prints each as it is delivered, with how late it was, and
//! exits once all have arrived.
//!
//! Run it against a local Warren (AMQP on 5672; set `AMQP_URI` for another broker):
//!
//! ```text
//! cargo run -p warren -- --listen 127.0.0.1:5672 &
//! cargo run -p warren-example-delayed-notifications
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

const EXCHANGE: &str = "reminders";
const QUEUE: &str = "reminders.due";

/// Milliseconds since the Unix epoch.
fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::var("AMQP_URI")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let conn = Connection::connect(&uri, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(Default::default()).await?;

    let mut args = FieldTable::default();
    args.insert("x-delayed-type".into(), text("direct"));
    ch.exchange_declare(
        EXCHANGE,
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions::default(),
        args,
    )
    .await?;
    ch.queue_declare(
        QUEUE,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        QUEUE,
        EXCHANGE,
        "user.42",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;

    let start = epoch_ms();
    // (text, header, value, due in ms from start)
    let reminders = [
        (
            "stand up and stretch",
            "x-delay",
            AMQPValue::LongLongInt(1000),
            1000,
        ),
        ("tea is ready", "x-delay", text("2500ms"), 2500),
        ("meeting in 5 minutes", "x-delay", text("4s"), 4000),
        (
            "at an absolute time",
            "x-deliver-at",
            AMQPValue::LongLongInt(start + 3000),
            3000,
        ),
    ];
    for (body, key, value, due_in) in &reminders {
        let mut headers = FieldTable::default();
        headers.insert((*key).into(), value.clone());
        headers.insert("due-ms".into(), AMQPValue::LongLongInt(start + due_in));
        ch.basic_publish(
            EXCHANGE,
            "user.42",
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_headers(headers),
        )
        .await?
        .await?;
        println!("scheduled {body:?} with {key} in {due_in} ms");
    }

    let mut consumer = ch
        .basic_consume(
            QUEUE,
            "reminders",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for _ in 0..reminders.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await?
            .ok_or("consumer ended")??;
        let now = epoch_ms();
        let due = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| match h.inner().get("due-ms") {
                Some(AMQPValue::LongLongInt(ms)) => Some(*ms),
                _ => None,
            })
            .unwrap_or(now);
        println!(
            "+{:>5} ms  {:<24} ({} ms late)",
            now - start,
            String::from_utf8_lossy(&delivery.data),
            now - due
        );
        delivery.ack(BasicAckOptions::default()).await?;
    }
    ch.exchange_delete(EXCHANGE, ExchangeDeleteOptions::default())
        .await?;
    conn.close(200, "done").await?;
    Ok(())
}
