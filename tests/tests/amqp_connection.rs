//! Connection negotiation as a client sees it: connection.start's server properties, tune
//! values and their limits (530), heartbeats, authentication (PLAIN, AMQPLAIN, 403), the
//! protocol header, close in both directions, and a serial publisher's connection still
//! being read after it lingered between publishes.

use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, channel, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use warren_tests::broker::TestBroker;
use warren_tests::raw::{
    Ending, FRAME_HEARTBEAT, Incoming, PROTOCOL_HEADER, RawClient, TuneOk, WAIT,
};
use warren_tests::tables;

/// Logs in and returns the raw client and the server's tune.
async fn logged_in(broker: &TestBroker) -> (RawClient, connection::Tune) {
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    c.expect_start().await;
    let tune = c.login("guest", "guest").await.expect("guest logs in");
    (c, tune)
}

/// Sends tune-ok with `t` and connection.open, returning how the connection ended.
async fn tune_and_open(c: &mut RawClient, t: TuneOk) -> Ending {
    c.tune_ok(t).await;
    c.open_vhost("/").await;
    c.expect_connection_end(Duration::from_millis(1500)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_start_announces_capabilities_and_mechanisms() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    let start = c.expect_start().await;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let caps = match start.server_properties.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.clone(),
        other => panic!("capabilities must be a table, got {other:?}"),
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        assert_eq!(
            caps.inner().get(cap),
            Some(&AMQPValue::Boolean(true)),
            "capability {cap}"
        );
    }
    let mechanisms = String::from_utf8_lossy(start.mechanisms.as_bytes()).to_string();
    let mechanisms: Vec<&str> = mechanisms.split(' ').collect();
    assert!(mechanisms.contains(&"PLAIN"), "{mechanisms:?}");
    assert!(mechanisms.contains(&"AMQPLAIN"), "{mechanisms:?}");
    let locales = String::from_utf8_lossy(start.locales.as_bytes()).to_string();
    assert!(locales.split(' ').any(|l| l == "en_US"), "{locales}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_proposes_rabbitmq_defaults() {
    let broker = TestBroker::start().await;
    let (_c, tune) = logged_in(&broker).await;
    assert_eq!(tune.frame_max, 131_072);
    assert_eq!(tune.channel_max, 2047);
    assert_eq!(tune.heartbeat, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_ok_with_smaller_values_is_accepted() {
    let broker = TestBroker::start().await;
    let (mut c, _) = logged_in(&broker).await;
    c.tune_ok(TuneOk {
        channel_max: 16,
        frame_max: 8192,
        heartbeat: 0,
    })
    .await;
    c.open_vhost("/").await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))) => {}
        other => panic!("expected open-ok, got {other:?}"),
    }
    assert!(c.is_alive(16).await, "channel 16 is within channel_max 16");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_negotiates_the_lower_of_client_and_server_values() {
    let broker = TestBroker::start().await;
    let uri = format!(
        "{}?frame_max=16384&channel_max=100&heartbeat=30",
        broker.uri()
    );
    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .expect("connects");
    let cfg = conn.configuration();
    assert_eq!(cfg.frame_max(), 16384);
    assert_eq!(cfg.channel_max(), 100);
    assert_eq!(cfg.heartbeat(), 30);
    conn.close(200, "bye").await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_ok_frame_max_below_8192_closes_with_530() {
    let broker = TestBroker::start().await;
    let (mut c, tune) = logged_in(&broker).await;
    let end = tune_and_open(
        &mut c,
        TuneOk {
            channel_max: tune.channel_max,
            frame_max: 4096,
            heartbeat: 0,
        },
    )
    .await;
    assert_eq!(end.code(), Some(530), "{end:?}");
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_ok_frame_max_zero_closes_with_530() {
    let broker = TestBroker::start().await;
    let (mut c, tune) = logged_in(&broker).await;
    let end = tune_and_open(
        &mut c,
        TuneOk {
            channel_max: tune.channel_max,
            frame_max: 0,
            heartbeat: 0,
        },
    )
    .await;
    assert_eq!(end.code(), Some(530), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_ok_frame_max_above_the_servers_closes_with_530() {
    let broker = TestBroker::start().await;
    let (mut c, tune) = logged_in(&broker).await;
    let end = tune_and_open(
        &mut c,
        TuneOk {
            channel_max: tune.channel_max,
            frame_max: tune.frame_max + 1,
            heartbeat: 0,
        },
    )
    .await;
    assert_eq!(end.code(), Some(530), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_ok_channel_max_above_the_servers_closes_with_530() {
    let broker = TestBroker::start().await;
    let (mut c, tune) = logged_in(&broker).await;
    let end = tune_and_open(
        &mut c,
        TuneOk {
            channel_max: tune.channel_max + 1,
            frame_max: tune.frame_max,
            heartbeat: 0,
        },
    )
    .await;
    assert_eq!(end.code(), Some(530), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_ok_channel_max_zero_closes_with_530() {
    let broker = TestBroker::start().await;
    let (mut c, tune) = logged_in(&broker).await;
    let end = tune_and_open(
        &mut c,
        TuneOk {
            channel_max: 0,
            frame_max: tune.frame_max,
            heartbeat: 0,
        },
    )
    .await;
    assert_eq!(end.code(), Some(530), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_channel_above_channel_max_closes_with_530() {
    let broker = TestBroker::start().await;
    let (mut c, tune) = logged_in(&broker).await;
    c.tune_ok(TuneOk {
        channel_max: 8,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })
    .await;
    c.open_vhost("/").await;
    c.recv_method(WAIT).await.expect("open-ok");
    // Channels 1..=8 fill the negotiated limit, by count and by number.
    for id in 1..=8 {
        c.open_channel(id).await;
    }
    c.send_method(
        9,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    let end = c.expect_connection_end(WAIT).await;
    assert_eq!(end.code(), Some(530), "{end:?}");
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_sent_once_negotiated() {
    let broker = TestBroker::start().await;
    let (mut c, tune) = logged_in(&broker).await;
    c.tune_ok(TuneOk {
        channel_max: tune.channel_max,
        frame_max: tune.frame_max,
        heartbeat: 1,
    })
    .await;
    c.open_vhost("/").await;
    c.recv_method(WAIT).await.expect("open-ok");
    // Keep our side alive while waiting for the server's heartbeat.
    let heartbeat = warren_tests::raw::frame_bytes(FRAME_HEARTBEAT, 0, &[]);
    let mut seen = false;
    for _ in 0..10 {
        c.send_bytes(&heartbeat).await;
        match c.recv(Duration::from_millis(500)).await {
            Incoming::Frame(f) if f.kind == FRAME_HEARTBEAT && f.channel == 0 => {
                seen = true;
                break;
            }
            Incoming::Timeout => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen, "no heartbeat within 5 s of a 1 s heartbeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_dropped_after_missed_heartbeats() {
    let broker = TestBroker::start().await;
    let (mut c, tune) = logged_in(&broker).await;
    c.tune_ok(TuneOk {
        channel_max: tune.channel_max,
        frame_max: tune.frame_max,
        heartbeat: 1,
    })
    .await;
    c.open_vhost("/").await;
    // Never send anything again: the server must give up on us.
    let end = c.expect_connection_end(Duration::from_secs(8)).await;
    assert_ne!(end, Ending::StillOpen, "a silent peer must be dropped");
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_password_closes_with_403_access_refused() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    c.expect_start().await;
    match c.login("guest", "wrong").await {
        Err(Ending::Close { code, text, .. }) => {
            assert_eq!(code, 403);
            assert!(text.starts_with("ACCESS_REFUSED"), "{text}");
        }
        other => panic!("expected connection.close 403, got {other:?}"),
    }
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_with_bad_credentials_fails_to_connect() {
    let broker = TestBroker::start().await;
    let uri = broker.uri().replace("guest:guest", "guest:nope");
    let res = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await;
    assert!(res.is_err(), "connecting with a wrong password must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqplain_login_is_accepted() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    c.expect_start().await;
    let response = tables::encode(&tables::table([
        ("LOGIN", tables::string("guest")),
        ("PASSWORD", tables::string("guest")),
    ]));
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: FieldTable::default(),
            mechanism: "AMQPLAIN".into(),
            response: LongString::from(response),
            locale: "en_US".into(),
        })),
    )
    .await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Connection(connection::AMQPMethod::Tune(_))) => {}
        other => panic!("expected connection.tune after AMQPLAIN, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_header_is_answered_with_0_9_1_and_closed() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(b"AMQP\x01\x01\x00\x0a").await;
    match c.recv(WAIT).await {
        Incoming::ProtocolHeader(h) => assert_eq!(&h, PROTOCOL_HEADER),
        other => panic!("expected the server's protocol header, got {other:?}"),
    }
    assert_eq!(c.recv(WAIT).await, Incoming::Eof);
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_protocol_header_is_refused() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(b"GET / HTTP/1.1\r\n\r\n").await;
    match c.recv(WAIT).await {
        Incoming::ProtocolHeader(h) => {
            assert_eq!(&h, PROTOCOL_HEADER);
            assert_eq!(c.recv(WAIT).await, Incoming::Eof);
        }
        Incoming::Eof => {}
        other => panic!("expected a protocol header or EOF, got {other:?}"),
    }
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_is_answered_with_close_ok() {
    let broker = TestBroker::start().await;
    let (mut c, _) = RawClient::open(broker.addr()).await;
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
    .await;
    match c.recv_method(WAIT).await {
        Some(AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {}
        other => panic!("expected close-ok, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_connects_opens_channels_and_closes_cleanly() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let mut channels = Vec::new();
    for _ in 0..5 {
        channels.push(conn.create_channel().await.expect("channel"));
    }
    for ch in &channels {
        ch.close(200, "done").await.expect("channel close");
    }
    conn.close(200, "bye").await.expect("connection close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_flow_active_is_acknowledged() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let active = ch
        .channel_flow(lapin::options::ChannelFlowOptions { active: true })
        .await
        .expect("flow-ok");
    assert!(active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_client_connections_with_320() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        eprintln!("skipped: needs an in-process Warren to shut down");
        return;
    }
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    let stopping = tokio::spawn(broker.stop());
    let end = c.expect_connection_end(WAIT).await;
    match end {
        Ending::Close { code, text, .. } => {
            assert_eq!(code, 320, "{text}");
            assert!(text.starts_with("CONNECTION_FORCED"), "{text}");
        }
        other => panic!("expected connection.close 320, got {other:?}"),
    }
    stopping.await.expect("shutdown completes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_is_refused_from_a_non_loopback_address_with_403() {
    let broker = TestBroker::start_with(|cfg| {
        cfg.listen = "0.0.0.0:0".parse().expect("an address");
    })
    .await;
    let Some(ip) = warren_tests::broker::non_loopback_ip() else {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    };
    let mut addr = broker.addr();
    addr.set_ip(ip);
    let mut c = RawClient::connect(addr).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    c.expect_start().await;
    match c.login("guest", "guest").await {
        Err(Ending::Close { code, text, .. }) => {
            assert_eq!(code, 403);
            assert!(text.starts_with("ACCESS_REFUSED"), "{text}");
        }
        other => panic!("guest from {ip} must be refused with 403, got {other:?}"),
    }
    broker.assert_serves().await;
}

/// A client that awaits each publish into a queue nobody consumes makes its connection
/// linger between reads (polling its socket, with the receive low-water mark raised so the
/// publishes wake nobody). Whatever comes next is still read and answered: a method right
/// after the stream (read while lingering), and one after a pause (the linger over, the
/// low-water mark back to one byte, the task parked on the socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_publisher_is_read_during_and_after_lingering() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let exclusive = lapin::options::QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let queue = ch
        .queue_declare("", exclusive, FieldTable::default())
        .await
        .expect("declare");
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..exclusive
    };
    for round in 1..=3u32 {
        for _ in 0..200 {
            ch.basic_publish(
                "",
                queue.name().as_str(),
                lapin::options::BasicPublishOptions::default(),
                b"serial",
                lapin::BasicProperties::default(),
            )
            .await
            .expect("publish");
        }
        if round == 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let declared = tokio::time::timeout(
            Duration::from_secs(5),
            ch.queue_declare(queue.name().as_str(), passive, FieldTable::default()),
        )
        .await
        .expect("answered in time")
        .expect("declare-ok");
        assert_eq!(declared.message_count(), 200 * round);
    }
    conn.close(200, "bye").await.expect("close");
}
