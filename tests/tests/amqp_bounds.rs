//! Every buffer a client can grow is bounded per connection, and hitting a bound paces or
//! closes that connection (or channel) with a clear code — never the broker, never a
//! bystander, never a confirmed message lost.
//!
//! What is asserted is the broker's own accounting (outbox and read-buffer high-water marks,
//! the writes a store was asked for), invariants of the bounds, not timings: a loaded machine
//! only changes how hard the broker is pushed before the client lets go.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic, confirm, queue};
use amq_protocol::types::FieldTable as RawTable;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use tokio::io::AsyncWriteExt;
use warren::server::budget::MAX_UNCONFIRMED;
use warren::server::connection::READ_MAX;
use warren::server::outbox::CONGESTED;
use warren_tests::broker::{Exceptions, PATIENCE, QUIET, TestBroker, unique};
use warren_tests::failing_store::FailingStore;
use warren_tests::raw::{
    AMQPProperties, FRAME_BODY, FRAME_HEADER, RawClient, encode, frame_bytes, header_bytes,
    publish_method,
};

const FRAME_MAX: usize = 131_072;

async fn declare(ch: &Channel, q: &str, durable: bool) {
    ch.queue_declare(
        q,
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declares the queue");
}

async fn depth(broker: &TestBroker, q: &str) -> u32 {
    let (_conn, ch) = broker.channel().await;
    warren_tests::queues::count(&ch, q).await
}

fn get(queue: &str) -> Vec<u8> {
    encode(&AMQPFrame::Method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: queue.into(),
            no_ack: true,
        })),
    ))
}

/// A publish method and content header on `channel`, no body yet.
fn publish_start(channel: u16, key: &str, size: u64, properties: AMQPProperties) -> Vec<u8> {
    let mut bytes = encode(&AMQPFrame::Method(channel, publish_method("", key, false)));
    bytes.extend(header_bytes(channel, size, properties));
    bytes
}

/// Body frames of at most frame_max for `body` on `channel`.
fn body_frames(channel: u16, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for piece in body.chunks(FRAME_MAX - 8) {
        bytes.extend(frame_bytes(FRAME_BODY, channel, piece));
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_gets_from_a_client_that_does_not_read_stay_within_one_message_of_the_limit() {
    const MESSAGES: usize = 200;
    const BODY: usize = 100 * 1024;
    // The limit, one basic.get-ok (a message and its framing), and a heartbeat.
    const BOUND: usize = CONGESTED + BODY + 4096;
    let broker = TestBroker::start().await;
    let Some(server) = broker.server() else {
        return; // Only an in-process Warren shows its outbox.
    };
    let stats = server.outbox_stats();
    let q = unique("gets");
    {
        let (_conn, ch) = broker.channel().await;
        declare(&ch, &q, false).await;
        for _ in 0..MESSAGES {
            ch.basic_publish(
                "",
                &q,
                BasicPublishOptions::default(),
                &vec![b'g'; BODY],
                BasicProperties::default(),
            )
            .await
            .expect("publishes");
        }
    }
    assert_eq!(depth(&broker, &q).await, MESSAGES as u32);

    // Every get in one write: one read batch asks for megabytes of output.
    let (client, _) = RawClient::open_with_channel(broker.addr()).await;
    let (mut reader, mut writer) = client.into_split();
    let gets: Vec<u8> = (0..MESSAGES).flat_map(|_| get(&q)).collect();
    writer.write_all(&gets).await.expect("the broker reads");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stats.read_pauses() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(2 * QUIET).await;
    assert!(stats.read_pauses() > 0, "the broker stopped taking frames");
    assert!(
        stats.high_water() <= BOUND,
        "an outbox held {} bytes (bound {BOUND})",
        stats.high_water()
    );

    // Reading now, every message arrives whole and in order, and the bound holds.
    let (mut got, mut body_bytes) = (0, 0);
    while got < MESSAGES || body_bytes < MESSAGES * BODY {
        let f = reader
            .recv_frame(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("only {got} get-oks arrived"));
        match (f.kind, f.method()) {
            (_, Some(AMQPClass::Basic(basic::AMQPMethod::GetOk(_)))) => got += 1,
            (FRAME_HEADER, _) => {}
            (FRAME_BODY, _) => body_bytes += f.payload.len(),
            (_, other) => panic!("unexpected frame {other:?}"),
        }
    }
    assert!(stats.high_water() <= BOUND, "{}", stats.high_water());
    assert!(
        stats.read_buffer_high_water() <= FRAME_MAX + READ_MAX,
        "a read buffer held {}",
        stats.read_buffer_high_water()
    );
    let mut client = reader.reunite(writer);
    assert!(client.is_alive(2).await, "the connection is healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_messages_across_channels_are_bounded_per_connection() {
    const MAX: usize = 1 << 20;
    const SIZE: usize = 900 * 1024;
    let broker = TestBroker::start_with(|c| c.max_message_size = MAX).await;
    if broker.is_external() {
        eprintln!("skipped: needs Warren with a small max_message_size");
        return;
    }
    let q = unique("assembly");
    let (_conn, ch) = broker.channel().await;
    declare(&ch, &q, false).await;

    let (mut client, _) = RawClient::open_with_channel(broker.addr()).await;
    client.open_channel(2).await;
    client.open_channel(3).await;
    let body = vec![b'a'; SIZE];
    // Two messages of 900 KiB half sent, on channels 1 and 2: within twice the maximum.
    for channel in [1, 2] {
        let mut bytes = publish_start(channel, &q, SIZE as u64, AMQPProperties::default());
        bytes.extend(body_frames(channel, &body[..SIZE / 2]));
        client.send_bytes(&bytes).await;
    }
    // A third would hold 2.7 MiB unfinished: refused at its header, before any body.
    client
        .send_bytes(&publish_start(
            3,
            &q,
            SIZE as u64,
            AMQPProperties::default(),
        ))
        .await;
    let (code, text) = client.expect_channel_close(3).await;
    assert_eq!(code, 406, "{text}");
    assert!(
        text.starts_with("PRECONDITION_FAILED - message size 921600 cannot be accepted")
            && text.contains("at most 2097152 bytes of unfinished messages per connection"),
        "{text}"
    );
    // The two under way complete.
    for channel in [1, 2] {
        client
            .send_bytes(&body_frames(channel, &body[SIZE / 2..]))
            .await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while depth(&broker, &q).await < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(depth(&broker, &q).await, 2);

    // Finished messages give their share back, and the refused one held none: two more
    // fit, one of them on the reopened channel.
    client.open_channel(3).await;
    for channel in [2, 3] {
        client
            .publish(
                channel,
                publish_method("", &q, false),
                AMQPProperties::default(),
                &body,
                FRAME_MAX - 8,
            )
            .await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while depth(&broker, &q).await < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(depth(&broker, &q).await, 4);
    assert!(client.is_alive(4).await, "the connection is healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_longer_than_its_header_says_closes_the_connection_with_501() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        eprintln!("skipped: RabbitMQ does not check the body against the header's size");
        return;
    }
    let (mut client, _) = RawClient::open_with_channel(broker.addr()).await;
    let mut bytes = publish_start(1, "nowhere", 10, AMQPProperties::default());
    bytes.extend(frame_bytes(FRAME_BODY, 1, &[b'x'; 20]));
    client.send_bytes(&bytes).await;
    let ending = client.expect_connection_end(PATIENCE).await;
    assert_eq!(ending.code(), Some(501), "{ending:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_waiting_for_the_store_pace_the_connection_and_none_is_lost() {
    const MESSAGES: usize = MAX_UNCONFIRMED + 3000;
    let store = FailingStore::new();
    let stores = store.stores();
    let broker = TestBroker::start_with(|c| c.stores = Some(stores)).await;
    if broker.is_external() {
        eprintln!("skipped: needs Warren in-process, on the test's store");
        return;
    }
    let q = unique("unconfirmed");
    {
        let (_conn, ch) = broker.channel().await;
        declare(&ch, &q, true).await;
    }
    let (mut client, _) = RawClient::open_with_channel(broker.addr()).await;
    client
        .send_method(
            1,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        )
        .await;
    match client.recv_method(PATIENCE).await {
        Some(AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))) => {}
        other => panic!("expected confirm.select-ok, got {other:?}"),
    }
    let (mut reader, mut writer) = client.into_split();
    let persistent = AMQPProperties::default().with_delivery_mode(2);
    let mut one = publish_start(1, &q, 16, persistent);
    one.extend(frame_bytes(FRAME_BODY, 1, &[b'c'; 16]));
    let sender = tokio::spawn(async move {
        for chunk in 0..MESSAGES / 1000 + 1 {
            let n = (MESSAGES - chunk * 1000).min(1000);
            let bytes: Vec<u8> = (0..n).flat_map(|_| one.iter().copied()).collect();
            writer
                .write_all(&bytes)
                .await
                .expect("the broker keeps the socket open");
        }
        writer
    });

    // Nothing syncs: the broker takes publishes up to its bound and stops there.
    assert!(
        store
            .wait_for_writes(MAX_UNCONFIRMED as u64, PATIENCE)
            .await,
        "the broker took {} publishes",
        store.written()
    );
    tokio::time::sleep(2 * QUIET).await;
    assert_eq!(
        store.written(),
        MAX_UNCONFIRMED as u64,
        "publishes taken while {MAX_UNCONFIRMED} wait for the store"
    );
    // A bystander is served meanwhile.
    assert_eq!(depth(&broker, &q).await, MAX_UNCONFIRMED as u32);

    // Syncs resume: every publish is confirmed, in order, and stored.
    let syncing = Arc::new(AtomicBool::new(true));
    let syncer = {
        let (store, syncing) = (store.clone(), syncing.clone());
        tokio::spawn(async move {
            while syncing.load(Ordering::Relaxed) {
                let _ = store.sync_now();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut confirmed = 0u64;
    while confirmed < MESSAGES as u64 {
        let f = reader
            .recv_frame(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("only {confirmed} confirmed"));
        match f.method() {
            Some(AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
                assert!(a.delivery_tag > confirmed, "confirms in order");
                assert!(a.multiple || a.delivery_tag == confirmed + 1);
                confirmed = a.delivery_tag;
            }
            other => panic!("expected only acks, got {other:?}"),
        }
    }
    syncing.store(false, Ordering::Relaxed);
    syncer.await.expect("the syncer ends");
    assert_eq!(confirmed, MESSAGES as u64);
    assert_eq!(store.written(), MESSAGES as u64);
    assert_eq!(depth(&broker, &q).await, MESSAGES as u32);
    let writer = sender.await.expect("the sender finishes");
    let mut client = reader.reunite(writer);
    assert!(client.is_alive(2).await, "the connection is healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_transaction_past_its_bound_closes_the_channel_with_406() {
    const MAX: usize = 64 * 1024;
    let broker = TestBroker::start_with(|c| c.max_message_size = MAX).await;
    if broker.is_external() {
        eprintln!("skipped: needs Warren with a small max_message_size");
        return;
    }
    let q = unique("tx");
    let (conn, ch) = broker.channel().await;
    declare(&ch, &q, false).await;
    ch.tx_select().await.expect("tx.select");
    // Twice the maximum message size may wait for a commit: two messages of 60 KiB fit.
    for _ in 0..2 {
        ch.basic_publish(
            "",
            &q,
            BasicPublishOptions::default(),
            &vec![b't'; 60 * 1024],
            BasicProperties::default(),
        )
        .await
        .expect("publishes");
    }
    ch.tx_commit().await.expect("commits");
    assert_eq!(depth(&broker, &q).await, 2);

    let mut exceptions = Exceptions::watch(&conn);
    for _ in 0..3 {
        let _ = ch
            .basic_publish(
                "",
                &q,
                BasicPublishOptions::default(),
                &vec![b't'; 60 * 1024],
                BasicProperties::default(),
            )
            .await;
    }
    let (code, text) = exceptions.next().await;
    assert_eq!(code, 406, "{text}");
    assert!(
        text.starts_with("PRECONDITION_FAILED - transaction too large"),
        "{text}"
    );
    // Only the channel closed, and nothing of the refused transaction was published.
    let other = conn.create_channel().await.expect("the connection is open");
    assert_eq!(warren_tests::queues::count(&other, &q).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declares_in_one_read_are_paced_by_the_outbox() {
    // Many small replies: the pause must come from the outbox, not from the read size.
    let broker = TestBroker::start().await;
    let Some(server) = broker.server() else {
        return;
    };
    let stats = server.outbox_stats();
    let (client, _) = RawClient::open_with_channel(broker.addr()).await;
    let (mut reader, mut writer) = client.into_split();
    let name = unique("declared");
    let declare = encode(&AMQPFrame::Method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.as_str().into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: RawTable::default(),
        })),
    ));
    const DECLARES: usize = 40_000;
    let sender = tokio::spawn(async move {
        for _ in 0..DECLARES / 1000 {
            let bytes: Vec<u8> = (0..1000).flat_map(|_| declare.iter().copied()).collect();
            writer.write_all(&bytes).await.expect("the broker reads");
        }
        writer
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stats.read_pauses() == 0
        && !sender.is_finished()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(QUIET).await;
    assert!(
        stats.high_water() <= CONGESTED + 4096,
        "an outbox held {}",
        stats.high_water()
    );
    let mut oks = 0;
    while oks < DECLARES {
        match reader.recv_frame(PATIENCE).await.map(|f| f.method()) {
            Some(Some(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => oks += 1,
            other => panic!("after {oks} declare-oks: {other:?}"),
        }
    }
    assert!(
        stats.high_water() <= CONGESTED + 4096,
        "{}",
        stats.high_water()
    );
    let writer = sender.await.expect("the sender finishes");
    let mut client = reader.reunite(writer);
    assert!(client.is_alive(2).await);
}
