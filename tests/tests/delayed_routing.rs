//! Routing of delayed messages happens at fire time, through the inner type and the bindings
//! of that moment: a binding made after publish receives the message, every built-in inner
//! type and a plugin-loaded one work, and the delivered message keeps the exchange, routing
//! key, properties and headers it was published with.

use lapin::options::{BasicConsumeOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, ExchangeKind};
use warren_tests::broker::{TestBroker, next_delivery};
use warren_tests::delayed::{
    bind, confirming, delay_ms, delayed_args, delayed_exchange, header, publish, queue, wait_get,
    with_headers,
};
use warren_tests::dylibs;

#[tokio::test]
async fn a_binding_made_after_publish_receives_the_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    publish(&ch, &x, "k", b"m", with_headers(delay_ms(400))).await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    let (m, _) = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"m");
}

#[tokio::test]
async fn a_binding_removed_before_firing_gets_nothing() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let gone = queue(&ch).await;
    let kept = queue(&ch).await;
    bind(&ch, &gone, &x, "k", FieldTable::default()).await;
    bind(&ch, &kept, &x, "k", FieldTable::default()).await;
    publish(&ch, &x, "k", b"m", with_headers(delay_ms(300))).await;
    ch.queue_unbind(&gone, &x, "k", FieldTable::default())
        .await
        .expect("unbind");
    wait_get(&ch, &kept).await;
    assert!(warren_tests::delayed::get(&ch, &gone).await.is_none());
}

#[tokio::test]
async fn delivery_keeps_exchange_routing_key_properties_and_headers() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "key", FieldTable::default()).await;
    let mut consumer = ch
        .basic_consume(
            &q,
            "c",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut headers = delay_ms(200);
    headers.insert(
        "app".into(),
        AMQPValue::LongString(LongString::from("demo")),
    );
    let props = BasicProperties::default()
        .with_headers(headers)
        .with_content_type(ShortString::from("text/plain"))
        .with_message_id(ShortString::from("id-1"));
    publish(&ch, &x, "key", b"body", props).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.exchange.as_str(), x);
    assert_eq!(d.routing_key.as_str(), "key");
    assert_eq!(d.data, b"body");
    assert_eq!(
        d.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    assert_eq!(
        d.properties.message_id().as_ref().map(|s| s.as_str()),
        Some("id-1")
    );
    let h = d.properties.headers().as_ref().expect("headers kept");
    assert_eq!(h.inner().get("x-delay"), Some(&AMQPValue::LongLongInt(200)));
    assert_eq!(
        h.inner().get("app"),
        Some(&AMQPValue::LongString(LongString::from("demo")))
    );
}

#[tokio::test]
async fn inner_type_direct_routes_by_exact_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let hit = queue(&ch).await;
    let miss = queue(&ch).await;
    bind(&ch, &hit, &x, "a", FieldTable::default()).await;
    bind(&ch, &miss, &x, "b", FieldTable::default()).await;
    publish(&ch, &x, "a", b"m", with_headers(delay_ms(200))).await;
    wait_get(&ch, &hit).await;
    assert!(warren_tests::delayed::get(&ch, &miss).await.is_none());
}

#[tokio::test]
async fn inner_type_fanout_routes_to_every_queue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "fanout").await;
    let q1 = queue(&ch).await;
    let q2 = queue(&ch).await;
    bind(&ch, &q1, &x, "", FieldTable::default()).await;
    bind(&ch, &q2, &x, "other", FieldTable::default()).await;
    publish(&ch, &x, "any", b"m", with_headers(delay_ms(200))).await;
    wait_get(&ch, &q1).await;
    wait_get(&ch, &q2).await;
}

#[tokio::test]
async fn inner_type_topic_matches_patterns() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "topic").await;
    let hit = queue(&ch).await;
    let miss = queue(&ch).await;
    bind(&ch, &hit, &x, "orders.*.eu", FieldTable::default()).await;
    bind(&ch, &miss, &x, "orders.#.us", FieldTable::default()).await;
    publish(&ch, &x, "orders.new.eu", b"m", with_headers(delay_ms(200))).await;
    wait_get(&ch, &hit).await;
    assert!(warren_tests::delayed::get(&ch, &miss).await.is_none());
}

#[tokio::test]
async fn inner_type_headers_matches_message_headers() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "headers").await;
    let hit = queue(&ch).await;
    let miss = queue(&ch).await;
    let mut args = header("kind", AMQPValue::LongString(LongString::from("reminder")));
    args.insert(
        "x-match".into(),
        AMQPValue::LongString(LongString::from("all")),
    );
    bind(&ch, &hit, &x, "", args).await;
    bind(
        &ch,
        &miss,
        &x,
        "",
        header("kind", AMQPValue::LongString(LongString::from("alarm"))),
    )
    .await;
    let mut headers = delay_ms(200);
    headers.insert(
        "kind".into(),
        AMQPValue::LongString(LongString::from("reminder")),
    );
    publish(&ch, &x, "", b"m", with_headers(headers)).await;
    wait_get(&ch, &hit).await;
    assert!(warren_tests::delayed::get(&ch, &miss).await.is_none());
}

#[tokio::test]
async fn inner_type_from_a_plugin_library_routes() {
    let dir = dylibs::plugins_dir(
        "delayed-consistent-hash",
        &["warren-example-consistent-hash"],
    );
    let broker = TestBroker::start_with(|c| c.plugins_dir = Some(dir)).await;
    if broker.is_external() {
        return;
    }
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "x-consistent-hash").await;
    let q = queue(&ch).await;
    // Weight "1": every key hashes onto the only queue.
    bind(&ch, &q, &x, "1", FieldTable::default()).await;
    publish(&ch, &x, "any-key", b"m", with_headers(delay_ms(200))).await;
    let (m, _) = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"m");
}

#[tokio::test]
async fn the_alternate_exchange_receives_what_routes_nowhere_at_fire_time() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let ae = warren_tests::broker::unique("ae");
    ch.exchange_declare(
        &ae,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("ae declare");
    let unrouted = queue(&ch).await;
    bind(&ch, &unrouted, &ae, "", FieldTable::default()).await;
    let x = warren_tests::broker::unique("delayed");
    let mut args = delayed_args("direct");
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(LongString::from(ae.as_str())),
    );
    ch.exchange_declare(
        &x,
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .expect("delayed declare");
    publish(&ch, &x, "nobody", b"m", with_headers(delay_ms(300))).await;
    // Not copied to the alternate exchange at publish (the RabbitMQ plugin does that).
    assert!(warren_tests::delayed::get(&ch, &unrouted).await.is_none());
    let (m, _) = wait_get(&ch, &unrouted).await;
    assert_eq!(m.delivery.data, b"m");
}

#[tokio::test]
async fn exchange_to_exchange_bindings_are_followed_at_fire_time() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let downstream = warren_tests::broker::unique("down");
    ch.exchange_declare(
        &downstream,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.exchange_bind(
        &downstream,
        &x,
        "k",
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.bind");
    let q = queue(&ch).await;
    bind(&ch, &q, &downstream, "", FieldTable::default()).await;
    publish(&ch, &x, "k", b"m", with_headers(delay_ms(200))).await;
    wait_get(&ch, &q).await;
}
