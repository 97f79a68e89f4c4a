//! Queue expiry (`x-expires`): a queue unused for that long is deleted. Use is a consumer,
//! basic.get, or a (passive or active) redeclare; publishing is not. Messages of an expired
//! queue are not dead-lettered.
//!
//! Whether the queue still exists is probed with a mandatory publish (returned once it is
//! gone), since every other probe would itself count as use.

use std::time::{Duration, Instant};

use lapin::options::{BasicCancelOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use warren_tests::broker::{TestBroker, assert_exception, unique};
use warren_tests::queues::{
    args, assert_empty, bind, confirming, consume, declare, declare_shared, exchange,
    exists_by_publish, get, long, publish, string, wait_deleted,
};

/// Runs `use_queue` every 100 ms for 1.2 s, three times the queue's 400 ms `x-expires`.
async fn keep_using(mut use_queue: impl AsyncFnMut()) {
    let until = Instant::now() + Duration::from_millis(1_200);
    while Instant::now() < until {
        use_queue().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A queue nobody uses is deleted after `x-expires`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_queue_is_deleted_after_x_expires() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = unique("expires");
    declare_shared(&ch, &q, args([("x-expires", long(200))]))
        .await
        .expect("declare");
    wait_deleted(&ch, &q).await;
    let (_c2, probe) = broker.channel().await;
    assert_exception(
        probe
            .queue_declare(
                &q,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    );
}

/// A consumer keeps the queue alive; once it cancels, the queue expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_keeps_the_queue_alive() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    // Connect first: the queue may expire while a slow connection opens.
    let (_c2, cch) = broker.channel().await;
    let q = unique("expires");
    declare_shared(&ch, &q, args([("x-expires", long(300))]))
        .await
        .expect("declare");
    let consumer = consume(&cch, &q).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(exists_by_publish(&ch, &q).await, "alive with a consumer");
    cch.basic_cancel(consumer.tag().as_str(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    wait_deleted(&ch, &q).await;
}

/// basic.get (even on an empty queue) is a use that restarts the timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_resets_the_expiry_timer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    // Connect first: the queue may expire while a slow connection opens.
    let (_c2, user) = broker.channel().await;
    let q = unique("expires");
    declare_shared(&ch, &q, args([("x-expires", long(400))]))
        .await
        .expect("declare");
    keep_using(async || {
        user.basic_get(&q, lapin::options::BasicGetOptions { no_ack: true })
            .await
            .expect("the queue still exists");
    })
    .await;
    assert!(exists_by_publish(&ch, &q).await, "kept alive by basic.get");
    wait_deleted(&ch, &q).await;
}

/// An active redeclare is a use that restarts the timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclare_resets_the_expiry_timer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    // Connect first: the queue may expire while a slow connection opens.
    let (_c2, user) = broker.channel().await;
    let q = unique("expires");
    declare_shared(&ch, &q, args([("x-expires", long(400))]))
        .await
        .expect("declare");
    keep_using(async || {
        let declared = user
            .queue_declare(
                &q,
                QueueDeclareOptions::default(),
                args([("x-expires", long(400))]),
            )
            .await
            .expect("redeclare");
        assert_eq!(declared.name().as_str(), q);
    })
    .await;
    assert!(exists_by_publish(&ch, &q).await, "kept alive by redeclare");
    wait_deleted(&ch, &q).await;
}

/// A passive redeclare is a use too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_resets_the_expiry_timer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    // Connect first: the queue may expire while a slow connection opens.
    let (_c2, user) = broker.channel().await;
    let q = unique("expires");
    declare_shared(&ch, &q, args([("x-expires", long(400))]))
        .await
        .expect("declare");
    keep_using(async || {
        user.queue_declare(
            &q,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue still exists");
    })
    .await;
    assert!(
        exists_by_publish(&ch, &q).await,
        "kept alive by passive declare"
    );
    wait_deleted(&ch, &q).await;
}

/// Publishing is not a use: a queue that only receives messages still expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_does_not_keep_the_queue_alive() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = unique("expires");
    declare_shared(&ch, &q, args([("x-expires", long(300))]))
        .await
        .expect("declare");
    // Each probe is a publish every 50 ms; the queue goes anyway.
    wait_deleted(&ch, &q).await;
}

/// The messages of an expired queue are not dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_an_expired_queue_are_not_dead_lettered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let dlx = exchange(&ch, ExchangeKind::Fanout).await;
    let dlq = declare(&ch, args([])).await;
    bind(&ch, &dlq, &dlx, "").await;
    let q = unique("expires");
    declare_shared(
        &ch,
        &q,
        args([
            ("x-expires", long(200)),
            ("x-dead-letter-exchange", string(&dlx)),
        ]),
    )
    .await
    .expect("declare");
    publish(&ch, &q, b"one", BasicProperties::default()).await;
    publish(&ch, &q, b"two", BasicProperties::default()).await;
    wait_deleted(&ch, &q).await;
    assert_empty(&ch, &dlq).await;
    assert!(get(&ch, &dlq).await.is_none());
}
