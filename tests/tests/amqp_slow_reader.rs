//! A client that publishes without reading its socket must not make the broker buffer
//! without bound: past the outbox limit the broker stops reading that connection until its
//! writer has drained the backlog, whatever the backlog is made of (here `basic.return`s of
//! mandatory unroutable messages, which no consumer flow control sees).
//!
//! What is asserted is the outbox's high-water mark, an invariant of the fix, not a timing:
//! however the two tasks interleave on a loaded machine, no outbox may ever hold more than the
//! limit plus what one frame can produce. Timing only decides how hard the broker is
//! pushed before the client starts reading.

use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic};
use tokio::io::AsyncWriteExt;
use warren::server::connection::READ_MAX;
use warren::server::outbox::CONGESTED;
use warren_tests::broker::{PATIENCE, QUIET, TestBroker, unique};
use warren_tests::raw::{
    AMQPProperties, FRAME_BODY, FRAME_HEADER, RawClient, encode, frame_bytes, header_bytes,
    publish_method,
};

const MESSAGES: usize = 300;
const BODY: usize = 100 * 1024;

/// The most an outbox may hold: the limit, plus the output of the one frame that crossed it
/// (a `basic.return` of one message with its framing; the connection stops taking frames
/// from its read buffer there), plus a heartbeat. Without the bound it reaches tens of
/// megabytes.
const BOUND: usize = CONGESTED + BODY + 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_to_a_client_that_does_not_read_stay_bounded() {
    let broker = TestBroker::start().await;
    let Some(server) = broker.server() else {
        return; // Only an in-process Warren shows its outbox.
    };
    let stats = server.outbox_stats();
    let (client, _) = RawClient::open_with_channel(broker.addr()).await;
    let (mut reader, mut writer) = client.into_split();

    // Every message is mandatory and routed by the default exchange to a queue that does
    // not exist, so each comes back whole as a basic.return.
    let key = unique("nowhere");
    let mut one = encode(&AMQPFrame::Method(1, publish_method("", &key, true)));
    one.extend(header_bytes(1, BODY as u64, AMQPProperties::default()));
    one.extend(frame_bytes(FRAME_BODY, 1, &vec![b'r'; BODY]));
    let sender = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            writer
                .write_all(&one)
                .await
                .expect("the broker keeps the socket open");
        }
        writer
    });

    // Push the broker until it pauses reading (or, broken, buffers past the bound), then
    // give a broken pause time to show before reading anything.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stats.read_pauses() == 0
        && stats.high_water() <= BOUND
        && !sender.is_finished()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(2 * QUIET).await;
    assert!(
        stats.high_water() <= BOUND,
        "an outbox held {} bytes while its client did not read (bound {BOUND})",
        stats.high_water()
    );
    assert!(
        stats.read_pauses() > 0,
        "the broker must have stopped reading a client whose output backed up"
    );

    // Now read: every message comes back, whole, and the bound still holds.
    let (mut returns, mut body_bytes) = (0, 0);
    while returns < MESSAGES || body_bytes < MESSAGES * BODY {
        let f = reader
            .recv_frame(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("only {returns} returns arrived"));
        match (f.kind, f.method()) {
            (_, Some(AMQPClass::Basic(basic::AMQPMethod::Return(r)))) => {
                assert_eq!(r.reply_code, 312, "{}", r.reply_text);
                returns += 1;
            }
            (FRAME_HEADER, _) => {}
            (FRAME_BODY, _) => body_bytes += f.payload.len(),
            (_, other) => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!((returns, body_bytes), (MESSAGES, MESSAGES * BODY));
    assert!(stats.high_water() <= BOUND, "{}", stats.high_water());
    // The read buffer holds at most one partial frame and one read.
    assert!(
        stats.read_buffer_high_water() <= 131_072 + READ_MAX,
        "a read buffer held {}",
        stats.read_buffer_high_water()
    );

    let writer = sender
        .await
        .expect("the sender finishes once the broker reads again");
    let mut client = reader.reunite(writer);
    assert!(client.is_alive(2).await, "the connection is healthy");
}
