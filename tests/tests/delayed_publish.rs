//! Publishing to a delayed exchange: `mandatory` is judged against the bindings at publish
//! (only a message that routes nowhere now is returned, and it is then never delivered), and
//! publisher confirms ack a message once it is held.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use warren_tests::broker::TestBroker;
use warren_tests::delayed::{
    admin_url, assert_empty_for, bind, confirming, delay_ms, delayed_exchange, pending_count,
    queue, wait_get, with_headers,
};

async fn publish_mandatory(
    ch: &lapin::Channel,
    x: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Confirmation {
    ch.basic_publish(
        x,
        key,
        BasicPublishOptions {
            mandatory: true,
            immediate: false,
        },
        body,
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("confirm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_routable_now_is_not_returned_and_is_delivered_when_due() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    let confirmation = publish_mandatory(&ch, &x, "k", b"m", with_headers(delay_ms(300))).await;
    assert_eq!(confirmation, Confirmation::Ack(None), "acked, no return");
    let (m, _) = wait_get(&ch, &q).await;
    assert_eq!(m.delivery.data, b"m");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_unroutable_now_is_returned_with_312_and_never_delivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let confirmation =
        publish_mandatory(&ch, &x, "nobody", b"lost", with_headers(delay_ms(300))).await;
    assert!(confirmation.is_ack());
    let returned = confirmation
        .take_message()
        .expect("returned before the ack");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.data, b"lost");
    // A binding made before the due time does not resurrect it: it was never held.
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "nobody", FieldTable::default()).await;
    if !broker.is_external() {
        assert_eq!(pending_count(&admin_url(&broker), &x).await, 0);
    }
    assert_empty_for(&ch, &q, Duration::from_millis(700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_ack_once_the_message_is_held() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    let confirmation = ch
        .basic_publish(
            &x,
            "k",
            BasicPublishOptions::default(),
            b"m",
            with_headers(delay_ms(60_000)),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert_eq!(confirmation, Confirmation::Ack(None));
    // The ack came while the message is still pending: it was held, not delivered.
    assert_eq!(pending_count(&admin_url(&broker), &x).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_publishes_are_held_at_commit() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.tx_select().await.expect("tx.select");
    let x = delayed_exchange(&ch, "direct").await;
    let q = queue(&ch).await;
    bind(&ch, &q, &x, "k", FieldTable::default()).await;
    ch.basic_publish(
        &x,
        "k",
        BasicPublishOptions::default(),
        b"m",
        with_headers(delay_ms(200)),
    )
    .await
    .expect("publish");
    assert_eq!(pending_count(&admin_url(&broker), &x).await, 0);
    ch.tx_commit().await.expect("commit");
    assert_eq!(pending_count(&admin_url(&broker), &x).await, 1);
    wait_get(&ch, &q).await;
}
