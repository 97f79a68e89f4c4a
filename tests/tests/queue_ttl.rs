//! Message TTL: the `x-message-ttl` queue argument and the per-message `expiration` property,
//! the lower of the two winning; TTL 0 ("deliver now or expire"); the deadline fixed at
//! enqueue and kept across requeue; expired messages never delivered, fetched or counted;
//! and timer-driven expiry of a message stuck behind a longer-lived head.

use std::time::Duration;

use lapin::options::{BasicNackOptions, BasicQosOptions};
use lapin::{BasicProperties, ExchangeKind};
use warren_tests::broker::{TestBroker, assert_no_delivery, next_delivery};
use warren_tests::queues::{
    args, assert_empty, bind, confirming, consume, count, declare, exchange, expiring, get, long,
    publish, string, wait_count, wait_get, x_death,
};

/// A dead-letter target: a fanout exchange with one queue bound, so that expiry can be
/// observed as an arrival. Returns (exchange, queue).
async fn dead_letter_target(ch: &lapin::Channel) -> (String, String) {
    let dlx = exchange(ch, ExchangeKind::Fanout).await;
    let dlq = declare(ch, args([])).await;
    bind(ch, &dlq, &dlx, "").await;
    (dlx, dlq)
}

/// A queue's `x-message-ttl` expires a message nobody takes: it leaves the queue's count and
/// basic.get never returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_expires_an_unconsumed_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-message-ttl", long(200))])).await;
    publish(&ch, &q, b"short-lived", BasicProperties::default()).await;
    wait_count(&ch, &q, 0).await;
    assert!(
        get(&ch, &q).await.is_none(),
        "an expired message is never fetched"
    );
}

/// Once their TTL has passed, messages are no longer counted: the first passive declare
/// after the deadline reports 0, and basic.get finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_not_counted_by_passive_declare() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-message-ttl", long(100))])).await;
    for body in ["a", "b", "c"] {
        publish(&ch, &q, body.as_bytes(), BasicProperties::default()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&ch, &q).await, 0, "expired messages are not counted");
    assert!(get(&ch, &q).await.is_none(), "nor fetched");
}

/// Before its TTL a message is there like any other (counted and fetched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_is_delivered_before_its_ttl() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-message-ttl", long(60_000))])).await;
    publish(&ch, &q, b"fresh", expiring("60000")).await;
    assert_eq!(count(&ch, &q).await, 1);
    assert_eq!(get(&ch, &q).await.expect("fetched").data, b"fresh");
}

/// The per-message `expiration` property expires a message in a queue without a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_expiration_expires_the_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([])).await;
    publish(&ch, &q, b"short-lived", expiring("150")).await;
    publish(&ch, &q, b"forever", BasicProperties::default()).await;
    wait_count(&ch, &q, 1).await;
    assert_eq!(get(&ch, &q).await.expect("survivor").data, b"forever");
}

/// The lower TTL applies: an `expiration` shorter than the queue's TTL expires the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_expiration_shorter_than_queue_ttl_wins() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-message-ttl", long(3_600_000))])).await;
    publish(&ch, &q, b"m", expiring("150")).await;
    wait_count(&ch, &q, 0).await;
    assert!(get(&ch, &q).await.is_none());
}

/// The lower TTL applies: a queue TTL shorter than the message's `expiration` expires it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_shorter_than_message_expiration_wins() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-message-ttl", long(150))])).await;
    publish(&ch, &q, b"m", expiring("3600000")).await;
    wait_count(&ch, &q, 0).await;
    assert!(get(&ch, &q).await.is_none());
}

/// TTL 0: a message reaches a consumer that is waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_zero_delivers_to_a_waiting_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-message-ttl", long(0))])).await;
    let cch = conn.create_channel().await.expect("second channel");
    let mut consumer = consume(&cch, &q).await;
    publish(&ch, &q, b"now", BasicProperties::default()).await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"now");
}

/// Per-message `expiration` "0" likewise reaches a waiting consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiration_zero_delivers_to_a_waiting_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([])).await;
    let cch = conn.create_channel().await.expect("second channel");
    let mut consumer = consume(&cch, &q).await;
    publish(&ch, &q, b"now", expiring("0")).await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"now");
}

/// TTL 0 with nobody to take the message: it expires at once (dead-lettered as `expired`),
/// is never counted and never fetched, and no basic.return is sent (the publish is acked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_zero_without_a_consumer_expires_at_once() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-message-ttl", long(0)),
            ("x-dead-letter-exchange", string(&dlx)),
        ]),
    )
    .await;
    publish(&ch, &q, b"nobody-home", BasicProperties::default()).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"nobody-home");
    assert_eq!(x_death(&dead.properties)[0].reason, "expired");
    assert_eq!(count(&ch, &q).await, 0);
    assert!(get(&ch, &q).await.is_none());
}

/// TTL 0 with a consumer that cannot take the message (its prefetch is full): it expires
/// rather than waiting for the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_zero_expires_when_the_consumer_is_busy() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-message-ttl", long(0)),
            ("x-dead-letter-exchange", string(&dlx)),
        ]),
    )
    .await;
    let cch = conn.create_channel().await.expect("second channel");
    cch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume(&cch, &q).await;
    publish(&ch, &q, b"first", BasicProperties::default()).await;
    let first = next_delivery(&mut consumer).await;
    assert_eq!(first.data, b"first");
    publish(&ch, &q, b"second", BasicProperties::default()).await;
    assert_eq!(wait_get(&ch, &dlq).await.data, b"second");
    assert_no_delivery(&mut consumer).await;
}

/// The deadline is fixed at enqueue and survives a requeue: a message nacked back with
/// requeue=true still expires at its original time, not a full TTL after the requeue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_is_kept_across_requeue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-message-ttl", long(1_500))])).await;
    publish(&ch, &q, b"requeued", BasicProperties::default()).await;
    let d = ch
        .basic_get(&q, lapin::options::BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    d.delivery
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .expect("nack");
    // Enqueued ~1.0 s ago with a 1.5 s TTL: gone by ~1.5 s, long before the 2.5 s a reset
    // deadline would give.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        get(&ch, &q).await.is_none(),
        "the requeued message expired on its original deadline"
    );
    assert_eq!(count(&ch, &q).await, 0);
}

/// A message whose deadline passed while it was unacked expires when it is requeued: it is
/// dead-lettered as `expired`, not redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_requeued_after_its_deadline_expires_instead_of_redelivery() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-message-ttl", long(100)),
            ("x-dead-letter-exchange", string(&dlx)),
        ]),
    )
    .await;
    let cch = conn.create_channel().await.expect("second channel");
    let mut consumer = consume(&cch, &q).await;
    publish(&ch, &q, b"late", BasicProperties::default()).await;
    let d = next_delivery(&mut consumer).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.nack(BasicNackOptions {
        requeue: true,
        multiple: false,
    })
    .await
    .expect("nack");
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"late");
    assert_eq!(x_death(&dead.properties)[0].reason, "expired");
    assert_no_delivery(&mut consumer).await;
}

/// A short-lived message behind a long-lived head is never delivered once its time has
/// passed: fetching the head, the next fetch finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_behind_the_head_is_never_delivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([])).await;
    publish(&ch, &q, b"head", BasicProperties::default()).await;
    publish(&ch, &q, b"behind", expiring("100")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&ch, &q).await.expect("head").data, b"head");
    assert!(
        get(&ch, &q).await.is_none(),
        "the expired message is skipped"
    );
    assert_eq!(count(&ch, &q).await, 0);
}

/// Expiry is timer-driven: a per-message-TTL message stuck behind a longer-lived head, with
/// nobody consuming, is removed and dead-lettered on time while the head stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stuck_behind_a_longer_lived_head_expires_on_time() {
    let broker = TestBroker::start().await;
    // RabbitMQ 3.10 only drops per-message-TTL messages when they reach the head.
    if broker.is_external() {
        return;
    }
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(&ch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    publish(&ch, &q, b"head", expiring("3600000")).await;
    publish(&ch, &q, b"stuck", expiring("100")).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"stuck");
    assert_eq!(x_death(&dead.properties)[0].reason, "expired");
    assert_eq!(count(&ch, &q).await, 1, "only the head is left");
    assert_empty(&ch, &dlq).await;
}

/// TTLs up to ten years are accepted, on the queue and on the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_year_ttls_are_accepted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-message-ttl", long(315_360_000_000))])).await;
    publish(&ch, &q, b"long-lived", expiring("315360000000")).await;
    assert_eq!(get(&ch, &q).await.expect("kept").data, b"long-lived");
}
