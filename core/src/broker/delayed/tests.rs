//! The driver under tokio's paused clock: long delays fire when (virtual) time reaches them,
//! not before, and deletion stops everything.

use std::sync::Arc;
use std::time::Duration;

use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::Bytes;

use crate::broker::vhost::{BindTarget, ExchangeDeclare, QueueDeclare};
use crate::broker::{Broker, DEFAULT_VHOST, Message, RoutingKeys, VHost};
use crate::clock::now_ms;
use crate::plugin::ExchangeTypeRegistry;
use crate::protocol::{Properties, ShortStr};

fn setup() -> (
    Arc<VHost>,
    Arc<crate::broker::Exchange>,
    Arc<crate::broker::Queue>,
) {
    declared(
        Broker::new(ExchangeTypeRegistry::with_builtins())
            .expect("broker")
            .vhost(DEFAULT_VHOST)
            .expect("the default vhost"),
    )
}

/// Exchange `d` (delayed, inner direct) bound to queue `q` with key `k`, in `broker`.
fn declared(
    broker: Arc<VHost>,
) -> (
    Arc<VHost>,
    Arc<crate::broker::Exchange>,
    Arc<crate::broker::Queue>,
) {
    let mut args = FieldTable::default();
    args.insert(
        "x-delayed-type".into(),
        AMQPValue::LongString(LongString::from("direct")),
    );
    broker
        .declare_exchange(&ExchangeDeclare {
            name: "d",
            kind: super::DELAYED_TYPE,
            passive: false,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: &args,
        })
        .expect("declare");
    let queue = broker
        .declare_queue(
            1,
            &QueueDeclare {
                name: "q",
                passive: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                arguments: &FieldTable::default(),
            },
        )
        .expect("queue");
    broker
        .bind(1, BindTarget::Queue("q"), "d", "k", &FieldTable::default())
        .expect("bind");
    let exchange = broker.exchange("d").expect("exists");
    (broker, exchange, queue)
}

fn message() -> Message {
    Message::new(
        &ShortStr::copy_from_str("d").expect("short"),
        &ShortStr::copy_from_str("k").expect("short"),
        &Properties::empty(),
        &Bytes::from_static(b"m"),
    )
}

#[tokio::test(start_paused = true)]
async fn a_ten_year_delay_fires_after_ten_years_and_not_before() {
    let (_broker, exchange, queue) = setup();
    let delayed = exchange.delayed().expect("delayed").clone();
    let ten_years = 315_360_000_000_u64;
    delayed.hold(now_ms() + ten_years, message(), &RoutingKeys::default());
    tokio::time::sleep(Duration::from_millis(ten_years - 1000)).await;
    assert_eq!(queue.counts().0.0, 0, "not yet");
    assert_eq!(delayed.len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(queue.counts().0.0, 1, "fired");
    assert!(delayed.is_empty());
}

#[tokio::test(start_paused = true)]
async fn deleting_the_exchange_drops_pending_and_fires_nothing() {
    let (broker, exchange, queue) = setup();
    let delayed = exchange.delayed().expect("delayed").clone();
    delayed.hold(now_ms() + 1000, message(), &RoutingKeys::default());
    broker.delete_exchange("d", false).expect("delete");
    assert!(delayed.is_empty());
    delayed.hold(now_ms() + 1000, message(), &RoutingKeys::default());
    assert!(delayed.is_empty(), "nothing is held after deletion");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(queue.counts().0.0, 0);
}

#[tokio::test(start_paused = true)]
async fn an_earlier_insert_wakes_the_driver() {
    let (_broker, exchange, queue) = setup();
    let delayed = exchange.delayed().expect("delayed").clone();
    delayed.hold(now_ms() + 3_600_000, message(), &RoutingKeys::default());
    tokio::time::sleep(Duration::from_millis(10)).await;
    delayed.hold(now_ms() + 100, message(), &RoutingKeys::default());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(queue.counts().0.0, 1);
    assert_eq!(delayed.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn extra_keys_route_at_fire_time_and_list_shows_the_packed_message() {
    let (_broker, exchange, queue) = setup();
    let delayed = exchange.delayed().expect("delayed").clone();
    let unrouted = Message::new(
        &ShortStr::copy_from_str("d").expect("short"),
        &ShortStr::copy_from_str("elsewhere").expect("short"),
        &Properties::empty(),
        &Bytes::from_static(b"sixteen byte msg"),
    );
    delayed.hold(
        now_ms() + 1000,
        unrouted,
        &RoutingKeys::from_extra(vec![b"k".to_vec()]),
    );
    let listed = delayed.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].routing_key, "elsewhere");
    assert_eq!(listed[0].body_size, 16);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(queue.counts().0.0, 1, "routed by its CC key");
    assert!(delayed.is_empty());
}

#[tokio::test(start_paused = true)]
async fn holds_cancels_and_fires_are_counted_and_lateness_observed() {
    use crate::stats::Counter;
    let broker = Broker::new(ExchangeTypeRegistry::with_builtins()).expect("broker");
    let (vhost, exchange, queue) = declared(broker.vhost(DEFAULT_VHOST).expect("vhost"));
    let delayed = exchange.delayed().expect("delayed").clone();
    for delay in [100, 200, 60_000] {
        delayed.hold(now_ms() + delay, message(), &RoutingKeys::default());
    }
    let cancel = delayed.list()[2].id;
    assert!(delayed.cancel(cancel).is_some());
    assert!(
        delayed.cancel(cancel).is_none(),
        "a second cancel counts nothing"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queue.counts().0.0, 2);
    let counted = |kind| delayed.stats().counters.get(kind);
    assert_eq!(
        (
            counted(Counter::Held),
            counted(Counter::Fired),
            counted(Counter::Cancelled)
        ),
        (3, 2, 1)
    );
    let lateness = broker.stats().lateness.read();
    assert_eq!(lateness.count, 2);
    drop(vhost);
}

#[tokio::test(start_paused = true)]
async fn due_histogram_buckets_by_minute_hour_day_and_later() {
    let (_vhost, exchange, _queue) = setup();
    let delayed = exchange.delayed().expect("delayed").clone();
    let now = now_ms();
    for delay in [
        1_000,
        59_999,
        60_000,
        3_599_999,
        3_600_000,
        86_400_000,
        10 * 86_400_000,
    ] {
        delayed.hold(now + delay, message(), &RoutingKeys::default());
    }
    let histogram = delayed.due_histogram(now);
    let counts: Vec<(&str, u64, Option<u64>, u64)> = histogram
        .buckets
        .iter()
        .map(|b| {
            (
                b.label.as_str(),
                b.from_ms - now,
                b.to_ms.map(|t| t - now),
                b.count,
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("next minute", 0, Some(60_000), 2),
            ("next hour", 60_000, Some(3_600_000), 2),
            ("next day", 3_600_000, Some(86_400_000), 1),
            ("later", 86_400_000, None, 2),
        ]
    );
    assert_eq!((histogram.pending, histogram.exact), (7, true));
    assert_eq!(delayed.next_due_ms(), Some(now + 1_000));
    // Asked from a later moment, what has come due (not yet fired) is in the first bucket.
    let later = delayed.due_histogram(now + 2 * 3_600_000);
    let counts: Vec<u64> = later.buckets.iter().map(|b| b.count).collect();
    assert_eq!(counts, [5, 0, 1, 1]);
}

/// Not a timing assertion: prints what one histogram of a million pending messages costs
/// (the figure `docs/ARCHITECTURE.md` quotes), and checks it adds up.
#[tokio::test(start_paused = true)]
async fn due_histogram_of_a_million_pending_walks_slot_counts() {
    let (_vhost, exchange, _queue) = setup();
    let delayed = exchange.delayed().expect("delayed").clone();
    let now = now_ms();
    let n = 1_000_000u64;
    let one = message();
    // Spread evenly over the next ten days.
    for i in 0..n {
        delayed.hold(now + 1 + i * 864, one.clone(), &RoutingKeys::default());
    }
    let started = std::time::Instant::now();
    let histogram = delayed.due_histogram(now);
    let took = started.elapsed();
    let counts: Vec<u64> = histogram.buckets.iter().map(|b| b.count).collect();
    eprintln!(
        "due_histogram over {n} pending: {took:?}, counts {counts:?} (exact: {})",
        histogram.exact
    );
    assert_eq!(histogram.pending, n);
    // Entry by entry: 70 in the first minute, 4 167 by the hour, 100 000 by the day.
    let exact = [70, 4_167 - 70, 100_000 - 4_167, n - 100_000];
    for (found, want) in counts.iter().zip(exact) {
        let off = found.abs_diff(want);
        assert!(off * 100 <= n, "{counts:?} against {exact:?}");
    }
}
