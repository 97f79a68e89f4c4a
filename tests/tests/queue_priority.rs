//! Priority queues: `x-max-priority` and the `priority` property. Higher priorities are
//! delivered first, FIFO within a priority; a priority above the maximum counts as the
//! maximum (kombu/Celery rely on it); a message without a priority is priority 0.

use lapin::options::BasicQosOptions;
use lapin::{BasicProperties, Channel};
use warren_tests::broker::TestBroker;
use warren_tests::queues::{
    args, bodies, collect, confirming, consume, declare, drain, long, priority, publish,
};

/// Publishes each `(body, props)` to `q` in order.
async fn publish_each(ch: &Channel, q: &str, messages: Vec<(&str, BasicProperties)>) {
    for (body, props) in messages {
        publish(ch, q, body.as_bytes(), props).await;
    }
}

/// Higher priorities come out first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_messages_are_fetched_first() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-priority", long(10))])).await;
    publish_each(
        &ch,
        &q,
        vec![
            ("p1", priority(1)),
            ("p5", priority(5)),
            ("p9", priority(9)),
            ("p0", priority(0)),
            ("p10", priority(10)),
        ],
    )
    .await;
    assert_eq!(drain(&ch, &q).await, ["p10", "p9", "p5", "p1", "p0"]);
}

/// Within one priority, messages keep their publish order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_one_priority_stay_fifo() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-priority", long(5))])).await;
    publish_each(
        &ch,
        &q,
        vec![
            ("low-a", priority(1)),
            ("high-a", priority(4)),
            ("low-b", priority(1)),
            ("high-b", priority(4)),
            ("high-c", priority(4)),
            ("low-c", priority(1)),
        ],
    )
    .await;
    assert_eq!(
        drain(&ch, &q).await,
        ["high-a", "high-b", "high-c", "low-a", "low-b", "low-c"]
    );
}

/// A priority above `x-max-priority` counts as the maximum: it does not overtake earlier
/// messages at the maximum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_above_the_maximum_counts_as_the_maximum() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-priority", long(5))])).await;
    publish_each(
        &ch,
        &q,
        vec![
            ("below", priority(4)),
            ("at-max", priority(5)),
            ("way-above", priority(200)),
            ("above", priority(6)),
        ],
    )
    .await;
    assert_eq!(
        drain(&ch, &q).await,
        ["at-max", "way-above", "above", "below"]
    );
}

/// A message without a priority is priority 0: behind priority 1, FIFO with explicit 0s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_without_priority_is_priority_zero() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-priority", long(3))])).await;
    publish_each(
        &ch,
        &q,
        vec![
            ("none-a", BasicProperties::default()),
            ("zero", priority(0)),
            ("one", priority(1)),
            ("none-b", BasicProperties::default()),
        ],
    )
    .await;
    assert_eq!(drain(&ch, &q).await, ["one", "none-a", "zero", "none-b"]);
}

/// A consumer attached after the messages were queued receives them in priority order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_receives_backlog_in_priority_order() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-priority", long(9))])).await;
    publish_each(
        &ch,
        &q,
        vec![
            ("a2", priority(2)),
            ("b7", priority(7)),
            ("c2", priority(2)),
            ("d9", priority(9)),
            ("e7", priority(7)),
        ],
    )
    .await;
    let cch = conn.create_channel().await.expect("second channel");
    cch.basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume(&cch, &q).await;
    let got = collect(&mut consumer, 5).await;
    assert_eq!(bodies(&got), ["d9", "b7", "e7", "a2", "c2"]);
}

/// `x-max-priority` 255 is the largest accepted maximum and orders up to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_priority_255_orders_the_full_range() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-priority", long(255))])).await;
    publish_each(
        &ch,
        &q,
        vec![
            ("p0", priority(0)),
            ("p255", priority(255)),
            ("p128", priority(128)),
        ],
    )
    .await;
    assert_eq!(drain(&ch, &q).await, ["p255", "p128", "p0"]);
}

/// A queue without `x-max-priority` ignores the `priority` property: plain FIFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_without_max_priority_ignores_priorities() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([])).await;
    publish_each(
        &ch,
        &q,
        vec![("first", priority(1)), ("second", priority(9))],
    )
    .await;
    assert_eq!(drain(&ch, &q).await, ["first", "second"]);
}
