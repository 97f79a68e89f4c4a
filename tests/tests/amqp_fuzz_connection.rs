//! Random and mutated frames fed to live Warren connections after a valid handshake. Every
//! case must end with `connection.close` carrying a real AMQP reply code, a closed socket, or
//! a connection that simply goes on; nothing in the broker may panic, and afterwards a fresh
//! lapin connection still works.
//!
//! Deterministic (xorshift with a fixed seed, overridable with `WARREN_FUZZ_SEED`), a few
//! thousand cases, run many at a time with a bounded wait per case and an overall deadline.
//! Skipped against an external broker (`WARREN_TEST_URI`): it is Warren's robustness that is
//! on trial, and a panic counter only sees an in-process server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, exchange, queue, tx};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use warren_tests::broker::TestBroker;
use warren_tests::raw::{
    AMQPProperties, Ending, FRAME_BODY, FRAME_HEARTBEAT, RawClient, encode, frame_bytes,
    header_bytes, publish_method,
};

const CASES: u64 = 3000;
const CONCURRENCY: usize = 64;
/// How long one case waits for the server to react before leaving the connection be.
const CASE_WAIT: Duration = Duration::from_millis(250);
/// No new cases start after this.
const DEADLINE: Duration = Duration::from_secs(40);

/// Reply codes a server may close a connection with.
const REPLY_CODES: &[u16] = &[
    320, 402, 403, 404, 405, 406, 501, 502, 503, 504, 505, 506, 530, 540, 541,
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Well-formed frames a client could send on channel 1 after the handshake.
fn corpus() -> Vec<Vec<u8>> {
    let m = |class: AMQPClass| encode(&AMQPFrame::Method(1, class));
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1000));
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let mut headers = FieldTable::default();
    headers.insert(
        "CC".into(),
        AMQPValue::FieldArray(vec![AMQPValue::LongString(LongString::from("k"))].into()),
    );
    let mut publish = encode(&AMQPFrame::Method(
        1,
        publish_method("amq.direct", "k", true),
    ));
    publish.extend(header_bytes(
        1,
        5,
        AMQPProperties::default().with_headers(headers),
    ));
    publish.extend(frame_bytes(FRAME_BODY, 1, b"hello"));
    vec![
        m(AMQPClass::Queue(queue::AMQPMethod::Declare(
            queue::Declare {
                queue: "fuzz-q".into(),
                passive: false,
                durable: false,
                exclusive: true,
                auto_delete: false,
                nowait: false,
                arguments: args,
            },
        ))),
        m(AMQPClass::Exchange(exchange::AMQPMethod::Declare(
            exchange::Declare {
                exchange: "fuzz-x".into(),
                kind: "topic".into(),
                passive: false,
                durable: false,
                auto_delete: true,
                internal: false,
                nowait: false,
                arguments: FieldTable::default(),
            },
        ))),
        m(AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
            queue: "fuzz-q".into(),
            exchange: "amq.direct".into(),
            routing_key: "k".into(),
            nowait: false,
            arguments: FieldTable::default(),
        }))),
        m(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 5,
            global: false,
        }))),
        m(AMQPClass::Basic(basic::AMQPMethod::Consume(
            basic::Consume {
                queue: "fuzz-q".into(),
                consumer_tag: "".into(),
                no_local: false,
                no_ack: false,
                exclusive: false,
                nowait: false,
                arguments: FieldTable::default(),
            },
        ))),
        m(AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: "fuzz-q".into(),
            no_ack: true,
        }))),
        m(AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 1,
            multiple: true,
        }))),
        m(AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: 0,
            multiple: true,
            requeue: true,
        }))),
        m(AMQPClass::Confirm(confirm::AMQPMethod::Select(
            confirm::Select { nowait: false },
        ))),
        m(AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {}))),
        m(AMQPClass::Channel(channel::AMQPMethod::Flow(
            channel::Flow { active: true },
        ))),
        encode(&AMQPFrame::Method(
            2,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )),
        frame_bytes(FRAME_HEARTBEAT, 0, &[]),
        publish,
    ]
}

/// One case: the bytes to send after the handshake.
fn case(rng: &mut XorShift, corpus: &[Vec<u8>]) -> Vec<u8> {
    let pick = |rng: &mut XorShift| corpus[rng.below(corpus.len() as u64) as usize].clone();
    match rng.below(8) {
        // Pure noise.
        0 => {
            let n = rng.below(96) as usize;
            rng.bytes(n)
        }
        // A valid frame with a few bytes flipped.
        1 | 2 => {
            let mut f = pick(rng);
            for _ in 0..=rng.below(4) {
                let i = rng.below(f.len() as u64) as usize;
                f[i] ^= (rng.next() as u8) | 1;
            }
            f
        }
        // A valid frame cut short, then another valid frame.
        3 => {
            let mut f = pick(rng);
            let cut = rng.below(f.len() as u64) as usize;
            f.truncate(cut);
            f.extend(pick(rng));
            f
        }
        // A frame header with a random type, channel and size around the payload.
        4 => {
            let payload = {
                let n = rng.below(64) as usize;
                rng.bytes(n)
            };
            let mut f = frame_bytes(rng.below(10) as u8, rng.below(4) as u16, &payload);
            if rng.below(2) == 0 {
                let size = (payload.len() as u32)
                    .wrapping_add(rng.below(9) as u32)
                    .wrapping_sub(4);
                f[3..7].copy_from_slice(&size.to_be_bytes());
            }
            f
        }
        // A valid method frame sent on a random channel.
        5 => {
            let mut f = pick(rng);
            let ch = rng.below(6) as u16;
            f[1..3].copy_from_slice(&ch.to_be_bytes());
            f
        }
        // A method frame whose payload is a valid class/method id followed by noise.
        6 => {
            let classes: [(u16, u16); 8] = [
                (10, 50),
                (20, 40),
                (40, 10),
                (50, 10),
                (50, 20),
                (60, 40),
                (60, 80),
                (85, 10),
            ];
            let (c, m) = classes[rng.below(classes.len() as u64) as usize];
            let mut payload = Vec::new();
            payload.extend(c.to_be_bytes());
            payload.extend(m.to_be_bytes());
            let n = rng.below(40) as usize;
            payload.extend(rng.bytes(n));
            frame_bytes(1, 1, &payload)
        }
        // Several valid frames in a row with one of them mutated.
        _ => {
            let mut out = Vec::new();
            let n = 2 + rng.below(3);
            let bad = rng.below(n);
            for i in 0..n {
                let mut f = pick(rng);
                if i == bad {
                    let j = rng.below(f.len() as u64) as usize;
                    f[j] = rng.next() as u8;
                }
                out.extend(f);
            }
            out
        }
    }
}

/// Fuzzing targets the in-process Warren; `WARREN_FUZZ_EXTERNAL=1` runs it against the
/// external broker anyway (to check the harness itself against RabbitMQ).
fn skip(broker: &TestBroker) -> bool {
    let skip = broker.is_external() && std::env::var_os("WARREN_FUZZ_EXTERNAL").is_none();
    if skip {
        eprintln!("skipped: fuzzing targets the in-process Warren");
    }
    skip
}

/// How a case ended, for the tally that shows the cases reach the server's error paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Outcome {
    Closed,
    Eof,
    StillOpen,
}

async fn run_case(addr: SocketAddr, bytes: Vec<u8>) -> Result<Outcome, String> {
    let (mut c, _) = RawClient::open_with_channel(addr).await;
    c.send_bytes(&bytes).await;
    match c.expect_connection_end(CASE_WAIT).await {
        Ending::Close { code, text, .. } => {
            if !REPLY_CODES.contains(&code) {
                return Err(format!("closed with unknown code {code} {text:?}"));
            }
            if text.is_empty() {
                return Err(format!("closed with {code} and no reply text"));
            }
            Ok(Outcome::Closed)
        }
        Ending::Eof => Ok(Outcome::Eof),
        Ending::StillOpen => Ok(Outcome::StillOpen),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_and_mutated_frames_never_crash_the_broker() {
    let broker = TestBroker::start().await;
    if skip(&broker) {
        return;
    }
    let panics = Arc::new(AtomicUsize::new(0));
    let default_hook = std::panic::take_hook();
    {
        let panics = panics.clone();
        std::panic::set_hook(Box::new(move |info| {
            panics.fetch_add(1, Ordering::SeqCst);
            default_hook(info);
        }));
    }

    let seed = std::env::var("WARREN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d_u64);
    let mut rng = XorShift(seed);
    let corpus = corpus();
    let addr = broker.addr();
    let started = tokio::time::Instant::now();
    let mut failures = Vec::new();
    let mut tally: std::collections::HashMap<Outcome, u64> = Default::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0u64;
    while next < CASES || !tasks.is_empty() {
        while next < CASES && tasks.len() < CONCURRENCY && started.elapsed() < DEADLINE {
            let bytes = case(&mut rng, &corpus);
            let id = next;
            tasks.spawn(async move { (id, run_case(addr, bytes).await) });
            next += 1;
        }
        if started.elapsed() >= DEADLINE {
            next = CASES;
        }
        match tasks.join_next().await {
            Some(Ok((id, Err(e)))) => failures.push(format!("case {id}: {e}")),
            Some(Ok((_, Ok(outcome)))) => *tally.entry(outcome).or_default() += 1,
            Some(Err(e)) => failures.push(format!("case task failed: {e}")),
            None => {}
        }
    }
    eprintln!("seed {seed:#x}: {tally:?}");
    assert!(failures.is_empty(), "seed {seed:#x}: {failures:#?}");
    let done: u64 = tally.values().sum();
    assert!(done >= 500, "only {done} cases ran before the deadline");
    assert!(
        tally.get(&Outcome::Closed).copied().unwrap_or(0) >= done / 4,
        "most mutations must be refused with connection.close: {tally:?}"
    );
    assert_eq!(
        panics.load(Ordering::SeqCst),
        0,
        "the broker panicked while fuzzed (seed {seed:#x})"
    );

    broker.assert_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_before_and_during_the_handshake_never_crashes_the_broker() {
    let broker = TestBroker::start().await;
    if skip(&broker) {
        return;
    }
    let mut rng = XorShift(0x0bad_5eed);
    for i in 0..200u64 {
        let mut c = RawClient::connect(broker.addr()).await;
        if i % 2 == 1 {
            // A valid protocol header first, then noise where start-ok belongs.
            c.send_bytes(warren_tests::raw::PROTOCOL_HEADER).await;
            c.expect_start().await;
        }
        let n = rng.below(64) as usize;
        c.send_bytes(&rng.bytes(n)).await;
        let end = c.expect_connection_end(Duration::from_millis(100)).await;
        if let Ending::Close { code, .. } = end {
            assert!(REPLY_CODES.contains(&code), "case {i}: code {code}");
        }
    }
    let (mut c, _) = RawClient::open_with_channel(broker.addr()).await;
    assert!(c.is_alive(2).await, "the broker still serves");
}
