//! Connection-level protocol errors a real client never provokes, sent over a raw socket:
//! malformed and oversized frames (501), undecodable methods (502), methods on channels that
//! are not open (504), content out of order (505). Each must close only the offending
//! connection with `connection.close`; a bystander connection keeps working. And the one
//! frame on a finished channel that is not an error: the close-ok a client still owes after
//! its `channel.close` crossed the server's.

use amq_protocol::protocol::{AMQPClass, channel, queue};
use amq_protocol::types::FieldTable;
use warren_tests::broker::{QUIET, TestBroker, unique};
use warren_tests::raw::{
    AMQPProperties, Ending, FRAME_BODY, FRAME_HEARTBEAT, FRAME_METHOD, RawClient, WAIT, encode,
    frame_bytes, header_bytes, method_payload, publish_method,
};

/// Sends `bytes` on a fresh connection with channel 1 open and returns how it ended, after
/// checking that a connection opened beforehand still works and a new one can be made.
async fn provoke(broker: &TestBroker, bytes: &[u8]) -> Ending {
    let (mut bystander, _) = RawClient::open_with_channel(broker.addr()).await;
    let (mut victim, _) = RawClient::open_with_channel(broker.addr()).await;
    victim.send_bytes(bytes).await;
    let end = victim.expect_connection_end(WAIT).await;
    assert!(
        bystander.is_alive(2).await,
        "an unrelated connection must be untouched"
    );
    let (conn, ch) = broker.channel().await;
    ch.queue_declare(
        &unique("after-error"),
        lapin::options::QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("a new connection works");
    conn.close(200, "bye").await.expect("close");
    end
}

#[track_caller]
fn assert_close(end: &Ending, code: u16, text_prefix: &str) {
    match end {
        Ending::Close {
            code: got, text, ..
        } => {
            assert_eq!(*got, code, "reply code (text {text:?})");
            assert!(text.starts_with(text_prefix), "{text:?} vs {text_prefix:?}");
        }
        other => panic!("expected connection.close {code}, got {other:?}"),
    }
}

fn declare(name: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: true,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_with_a_bad_frame_end_closes_with_501() {
    let broker = TestBroker::start().await;
    let mut bytes = encode(&amq_protocol::frame::AMQPFrame::Method(
        1,
        declare(&unique("q")),
    ));
    let last = bytes.len() - 1;
    bytes[last] = 0x00;
    let end = provoke(&broker, &bytes).await;
    assert_close(&end, 501, "FRAME_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_larger_than_frame_max_closes_with_501() {
    let broker = TestBroker::start().await;
    // The default frame_max is 131072: one body frame well above it, inside a valid publish.
    let q = unique("q");
    let mut bytes = encode(&amq_protocol::frame::AMQPFrame::Method(1, declare(&q)));
    bytes.extend(encode(&amq_protocol::frame::AMQPFrame::Method(
        1,
        publish_method("", &q, false),
    )));
    let body = vec![7u8; 300_000];
    bytes.extend(header_bytes(
        1,
        body.len() as u64,
        AMQPProperties::default(),
    ));
    bytes.extend(frame_bytes(FRAME_BODY, 1, &body));
    let end = provoke(&broker, &bytes).await;
    assert_close(&end, 501, "FRAME_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_frame_type_closes_with_501() {
    let broker = TestBroker::start().await;
    let end = provoke(&broker, &frame_bytes(9, 1, b"hello")).await;
    assert_close(&end, 501, "FRAME_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_method_arguments_close_with_501() {
    let broker = TestBroker::start().await;
    let payload = method_payload(&declare(&unique("q")));
    // Class, method, and half of the arguments.
    let cut = &payload[..payload.len() / 2];
    let end = provoke(&broker, &frame_bytes(FRAME_METHOD, 1, cut)).await;
    // RabbitMQ answers an undecodable method with 501 `FRAME_ERROR - cannot decode …`.
    assert_close(&end, 501, "FRAME_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_on_a_channel_never_opened_closes_with_504() {
    let broker = TestBroker::start().await;
    let bytes = encode(&amq_protocol::frame::AMQPFrame::Method(
        7,
        declare(&unique("q")),
    ));
    let end = provoke(&broker, &bytes).await;
    assert_close(&end, 504, "CHANNEL_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_on_a_closed_channel_closes_with_504() {
    let broker = TestBroker::start().await;
    let (mut bystander, _) = RawClient::open_with_channel(broker.addr()).await;
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    c.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "done".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {}
        other => panic!("expected channel.close-ok, got {other:?}"),
    }
    c.send_method(1, declare(&unique("q"))).await;
    let end = c.expect_connection_end(WAIT).await;
    assert_close(&end, 504, "CHANNEL_ERROR");
    assert!(bystander.is_alive(2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_header_without_a_publish_closes_with_505() {
    let broker = TestBroker::start().await;
    let end = provoke(&broker, &header_bytes(1, 3, AMQPProperties::default())).await;
    assert_close(&end, 505, "UNEXPECTED_FRAME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_without_a_header_closes_with_505() {
    let broker = TestBroker::start().await;
    let mut bytes = encode(&amq_protocol::frame::AMQPFrame::Method(
        1,
        publish_method("", "nowhere", false),
    ));
    bytes.extend(frame_bytes(FRAME_BODY, 1, b"abc"));
    let end = provoke(&broker, &bytes).await;
    assert_close(&end, 505, "UNEXPECTED_FRAME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_in_the_middle_of_content_closes_with_505() {
    let broker = TestBroker::start().await;
    let mut bytes = encode(&amq_protocol::frame::AMQPFrame::Method(
        1,
        publish_method("", "nowhere", false),
    ));
    bytes.extend(header_bytes(1, 10, AMQPProperties::default()));
    bytes.extend(frame_bytes(FRAME_BODY, 1, b"12345"));
    bytes.extend(encode(&amq_protocol::frame::AMQPFrame::Method(
        1,
        declare(&unique("q")),
    )));
    let end = provoke(&broker, &bytes).await;
    assert_close(&end, 505, "UNEXPECTED_FRAME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_header_for_a_method_without_content_closes_with_505() {
    let broker = TestBroker::start().await;
    let mut bytes = encode(&amq_protocol::frame::AMQPFrame::Method(
        1,
        declare(&unique("q")),
    ));
    bytes.extend(header_bytes(1, 0, AMQPProperties::default()));
    let end = provoke(&broker, &bytes).await;
    assert_close(&end, 505, "UNEXPECTED_FRAME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_on_a_non_zero_channel_closes_the_connection_with_a_frame_error() {
    let broker = TestBroker::start().await;
    let end = provoke(&broker, &frame_bytes(FRAME_HEARTBEAT, 1, &[])).await;
    // The spec (4.2.7) asks for 501 FRAME_ERROR; RabbitMQ 3.10 answers 505 UNEXPECTED_FRAME
    // ("type 8, all octets = <<>>"). Either is a clean connection-level close.
    match &end {
        Ending::Close {
            code: 501, text, ..
        } => assert!(text.starts_with("FRAME_ERROR"), "{text}"),
        Ending::Close {
            code: 505, text, ..
        } => {
            assert!(text.starts_with("UNEXPECTED_FRAME"), "{text}")
        }
        other => panic!("expected connection.close 501 or 505, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_is_not_a_crashed_broker() {
    let broker = TestBroker::start().await;
    for garbage in [
        &b"\x01\x00\x01\xff\xff\xff\xff"[..],
        &b"\xce\xce\xce\xce\xce\xce\xce\xce"[..],
        &b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0b\xce"[..],
    ] {
        let end = provoke(&broker, garbage).await;
        assert!(
            matches!(end, Ending::Close { .. } | Ending::Eof),
            "garbage {garbage:?} must close the connection, got {end:?}"
        );
    }
}

fn channel_close(code: u16, text: &str) -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: code,
        reply_text: text.into(),
        class_id: 0,
        method_id: 0,
    }))
}

/// Publishes to a missing exchange on channel 1 (the server closes it with 404) and sends the
/// client's own `channel.close` before reading anything, so the two closes cross. Returns once
/// both the server's close and its close-ok for the client's close have arrived.
async fn cross_channel_closes(c: &mut RawClient) {
    c.publish(
        1,
        publish_method(&unique("missing"), "k", false),
        AMQPProperties::default(),
        b"lost",
        4096,
    )
    .await;
    c.send_method(1, channel_close(200, "client closing")).await;
    let (mut closed, mut close_ok) = (false, false);
    while !(closed && close_ok) {
        let f = c
            .recv_frame(WAIT)
            .await
            .expect("the server answers on channel 1");
        match f.method() {
            Some(AMQPClass::Channel(channel::AMQPMethod::Close(close))) if f.channel == 1 => {
                assert_eq!(close.reply_code, 404, "{}", close.reply_text);
                closed = true;
            }
            Some(AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) if f.channel == 1 => {
                close_ok = true;
            }
            other => panic!("unexpected frame on channel {}: {other:?}", f.channel),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_close_ok_after_crossing_channel_closes_is_dropped() {
    let broker = TestBroker::start().await;
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    c.open_channel(2).await;
    cross_channel_closes(&mut c).await;
    // The client answers the server's close, as the spec obliges it to; by then the server has
    // already finished the channel. RabbitMQ drops this close-ok.
    c.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    )
    .await;
    let q = unique("q");
    c.send_method(2, declare(&q)).await;
    match c
        .recv_frame(WAIT)
        .await
        .and_then(|f| f.method().map(|m| (f.channel, m)))
    {
        Some((2, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))) => {
            assert_eq!(ok.queue.as_str(), q)
        }
        other => panic!("channel 2 must still work, got {other:?}"),
    }
    // Channel 1 can be opened again, and a second close-ok on it is no longer expected.
    c.open_channel(1).await;
    assert!(c.is_alive(3).await);
    c.send_method(1, channel_close(200, "bye")).await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {}
        other => panic!("expected channel.close-ok, got {other:?}"),
    }
    c.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    )
    .await;
    assert_close(&c.expect_connection_end(WAIT).await, 504, "CHANNEL_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_reopened_after_crossing_closes_works() {
    let broker = TestBroker::start().await;
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    cross_channel_closes(&mut c).await;
    // Reopening the number instead of sending the close-ok ends the wait for it.
    c.open_channel(1).await;
    let q = unique("q");
    c.send_method(1, declare(&q)).await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))) => {
            assert_eq!(ok.queue.as_str(), q)
        }
        other => panic!("the reopened channel must work, got {other:?}"),
    }
    assert!(matches!(
        c.expect_connection_end(QUIET).await,
        Ending::StillOpen
    ));
}
