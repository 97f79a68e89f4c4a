//! Transactions: publishes and acks take effect at commit and are discarded at rollback.

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use warren_tests::broker::{TestBroker, assert_exception, next_delivery, unique};

async fn plain_queue(ch: &Channel) -> String {
    let q = unique("q");
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    q
}

async fn ready(ch: &Channel, q: &str) -> u32 {
    ch.queue_declare(
        q,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

async fn publish(ch: &Channel, q: &str, body: &[u8]) {
    ch.basic_publish(
        "",
        q,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_publishes_are_enqueued_only_on_commit() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let (_c2, observer) = broker.channel().await;
    let q = plain_queue(&observer).await;
    ch.tx_select().await.unwrap();
    publish(&ch, &q, b"a").await;
    publish(&ch, &q, b"b").await;
    assert_eq!(ready(&observer, &q).await, 0, "nothing before commit");
    ch.tx_commit().await.unwrap();
    assert_eq!(ready(&observer, &q).await, 2);
    let m = observer
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"a");
    observer
        .queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_rollback_discards_publishes() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = plain_queue(&ch).await;
    ch.tx_select().await.unwrap();
    publish(&ch, &q, b"discard me").await;
    ch.tx_rollback().await.unwrap();
    publish(&ch, &q, b"keep me").await;
    ch.tx_commit().await.unwrap();
    assert_eq!(ready(&ch, &q).await, 1);
    let m = ch
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"keep me");
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_rollback_discards_acks_and_commit_applies_them() {
    let broker = TestBroker::start().await;
    let (_c, setup) = broker.channel().await;
    let q = plain_queue(&setup).await;
    publish(&setup, &q, b"m").await;

    // Rolled-back ack: the message is still unacked, so closing the channel requeues it.
    let (_c1, ch) = broker.channel().await;
    ch.tx_select().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d = next_delivery(&mut consumer).await;
    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    ch.tx_rollback().await.unwrap();
    ch.close(200, "bye").await.unwrap();
    assert_eq!(
        ready(&setup, &q).await,
        1,
        "the rolled-back ack never happened"
    );

    // Committed ack: the message is gone.
    let (_c2, ch) = broker.channel().await;
    ch.tx_select().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d = next_delivery(&mut consumer).await;
    assert!(d.redelivered);
    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    ch.tx_commit().await.unwrap();
    ch.close(200, "bye").await.unwrap();
    assert_eq!(ready(&setup, &q).await, 0, "the committed ack removed it");
    setup
        .queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_commit_without_select_is_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    assert_exception(
        ch.tx_commit().await,
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_rollback_without_select_is_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    assert_exception(
        ch.tx_rollback().await,
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    );
}
