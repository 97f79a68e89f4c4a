//! Publisher confirms and returns: sequence numbers from 1, `multiple` acks, mandatory
//! unroutable messages returned with 312 NO_ROUTE *before* their ack, and confirm mode
//! refusing to mix with tx mode.

use std::collections::BTreeSet;

use amq_protocol::protocol::{AMQPClass, basic, confirm, queue};
use amq_protocol::types::FieldTable as RawTable;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use warren_tests::broker::{TestBroker, assert_exception, unique};
use warren_tests::raw::{
    AMQPProperties, FRAME_BODY, FRAME_HEADER, RawClient, WAIT, publish_method,
};

/// A raw connection with channel 1 in confirm mode and an auto-delete queue declared.
async fn raw_confirming(broker: &TestBroker) -> (RawClient, String) {
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    let q = unique("q");
    c.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: q.as_str().into(),
            passive: false,
            durable: false,
            exclusive: true,
            auto_delete: false,
            nowait: false,
            arguments: RawTable::default(),
        })),
    )
    .await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))) => {}
        other => panic!("expected declare-ok, got {other:?}"),
    }
    c.send_method(
        1,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        })),
    )
    .await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))) => {}
        other => panic!("expected confirm.select-ok, got {other:?}"),
    }
    (c, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_number_publishes_from_1_and_multiple_covers_every_tag_up_to_it() {
    let broker = TestBroker::start().await;
    let (mut c, q) = raw_confirming(&broker).await;
    const N: u64 = 50;
    for i in 0..N {
        c.publish(
            1,
            publish_method("", &q, false),
            AMQPProperties::default(),
            i.to_string().as_bytes(),
            4096,
        )
        .await;
    }
    let mut confirmed = BTreeSet::new();
    while confirmed.len() < N as usize {
        match c.recv_method(WAIT).await {
            Some(AMQPClass::Basic(basic::AMQPMethod::Ack(ack))) => {
                // `multiple` confirms every outstanding tag up to this one.
                if ack.multiple {
                    confirmed.extend(1..=ack.delivery_tag);
                } else {
                    assert!(confirmed.insert(ack.delivery_tag), "acked twice");
                }
            }
            other => panic!("expected basic.ack, got {other:?}"),
        }
    }
    assert_eq!(confirmed, (1..=N).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_unroutable_message_is_returned_with_312_before_its_ack() {
    let broker = TestBroker::start().await;
    let (mut c, q) = raw_confirming(&broker).await;
    // 1: routable; 2: unroutable and mandatory; 3: routable.
    c.publish(
        1,
        publish_method("", &q, true),
        AMQPProperties::default(),
        b"one",
        4096,
    )
    .await;
    let nowhere = unique("nowhere");
    c.publish(
        1,
        publish_method("", &nowhere, true),
        AMQPProperties::default(),
        b"two",
        4096,
    )
    .await;
    c.publish(
        1,
        publish_method("", &q, true),
        AMQPProperties::default(),
        b"three",
        4096,
    )
    .await;
    let mut events = Vec::new();
    let mut acked = BTreeSet::new();
    while acked.len() < 3 {
        let f = c
            .recv_frame(WAIT)
            .await
            .unwrap_or_else(|| panic!("no frame after {events:?}"));
        match f.method() {
            Some(AMQPClass::Basic(basic::AMQPMethod::Ack(ack))) => {
                // Acks may come out of order (an unroutable message needs no queue); a
                // `multiple` ack confirms every outstanding tag up to its own.
                let tags: Vec<u64> = if ack.multiple {
                    (1..=ack.delivery_tag).collect()
                } else {
                    vec![ack.delivery_tag]
                };
                for t in tags {
                    if acked.insert(t) {
                        events.push(format!("ack {t}"));
                    }
                }
            }
            Some(AMQPClass::Basic(basic::AMQPMethod::Return(r))) => {
                assert_eq!(r.reply_code, 312);
                assert_eq!(r.reply_text.as_str(), "NO_ROUTE");
                assert_eq!(r.exchange.as_str(), "");
                assert_eq!(r.routing_key.as_str(), nowhere);
                let h = c.recv_frame(WAIT).await.expect("content header");
                assert_eq!(h.kind, FRAME_HEADER);
                assert_eq!(h.header().expect("a header").body_size, 3);
                let b = c.recv_frame(WAIT).await.expect("content body");
                assert_eq!((b.kind, b.payload.as_slice()), (FRAME_BODY, &b"two"[..]));
                events.push("return".to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let ret = events.iter().position(|e| e == "return").expect("returned");
    let ack2 = events.iter().position(|e| e == "ack 2").expect("acked");
    assert!(
        ret < ack2,
        "basic.return must precede its basic.ack: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_sees_the_return_attached_to_the_ack() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    ch.confirm_select(Default::default()).await.unwrap();
    let confirmation = ch
        .basic_publish(
            "",
            &unique("nowhere"),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirmation.is_ack(), "unroutable is still acked");
    let returned = confirmation.take_message().expect("the return came first");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.data, b"lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routable_and_non_mandatory_publishes_are_acked_without_returns() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    ch.confirm_select(Default::default()).await.unwrap();
    let q = unique("q");
    ch.queue_declare(
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let routable = ch
        .basic_publish(
            "",
            &q,
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            b"here",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(routable, Confirmation::Ack(None));
    let dropped = ch
        .basic_publish(
            "",
            &unique("nowhere"),
            BasicPublishOptions::default(),
            b"gone",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(dropped, Confirmation::Ack(None));
    assert!(ch.wait_for_confirms().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_without_confirms_is_still_returned() {
    let broker = TestBroker::start().await;
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    let nowhere = unique("nowhere");
    c.publish(
        1,
        publish_method("amq.direct", &nowhere, true),
        AMQPProperties::default(),
        b"x",
        4096,
    )
    .await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Basic(basic::AMQPMethod::Return(r))) => {
            assert_eq!((r.reply_code, r.reply_text.as_str()), (312, "NO_ROUTE"));
            assert_eq!(r.exchange.as_str(), "amq.direct");
            assert_eq!(r.routing_key.as_str(), nowhere);
        }
        other => panic!("expected basic.return, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_select_on_a_transactional_channel_is_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    ch.tx_select().await.unwrap();
    assert_exception(
        ch.confirm_select(Default::default()).await,
        406,
        "PRECONDITION_FAILED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_select_on_a_confirming_channel_is_406() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    ch.confirm_select(Default::default()).await.unwrap();
    assert_exception(ch.tx_select().await, 406, "PRECONDITION_FAILED");
}
