//! Small kept messages must not pin the large socket read buffers they arrived in (issue 12).
//!
//! The report: 100-byte messages kept in a queue among 60 KB ones that were consumed held
//! 1.26 GB of RSS for 2 MB of messages, because each kept message was a slice of a 64 KiB+
//! read buffer. Here one connection publishes, interleaved in one byte stream, 100-byte
//! messages to a queue that keeps them and 60 KB messages to a queue that keeps only the
//! newest (`x-max-length` 1, so the others are dropped at once). Pinned, every kept message
//! would hold a read buffer: `PAIRS` × 64 KiB ≈ 190 MiB. Owning their bytes, they hold well
//! under a megabyte. The bound between the two is generous (allocator and buffer slack), so
//! only pinning can cross it. This file is its own test binary (one process, one test), so
//! the broker's RSS is this process's.

use amq_protocol::frame::AMQPFrame;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use warren_tests::broker::{PATIENCE, TestBroker, unique};
use warren_tests::raw::{
    AMQPProperties, FRAME_BODY, RawClient, encode, frame_bytes, header_bytes, publish_method,
};

const PAIRS: usize = 3_000;
const SMALL: usize = 100;
const LARGE: usize = 60 * 1000;
/// RSS growth allowed: far above what owned small messages take (≈ 1 MiB), far below what
/// pinned read buffers would (≈ 190 MiB).
const BOUND: u64 = 64 << 20;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS line");
    kib * 1024
}

async fn count(channel: &lapin::Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare")
        .message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_kept_messages_do_not_pin_the_read_buffers_they_arrived_in() {
    let broker = TestBroker::start().await;
    if broker.server().is_none() {
        return; // The RSS measured is this process's: only an in-process Warren shows it.
    }
    let (_conn, channel) = broker.channel().await;
    let kept = unique("kept");
    let drained = unique("drained");
    channel
        .queue_declare(
            kept.as_str(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare kept");
    let mut newest_only = FieldTable::default();
    newest_only.insert("x-max-length".into(), AMQPValue::LongInt(1));
    channel
        .queue_declare(
            drained.as_str(),
            QueueDeclareOptions::default(),
            newest_only,
        )
        .await
        .expect("declare drained");

    // Warm up the connection path (buffers, allocator arenas) before the baseline.
    let (mut client, _) = RawClient::open_with_channel(broker.addr()).await;
    let message = |queue: &str, size: usize| {
        let mut bytes = encode(&AMQPFrame::Method(1, publish_method("", queue, false)));
        bytes.extend(header_bytes(1, size as u64, AMQPProperties::default()));
        bytes.extend(frame_bytes(FRAME_BODY, 1, &vec![b'm'; size]));
        bytes
    };
    let large = message(&drained, LARGE);
    let mut pair = message(&kept, SMALL);
    pair.extend_from_slice(&large);
    for _ in 0..20 {
        client.send_bytes(&large).await;
    }
    assert!(client.is_alive(2).await, "warm-up published");
    let before = rss_bytes();

    for _ in 0..PAIRS {
        client.send_bytes(&pair).await;
    }
    let deadline = tokio::time::Instant::now() + 3 * PATIENCE;
    while count(&channel, &kept).await < PAIRS as u32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {PAIRS} small messages arrived",
            count(&channel, &kept).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(count(&channel, &drained).await, 1, "large ones dropped");
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < BOUND,
        "{PAIRS} kept {SMALL}-byte messages grew RSS by {} KiB (bound {} KiB): they pin \
         their read buffers",
        grown >> 10,
        BOUND >> 10
    );
    assert!(client.is_alive(3).await, "the connection is healthy");
}
