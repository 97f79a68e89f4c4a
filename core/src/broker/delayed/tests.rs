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
    let broker = Broker::new(ExchangeTypeRegistry::with_builtins())
        .expect("broker")
        .vhost(DEFAULT_VHOST)
        .expect("the default vhost");
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
