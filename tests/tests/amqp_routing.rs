//! Routing as a client sees it: the default exchange's implicit bindings, the built-in types
//! end to end, `alternate-exchange`, exchange-to-exchange bindings, and the CC/BCC headers
//! (BCC never reaches a consumer).

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeBindOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, ExchangeUnbindOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use warren_tests::broker::{TestBroker, unique};

async fn exchange(ch: &Channel, kind: ExchangeKind, args: FieldTable) -> String {
    let x = unique("x");
    ch.exchange_declare(
        &x,
        kind,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("exchange declare");
    x
}

async fn queue(ch: &Channel) -> String {
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

async fn bind(ch: &Channel, q: &str, x: &str, key: &str) {
    ch.queue_bind(
        q,
        x,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
}

/// Publishes with confirms, so routing is done when this returns.
async fn publish(ch: &Channel, x: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(x, key, BasicPublishOptions::default(), body, props)
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

/// Bodies in `q`, drained with basic.get.
async fn drain(ch: &Channel, q: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(q, BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        out.push(m.delivery.data.clone());
    }
    out
}

async fn confirming(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(Default::default()).await.unwrap();
    (conn, ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_exchange_routes_by_queue_name() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming(&broker).await;
    let q = queue(&ch).await;
    publish(&ch, "", &q, b"direct to queue", BasicProperties::default()).await;
    publish(
        &ch,
        "",
        &unique("other"),
        b"nowhere",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(drain(&ch, &q).await, vec![b"direct to queue".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_fanout_topic_and_headers_exchanges_route_end_to_end() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming(&broker).await;

    let direct = exchange(&ch, ExchangeKind::Direct, FieldTable::default()).await;
    let qd = queue(&ch).await;
    bind(&ch, &qd, &direct, "k").await;
    publish(&ch, &direct, "k", b"d1", BasicProperties::default()).await;
    publish(&ch, &direct, "other", b"d2", BasicProperties::default()).await;
    assert_eq!(drain(&ch, &qd).await, vec![b"d1".to_vec()]);

    let fanout = exchange(&ch, ExchangeKind::Fanout, FieldTable::default()).await;
    let (qf1, qf2) = (queue(&ch).await, queue(&ch).await);
    bind(&ch, &qf1, &fanout, "").await;
    bind(&ch, &qf2, &fanout, "ignored").await;
    publish(&ch, &fanout, "any", b"f", BasicProperties::default()).await;
    assert_eq!(drain(&ch, &qf1).await, vec![b"f".to_vec()]);
    assert_eq!(drain(&ch, &qf2).await, vec![b"f".to_vec()]);

    let topic = exchange(&ch, ExchangeKind::Topic, FieldTable::default()).await;
    let (qstar, qhash) = (queue(&ch).await, queue(&ch).await);
    bind(&ch, &qstar, &topic, "a.*.c").await;
    bind(&ch, &qhash, &topic, "a.#").await;
    publish(&ch, &topic, "a.b.c", b"t1", BasicProperties::default()).await;
    publish(&ch, &topic, "a.b.b.c", b"t2", BasicProperties::default()).await;
    publish(&ch, &topic, "b.b.c", b"t3", BasicProperties::default()).await;
    assert_eq!(drain(&ch, &qstar).await, vec![b"t1".to_vec()]);
    assert_eq!(
        drain(&ch, &qhash).await,
        vec![b"t1".to_vec(), b"t2".to_vec()]
    );

    let headers = exchange(&ch, ExchangeKind::Headers, FieldTable::default()).await;
    let (qall, qany) = (queue(&ch).await, queue(&ch).await);
    let mut all = FieldTable::default();
    all.insert("x-match".into(), AMQPValue::LongString("all".into()));
    all.insert("a".into(), AMQPValue::LongString("1".into()));
    all.insert("b".into(), AMQPValue::LongString("2".into()));
    ch.queue_bind(&qall, &headers, "", QueueBindOptions::default(), all)
        .await
        .unwrap();
    let mut any = FieldTable::default();
    any.insert("x-match".into(), AMQPValue::LongString("any".into()));
    any.insert("a".into(), AMQPValue::LongString("1".into()));
    any.insert("b".into(), AMQPValue::LongString("2".into()));
    ch.queue_bind(&qany, &headers, "", QueueBindOptions::default(), any)
        .await
        .unwrap();
    let with = |pairs: &[(&str, &str)]| {
        let mut h = FieldTable::default();
        for (k, v) in pairs {
            h.insert((*k).into(), AMQPValue::LongString((*v).into()));
        }
        BasicProperties::default().with_headers(h)
    };
    publish(&ch, &headers, "", b"both", with(&[("a", "1"), ("b", "2")])).await;
    publish(&ch, &headers, "", b"one", with(&[("a", "1")])).await;
    publish(&ch, &headers, "", b"none", with(&[("a", "2")])).await;
    assert_eq!(drain(&ch, &qall).await, vec![b"both".to_vec()]);
    assert_eq!(
        drain(&ch, &qany).await,
        vec![b"both".to_vec(), b"one".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_exchange_receives_what_the_exchange_cannot_route() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming(&broker).await;
    let ae = exchange(&ch, ExchangeKind::Fanout, FieldTable::default()).await;
    let unrouted = queue(&ch).await;
    bind(&ch, &unrouted, &ae, "").await;
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(LongString::from(ae.as_str())),
    );
    let main = exchange(&ch, ExchangeKind::Direct, args).await;
    let routed = queue(&ch).await;
    bind(&ch, &routed, &main, "known").await;

    publish(&ch, &main, "known", b"routed", BasicProperties::default()).await;
    publish(
        &ch,
        &main,
        "unknown",
        b"alternate",
        BasicProperties::default(),
    )
    .await;
    assert_eq!(drain(&ch, &routed).await, vec![b"routed".to_vec()]);
    assert_eq!(drain(&ch, &unrouted).await, vec![b"alternate".to_vec()]);

    // A mandatory message the alternate exchange routes is not returned.
    let confirmation = ch
        .basic_publish(
            &main,
            "unknown",
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            b"mandatory",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        confirmation.take_message().is_none(),
        "routed via the AE: no return"
    );
    assert_eq!(drain(&ch, &unrouted).await, vec![b"mandatory".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_alternate_exchange_drops_silently() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming(&broker).await;
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(LongString::from(unique("absent").as_str())),
    );
    let main = exchange(&ch, ExchangeKind::Direct, args).await;
    publish(
        &ch,
        &main,
        "unknown",
        b"dropped",
        BasicProperties::default(),
    )
    .await;
    // The channel is still fine.
    queue(&ch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_bindings_route_and_unbind() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming(&broker).await;
    // Not auto-delete: unbinding its only binding must not delete the source.
    let source = unique("x");
    ch.exchange_declare(
        &source,
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let destination = exchange(&ch, ExchangeKind::Fanout, FieldTable::default()).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &destination, "").await;
    ch.exchange_bind(
        &destination,
        &source,
        "logs.#",
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(
        &ch,
        &source,
        "logs.error",
        b"via e2e",
        BasicProperties::default(),
    )
    .await;
    publish(
        &ch,
        &source,
        "metrics.cpu",
        b"not bound",
        BasicProperties::default(),
    )
    .await;
    let got = ch
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("routed through the exchange binding");
    assert_eq!(got.delivery.data, b"via e2e");
    assert_eq!(
        got.delivery.exchange.as_str(),
        source,
        "delivered with the publish exchange"
    );
    assert_eq!(got.delivery.routing_key.as_str(), "logs.error");
    assert!(drain(&ch, &q).await.is_empty());

    ch.exchange_unbind(
        &destination,
        &source,
        "logs.#",
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(
        &ch,
        &source,
        "logs.error",
        b"after unbind",
        BasicProperties::default(),
    )
    .await;
    assert!(drain(&ch, &q).await.is_empty());
    ch.exchange_delete(&source, ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaching_a_queue_by_two_paths_is_delivered_once() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming(&broker).await;
    let source = exchange(&ch, ExchangeKind::Fanout, FieldTable::default()).await;
    let middle = exchange(&ch, ExchangeKind::Fanout, FieldTable::default()).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &source, "").await;
    bind(&ch, &q, &middle, "").await;
    ch.exchange_bind(
        &middle,
        &source,
        "",
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, &source, "", b"once", BasicProperties::default()).await;
    assert_eq!(drain(&ch, &q).await, vec![b"once".to_vec()]);
}

fn keys(list: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(
        list.iter()
            .map(|k| AMQPValue::LongString(LongString::from(*k)))
            .collect::<Vec<_>>(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_and_bcc_headers_add_routing_keys_and_bcc_is_stripped() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming(&broker).await;
    let x = exchange(&ch, ExchangeKind::Direct, FieldTable::default()).await;
    let (qmain, qcc, qbcc, qother) = (
        queue(&ch).await,
        queue(&ch).await,
        queue(&ch).await,
        queue(&ch).await,
    );
    bind(&ch, &qmain, &x, "main").await;
    bind(&ch, &qcc, &x, "cc-key").await;
    bind(&ch, &qbcc, &x, "bcc-key").await;
    bind(&ch, &qother, &x, "other").await;
    let mut headers = FieldTable::default();
    headers.insert("CC".into(), keys(&["cc-key"]));
    headers.insert("BCC".into(), keys(&["bcc-key"]));
    headers.insert("app".into(), AMQPValue::LongString("kept".into()));
    publish(
        &ch,
        &x,
        "main",
        b"copied",
        BasicProperties::default().with_headers(headers),
    )
    .await;
    for q in [&qmain, &qcc, &qbcc] {
        let m = ch
            .basic_get(q, BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{q} gets a copy"));
        assert_eq!(m.delivery.data, b"copied");
        assert_eq!(
            m.delivery.routing_key.as_str(),
            "main",
            "routing key as published"
        );
        let h = m
            .delivery
            .properties
            .headers()
            .clone()
            .expect("headers kept");
        let h = h.inner();
        assert_eq!(h.get("CC"), Some(&keys(&["cc-key"])), "CC stays visible");
        assert!(!h.contains_key("BCC"), "BCC must never reach a consumer");
        assert_eq!(h.get("app"), Some(&AMQPValue::LongString("kept".into())));
    }
    assert!(drain(&ch, &qother).await.is_empty());
}
