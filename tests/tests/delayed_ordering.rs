//! Delayed delivery in time: nothing is visible before it is due, and messages arrive in
//! due order (publish order among equal due times), whatever order they were published in.

use std::time::{Duration, Instant};

use lapin::types::FieldTable;
use warren_tests::broker::TestBroker;
use warren_tests::delayed::{
    assert_empty_for, bind, confirming, delay_ms, delayed_exchange, get, publish, queue, wait_get,
    with_headers,
};

#[tokio::test]
async fn nothing_is_visible_before_it_is_due() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    let published = Instant::now();
    publish(&ch, &x, "k", b"later", with_headers(delay_ms(600))).await;
    assert_empty_for(&ch, &q, Duration::from_millis(400)).await;
    let (m, arrived) = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"later");
    assert!(
        arrived.duration_since(published) >= Duration::from_millis(600),
        "arrived before its due time"
    );
}

#[tokio::test]
async fn messages_arrive_in_due_order_not_publish_order() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    for (body, ms) in [("c", 600), ("a", 200), ("b", 400)] {
        publish(&ch, &x, "k", body.as_bytes(), with_headers(delay_ms(ms))).await;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(wait_get(&ch, &q).await.0.delivery.data);
    }
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[tokio::test]
async fn equal_due_times_fire_in_publish_order() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    // One absolute due time for all, so their delays cannot drift apart.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
        + 300;
    let headers =
        warren_tests::delayed::header("x-deliver-at", lapin::types::AMQPValue::LongLongInt(at));
    for i in 0..20 {
        publish(
            &ch,
            &x,
            "k",
            format!("{i}").as_bytes(),
            with_headers(headers.clone()),
        )
        .await;
    }
    let (first, _) = wait_get(&ch, &q).await;
    let mut got = vec![first.delivery.data];
    while got.len() < 20 {
        match get(&ch, &q).await {
            Some(m) => got.push(m.delivery.data),
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let expected: Vec<Vec<u8>> = (0..20).map(|i| format!("{i}").into_bytes()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn zero_negative_and_absent_delays_route_at_once() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    publish(&ch, &x, "k", b"zero", with_headers(delay_ms(0))).await;
    publish(&ch, &x, "k", b"negative", with_headers(delay_ms(-5000))).await;
    publish(&ch, &x, "k", b"absent", Default::default()).await;
    for body in [&b"zero"[..], b"negative", b"absent"] {
        let m = get(&ch, &q).await.expect("routed at publish");
        assert_eq!(m.delivery.data, body);
    }
}
