//! Publishing, consuming and acknowledging: round robin, prefetch (per consumer and per
//! channel), ack/nack/reject and requeueing with `redelivered`, basic.get, recover, the
//! errors clients trip on (unknown delivery tag 406, prefetch_size/immediate/recover(false)
//! 540), server-sent basic.cancel, exclusive consumers, single active consumer.

use std::collections::HashMap;

use amq_protocol::protocol::{AMQPClass, basic};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRecoverOptions, BasicRejectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};
use warren_tests::broker::{
    Exceptions, PATIENCE, QUIET, TestBroker, assert_exception, assert_no_delivery, next_delivery,
    unique,
};
use warren_tests::raw::{
    AMQPProperties, FRAME_BODY, FRAME_METHOD, RawClient, frame_bytes, header_bytes, method_payload,
};

async fn queue(ch: &Channel) -> String {
    queue_with(ch, FieldTable::default()).await
}

/// A queue that outlives its consumers (tests that close consumers delete it themselves).
async fn plain_queue(ch: &Channel) -> String {
    let q = unique("q");
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    q
}

async fn queue_with(ch: &Channel, args: FieldTable) -> String {
    let q = unique("q");
    ch.queue_declare(
        &q,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declare");
    q
}

/// Publishes `bodies` to `q` through the default exchange, with confirms so they are
/// enqueued when this returns.
async fn publish_all(ch: &Channel, q: &str, bodies: impl IntoIterator<Item = Vec<u8>>) {
    let mut confirms = Vec::new();
    for body in bodies {
        confirms.push(
            ch.basic_publish(
                "",
                q,
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .expect("publish"),
        );
    }
    for c in confirms {
        c.await.expect("confirm");
    }
}

async fn confirming_channel(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(Default::default()).await.unwrap();
    (conn, ch)
}

async fn consume(ch: &Channel, q: &str) -> Consumer {
    ch.basic_consume(q, "", BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consume")
}

fn numbered(n: u32) -> impl Iterator<Item = Vec<u8>> {
    (0..n).map(|i| i.to_string().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_round_robin_over_consumers() {
    let broker = TestBroker::start().await;
    let (_c, pub_ch) = confirming_channel(&broker).await;
    let q = queue(&pub_ch).await;
    let (_c1, ch1) = broker.channel().await;
    let (_c2, ch2) = broker.channel().await;
    let mut a = consume(&ch1, &q).await;
    let mut b = consume(&ch2, &q).await;
    publish_all(&pub_ch, &q, numbered(10)).await;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        let d = next_delivery(&mut a).await;
        got_a.push(String::from_utf8(d.data.clone()).unwrap());
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
        let d = next_delivery(&mut b).await;
        got_b.push(String::from_utf8(d.data.clone()).unwrap());
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_no_delivery(&mut a).await;
    assert_no_delivery(&mut b).await;
    // Alternating, each consumer in publish order.
    let (evens, odds): (Vec<String>, Vec<String>) = (
        (0..10).step_by(2).map(|i: u32| i.to_string()).collect(),
        (1..10).step_by(2).map(|i: u32| i.to_string()).collect(),
    );
    assert!(
        (got_a == evens && got_b == odds) || (got_a == odds && got_b == evens),
        "a={got_a:?} b={got_b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_channel_publish_order_is_kept() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, numbered(200)).await;
    let mut consumer = ch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..200u32 {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(d.data, i.to_string().into_bytes());
        assert!(!d.redelivered);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_count_per_consumer_is_honoured() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, numbered(5)).await;
    let (_c2, cch) = broker.channel().await;
    cch.basic_qos(2, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut consumer = consume(&cch, &q).await;
    let d0 = next_delivery(&mut consumer).await;
    let d1 = next_delivery(&mut consumer).await;
    assert_no_delivery(&mut consumer).await;
    d0.acker.ack(BasicAckOptions::default()).await.unwrap();
    let d2 = next_delivery(&mut consumer).await;
    assert_eq!(d2.data, b"2");
    assert_no_delivery(&mut consumer).await;
    d1.acker.ack(BasicAckOptions::default()).await.unwrap();
    d2.acker.ack(BasicAckOptions::default()).await.unwrap();
    let d3 = next_delivery(&mut consumer).await;
    let d4 = next_delivery(&mut consumer).await;
    assert_eq!((d3.data, d4.data), (b"3".to_vec(), b"4".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_prefetch_limits_the_whole_channel() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q1 = queue(&ch).await;
    let q2 = queue(&ch).await;
    publish_all(&ch, &q1, numbered(3)).await;
    publish_all(&ch, &q2, numbered(3)).await;
    let (_c2, cch) = broker.channel().await;
    cch.basic_qos(2, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut a = consume(&cch, &q1).await;
    let mut b = consume(&cch, &q2).await;
    // Two unacked in total across both consumers, whichever gets them.
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + QUIET * 2;
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            Some(Ok(d)) = a.next() => held.push(d),
            Some(Ok(d)) = b.next() => held.push(d),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    assert_eq!(
        held.len(),
        2,
        "global prefetch 2 allows two unacked per channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_with_requeue_redelivers_with_redelivered_set() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, [b"again".to_vec()]).await;
    let mut consumer = consume(&ch, &q).await;
    let d = next_delivery(&mut consumer).await;
    assert!(!d.redelivered);
    d.acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, b"again");
    assert!(d.redelivered, "a requeued message comes back redelivered");
    d.acker.ack(BasicAckOptions::default()).await.unwrap();
    assert_no_delivery(&mut consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_with_requeue_redelivers_and_without_requeue_drops() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, [b"r".to_vec()]).await;
    let mut consumer = consume(&ch, &q).await;
    let d = next_delivery(&mut consumer).await;
    d.acker
        .reject(BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let d = next_delivery(&mut consumer).await;
    assert!(d.redelivered);
    d.acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    assert_no_delivery(&mut consumer).await;
    let info = ch
        .queue_declare(
            &q,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(info.message_count(), 0, "rejected without requeue: gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_multiple_acks_every_delivery_up_to_the_tag() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = plain_queue(&ch).await;
    publish_all(&ch, &q, numbered(4)).await;
    let (cconn, cch) = broker.channel().await;
    let mut consumer = consume(&cch, &q).await;
    let mut last = 0;
    for _ in 0..3 {
        last = next_delivery(&mut consumer).await.delivery_tag;
    }
    let fourth = next_delivery(&mut consumer).await;
    cch.basic_ack(last, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    // Closing the channel requeues only the fourth.
    drop(fourth);
    cch.close(200, "done").await.unwrap();
    let msg = ch
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the unacked fourth message is back");
    assert_eq!(msg.delivery.data, b"3");
    assert!(msg.delivery.redelivered);
    assert!(
        ch.basic_get(&q, BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .is_none()
    );
    drop(cconn);
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_multiple_requeues_every_delivery_up_to_the_tag() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, numbered(3)).await;
    let (_c2, cch) = broker.channel().await;
    cch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&cch, &q).await;
    let mut last = 0;
    for _ in 0..3 {
        last = next_delivery(&mut consumer).await.delivery_tag;
    }
    cch.basic_nack(
        last,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .unwrap();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let d = next_delivery(&mut consumer).await;
        assert!(d.redelivered);
        bodies.push(d.data.clone());
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    bodies.sort();
    assert_eq!(bodies, vec![b"0".to_vec(), b"1".to_vec(), b"2".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_requeue_with_redelivered_on_channel_close() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, numbered(2)).await;
    // Keep a consumer on the publishing channel so the auto-delete queue survives.
    let (_c2, cch) = broker.channel().await;
    let mut consumer = consume(&cch, &q).await;
    next_delivery(&mut consumer).await;
    next_delivery(&mut consumer).await;
    let mut keeper = consume(&ch, &q).await;
    cch.close(200, "bye").await.unwrap();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let d = next_delivery(&mut keeper).await;
        assert!(d.redelivered, "requeued on channel close → redelivered");
        bodies.push(d.data.clone());
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(
        bodies,
        vec![b"0".to_vec(), b"1".to_vec()],
        "original order kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_requeue_with_redelivered_on_connection_close() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    // Not auto-delete: its only consumer goes away with the connection.
    let q = plain_queue(&ch).await;
    publish_all(&ch, &q, [b"x".to_vec()]).await;
    let (cconn, cch) = broker.channel().await;
    let mut consumer = consume(&cch, &q).await;
    let d = next_delivery(&mut consumer).await;
    assert!(!d.redelivered);
    cconn.close(200, "bye").await.unwrap();
    let msg = ch
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("requeued on connection close");
    assert_eq!(msg.delivery.data, b"x");
    assert!(msg.delivery.redelivered);
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_returns_a_message_then_get_empty() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    assert!(
        ch.basic_get(&q, BasicGetOptions::default())
            .await
            .unwrap()
            .is_none(),
        "empty queue → get-empty"
    );
    publish_all(&ch, &q, numbered(2)).await;
    let first = ch
        .basic_get(&q, BasicGetOptions::default())
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(first.delivery.data, b"0");
    assert_eq!(first.message_count, 1, "one more remains");
    assert!(!first.delivery.redelivered);
    assert_eq!(first.delivery.routing_key.as_str(), q);
    first
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let second = ch
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(
        (second.delivery.data.as_slice(), second.message_count),
        (&b"1"[..], 0)
    );
    assert!(
        ch.basic_get(&q, BasicGetOptions::default())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_on_a_missing_queue_is_404() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("missing");
    assert_exception(
        ch.basic_get(&q, BasicGetOptions::default()).await,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_with_requeue_redelivers_unacked_messages() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, [b"rec".to_vec()]).await;
    let (_c2, cch) = broker.channel().await;
    let mut consumer = consume(&cch, &q).await;
    let d = next_delivery(&mut consumer).await;
    assert!(!d.redelivered);
    cch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, b"rec");
    assert!(d.redelivered);
    d.acker.ack(BasicAckOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_without_requeue_is_540_not_implemented() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    assert_exception(
        ch.basic_recover(BasicRecoverOptions { requeue: false })
            .await,
        540,
        "NOT_IMPLEMENTED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acking_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let mut errors = Exceptions::watch(&_c);
    ch.basic_ack(99, BasicAckOptions::default()).await.unwrap();
    let (code, text) = errors.next().await;
    assert_eq!(code, 406);
    assert_eq!(text, "PRECONDITION_FAILED - unknown delivery tag 99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acking_a_delivery_twice_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, [b"once".to_vec()]).await;
    let (_c2, cch) = broker.channel().await;
    let mut consumer = consume(&cch, &q).await;
    let d = next_delivery(&mut consumer).await;
    let mut errors = Exceptions::watch(&_c2);
    cch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    cch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let (code, text) = errors.next().await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            d.delivery_tag
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let mut errors = Exceptions::watch(&_c);
    ch.basic_reject(7, BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    assert_eq!(
        errors.next().await,
        (
            406,
            "PRECONDITION_FAILED - unknown delivery tag 7".to_string()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_with_prefetch_size_is_540_not_implemented() {
    let broker = TestBroker::start().await;
    // Neither lapin nor amq-protocol can send a prefetch_size: patch the encoded method.
    let (mut raw, _) = RawClient::open_with_channel(broker.addr()).await;
    let mut payload = method_payload(&AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
        prefetch_count: 10,
        global: false,
    })));
    // class(2) method(2) prefetch-size(4) prefetch-count(2) global(1)
    payload[4..8].copy_from_slice(&1024u32.to_be_bytes());
    raw.send_bytes(&frame_bytes(FRAME_METHOD, 1, &payload))
        .await;
    // RabbitMQ closes the connection (540 is a hard error in the spec); a channel close
    // with 540 would be as clear to a client.
    let (_, code, text) = raw.expect_any_close().await;
    assert_eq!(code, 540, "{text}");
    assert!(text.starts_with("NOT_IMPLEMENTED"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_immediate_is_540_not_implemented() {
    let broker = TestBroker::start().await;
    let (mut raw, _) = RawClient::open_with_channel(broker.addr()).await;
    let q = unique("q");
    raw.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: q.as_str().into(),
            mandatory: false,
            immediate: true,
        })),
    )
    .await;
    raw.send_bytes(&header_bytes(1, 3, AMQPProperties::default()))
        .await;
    raw.send_bytes(&frame_bytes(FRAME_BODY, 1, b"now")).await;
    let (_, code, text) = raw.expect_any_close().await;
    assert_eq!(code, 540, "{text}");
    assert!(text.starts_with("NOT_IMPLEMENTED"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_queue_sends_its_consumers_basic_cancel() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("q");
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut consumer = consume(&ch, &q).await;
    let (_c2, other) = broker.channel().await;
    other
        .queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
    // lapin ends the consumer stream when the server cancels it.
    match tokio::time::timeout(PATIENCE, consumer.next()).await {
        Ok(None) => {}
        other => panic!("expected the consumer to be cancelled, got {other:?}"),
    }
    assert!(!consumer.state().is_active());
    // The channel itself stays usable.
    queue(&ch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_consumer_receives_nothing_more() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = plain_queue(&ch).await;
    let (_c2, cch) = broker.channel().await;
    let mut consumer = cch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish_all(&ch, &q, [b"before".to_vec()]).await;
    assert_eq!(next_delivery(&mut consumer).await.data, b"before");
    cch.basic_cancel(consumer.tag().as_str(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish_all(&ch, &q, [b"after".to_vec()]).await;
    assert_no_delivery(&mut consumer).await;
    let left = ch
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("still in the queue");
    assert_eq!(left.delivery.data, b"after");
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_generates_consumer_tags_when_none_given() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = queue(&ch).await;
    let a = consume(&ch, &q).await;
    let b = consume(&ch, &q).await;
    assert!(a.tag().as_str().starts_with("amq.ctag-"), "{}", a.tag());
    assert_ne!(a.tag(), b.tag());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_consumer_tag_on_a_channel_is_530() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = queue(&ch).await;
    let _first = ch
        .basic_consume(
            &q,
            "dup",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_exception(
        ch.basic_consume(
            &q,
            "dup",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        530,
        "NOT_ALLOWED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_consumer_shuts_out_others_with_403() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = queue(&ch).await;
    let _exclusive = ch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (_c2, ch2) = broker.channel().await;
    assert_exception(
        ch2.basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_from_a_missing_queue_is_404() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = unique("missing");
    assert_exception(
        ch.basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_consumer_messages_need_no_ack() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let q = queue(&ch).await;
    publish_all(&ch, &q, numbered(3)).await;
    let (c2, cch) = broker.channel().await;
    let mut consumer = cch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        next_delivery(&mut consumer).await;
    }
    // Keep the queue alive with another consumer, then close the no-ack one: nothing returns.
    let mut keeper = consume(&ch, &q).await;
    c2.close(200, "bye").await.unwrap();
    assert_no_delivery(&mut keeper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_gets_everything_until_it_cancels() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let mut args = FieldTable::default();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    let q = queue_with(&ch, args).await;
    let (_c1, ch1) = broker.channel().await;
    let (_c2, ch2) = broker.channel().await;
    let mut first = consume(&ch1, &q).await;
    let mut second = consume(&ch2, &q).await;
    publish_all(&ch, &q, numbered(4)).await;
    for i in 0..4u32 {
        let d = next_delivery(&mut first).await;
        assert_eq!(d.data, i.to_string().into_bytes());
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_no_delivery(&mut second).await;
    ch1.basic_cancel(first.tag().as_str(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish_all(&ch, &q, [b"next".to_vec()]).await;
    let d = next_delivery(&mut second).await;
    assert_eq!(d.data, b"next");
    let mut counts: HashMap<bool, u32> = HashMap::new();
    *counts.entry(d.redelivered).or_default() += 1;
    assert_eq!(counts.get(&false), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_of_the_single_active_consumer_go_to_the_next_one() {
    let broker = TestBroker::start().await;
    let (_c, ch) = confirming_channel(&broker).await;
    let mut args = FieldTable::default();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    let q = queue_with(&ch, args).await;
    let (c1, ch1) = broker.channel().await;
    let (_c2, ch2) = broker.channel().await;
    let mut first = consume(&ch1, &q).await;
    let mut second = consume(&ch2, &q).await;
    publish_all(&ch, &q, [b"held".to_vec()]).await;
    next_delivery(&mut first).await;
    c1.close(200, "bye").await.unwrap();
    let d = next_delivery(&mut second).await;
    assert_eq!(d.data, b"held");
    assert!(d.redelivered);
}
