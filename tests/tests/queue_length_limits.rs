//! Length limits: `x-max-length` (messages) and `x-max-length-bytes` (body bytes), with
//! `x-overflow` `drop-head` (default: the oldest is dropped and dead-lettered as `maxlen`),
//! `reject-publish` (the new message is refused: nacked in confirm mode, dropped otherwise)
//! and `reject-publish-dlx` (refused and dead-lettered). Only ready messages count.

use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::{BasicProperties, Channel, ExchangeKind};
use warren_tests::broker::{QUIET, TestBroker, next_delivery};
use warren_tests::queues::{
    args, assert_empty, bind, confirming, consume, count, declare, drain, exchange, long, publish,
    publish_to, string, wait_count, wait_get, x_death,
};

/// A fanout exchange with one queue bound: a place for dead letters to land.
async fn dead_letter_target(ch: &Channel) -> (String, String) {
    let dlx = exchange(ch, ExchangeKind::Fanout).await;
    let dlq = declare(ch, args([])).await;
    bind(ch, &dlq, &dlx, "").await;
    (dlx, dlq)
}

/// Publishes through the default exchange and returns the confirm.
async fn try_publish(ch: &Channel, q: &str, body: &[u8]) -> Confirmation {
    publish_to(ch, "", q, body, BasicProperties::default()).await
}

/// `x-max-length` with the default overflow drops the oldest messages to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_drops_the_oldest_by_default() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-length", long(2))])).await;
    for body in ["1", "2", "3", "4"] {
        publish(&ch, &q, body.as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(count(&ch, &q).await, 2);
    assert_eq!(drain(&ch, &q).await, ["3", "4"]);
}

/// Messages dropped from the head are dead-lettered with reason `maxlen`, oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_dead_letters_the_dropped_message_as_maxlen() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-max-length", long(1)),
            ("x-overflow", string("drop-head")),
            ("x-dead-letter-exchange", string(&dlx)),
        ]),
    )
    .await;
    for body in ["old", "mid", "new"] {
        publish(&ch, &q, body.as_bytes(), BasicProperties::default()).await;
    }
    let first = wait_get(&ch, &dlq).await;
    assert_eq!(first.data, b"old");
    assert_eq!(
        x_death(&first.properties)[0].summary(),
        (1, "maxlen", q.as_str(), "", vec![q.as_str()], None)
    );
    assert_eq!(wait_get(&ch, &dlq).await.data, b"mid");
    assert_eq!(drain(&ch, &q).await, ["new"]);
}

/// `x-max-length-bytes` counts body bytes: the oldest go until the total fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_bytes_drops_the_oldest_until_the_bodies_fit() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-length-bytes", long(10))])).await;
    for body in ["aaaa", "bbbb", "cccc"] {
        publish(&ch, &q, body.as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(count(&ch, &q).await, 2);
    assert_eq!(drain(&ch, &q).await, ["bbbb", "cccc"]);
}

/// `x-max-length-bytes` dead-letters what it drops as `maxlen` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_bytes_dead_letters_as_maxlen() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-max-length-bytes", long(5)),
            ("x-dead-letter-exchange", string(&dlx)),
        ]),
    )
    .await;
    publish(&ch, &q, b"12345", BasicProperties::default()).await;
    publish(&ch, &q, b"67", BasicProperties::default()).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"12345");
    assert_eq!(x_death(&dead.properties)[0].reason, "maxlen");
    assert_eq!(drain(&ch, &q).await, ["67"]);
}

/// `reject-publish`: a full queue refuses new messages, nacked to a confirm-mode publisher;
/// what is queued stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_nacks_when_full() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(
        &ch,
        args([
            ("x-max-length", long(2)),
            ("x-overflow", string("reject-publish")),
        ]),
    )
    .await;
    assert!(try_publish(&ch, &q, b"1").await.is_ack());
    assert!(try_publish(&ch, &q, b"2").await.is_ack());
    assert!(try_publish(&ch, &q, b"3").await.is_nack(), "third refused");
    assert_eq!(drain(&ch, &q).await, ["1", "2"]);
    assert!(
        try_publish(&ch, &q, b"4").await.is_ack(),
        "room again once drained"
    );
}

/// `reject-publish` without confirms drops the new message silently; the channel stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_without_confirms_drops_silently() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = declare(
        &ch,
        args([
            ("x-max-length", long(1)),
            ("x-overflow", string("reject-publish")),
        ]),
    )
    .await;
    for body in ["kept", "dropped-1", "dropped-2"] {
        ch.basic_publish(
            "",
            &q,
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    // No confirms to wait for: RabbitMQ's passive declare can overtake unconfirmed publishes.
    wait_count(&ch, &q, 1).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(count(&ch, &q).await, 1, "channel still open, one message");
    assert_eq!(drain(&ch, &q).await, ["kept"]);
}

/// `reject-publish` refuses without dead-lettering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_does_not_dead_letter() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-max-length", long(1)),
            ("x-overflow", string("reject-publish")),
            ("x-dead-letter-exchange", string(&dlx)),
        ]),
    )
    .await;
    assert!(try_publish(&ch, &q, b"1").await.is_ack());
    assert!(try_publish(&ch, &q, b"2").await.is_nack());
    assert_empty(&ch, &dlq).await;
}

/// `reject-publish-dlx` refuses the new message (nack) and dead-letters it as `maxlen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_dlx_nacks_and_dead_letters_the_refused_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-max-length", long(1)),
            ("x-overflow", string("reject-publish-dlx")),
            ("x-dead-letter-exchange", string(&dlx)),
        ]),
    )
    .await;
    assert!(try_publish(&ch, &q, b"in").await.is_ack());
    assert!(try_publish(&ch, &q, b"out").await.is_nack());
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"out");
    assert_eq!(
        x_death(&dead.properties)[0].summary(),
        (1, "maxlen", q.as_str(), "", vec![q.as_str()], None)
    );
    assert_eq!(drain(&ch, &q).await, ["in"]);
}

/// `reject-publish` on one queue does not stop the other queues the message routes to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_other_queues_still_get_the_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let x = exchange(&ch, ExchangeKind::Fanout).await;
    let full = declare(
        &ch,
        args([
            ("x-max-length", long(1)),
            ("x-overflow", string("reject-publish")),
        ]),
    )
    .await;
    let open = declare(&ch, args([])).await;
    bind(&ch, &full, &x, "").await;
    bind(&ch, &open, &x, "").await;
    publish_to(&ch, &x, "", b"1", BasicProperties::default()).await;
    publish_to(&ch, &x, "", b"2", BasicProperties::default()).await;
    assert_eq!(drain(&ch, &full).await, ["1"]);
    assert_eq!(drain(&ch, &open).await, ["1", "2"]);
}

/// Only ready messages count toward the limit: a delivered, unacked message leaves room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_do_not_count_toward_max_length() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let q = declare(
        &ch,
        args([
            ("x-max-length", long(1)),
            ("x-overflow", string("reject-publish")),
        ]),
    )
    .await;
    assert!(try_publish(&ch, &q, b"1").await.is_ack());
    let cch = conn.create_channel().await.expect("second channel");
    let mut consumer = consume(&cch, &q).await;
    let unacked = next_delivery(&mut consumer).await;
    assert_eq!(unacked.data, b"1");
    cch.basic_cancel(consumer.tag().as_str(), Default::default())
        .await
        .expect("cancel");
    assert!(
        try_publish(&ch, &q, b"2").await.is_ack(),
        "room: 1 is unacked"
    );
    assert!(
        try_publish(&ch, &q, b"3").await.is_nack(),
        "full: 2 is ready"
    );
    assert_eq!(count(&ch, &q).await, 1);
}

/// Only ready bytes count toward `x-max-length-bytes`: with drop-head, an unacked message is
/// neither counted nor dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_do_not_count_toward_max_length_bytes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let q = declare(&ch, args([("x-max-length-bytes", long(4))])).await;
    publish(&ch, &q, b"aaaa", BasicProperties::default()).await;
    let held = ch
        .basic_get(&q, BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message");
    publish(&ch, &q, b"bbbb", BasicProperties::default()).await;
    assert_eq!(count(&ch, &q).await, 1, "bbbb fits: aaaa is unacked");
    held.delivery.ack(Default::default()).await.expect("ack");
    assert_eq!(drain(&ch, &q).await, ["bbbb"]);
}
