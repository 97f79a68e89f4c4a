//! The real binary under a memory cap (`prlimit --as`), abused the ways issue 12 reported:
//! credentials with extra NUL-separated fields, and a client that asks for far more than it
//! ever reads. The broker must refuse the one with the right code, keep its memory bounded
//! under the other, keep serving everyone else, and lose none of the messages it confirmed.

#[allow(dead_code)]
mod common;

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use common::broker_process::{BrokerProcess, TempDataDir};
use common::confirmed::publish_window;
use common::memory::rss;
use common::raw_amqp::{close_code_for_plain, get_without_reading};

/// The address space the broker may reserve (its idle VmSize is about 0.6 GiB).
const CAP: &str = "--as=2147483648";
const WATERMARK_MIB: u64 = 256;
/// Messages kept in the queue the abuser asks for, and their size: 40 MiB in all.
const KEPT: u64 = 400;
const BODY: usize = 100 * 1024;
/// `basic.get`s in the never-reading client's one write: 800 MiB of answers if the broker
/// produced them all.
const GETS: usize = 8_000;

async fn queue_depth(uri: &str, queue: &str) -> u32 {
    let conn = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("a bystander connects");
    let ch = conn.create_channel().await.expect("a channel");
    let declared = ch
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue is there");
    let _ = conn.close(200, "bye").await;
    declared.message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_clients_are_refused_or_bounded_and_nothing_confirmed_is_lost() {
    let dir = TempDataDir::new("abuse");
    let watermark = format!("{WATERMARK_MIB}MiB");
    let mut broker = BrokerProcess::start_with(
        dir.path(),
        &["--memory-high-watermark", &watermark],
        &["prlimit", CAP, "--"],
    );
    let (uri, addr, pid) = (broker.amqp_uri(), broker.amqp_addr(), broker.pid());

    // Strict PLAIN: `authzid \0 user \0 password` with an extra field is refused with 502
    // (RabbitMQ refuses it too); the well-formed response logs in.
    assert_eq!(
        close_code_for_plain(addr, b"admin\0guest\0guest"),
        Some(502),
        "{}",
        broker.output()
    );

    // Messages the broker confirmed, kept in a queue.
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("connects");
    let ch = conn.create_channel().await.expect("a channel");
    ch.queue_declare(
        "kept",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declared");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let acked = publish_window(&ch, "kept", 0..KEPT, BODY, &AtomicU64::new(0))
        .await
        .expect("published");
    assert_eq!(acked.len() as u64, KEPT, "every message confirmed");

    // A client asks for every one of them many times over and never reads an answer.
    let getter = get_without_reading(addr, "kept", GETS);
    let mut max_rss = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        max_rss = max_rss.max(rss(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        broker.is_running(),
        "the broker survives:\n{}",
        broker.output()
    );
    assert!(
        max_rss < WATERMARK_MIB << 20,
        "its output is bounded, not the {GETS} answers asked for: max RSS {} MiB",
        max_rss >> 20
    );
    // Everyone else is served meanwhile; the getter holds at most what it was sent.
    let during = queue_depth(&uri, "kept").await;
    assert!(during < KEPT as u32, "the getter took some ({during} left)");

    // The getter goes: what it was given but never acked goes back, nothing is lost.
    drop(getter);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let depth = queue_depth(&uri, "kept").await;
        if depth == KEPT as u32 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{depth} of {KEPT} confirmed messages in the queue after the getter left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{GETS} unread gets of {KEPT} × {} KiB: broker max RSS {} MiB (watermark {WATERMARK_MIB} MiB)",
        BODY >> 10,
        max_rss >> 20
    );
    let _ = conn.close(200, "done").await;
    broker.stop();
}
