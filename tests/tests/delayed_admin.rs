//! Seeing and cancelling what is scheduled through the admin interface, and deleting a
//! delayed exchange dropping its pending messages.

use std::time::Duration;

use lapin::types::FieldTable;
use warren_tests::broker::TestBroker;
use warren_tests::delayed::{
    admin_url, assert_empty_for, bind, cancel, confirming, delay_ms, delayed_exchange,
    pending_count, pending_list, publish, queue, wait_get, with_headers,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_list_show_pending_messages_by_due_time() {
    let broker = TestBroker::start().await;
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    publish(&ch, &x, "late", b"12345", with_headers(delay_ms(120_000))).await;
    publish(&ch, &x, "early", b"1", with_headers(delay_ms(60_000))).await;
    assert_eq!(pending_count(&admin, &x).await, 2);
    let list = pending_list(&admin, &x).await;
    let summary: Vec<(&str, usize)> = list
        .iter()
        .map(|p| (p.routing_key.as_str(), p.body_size))
        .collect();
    assert_eq!(summary, [("early", 1), ("late", 5)]);
    assert!(list[0].due_ms < list[1].due_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_message_is_never_delivered() {
    let broker = TestBroker::start().await;
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    publish(&ch, &x, "k", b"cancel-me", with_headers(delay_ms(500))).await;
    publish(&ch, &x, "k", b"keep-me", with_headers(delay_ms(600))).await;
    let list = pending_list(&admin, &x).await;
    assert_eq!(list.len(), 2);
    cancel(&admin, &x, list[0].id).await.expect("cancelled");
    assert_eq!(pending_count(&admin, &x).await, 1);
    let (m, _) = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"keep-me");
    assert_empty_for(&ch, &q, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_unknown_id_is_404() {
    let broker = TestBroker::start().await;
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let err = cancel(&admin, &x, 12345)
        .await
        .expect_err("nothing to cancel");
    assert!(err.status == 404, "{err}");
    let err = cancel(&admin, "no-such-exchange", 1)
        .await
        .expect_err("no exchange");
    assert!(
        err.to_string().contains("no exchange 'no-such-exchange'"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_exchange_drops_its_pending_messages() {
    let broker = TestBroker::start().await;
    let admin = admin_url(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    for _ in 0..3 {
        publish(&ch, &x, "k", b"m", with_headers(delay_ms(400))).await;
    }
    assert_eq!(pending_count(&admin, &x).await, 3);
    ch.exchange_delete(&x, Default::default())
        .await
        .expect("delete");
    assert_eq!(pending_count(&admin, &x).await, 0);
    // Recreated under the same name, it starts empty and the old messages never fire.
    ch.exchange_declare(
        &x,
        lapin::ExchangeKind::Custom("x-delayed-message".into()),
        Default::default(),
        warren_tests::delayed::delayed_args("direct"),
    )
    .await
    .expect("redeclare");
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    assert_eq!(pending_count(&admin, &x).await, 0);
    assert_empty_for(&ch, &q, Duration::from_millis(700)).await;
}
