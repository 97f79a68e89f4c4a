//! The Prometheus counters' exact values after known traffic: what clients published,
//! what was routed, returned, dropped and confirmed; each kind of delivery, redelivery and
//! acknowledgement; messages that died of TTL, of a length limit and of a rejection, split
//! by whether they were dead-lettered; what delayed exchanges held, fired and cancelled
//! and how late they fired; and connections, channels and queues opened and closed.
//!
//! Each test has a broker of its own, so every count is the test's traffic and nothing
//! else. Counts are read by polling: a delivery is counted when its channel has sent it,
//! a moment after the client could see it.

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use warren_tests::broker::{PATIENCE, TestBroker, unique};
use warren_tests::delayed::{
    admin_url, bind, cancel, confirming, delay_ms, delayed_exchange, pending_list, publish, queue,
    wait_get, with_headers,
};
use warren_tests::prometheus::{Scrape, prometheus_url, scrape_until};

const AMQP: (&str, &str) = ("protocol", "amqp091");
const CLASSIC: (&str, &str) = ("queue_type", "rabbit_classic_queue");

/// A broker of the test's own with its endpoint; `None` against an external broker.
async fn own_broker() -> Option<(TestBroker, String)> {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        eprintln!("counts are exact only on a broker of the test's own: skipped");
        return None;
    }
    let url = prometheus_url(&broker).expect("in-process Warren serves Prometheus");
    Some((broker, url))
}

async fn declare(ch: &Channel, args: FieldTable) -> String {
    let q = unique("prom-count");
    ch.queue_declare(&q, QueueDeclareOptions::default(), args)
        .await
        .expect("queue.declare");
    q
}

/// Publishes with `mandatory` on a confirm channel and waits for the broker's ack.
async fn publish_to(ch: &Channel, exchange: &str, key: &str, mandatory: bool) {
    let confirm = ch
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            b"m",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack(), "confirmed with an ack");
}

/// A series and the value it must reach: `(name, labels, value)`.
type Expected<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// Waits until every expected value holds, then returns the scrape.
async fn until_counts(url: &str, path: &str, expected: &[Expected<'_>]) -> Scrape {
    let scrape = scrape_until(url, path, |m| {
        expected.iter().all(|(name, labels, value)| {
            m.matching(name, labels).first().map(|s| s.value) == Some(*value)
        })
    })
    .await;
    for (name, labels, value) in expected {
        assert_eq!(scrape.value(name, labels), *value, "{name}{labels:?}");
    }
    scrape
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_deliveries_and_acks_are_counted_exactly() {
    let Some((broker, url)) = own_broker().await else {
        return;
    };
    let (conn, ch) = confirming(&broker).await;
    let (q1, q2, q3) = (
        declare(&ch, FieldTable::default()).await,
        declare(&ch, FieldTable::default()).await,
        declare(&ch, FieldTable::default()).await,
    );
    for q in [&q1, &q1, &q2, &q3] {
        publish_to(&ch, "", q, false).await;
    }
    publish_to(&ch, "amq.direct", "nowhere", true).await; // returned
    publish_to(&ch, "amq.direct", "nowhere", false).await; // dropped

    // q1: a basic.get acked, a basic.get with no_ack, then get-empty.
    let got = ch
        .basic_get(&q1, BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message");
    ch.basic_ack(got.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .expect("basic.ack");
    let got = ch
        .basic_get(&q1, BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get");
    assert!(got.is_some());
    let empty = ch
        .basic_get(&q1, BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get");
    assert!(empty.is_none());

    // q2: delivered to a consumer, nacked back, redelivered, acked.
    let consuming = conn.create_channel().await.expect("channel");
    consuming
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("basic.qos");
    let mut consumer = consuming
        .basic_consume(
            &q2,
            "manual",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let first = next(&mut consumer).await;
    assert!(!first.redelivered);
    first
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .expect("basic.nack");
    let again = next(&mut consumer).await;
    assert!(again.redelivered);
    again
        .ack(BasicAckOptions::default())
        .await
        .expect("basic.ack");

    // q3: delivered to a no_ack consumer.
    let mut auto = consuming
        .basic_consume(
            &q3,
            "auto",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    next(&mut auto).await;

    let metrics = until_counts(
        &url,
        "/metrics",
        &[
            ("rabbitmq_global_messages_received_total", vec![AMQP], 6.0),
            (
                "rabbitmq_global_messages_received_confirm_total",
                vec![AMQP],
                6.0,
            ),
            ("rabbitmq_global_messages_routed_total", vec![AMQP], 4.0),
            ("rabbitmq_global_messages_confirmed_total", vec![AMQP], 6.0),
            (
                "rabbitmq_global_messages_unroutable_returned_total",
                vec![AMQP],
                1.0,
            ),
            (
                "rabbitmq_global_messages_unroutable_dropped_total",
                vec![AMQP],
                1.0,
            ),
            (
                "rabbitmq_global_messages_delivered_total",
                vec![AMQP, CLASSIC],
                5.0,
            ),
            (
                "rabbitmq_global_messages_delivered_get_manual_ack_total",
                vec![AMQP, CLASSIC],
                1.0,
            ),
            (
                "rabbitmq_global_messages_delivered_get_auto_ack_total",
                vec![AMQP, CLASSIC],
                1.0,
            ),
            (
                "rabbitmq_global_messages_delivered_consume_manual_ack_total",
                vec![AMQP, CLASSIC],
                2.0,
            ),
            (
                "rabbitmq_global_messages_delivered_consume_auto_ack_total",
                vec![AMQP, CLASSIC],
                1.0,
            ),
            (
                "rabbitmq_global_messages_get_empty_total",
                vec![AMQP, CLASSIC],
                1.0,
            ),
            (
                "rabbitmq_global_messages_redelivered_total",
                vec![AMQP, CLASSIC],
                1.0,
            ),
            (
                "rabbitmq_global_messages_acknowledged_total",
                vec![AMQP, CLASSIC],
                2.0,
            ),
            ("rabbitmq_queue_messages_published_total", vec![], 4.0),
            ("rabbitmq_global_publishers", vec![AMQP], 1.0),
        ],
    )
    .await;
    assert_eq!(metrics.value("rabbitmq_queue_messages", &[]), 0.0);
    until_counts(
        &url,
        "/metrics/per-object",
        &[
            (
                "rabbitmq_queue_messages_published_total",
                vec![("vhost", "/"), ("queue", q1.as_str())],
                2.0,
            ),
            (
                "rabbitmq_queue_messages_published_total",
                vec![("vhost", "/"), ("queue", q2.as_str())],
                1.0,
            ),
            (
                "warren_exchange_messages_published_in_total",
                vec![("vhost", "/"), ("exchange", "amq.direct")],
                2.0,
            ),
            (
                "warren_exchange_messages_published_out_total",
                vec![("vhost", "/"), ("exchange", "amq.direct")],
                0.0,
            ),
        ],
    )
    .await;
    // Totals do not go down when the channels that counted them close.
    conn.close(200, "bye").await.expect("connection.close");
    until_counts(
        &url,
        "/metrics",
        &[
            ("rabbitmq_connections", vec![], 0.0),
            ("rabbitmq_global_messages_received_total", vec![AMQP], 6.0),
            (
                "rabbitmq_global_messages_acknowledged_total",
                vec![AMQP, CLASSIC],
                2.0,
            ),
            ("rabbitmq_global_publishers", vec![AMQP], 0.0),
        ],
    )
    .await;
}

async fn next(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the consumer is open")
        .expect("a delivery")
}

fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deaths_are_counted_by_reason_and_by_whether_they_were_dead_lettered() {
    let Some((broker, url)) = own_broker().await else {
        return;
    };
    let (_conn, ch) = confirming(&broker).await;
    // Expired, no dead-letter exchange.
    let mut ttl = FieldTable::default();
    ttl.insert("x-message-ttl".into(), AMQPValue::LongInt(1));
    let expiring = declare(&ch, ttl).await;
    publish_to(&ch, "", &expiring, false).await;
    // Dropped from the head by x-max-length, dead-lettered to amq.fanout.
    let collected = declare(&ch, FieldTable::default()).await;
    ch.queue_bind(
        &collected,
        "amq.fanout",
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind");
    let mut limited = FieldTable::default();
    limited.insert("x-max-length".into(), AMQPValue::LongInt(1));
    limited.insert("x-dead-letter-exchange".into(), long("amq.fanout"));
    let limited = declare(&ch, limited).await;
    publish_to(&ch, "", &limited, false).await;
    publish_to(&ch, "", &limited, false).await;
    // Rejected without requeue, no dead-letter exchange.
    let rejecting = declare(&ch, FieldTable::default()).await;
    publish_to(&ch, "", &rejecting, false).await;
    let got = ch
        .basic_get(&rejecting, BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message");
    ch.basic_reject(
        got.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    )
    .await
    .expect("basic.reject");

    let at_most_once = ("dead_letter_strategy", "at_most_once");
    let disabled = ("dead_letter_strategy", "disabled");
    // Expiry may wait for the queue to be looked at, as RabbitMQ's does: a basic.get makes
    // the queue drop what is due.
    let _ = ch
        .basic_get(&expiring, BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get");
    until_counts(
        &url,
        "/metrics",
        &[
            (
                "rabbitmq_global_messages_dead_lettered_expired_total",
                vec![CLASSIC, disabled],
                1.0,
            ),
            (
                "rabbitmq_global_messages_dead_lettered_expired_total",
                vec![CLASSIC, at_most_once],
                0.0,
            ),
            (
                "rabbitmq_global_messages_dead_lettered_maxlen_total",
                vec![CLASSIC, at_most_once],
                1.0,
            ),
            (
                "rabbitmq_global_messages_dead_lettered_maxlen_total",
                vec![CLASSIC, disabled],
                0.0,
            ),
            (
                "rabbitmq_global_messages_dead_lettered_rejected_total",
                vec![CLASSIC, disabled],
                1.0,
            ),
            (
                "rabbitmq_global_messages_dead_lettered_rejected_total",
                vec![CLASSIC, at_most_once],
                0.0,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_exchanges_count_held_fired_cancelled_and_lateness() {
    let Some((broker, url)) = own_broker().await else {
        return;
    };
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    publish(&ch, &x, "k", b"soon", with_headers(delay_ms(20))).await;
    publish(&ch, &x, "k", b"never", with_headers(delay_ms(3_600_000))).await;
    wait_get(&ch, &q).await;
    let admin = admin_url(&broker);
    let pending = pending_list(&admin, &x).await;
    assert_eq!(pending.len(), 1);
    cancel(&admin, &x, pending[0].id).await.expect("cancelled");
    let labels = vec![("vhost", "/"), ("exchange", x.as_str())];
    let metrics = until_counts(
        &url,
        "/metrics",
        &[
            ("warren_delayed_messages_held_total", labels.clone(), 2.0),
            ("warren_delayed_messages_fired_total", labels.clone(), 1.0),
            (
                "warren_delayed_messages_cancelled_total",
                labels.clone(),
                1.0,
            ),
            ("warren_delayed_messages_pending", labels.clone(), 0.0),
            ("warren_delayed_firing_lateness_seconds_count", vec![], 1.0),
            (
                "warren_delayed_firing_lateness_seconds_bucket",
                vec![("le", "+Inf")],
                1.0,
            ),
        ],
    )
    .await;
    let sum = metrics.value("warren_delayed_firing_lateness_seconds_sum", &[]);
    assert!(sum >= 0.0, "lateness sum {sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_and_queues_opened_and_closed_are_counted() {
    let Some((broker, url)) = own_broker().await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let _second = conn.create_channel().await.expect("channel");
    let q = declare(&ch, FieldTable::default()).await;
    // Declaring it again is one more declaration, not one more queue.
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("queue.declare again");
    let other = declare(&ch, FieldTable::default()).await;
    ch.queue_delete(&other, Default::default())
        .await
        .expect("queue.delete");
    until_counts(
        &url,
        "/metrics",
        &[
            ("rabbitmq_connections_opened_total", vec![], 1.0),
            ("rabbitmq_channels_opened_total", vec![], 2.0),
            ("rabbitmq_queues_declared_total", vec![], 3.0),
            ("rabbitmq_queues_created_total", vec![], 2.0),
            ("rabbitmq_queues_deleted_total", vec![], 1.0),
            ("rabbitmq_connections_closed_total", vec![], 0.0),
        ],
    )
    .await;
    conn.close(200, "bye").await.expect("connection.close");
    until_counts(
        &url,
        "/metrics",
        &[
            ("rabbitmq_connections_closed_total", vec![], 1.0),
            ("rabbitmq_channels_closed_total", vec![], 2.0),
        ],
    )
    .await;
}
