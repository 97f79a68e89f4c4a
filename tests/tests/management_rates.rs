//! Message statistics through the management API, checked against what clients did over
//! AMQP: exact counts on a queue, its exchanges, the publishing and consuming channels and
//! connections, the vhost and the overview, in RabbitMQ's `message_stats` shape; rates that
//! rise while traffic flows and fall back to zero after; node totals that do not go down when
//! a channel closes or a queue is deleted; and a refused bad sample window.
//!
//! Every test runs its own broker, sampled every 200 ms, so the node's totals are the test's.
//! Counts are read as they are (not sampled); where the broker handles something after the
//! client's call returns (an ack, an expiry) the test waits for it to show, never for a time.

#![cfg(feature = "in-process")]

use std::time::{Duration, Instant};

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ExchangeDeclareOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::Value;
use warren_tests::broker::{PATIENCE, TestBroker, next_delivery, unique};
use warren_tests::management::{Http, segment};
use warren_tests::queues::{args, bind, confirming, expiring, publish_to, string};

async fn start() -> TestBroker {
    TestBroker::start_with(|c| c.stats_interval = Duration::from_millis(200)).await
}

/// `stats[key]` as a number (a missing key is 0, as RabbitMQ's readers treat it).
fn count(stats: &Value, key: &str) -> u64 {
    stats.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn rate(stats: &Value, key: &str) -> f64 {
    stats[format!("{key}_details")]["rate"]
        .as_f64()
        .unwrap_or_else(|| panic!("{key}_details.rate missing in {stats}"))
}

/// GETs `path` until `ready` holds of its body; the body. Panics after [`PATIENCE`].
async fn until(http: &Http, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = http.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        if ready(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not get there within {PATIENCE:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn queue_path(q: &str) -> String {
    format!("/api/queues/%2F/{}", segment(q))
}

fn exchange_path(x: &str) -> String {
    format!("/api/exchanges/%2F/{}", segment(x))
}

async fn declare_exchange(ch: &Channel, kind: ExchangeKind) -> String {
    let x = unique("x");
    ch.exchange_declare(
        &x,
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    x
}

async fn declare_queue(ch: &Channel, arguments: FieldTable) -> String {
    let q = unique("q");
    ch.queue_declare(&q, QueueDeclareOptions::default(), arguments)
        .await
        .expect("queue.declare");
    q
}

/// The one channel of the connection whose channel `message_stats` has `key` > 0.
fn channel_with(channels: &Value, key: &str) -> Value {
    let found: Vec<&Value> = channels
        .as_array()
        .expect("a list")
        .iter()
        .filter(|c| count(&c["message_stats"], key) > 0)
        .collect();
    assert_eq!(found.len(), 1, "one channel with {key}: {channels}");
    found[0]["message_stats"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_on_queue_exchanges_channels_connections_vhost_and_overview_are_exact() {
    let broker = start().await;
    let http = Http::guest(&broker);
    let (_publisher, pch) = confirming(&broker).await;
    let dlx = declare_exchange(&pch, ExchangeKind::Fanout).await;
    let dlq = declare_queue(&pch, FieldTable::default()).await;
    bind(&pch, &dlq, &dlx, "").await;
    let x = declare_exchange(&pch, ExchangeKind::Direct).await;
    let q = declare_queue(&pch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    bind(&pch, &q, &x, "k").await;

    // One message expires into the dead-letter queue before anyone consumes.
    assert!(
        publish_to(&pch, &x, "k", b"soon", expiring("1"))
            .await
            .is_ack()
    );
    until(&http, &queue_path(&dlq), |b| b["messages"] == 1).await;
    // Five routed, one returned (mandatory, routes nowhere).
    for i in 0..5u8 {
        assert!(
            publish_to(&pch, &x, "k", &[i], BasicProperties::default())
                .await
                .is_ack()
        );
    }
    let returned = pch
        .basic_publish(
            &x,
            "nowhere",
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(returned.take_message().is_some(), "returned");

    // Consumed with manual acks on another connection, then one get and one empty get.
    let (_consumer, cch) = broker.channel().await;
    let mut deliveries = cch
        .basic_consume(
            &q,
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for _ in 0..5 {
        let d = next_delivery(&mut deliveries).await;
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    cch.basic_cancel("c", Default::default())
        .await
        .expect("cancel");
    assert!(
        publish_to(&pch, &x, "k", b"got", BasicProperties::default())
            .await
            .is_ack()
    );
    let got = cch
        .basic_get(&q, BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .expect("a message");
    got.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert!(
        cch.basic_get(&q, BasicGetOptions { no_ack: false })
            .await
            .expect("get")
            .is_none()
    );

    let queue = until(&http, &queue_path(&q), |b| {
        count(&b["message_stats"], "ack") == 6
    })
    .await;
    let s = &queue["message_stats"];
    for (key, n) in [
        ("publish", 7),
        ("deliver", 5),
        ("deliver_no_ack", 0),
        ("get", 1),
        ("get_no_ack", 0),
        ("deliver_get", 6),
        ("redeliver", 0),
        ("ack", 6),
        ("expired", 1),
        ("dead_lettered", 1),
        ("dead_lettered_expired", 1),
    ] {
        assert_eq!(count(s, key), n, "queue {key}: {s}");
    }
    assert!(s["publish_details"]["rate"].is_f64(), "{s}");
    let (_, dlq_shown) = http.get(&queue_path(&dlq)).await;
    assert_eq!(count(&dlq_shown["message_stats"], "publish"), 1);

    let (_, exchange) = http.get(&exchange_path(&x)).await;
    let s = &exchange["message_stats"];
    assert_eq!(
        (count(s, "publish_in"), count(s, "publish_out")),
        (8, 7),
        "{s}"
    );
    let (_, dead_letters) = http.get(&exchange_path(&dlx)).await;
    let s = &dead_letters["message_stats"];
    assert_eq!(
        (count(s, "publish_in"), count(s, "publish_out")),
        (1, 1),
        "{s}"
    );

    let (_, channels) = http.get("/api/channels").await;
    let publishing = channel_with(&channels, "publish");
    for (key, n) in [
        ("publish", 8),
        ("publish_confirm", 8),
        ("routed", 7),
        ("confirm", 8),
        ("return_unroutable", 1),
        ("drop_unroutable", 0),
        ("deliver_get", 0),
    ] {
        assert_eq!(
            count(&publishing, key),
            n,
            "publishing channel {key}: {publishing}"
        );
    }
    let consuming = channel_with(&channels, "deliver");
    for (key, n) in [
        ("publish", 0),
        ("deliver", 5),
        ("get", 1),
        ("get_empty", 1),
        ("deliver_get", 6),
        ("ack", 6),
    ] {
        assert_eq!(
            count(&consuming, key),
            n,
            "consuming channel {key}: {consuming}"
        );
    }

    let (_, connections) = http.get("/api/connections").await;
    let connections = connections.as_array().expect("a list").clone();
    assert_eq!(connections.len(), 2);
    let total = |key: &str| -> u64 {
        connections
            .iter()
            .map(|c| count(&c["message_stats"], key))
            .sum()
    };
    assert_eq!((total("publish"), total("deliver_get")), (8, 6));
    for c in &connections {
        for key in ["recv_oct", "send_oct", "recv_cnt", "send_cnt"] {
            assert!(count(c, key) > 0, "{key} counted: {c}");
        }
        assert!(c["recv_oct_details"]["rate"].is_f64(), "{c}");
    }

    let (_, overview) = http.get("/api/overview").await;
    let s = &overview["message_stats"];
    for (key, n) in [
        ("publish", 8),
        ("confirm", 8),
        ("return_unroutable", 1),
        ("deliver_get", 6),
        ("get_empty", 1),
        ("ack", 6),
        ("expired", 1),
        ("dead_lettered", 1),
    ] {
        assert_eq!(count(s, key), n, "overview {key}: {s}");
    }
    let (_, vhost) = http.get("/api/vhosts/%2F").await;
    let s = &vhost["message_stats"];
    assert_eq!((count(s, "publish"), count(s, "ack")), (8, 6), "{s}");
    assert!(
        count(&overview["churn_rates"], "queue_created") == 2,
        "{}",
        overview["churn_rates"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_rate_rises_while_messages_flow_and_falls_to_zero_after() {
    let broker = start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let q = declare_queue(&ch, FieldTable::default()).await;
    let flowing = tokio::spawn({
        let ch = ch.clone();
        let q = q.clone();
        async move {
            loop {
                publish_to(&ch, "", &q, b"m", BasicProperties::default()).await;
            }
        }
    });
    let overview = until(&http, "/api/overview", |b| {
        rate(&b["message_stats"], "publish") > 0.0
    })
    .await;
    assert!(count(&overview["message_stats"], "publish") > 0);
    until(&http, &queue_path(&q), |b| {
        rate(&b["message_stats"], "publish") > 0.0 && rate(b, "messages") > 0.0
    })
    .await;
    let windowed = until(
        &http,
        "/api/overview?msg_rates_age=60&msg_rates_incr=1",
        |b| {
            b["message_stats"]["publish_details"]["samples"]
                .as_array()
                .is_some_and(|s| s.len() >= 2)
        },
    )
    .await;
    let details = &windowed["message_stats"]["publish_details"];
    let stamps: Vec<u64> = details["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| s["timestamp"].as_u64().expect("a timestamp"))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] > w[1]),
        "newest first: {stamps:?}"
    );
    assert!(
        details["avg_rate"].is_f64() && details["avg"].is_f64(),
        "{details}"
    );

    flowing.abort();
    let _ = flowing.await;
    until(&http, "/api/overview", |b| {
        rate(&b["message_stats"], "publish") == 0.0
    })
    .await;
    until(&http, &queue_path(&q), |b| {
        rate(&b["message_stats"], "publish") == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_totals_do_not_drop_when_a_channel_closes_or_a_queue_is_deleted() {
    let broker = start().await;
    let http = Http::guest(&broker);
    let (conn, ch) = confirming(&broker).await;
    let q = declare_queue(&ch, FieldTable::default()).await;
    for _ in 0..3 {
        publish_to(&ch, "", &q, b"m", BasicProperties::default()).await;
    }
    // One message dies of TTL in the queue: counted on the queue, then on the node.
    publish_to(&ch, "", &q, b"short", expiring("1")).await;
    let (_, ch2) = broker.channel().await;
    assert!(
        ch2.basic_get(&q, BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .is_some()
    );
    let before = until(&http, "/api/overview", |b| {
        count(&b["message_stats"], "expired") == 1
    })
    .await;
    let s = &before["message_stats"];
    assert_eq!((count(s, "publish"), count(s, "get_no_ack")), (4, 1), "{s}");

    ch.close(200, "done").await.expect("channel.close");
    ch2.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    let after = until(&http, "/api/overview", |b| {
        count(&b["churn_rates"], "channel_closed") >= 1
            && count(&b["churn_rates"], "queue_deleted") >= 1
    })
    .await;
    let s = &after["message_stats"];
    for (key, n) in [
        ("publish", 4),
        ("confirm", 4),
        ("get_no_ack", 1),
        ("expired", 1),
    ] {
        assert_eq!(
            count(s, key),
            n,
            "overview {key} after the close and delete: {s}"
        );
    }
    conn.close(200, "done").await.expect("connection.close");
    let gone = until(&http, "/api/overview", |b| {
        count(&b["churn_rates"], "connection_closed") >= 1
    })
    .await;
    assert_eq!(count(&gone["message_stats"], "publish"), 4, "{gone}");
    let (_, vhost) = http.get("/api/vhosts/%2F").await;
    let s = &vhost["message_stats"];
    assert_eq!((count(s, "publish"), count(s, "expired")), (4, 1), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sample_window_is_refused_with_rabbitmqs_error_shape() {
    let broker = start().await;
    let http = Http::guest(&broker);
    for query in [
        "msg_rates_age=60",
        "msg_rates_age=sixty&msg_rates_incr=5",
        "msg_rates_age=60&msg_rates_incr=0",
    ] {
        let (status, body) = http.get(&format!("/api/overview?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "bad_request", "{body}");
        assert!(
            body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("msg_rates")),
            "{body}"
        );
    }
}
