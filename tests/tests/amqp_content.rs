//! Message content: every basic property and a header table of every field type delivered
//! byte for byte as published, bodies of many frames intact, empty bodies, and the maximum
//! message size (406 beyond it).

use amq_protocol::protocol::{AMQPClass, basic, queue};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use lapin::{BasicProperties, Channel};
use warren_tests::broker::{Exceptions, TestBroker, next_delivery, unique};
use warren_tests::raw::{
    AMQPProperties, FRAME_BODY, FRAME_HEADER, RawClient, TuneOk, WAIT, publish_method,
};

fn every_field_type() -> FieldTable {
    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongString("deep".into()));
    nested.insert("n".into(), AMQPValue::LongInt(-7));
    let mut t = FieldTable::default();
    t.insert("bool".into(), AMQPValue::Boolean(true));
    t.insert("i8".into(), AMQPValue::ShortShortInt(-8));
    t.insert("u8".into(), AMQPValue::ShortShortUInt(200));
    t.insert("i16".into(), AMQPValue::ShortInt(-1600));
    t.insert("u16".into(), AMQPValue::ShortUInt(60000));
    t.insert("i32".into(), AMQPValue::LongInt(-320_000));
    t.insert("u32".into(), AMQPValue::LongUInt(4_000_000_000));
    t.insert("i64".into(), AMQPValue::LongLongInt(-6_400_000_000));
    t.insert("f32".into(), AMQPValue::Float(1.5));
    t.insert("f64".into(), AMQPValue::Double(-2.25));
    t.insert(
        "decimal".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 12345,
        }),
    );
    t.insert(
        "string".into(),
        AMQPValue::LongString(LongString::from("héllo wörld")),
    );
    t.insert(
        "array".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::LongInt(1),
            AMQPValue::LongString("two".into()),
            AMQPValue::Boolean(false),
        ])),
    );
    t.insert("timestamp".into(), AMQPValue::Timestamp(1_700_000_000));
    t.insert("table".into(), AMQPValue::FieldTable(nested));
    t.insert("void".into(), AMQPValue::Void);
    t.insert(
        "bytes".into(),
        AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255])),
    );
    t
}

fn every_property() -> AMQPProperties {
    AMQPProperties::default()
        .with_content_type(ShortString::from("application/x-test"))
        .with_content_encoding(ShortString::from("identity"))
        .with_headers(every_field_type())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id(ShortString::from("corr-1"))
        .with_reply_to(ShortString::from("reply-queue"))
        .with_expiration(ShortString::from("600000"))
        .with_message_id(ShortString::from("msg-42"))
        .with_timestamp(1_700_000_123)
        .with_type(ShortString::from("test.kind"))
        .with_user_id(ShortString::from("guest"))
        .with_app_id(ShortString::from("warren-tests"))
}

/// Declares an exclusive queue on raw channel 1 and consumes from it (no-ack).
async fn raw_queue_and_consumer(c: &mut RawClient) -> String {
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
            arguments: Default::default(),
        })),
    )
    .await;
    c.recv_method(WAIT).await.expect("declare-ok");
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: q.as_str().into(),
            consumer_tag: "raw".into(),
            no_local: false,
            no_ack: true,
            exclusive: false,
            nowait: false,
            arguments: Default::default(),
        })),
    )
    .await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))) => {}
        other => panic!("expected consume-ok, got {other:?}"),
    }
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_and_headers_are_delivered_byte_for_byte() {
    let broker = TestBroker::start().await;
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    let q = raw_queue_and_consumer(&mut c).await;
    let body = b"the body";
    let sent_header = warren_tests::raw::header_bytes(1, body.len() as u64, every_property());
    c.publish(
        1,
        publish_method("", &q, false),
        every_property(),
        body,
        4096,
    )
    .await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Basic(basic::AMQPMethod::Deliver(d))) => {
            assert_eq!(d.routing_key.as_str(), q);
            assert!(!d.redelivered);
        }
        other => panic!("expected basic.deliver, got {other:?}"),
    }
    let header = c.recv_frame(WAIT).await.expect("content header");
    assert_eq!(header.kind, FRAME_HEADER);
    assert_eq!(
        header.payload,
        sent_header[7..sent_header.len() - 1],
        "the content header payload (class, weight, size, flags, properties) must be \
         delivered exactly as published"
    );
    let body_frame = c.recv_frame(WAIT).await.expect("body");
    assert_eq!(
        (body_frame.kind, body_frame.payload.as_slice()),
        (FRAME_BODY, &body[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_gets_back_every_property_it_sent() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    let q = exclusive_queue(&ch).await;
    let props: BasicProperties = every_property();
    ch.basic_publish("", &q, BasicPublishOptions::default(), b"p", props.clone())
        .await
        .unwrap();
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
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.properties, props);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_many_frames_arrives_intact_when_consumed_and_got() {
    let broker = TestBroker::start().await;
    let (_c, ch) = broker.channel().await;
    ch.confirm_select(Default::default()).await.unwrap();
    let q = exclusive_queue(&ch).await;
    // 1 MiB + 3: eight-plus frames at the default frame_max, the last one partial.
    let body: Vec<u8> = (0..(1 << 20) + 3).map(|i: u32| (i % 251) as u8).collect();
    for _ in 0..2 {
        ch.basic_publish(
            "",
            &q,
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let got = ch
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    assert!(got.delivery.data == body, "basic.get body differs");
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
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data.len(), body.len());
    assert!(d.data == body, "consumed body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_split_into_tiny_frames_is_reassembled() {
    let broker = TestBroker::start().await;
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    let q = raw_queue_and_consumer(&mut c).await;
    let body: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    c.publish(
        1,
        publish_method("", &q, false),
        AMQPProperties::default(),
        &body,
        7,
    )
    .await;
    c.recv_method(WAIT).await.expect("deliver");
    let h = c.recv_frame(WAIT).await.expect("header");
    assert_eq!(h.header().expect("header").body_size, 1000);
    let mut got = Vec::new();
    while got.len() < body.len() {
        let f = c.recv_frame(WAIT).await.expect("body frame");
        assert_eq!(f.kind, FRAME_BODY);
        got.extend(f.payload);
    }
    assert_eq!(got, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_respect_the_negotiated_frame_max() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(warren_tests::raw::PROTOCOL_HEADER).await;
    c.expect_start().await;
    let tune = c.login("guest", "guest").await.expect("login");
    c.tune_ok(TuneOk {
        channel_max: tune.channel_max,
        frame_max: 8192,
        heartbeat: 0,
    })
    .await;
    c.open_vhost("/").await;
    c.recv_method(WAIT).await.expect("open-ok");
    c.open_channel(1).await;
    let q = raw_queue_and_consumer(&mut c).await;
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    c.publish(
        1,
        publish_method("", &q, false),
        AMQPProperties::default(),
        &body,
        8192 - 8,
    )
    .await;
    c.recv_method(WAIT).await.expect("deliver");
    c.recv_frame(WAIT).await.expect("header");
    let mut got = Vec::new();
    while got.len() < body.len() {
        let f = c.recv_frame(WAIT).await.expect("body frame");
        assert_eq!(f.kind, FRAME_BODY);
        assert!(
            f.payload.len() + 8 <= 8192,
            "a {}-byte frame exceeds the negotiated frame_max 8192",
            f.payload.len() + 8
        );
        got.extend(f.payload);
    }
    assert_eq!(got, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_body_is_delivered_with_no_body_frame() {
    let broker = TestBroker::start().await;
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    let q = raw_queue_and_consumer(&mut c).await;
    c.publish(
        1,
        publish_method("", &q, false),
        AMQPProperties::default(),
        b"",
        4096,
    )
    .await;
    c.publish(
        1,
        publish_method("", &q, false),
        AMQPProperties::default(),
        b"next",
        4096,
    )
    .await;
    c.recv_method(WAIT).await.expect("deliver");
    let h = c.recv_frame(WAIT).await.expect("header");
    assert_eq!(h.header().expect("header").body_size, 0);
    // The next frame is the second delivery, not an empty body frame.
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Basic(basic::AMQPMethod::Deliver(_))) => {}
        other => panic!("expected the next basic.deliver, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_maximum_message_size_closes_the_channel_with_406() {
    const MAX: usize = 64 * 1024;
    let broker = TestBroker::start_with(|cfg| cfg.max_message_size = MAX).await;
    if broker.is_external() {
        eprintln!("skipped: needs Warren with a small max_message_size");
        return;
    }
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(Default::default()).await.unwrap();
    let q = exclusive_queue(&ch).await;
    ch.basic_publish(
        "",
        &q,
        BasicPublishOptions::default(),
        &vec![1u8; MAX],
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .expect("exactly the maximum is accepted");
    let mut exceptions = Exceptions::watch(&conn);
    let _ = ch
        .basic_publish(
            "",
            &q,
            BasicPublishOptions::default(),
            &vec![1u8; MAX + 1],
            BasicProperties::default(),
        )
        .await;
    let (code, text) = exceptions.next().await;
    assert_eq!(code, 406, "{text}");
    assert!(text.starts_with("PRECONDITION_FAILED"), "{text}");
    // Only the channel closed.
    let ch2 = conn
        .create_channel()
        .await
        .expect("the connection survives");
    let got = ch2
        .basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message at the limit was enqueued");
    assert_eq!(got.delivery.data.len(), MAX);
}

async fn exclusive_queue(ch: &Channel) -> String {
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
    q
}
