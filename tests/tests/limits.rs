//! Resource limits and login hardening as a client sees them: connections per node, vhost
//! and user, channels per connection (channel_max), queues per vhost and consumers per
//! channel, each refused with RabbitMQ's code and text while bystanders carry on, and freed
//! when what held it goes away; PLAIN and AMQPLAIN parsed strictly; the handshake timeout;
//! failed logins slowed down per source address.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use warren_tests::broker::{TestBroker, reply_of};
use warren_tests::raw::{Ending, Incoming, PROTOCOL_HEADER, RawClient, TuneOk, WAIT};
use warren_tests::tenancy::{add_user, add_vhost, connect_as, permit};

/// The `connection.open` refusal, as lapin reports it.
async fn refused(broker: &TestBroker, user: &str, vhost: &str) -> (u16, String) {
    match connect_as(broker, user, user, vhost).await {
        Ok(_) => panic!("{user} connected to {vhost} over the limit"),
        Err(e) => reply_of(&e),
    }
}

/// A user with every permission on each of `vhosts`, its password its name.
fn user_on(broker: &TestBroker, user: &str, vhosts: &[&str]) {
    add_user(broker, user, user);
    for vhost in vhosts {
        permit(broker, vhost, user, ".*", ".*", ".*");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_connection_limit_refuses_connection_open_with_530_until_one_closes() {
    let broker = TestBroker::start_with(|c| c.max_connections = 2).await;
    let first = broker.connect().await;
    let second = broker.connect().await;
    let (code, text) = refused(&broker, "guest", "/").await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - access to vhost '/' refused for user 'guest': node connection limit (2) \
         is reached"
    );
    // The open connections are unaffected.
    let ch = second
        .create_channel()
        .await
        .expect("a channel on an open connection");
    ch.close(200, "bye").await.expect("close");
    first.close(200, "bye").await.expect("close");
    broker.assert_serves().await;
    second.close(200, "bye").await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vhost_connection_limit_counts_each_vhost_apart() {
    let broker = TestBroker::start_with(|c| c.max_connections_per_vhost = 1).await;
    add_vhost(&broker, "limited");
    user_on(&broker, "vlu", &["/", "limited"]);
    let held = connect_as(&broker, "vlu", "vlu", "limited")
        .await
        .expect("the first connection to the vhost");
    let (code, text) = refused(&broker, "vlu", "limited").await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - access to vhost 'limited' refused for user 'vlu': connection limit (1) is \
         reached"
    );
    // Another vhost has its own count.
    broker.assert_serves().await;
    held.close(200, "bye").await.expect("close");
    let again = connect_as(&broker, "vlu", "vlu", "limited")
        .await
        .expect("the slot is free once the connection closed");
    again.close(200, "bye").await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_connection_limit_counts_the_users_connections_to_every_vhost() {
    let broker = TestBroker::start_with(|c| c.max_connections_per_user = 1).await;
    add_vhost(&broker, "other");
    user_on(&broker, "ulu", &["/", "other"]);
    let held = connect_as(&broker, "ulu", "ulu", "/")
        .await
        .expect("the user's first connection");
    let (code, text) = refused(&broker, "ulu", "other").await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - connection refused for user 'ulu': user connection limit (1) is reached"
    );
    // Other users are not counted against it.
    broker.assert_serves().await;
    held.close(200, "bye").await.expect("close");
    connect_as(&broker, "ulu", "ulu", "other")
        .await
        .expect("the slot is free once the connection closed")
        .close(200, "bye")
        .await
        .expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_max_counts_open_channels_whatever_their_numbers() {
    let broker = TestBroker::start().await;
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    c.expect_start().await;
    let tune = c.login("guest", "guest").await.expect("guest logs in");
    c.tune_ok(TuneOk {
        channel_max: 2,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })
    .await;
    c.open_vhost("/").await;
    c.recv_method(WAIT).await.expect("open-ok");
    // RabbitMQ takes numbers above channel_max as long as the count stays within it.
    c.open_channel(5).await;
    c.open_channel(9).await;
    c.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    let end = c.expect_connection_end(WAIT).await;
    assert_eq!(
        end,
        Ending::Close {
            code: 530,
            text: "NOT_ALLOWED - number of channels opened (2) has reached the negotiated \
                   channel_max (2)"
                .into(),
            class_id: 0,
            method_id: 0,
        }
    );
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_limit_refuses_new_queues_with_406_but_not_redeclares() {
    let broker = TestBroker::start_with(|c| c.max_queues_per_vhost = 2).await;
    add_vhost(&broker, "roomy");
    permit(&broker, "roomy", "guest", ".*", ".*", ".*");
    let (conn, ch) = broker.channel().await;
    let declare = |ch: lapin::Channel, name: &'static str| async move {
        ch.queue_declare(name, QueueDeclareOptions::default(), FieldTable::default())
            .await
    };
    declare(ch.clone(), "lq1").await.expect("first queue");
    declare(ch.clone(), "lq2").await.expect("second queue");
    declare(ch.clone(), "lq1")
        .await
        .expect("a redeclare is no new queue");
    let err = declare(ch.clone(), "lq3").await.expect_err("a third queue");
    assert_eq!(
        reply_of(&err),
        (
            406,
            "PRECONDITION_FAILED - cannot declare queue 'lq3': queue limit in vhost '/' (2) is \
             reached"
                .into()
        )
    );
    // A server-named queue is refused under its generated name.
    let ch = conn.create_channel().await.expect("channel");
    let (code, text) = reply_of(&declare(ch.clone(), "").await.expect_err("server-named"));
    assert_eq!(code, 406);
    assert!(
        text.starts_with("PRECONDITION_FAILED - cannot declare queue 'amq.gen-")
            && text.ends_with("': queue limit in vhost '/' (2) is reached"),
        "{text}"
    );
    // Another vhost has its own count.
    let other = connect_as(&broker, "guest", "guest", "roomy")
        .await
        .expect("guest on roomy");
    let other_ch = other.create_channel().await.expect("channel");
    declare(other_ch, "lq3").await.expect("roomy has room");
    // Deleting a queue frees its slot.
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_delete("lq1", QueueDeleteOptions::default())
        .await
        .expect("delete");
    declare(ch, "lq3").await.expect("a slot was freed");
    other.close(200, "bye").await.expect("close");
    conn.close(200, "bye").await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_limit_closes_the_connection_with_530_and_counts_per_channel() {
    let broker = TestBroker::start_with(|c| c.max_consumers_per_channel = 2).await;
    let (conn, ch) = broker.channel().await;
    ch.queue_declare("lc", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    let consume = |ch: lapin::Channel, tag: &'static str| async move {
        ch.basic_consume(
            "lc",
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    };
    // Kept: lapin cancels a consumer whose handle is dropped.
    let _c1 = consume(ch.clone(), "c1").await.expect("first consumer");
    let _c2 = consume(ch.clone(), "c2").await.expect("second consumer");
    // The limit is per channel: another channel has its own.
    let other = conn.create_channel().await.expect("channel");
    let _c3 = consume(other.clone(), "c3")
        .await
        .expect("another channel's consumer");
    // Over the limit, seen raw (lapin resolves the consume before the close arrives).
    let (mut raw, _) = RawClient::open_with_channel(broker.addr()).await;
    for tag in ["r1", "r2", "r3"] {
        raw.send_method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: "lc".into(),
                consumer_tag: tag.into(),
                no_local: false,
                no_ack: false,
                exclusive: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
        .await;
        if tag == "r3" {
            break;
        }
        match raw.recv_method(WAIT).await {
            Some(AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))) => {}
            other => panic!("expected consume-ok for {tag}, got {other:?}"),
        }
    }
    assert_eq!(
        raw.expect_connection_end(WAIT).await,
        Ending::Close {
            code: 530,
            text: "NOT_ALLOWED - reached maximum (2) of consumers per channel".into(),
            class_id: 60,
            method_id: 20,
        }
    );
    // The first connection, two consumers on one channel and one on another, is fine (a
    // round trip on each channel after its consumers: lapin reports a refused consume only
    // as the connection's close).
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    for ch in [&ch, &other] {
        ch.queue_declare("lc", passive, FieldTable::default())
            .await
            .expect("the channel is still open");
    }
    conn.close(200, "bye").await.expect("close");
    // A cancelled consumer frees its slot.
    let (conn, ch) = broker.channel().await;
    let _d1 = consume(ch.clone(), "d1").await.expect("consumer");
    let _d2 = consume(ch.clone(), "d2").await.expect("consumer");
    ch.basic_cancel("d1", Default::default())
        .await
        .expect("cancel");
    let _d3 = consume(ch.clone(), "d3").await.expect("the slot was freed");
    ch.queue_declare("lc", passive, FieldTable::default())
        .await
        .expect("the third consume was within the limit");
    conn.close(200, "bye").await.expect("close");
}

/// Sends the protocol header and a start-ok with `response`; how the server answered.
async fn plain_login(broker: &TestBroker, mechanism: &str, response: &[u8]) -> Ending {
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    c.expect_start().await;
    match c.login_with(mechanism, response).await {
        Ok(_) => Ending::StillOpen,
        Err(end) => end,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_takes_only_nul_user_nul_password() {
    let broker = TestBroker::start().await;
    let malformed = Ending::Close {
        code: 502,
        text: "SYNTAX_ERROR - PLAIN response invalid: expected NUL, user name, NUL, password (no \
               authorisation identity, no further fields)"
            .into(),
        class_id: 10,
        method_id: 11,
    };
    // An authorisation identity, a missing leading NUL, a trailing field: RabbitMQ refuses
    // each as a syntax error.
    for response in [
        &b"admin\0guest\0guest"[..],
        b"guest\0guest",
        b"\0guest\0guest\0x",
    ] {
        assert_eq!(
            plain_login(&broker, "PLAIN", response).await,
            malformed,
            "{response:?}"
        );
    }
    assert_eq!(
        plain_login(&broker, "PLAIN", b"\0guest\0guest").await,
        Ending::StillOpen,
        "the well-formed response logs in (connection.tune)"
    );
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqplain_needs_long_string_login_and_password() {
    let broker = TestBroker::start().await;
    let table = |password: amq_protocol::types::AMQPValue| {
        warren_tests::tables::encode(&warren_tests::tables::table([
            ("LOGIN", warren_tests::tables::string("guest")),
            ("PASSWORD", password),
        ]))
    };
    let short = table(amq_protocol::types::AMQPValue::ShortString("guest".into()));
    let end = plain_login(&broker, "AMQPLAIN", &short).await;
    assert_eq!(
        end,
        Ending::Close {
            code: 502,
            text: "SYNTAX_ERROR - AMQPLAIN auth info is missing LOGIN or PASSWORD field".into(),
            class_id: 10,
            method_id: 11,
        }
    );
    let good = table(warren_tests::tables::string("guest"));
    assert_eq!(
        plain_login(&broker, "AMQPLAIN", &good).await,
        Ending::StillOpen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_at_the_handshake_timeout_and_bystanders_carry_on() {
    let broker = TestBroker::start_with(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    // One sends nothing at all, one stops after the protocol header, one after start-ok.
    let mut silent = RawClient::connect(broker.addr()).await;
    let mut header_only = RawClient::connect(broker.addr()).await;
    header_only.send_bytes(PROTOCOL_HEADER).await;
    header_only.expect_start().await;
    let mut logged_in = RawClient::connect(broker.addr()).await;
    logged_in.send_bytes(PROTOCOL_HEADER).await;
    logged_in.expect_start().await;
    logged_in.login("guest", "guest").await.expect("tune");
    // A bystander that completes its handshake in time keeps its connection.
    let (conn, ch) = broker.channel().await;
    for (name, client) in [
        ("silent", &mut silent),
        ("header only", &mut header_only),
        ("no tune-ok", &mut logged_in),
    ] {
        assert_eq!(
            client.expect_connection_end(WAIT).await,
            Ending::Eof,
            "{name}: closed at the handshake timeout"
        );
    }
    ch.queue_declare(
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the bystander was not timed out");
    conn.close(200, "bye").await.expect("close");
}

/// A failed PLAIN login from `source`; how long its refusal took, and the refusal.
async fn failed_login_from(broker: &TestBroker, source: IpAddr) -> (Duration, Ending) {
    let mut c = RawClient::connect_from(broker.addr(), source).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    c.expect_start().await;
    let started = std::time::Instant::now();
    let end = c
        .login("guest", "wrong")
        .await
        .expect_err("a wrong password");
    (started.elapsed(), end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_answered_late_but_good_logins_and_other_addresses_are_not() {
    use warren::auth::throttle::{FIRST_DELAY, FREE_FAILURES};
    let broker = TestBroker::start().await;
    let server = broker.server().expect("in-process broker");
    let throttle = server.broker().auth().throttle();
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let refusal = Ending::Close {
        code: 403,
        text: "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For \
               details see the broker logfile."
            .into(),
        class_id: 10,
        method_id: 11,
    };
    for _ in 0..FREE_FAILURES {
        let (_, end) = failed_login_from(&broker, here).await;
        assert_eq!(end, refusal);
    }
    assert_eq!(
        throttle.delay_for(here),
        FIRST_DELAY,
        "the next failure waits"
    );
    let (took, end) = failed_login_from(&broker, here).await;
    assert_eq!(end, refusal, "still the same refusal, only later");
    assert!(
        took >= FIRST_DELAY,
        "the refusal came after {took:?}, before the {FIRST_DELAY:?} delay"
    );
    // A good login from the same address is answered (and never delayed).
    let mut good = RawClient::connect(broker.addr()).await;
    good.send_bytes(PROTOCOL_HEADER).await;
    good.expect_start().await;
    good.login("guest", "guest")
        .await
        .expect("the right password logs in");
    // Another address has its own count (127.0.0.2 is loopback: guest's rule holds).
    assert_eq!(throttle.delay_for(elsewhere), Duration::ZERO);
    let (_, end) = failed_login_from(&broker, elsewhere).await;
    assert_eq!(end, refusal);
    let mut good = RawClient::connect_from(broker.addr(), elsewhere).await;
    good.send_bytes(PROTOCOL_HEADER).await;
    good.expect_start().await;
    good.login("guest", "guest")
        .await
        .expect("guest from another loopback address");
    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_refusal_does_not_hold_shutdown() {
    use warren::auth::throttle::FREE_FAILURES;
    let broker = TestBroker::start().await;
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for _ in 0..FREE_FAILURES + 3 {
        failed_login_from(&broker, here).await;
    }
    // The next refusal waits a while; the broker stops meanwhile and closes it.
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_bytes(PROTOCOL_HEADER).await;
    c.expect_start().await;
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: Default::default(),
            mechanism: "PLAIN".into(),
            response: "\0guest\0wrong".into(),
            locale: "en_US".into(),
        })),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(Duration::from_secs(10), broker.stop())
        .await
        .expect("shutdown is not held up by a delayed refusal");
    assert!(matches!(
        c.recv(WAIT).await,
        Incoming::Frame(_) | Incoming::Eof
    ));
}
