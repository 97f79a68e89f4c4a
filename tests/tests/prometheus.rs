//! The Prometheus endpoint scraped over HTTP: `rabbitmq_prometheus`'s families served with
//! their types in Prometheus text, gauges that follow declared queues, messages,
//! connections and consumers, per-object series labelled by vhost, queue and exchange, the
//! delayed exchanges' pending gauge, the listener in the overview, and a taken port refused
//! at start with the flag named.
//!
//! Counter values after publishing and consuming are checked in `prometheus_counters.rs`.

use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use warren_tests::broker::{TestBroker, unique};
use warren_tests::delayed::{
    admin_url, cancel, confirming, delay_ms, delayed_exchange, pending_list, publish, with_headers,
};
use warren_tests::management::Http;
use warren_tests::prometheus::{Scrape, prometheus_url, scrape, scrape_until};

/// Families `/metrics` must serve, with the type `rabbitmq_prometheus` 3.10 gives them
/// (counters with their `_total`, as the text format writes them).
const FAMILIES: &[(&str, &str)] = &[
    ("rabbitmq_connections", "gauge"),
    ("rabbitmq_channels", "gauge"),
    ("rabbitmq_consumers", "gauge"),
    ("rabbitmq_queues", "gauge"),
    ("rabbitmq_queue_messages_ready", "gauge"),
    ("rabbitmq_queue_messages_unacked", "gauge"),
    ("rabbitmq_queue_messages", "gauge"),
    ("rabbitmq_queue_consumers", "gauge"),
    ("rabbitmq_queue_messages_published_total", "counter"),
    ("rabbitmq_global_consumers", "gauge"),
    ("rabbitmq_global_publishers", "gauge"),
    ("rabbitmq_global_messages_received_total", "counter"),
    ("rabbitmq_global_messages_received_confirm_total", "counter"),
    ("rabbitmq_global_messages_routed_total", "counter"),
    ("rabbitmq_global_messages_delivered_total", "counter"),
    (
        "rabbitmq_global_messages_delivered_consume_auto_ack_total",
        "counter",
    ),
    (
        "rabbitmq_global_messages_delivered_consume_manual_ack_total",
        "counter",
    ),
    (
        "rabbitmq_global_messages_delivered_get_auto_ack_total",
        "counter",
    ),
    (
        "rabbitmq_global_messages_delivered_get_manual_ack_total",
        "counter",
    ),
    ("rabbitmq_global_messages_get_empty_total", "counter"),
    ("rabbitmq_global_messages_redelivered_total", "counter"),
    ("rabbitmq_global_messages_acknowledged_total", "counter"),
    ("rabbitmq_global_messages_confirmed_total", "counter"),
    (
        "rabbitmq_global_messages_unroutable_dropped_total",
        "counter",
    ),
    (
        "rabbitmq_global_messages_unroutable_returned_total",
        "counter",
    ),
    (
        "rabbitmq_global_messages_dead_lettered_expired_total",
        "counter",
    ),
    (
        "rabbitmq_global_messages_dead_lettered_maxlen_total",
        "counter",
    ),
    (
        "rabbitmq_global_messages_dead_lettered_rejected_total",
        "counter",
    ),
    ("rabbitmq_connections_opened_total", "counter"),
    ("rabbitmq_connections_closed_total", "counter"),
    ("rabbitmq_channels_opened_total", "counter"),
    ("rabbitmq_channels_closed_total", "counter"),
    ("rabbitmq_queues_declared_total", "counter"),
    ("rabbitmq_queues_created_total", "counter"),
    ("rabbitmq_queues_deleted_total", "counter"),
    ("rabbitmq_process_resident_memory_bytes", "gauge"),
    ("rabbitmq_resident_memory_limit_bytes", "gauge"),
    ("rabbitmq_process_open_fds", "gauge"),
    ("rabbitmq_process_max_fds", "gauge"),
    ("rabbitmq_disk_space_available_bytes", "gauge"),
    ("rabbitmq_disk_space_available_limit_bytes", "gauge"),
    ("rabbitmq_alarms_memory_used_watermark", "untyped"),
    ("rabbitmq_alarms_free_disk_space_watermark", "untyped"),
    ("rabbitmq_build_info", "untyped"),
    ("rabbitmq_identity_info", "untyped"),
    ("process_start_time_seconds", "gauge"),
];

/// Warren's own families, in both views.
const WARREN_FAMILIES: &[(&str, &str)] = &[
    ("warren_delayed_messages_pending", "gauge"),
    ("warren_delayed_messages_held_total", "counter"),
    ("warren_delayed_messages_fired_total", "counter"),
    ("warren_delayed_messages_cancelled_total", "counter"),
    ("warren_delayed_firing_lateness_seconds", "histogram"),
];

/// The endpoint of an in-process Warren; `None` (the test passes vacuously) for an
/// external broker without `WARREN_TEST_PROMETHEUS`.
fn endpoint(broker: &TestBroker) -> Option<String> {
    let url = prometheus_url(broker);
    if url.is_none() {
        eprintln!("no Prometheus endpoint to scrape: skipped");
    }
    url
}

fn labels_of<'a>(scrape: &'a Scrape, name: &str) -> Vec<Vec<&'a str>> {
    scrape
        .matching(name, &[])
        .into_iter()
        .map(|s| s.labels.iter().map(|(k, _)| k.as_str()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rabbitmq_family_is_served_with_its_type_as_prometheus_text() {
    let broker = TestBroker::start().await;
    let Some(url) = endpoint(&broker) else {
        return;
    };
    let metrics = scrape(&url, "/metrics").await;
    assert!(
        metrics
            .content_type
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        metrics.content_type
    );
    for (name, kind) in FAMILIES {
        assert_eq!(metrics.type_of(name), Some(*kind), "# TYPE of {name}");
        assert!(
            !metrics.matching(name, &[]).is_empty(),
            "{name} has no sample"
        );
    }
    if broker.is_external() {
        return;
    }
    for (name, kind) in WARREN_FAMILIES {
        assert_eq!(metrics.type_of(name), Some(*kind), "# TYPE of {name}");
    }
    // RabbitMQ's labels on the aggregated global counters.
    assert_eq!(
        labels_of(&metrics, "rabbitmq_global_messages_received_total"),
        [["protocol"]]
    );
    assert_eq!(
        labels_of(&metrics, "rabbitmq_global_messages_acknowledged_total"),
        [["protocol", "queue_type"]]
    );
    let strategies: Vec<&str> = metrics
        .matching("rabbitmq_global_messages_dead_lettered_expired_total", &[])
        .iter()
        .flat_map(|s| s.labels.iter())
        .filter(|(k, _)| k == "dead_letter_strategy")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(strategies, ["at_most_once", "disabled"]);
    // The aggregated view sums queues without labels.
    assert_eq!(
        labels_of(&metrics, "rabbitmq_queue_messages_ready"),
        [[""; 0]]
    );
    let histogram = metrics.matching("warren_delayed_firing_lateness_seconds_bucket", &[]);
    assert_eq!(
        histogram.last().map(|s| s.labels.clone()),
        Some(vec![("le".to_owned(), "+Inf".to_owned())])
    );
    let start = metrics.value("process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    assert!(start > 0.0 && start <= now, "started at {start}, now {now}");
    assert!(metrics.value("rabbitmq_process_resident_memory_bytes", &[]) > 0.0);
    assert!(metrics.value("rabbitmq_process_open_fds", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_follow_queues_messages_connections_and_consumers() {
    let broker = TestBroker::start().await;
    let Some(url) = endpoint(&broker) else {
        return;
    };
    if broker.is_external() {
        return; // a shared broker's node-wide gauges count other tests' objects too
    }
    let before = scrape(&url, "/metrics").await;
    assert_eq!(before.value("rabbitmq_queues", &[]), 0.0);
    assert_eq!(before.value("rabbitmq_connections", &[]), 0.0);
    let (conn, ch) = confirming(&broker).await;
    let (q1, q2) = (unique("prom-a"), unique("prom-b"));
    for q in [&q1, &q2] {
        ch.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("queue.declare");
    }
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "", &q1, body, BasicProperties::default()).await;
    }
    publish(&ch, "", &q2, b"x", BasicProperties::default()).await;
    let metrics = scrape_until(&url, "/metrics", |m| {
        m.value("rabbitmq_queue_messages_ready", &[]) == 4.0
    })
    .await;
    assert_eq!(metrics.value("rabbitmq_queues", &[]), 2.0);
    assert_eq!(metrics.value("rabbitmq_queue_messages", &[]), 4.0);
    assert_eq!(metrics.value("rabbitmq_queue_messages_unacked", &[]), 0.0);
    assert_eq!(metrics.value("rabbitmq_connections", &[]), 1.0);
    assert_eq!(metrics.value("rabbitmq_channels", &[]), 1.0);
    assert_eq!(metrics.value("rabbitmq_consumers", &[]), 0.0);

    // A consumer with prefetch 1 holds one message of q1 unacknowledged.
    let consumer_ch = conn.create_channel().await.expect("channel");
    consumer_ch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("basic.qos");
    let _consumer = consumer_ch
        .basic_consume(
            &q1,
            "held",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let metrics = scrape_until(&url, "/metrics", |m| {
        m.value("rabbitmq_queue_messages_unacked", &[]) == 1.0
    })
    .await;
    assert_eq!(metrics.value("rabbitmq_queue_messages_ready", &[]), 3.0);
    assert_eq!(metrics.value("rabbitmq_queue_messages", &[]), 4.0);
    assert_eq!(metrics.value("rabbitmq_consumers", &[]), 1.0);
    assert_eq!(metrics.value("rabbitmq_queue_consumers", &[]), 1.0);
    assert_eq!(
        metrics.value("rabbitmq_global_consumers", &[("protocol", "amqp091")]),
        1.0
    );
    assert_eq!(metrics.value("rabbitmq_channels", &[]), 2.0);

    conn.close(200, "bye").await.expect("connection.close");
    // The unacknowledged message goes back to its queue.
    let metrics = scrape_until(&url, "/metrics", |m| {
        m.value("rabbitmq_connections", &[]) == 0.0
            && m.value("rabbitmq_queue_messages_ready", &[]) == 4.0
    })
    .await;
    assert_eq!(metrics.value("rabbitmq_channels", &[]), 0.0);
    assert_eq!(metrics.value("rabbitmq_consumers", &[]), 0.0);
    assert_eq!(metrics.value("rabbitmq_queue_messages_unacked", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_object_series_are_labelled_by_vhost_and_queue_or_exchange() {
    let broker = TestBroker::start().await;
    let Some(url) = endpoint(&broker) else {
        return;
    };
    let (_conn, ch) = confirming(&broker).await;
    // A quote in a name must come back escaped and whole (RabbitMQ 3.10 writes it raw,
    // which no parser reads: its run names the queue plainly).
    let q = if broker.is_external() {
        unique("prom-q")
    } else {
        unique("prom-q \"quoted\"")
    };
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("queue.declare");
    for body in [b"1", b"2"] {
        publish(&ch, "", &q, body, BasicProperties::default()).await;
    }
    let labels = [("vhost", "/"), ("queue", q.as_str())];
    let per_object = scrape_until(&url, "/metrics/per-object", |m| {
        m.matching("rabbitmq_queue_messages_ready", &labels)
            .first()
            .is_some_and(|s| s.value == 2.0)
    })
    .await;
    assert_eq!(per_object.value("rabbitmq_queue_messages", &labels), 2.0);
    assert_eq!(
        per_object.value("rabbitmq_queue_messages_unacked", &labels),
        0.0
    );
    assert_eq!(per_object.value("rabbitmq_queue_consumers", &labels), 0.0);
    assert_eq!(
        labels_of(&per_object, "rabbitmq_queue_messages_ready")
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        [["vhost", "queue"]],
        "every per-object queue series has exactly vhost and queue"
    );
    if broker.is_external() {
        ch.queue_delete(&q, Default::default())
            .await
            .expect("queue.delete");
        return;
    }
    let x = unique("prom-x");
    ch.exchange_declare(
        &x,
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    let per_object = scrape(&url, "/metrics/per-object").await;
    let exchange = [("vhost", "/"), ("exchange", x.as_str())];
    for family in [
        "warren_exchange_messages_published_in_total",
        "warren_exchange_messages_published_out_total",
    ] {
        assert_eq!(per_object.type_of(family), Some("counter"));
        assert_eq!(per_object.matching(family, &exchange).len(), 1, "{family}");
    }
    // The node's families are in this view too.
    assert_eq!(per_object.value("rabbitmq_queues", &[]), 1.0);
    assert_eq!(per_object.value("rabbitmq_connections", &[]), 1.0);
    // And the aggregated view has no per-queue series.
    let aggregated = scrape(&url, "/metrics").await;
    assert!(
        aggregated
            .samples
            .iter()
            .all(|s| !s.labels.iter().any(|(k, _)| k == "queue")),
        "no queue label in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_message_is_counted_pending_until_cancelled() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return; // Warren's own families
    }
    let Some(url) = endpoint(&broker) else {
        return;
    };
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let labels = [("vhost", "/"), ("exchange", x.as_str())];
    let metrics = scrape(&url, "/metrics").await;
    assert_eq!(
        metrics.value("warren_delayed_messages_pending", &labels),
        0.0
    );
    publish(&ch, &x, "k", b"later", with_headers(delay_ms(3_600_000))).await;
    publish(&ch, &x, "k", b"later", with_headers(delay_ms(3_600_000))).await;
    for path in ["/metrics", "/metrics/per-object"] {
        let metrics = scrape(&url, path).await;
        assert_eq!(
            metrics.value("warren_delayed_messages_pending", &labels),
            2.0,
            "{path}"
        );
    }
    let admin = admin_url(&broker);
    let pending = pending_list(&admin, &x).await;
    cancel(&admin, &x, pending[0].id).await.expect("cancelled");
    let metrics = scrape(&url, "/metrics").await;
    assert_eq!(
        metrics.value("warren_delayed_messages_pending", &labels),
        1.0
    );
    // The other exchanges are not delayed ones and have no pending series.
    assert_eq!(
        metrics
            .matching("warren_delayed_messages_pending", &[])
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_the_prometheus_listener() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        return;
    }
    let port = broker
        .prometheus_url()
        .and_then(|u| u.rsplit(':').next()?.parse::<u64>().ok())
        .expect("a port");
    let (status, overview) = Http::guest(&broker).get("/api/overview").await;
    assert_eq!(status, 200);
    let listeners = overview["listeners"].as_array().expect("listeners");
    let prometheus: Vec<_> = listeners
        .iter()
        .filter(|l| l["protocol"] == "http/prometheus")
        .collect();
    assert_eq!(prometheus.len(), 1, "{listeners:?}");
    assert_eq!(prometheus[0]["port"].as_u64(), Some(port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_prometheus_port_fails_the_start_naming_the_flag() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    let addr = held.local_addr().expect("bound");
    let data_dir = std::env::temp_dir().join(unique("prom-data"));
    let config = warren::server::Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        management_listen: None,
        prometheus_listen: Some(addr),
        data_dir: data_dir.clone(),
        ..Default::default()
    };
    let message = match warren::server::start(config).await {
        Ok(_) => panic!("a taken Prometheus port must stop the start"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_dir_all(&data_dir);
    assert!(
        message.contains(&format!("the Prometheus endpoint on {addr}")),
        "{message}"
    );
    assert!(message.contains("--prometheus-listen"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_path_is_not_found() {
    let broker = TestBroker::start().await;
    let Some(url) = broker.prometheus_url() else {
        return;
    };
    let status =
        tokio::task::spawn_blocking(move || match ureq::get(&format!("{url}/nope")).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{e}"),
        })
        .await
        .expect("the request thread");
    assert_eq!(status, 404);
}
