//! Exchange types from loaded libraries, used by a real client: a consistent-hash exchange
//! declared, bound and published to over AMQP, and a plugin that panics while routing a
//! publish — the client gets an error, the broker keeps serving.

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use std::time::Duration;
use warren_tests::broker::{TestBroker, reply_of, unique};
use warren_tests::dylibs;

async fn broker_with_plugins(scenario: &str) -> Option<TestBroker> {
    let dir = dylibs::plugins_dir(
        scenario,
        &[
            "warren-example-consistent-hash",
            "warren-fixture-panicking-plugin",
        ],
    );
    let broker = TestBroker::start_with(|c| c.plugins_dir = Some(dir)).await;
    // The fixture plugin exists only in Warren.
    (!broker.is_external()).then_some(broker)
}

fn custom(name: &str) -> ExchangeKind {
    ExchangeKind::Custom(name.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_hash_exchange_from_a_library_sends_each_message_to_one_queue() {
    let Some(broker) = broker_with_plugins("wire-consistent-hash").await else {
        return;
    };
    let (_conn, ch) = broker.channel().await;
    let x = unique("hash");
    ch.exchange_declare(
        &x,
        custom("x-consistent-hash"),
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("the loaded type can be declared");
    let queues: Vec<String> = (1..=3).map(|i| unique(&format!("ring{i}"))).collect();
    for (weight, q) in queues.iter().enumerate() {
        let opts = QueueDeclareOptions::default();
        ch.queue_declare(q, opts, FieldTable::default())
            .await
            .unwrap();
        let key = (weight + 1).to_string();
        ch.queue_bind(
            q,
            &x,
            &key,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    // A weight that is not a positive integer is the plugin's 406, closing the channel.
    let bad = ch
        .queue_bind(
            &queues[0],
            &x,
            "heavy",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(reply_of(&bad.expect_err("refused")).0, 406);

    let ch = broker.connect().await.create_channel().await.unwrap();
    const MESSAGES: usize = 300;
    for i in 0..MESSAGES {
        let key = format!("order-{i}");
        ch.basic_publish(
            &x,
            &key,
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let mut total = 0;
    for q in &queues {
        let mut consumer = ch
            .basic_consume(
                q,
                "",
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(300), consumer.next()).await
        {
            delivery.expect("a delivery");
            total += 1;
        }
    }
    assert_eq!(
        total, MESSAGES,
        "every message reached exactly one of the three queues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_panic_while_routing_fails_that_publish_and_the_broker_keeps_serving() {
    let Some(broker) = broker_with_plugins("wire-panicking").await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let (x, q) = (unique("panicky"), unique("q"));
    ch.exchange_declare(
        &x,
        custom("x-panicking"),
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        &q,
        &x,
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    ch.basic_publish(
        &x,
        "boom",
        BasicPublishOptions::default(),
        b"1",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    // The failure reaches the client as 541 INTERNAL_ERROR naming the plugin's panic.
    let err = ch
        .queue_declare(
            &q,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("the publish that made the plugin panic is answered with an error");
    let (code, text) = reply_of(&err);
    assert_eq!(code, 541, "{text}");
    assert!(text.contains("route exploded on purpose"), "{text}");
    drop(conn);

    // Nothing else is affected: a new connection routes through the same exchange.
    let ch = broker.connect().await.create_channel().await.unwrap();
    ch.basic_publish(
        &x,
        "fine",
        BasicPublishOptions::default(),
        b"2",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery arrives")
        .expect("stream open")
        .expect("a delivery");
    assert_eq!(delivery.data, b"2");
}
