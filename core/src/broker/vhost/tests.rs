//! The vhost's catalogue against its stores and its neighbours: what is recorded as a
//! definition, what deleting forgets, and that two vhosts share no name.

use std::sync::Arc;

use amq_protocol::types::FieldTable;
use bytes::Bytes;

use super::{BindTarget, ExchangeDeclare, QueueDeclare, VHost};
use crate::broker::publish::{Origin, Publish, PublishScratch, Routed};
use crate::broker::{Broker, DEFAULT_VHOST, Message, RoutingKeys};
use crate::plugin::ExchangeTypeRegistry;
use crate::protocol::{Properties, ReplyCode, ShortStr};
use crate::store::{Definition, DefinitionStore, Stores, memory::MemoryStore};

fn broker() -> (Arc<Broker>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let broker = Broker::with_stores(
        ExchangeTypeRegistry::with_builtins(),
        Stores::from_one(store.clone()),
    )
    .expect("broker");
    (broker, store)
}

fn exchange(vhost: &VHost, name: &str, durable: bool) {
    vhost
        .declare_exchange(&ExchangeDeclare {
            name,
            kind: "direct",
            passive: false,
            durable,
            auto_delete: false,
            internal: false,
            arguments: &FieldTable::default(),
        })
        .expect("exchange declared");
}

fn queue(vhost: &VHost, name: &str, durable: bool, exclusive: bool) {
    vhost
        .declare_queue(
            1,
            &QueueDeclare {
                name,
                passive: false,
                durable,
                exclusive,
                auto_delete: false,
                arguments: &FieldTable::default(),
            },
        )
        .expect("queue declared");
}

fn bind(vhost: &VHost, source: &str, queue: &str) {
    vhost
        .bind(
            1,
            BindTarget::Queue(queue),
            source,
            "k",
            &FieldTable::default(),
        )
        .expect("bound");
}

/// The stored definitions as short labels, in load order.
fn stored(store: &MemoryStore) -> Vec<String> {
    store
        .load()
        .expect("load")
        .into_iter()
        .map(|d| match d {
            Definition::Exchange(x) => format!("exchange {}", x.name),
            Definition::Queue(q) => format!("queue {}", q.name),
            Definition::Binding(b) => format!("binding {}->{}", b.source, b.destination),
            Definition::VHost(v) => format!("vhost {}", v.name),
            Definition::User(u) => format!("user {}", u.name),
            Definition::Permission(p) => format!("permission {}@{}", p.user, p.vhost),
        })
        .collect()
}

#[test]
fn only_durable_definitions_are_stored() {
    let (broker, store) = broker();
    let vhost = broker.vhost(DEFAULT_VHOST).expect("default vhost");
    exchange(&vhost, "dx", true);
    exchange(&vhost, "tx", false);
    queue(&vhost, "dq", true, false);
    queue(&vhost, "tq", false, false);
    queue(&vhost, "eq", true, true);
    bind(&vhost, "dx", "dq");
    bind(&vhost, "dx", "tq");
    bind(&vhost, "tx", "dq");
    bind(&vhost, "dx", "eq");
    assert_eq!(
        stored(&store),
        ["exchange dx", "queue dq", "binding dx->dq"],
        "transient and exclusive objects, and bindings touching them, are not stored"
    );
}

#[test]
fn deleting_forgets_the_object_and_its_bindings() {
    let (broker, store) = broker();
    let vhost = broker.vhost(DEFAULT_VHOST).expect("default vhost");
    exchange(&vhost, "dx", true);
    queue(&vhost, "dq", true, false);
    queue(&vhost, "other", true, false);
    bind(&vhost, "dx", "dq");
    bind(&vhost, "dx", "other");
    vhost.delete_queue(1, "dq", false, false).expect("deleted");
    assert_eq!(
        stored(&store),
        ["exchange dx", "queue other", "binding dx->other"]
    );
    vhost.delete_exchange("dx", false).expect("deleted");
    assert_eq!(stored(&store), ["queue other"]);
}

fn message(routing_key: &str) -> Message {
    Message::new(
        &ShortStr::empty(),
        &ShortStr::copy_from_str(routing_key).expect("short"),
        &Properties::empty(),
        &Bytes::from_static(b"m"),
    )
}

#[test]
fn vhosts_share_no_names_and_name_themselves_in_errors() {
    let (broker, _) = broker();
    let root = broker.vhost(DEFAULT_VHOST).expect("default vhost");
    let dev = broker.add_vhost("/dev").expect("second vhost");
    queue(&root, "q", false, false);
    let missing = dev.usable_queue(1, "q").expect_err("not in /dev");
    assert_eq!(missing.code, ReplyCode::NotFound);
    assert_eq!(missing.text, "no queue 'q' in vhost '/dev'");
    queue(&dev, "q", false, false);

    let default = dev
        .existing_exchange("")
        .expect("each vhost has its default exchange");
    let outcome = dev
        .publish(
            Publish {
                exchange: &default,
                message: message("q"),
                keys: &RoutingKeys::default(),
                mandatory: false,
                origin: Origin::Client,
            },
            &mut PublishScratch::default(),
        )
        .expect("published");
    assert_eq!(outcome.routed, Routed::Queues(1));
    let count = |v: &VHost| v.queue("q").expect("queue").counts().0.0;
    assert_eq!(
        (count(&root), count(&dev)),
        (0, 1),
        "only /dev's queue got it"
    );
    assert_eq!(broker.vhost_names(), ["/", "/dev"]);
}

fn persistent(routing_key: &str, body: &'static [u8]) -> Message {
    Message::new(
        &ShortStr::copy_from_str("dx").expect("short"),
        &ShortStr::copy_from_str(routing_key).expect("short"),
        // delivery-mode 2
        &Properties::parse(Bytes::from_static(&[0x10, 0x00, 2])).expect("valid"),
        &Bytes::from_static(body),
    )
}

fn publish(vhost: &VHost, exchange: &str, message: Message) -> crate::broker::Outcome {
    let exchange = vhost.existing_exchange(exchange).expect("exchange");
    vhost
        .publish(
            Publish {
                exchange: &exchange,
                message,
                keys: &RoutingKeys::default(),
                mandatory: false,
                origin: Origin::Client,
            },
            &mut PublishScratch::default(),
        )
        .expect("published")
}

/// A second broker over the same store, restored as at start.
fn restarted(store: &Arc<MemoryStore>) -> Arc<Broker> {
    let stores = Stores::from_one(store.clone());
    let kept = crate::broker::recovery::Kept::read(&stores).expect("read");
    let broker =
        Broker::with_stores(ExchangeTypeRegistry::with_builtins(), stores).expect("broker");
    let restored = broker.restore(kept);
    assert_eq!(restored.failed, 0, "{restored:?}");
    broker
}

#[test]
fn a_restart_brings_back_durable_objects_bindings_and_persistent_messages_only() {
    let (broker, store) = broker();
    let vhost = broker.vhost(DEFAULT_VHOST).expect("default vhost");
    exchange(&vhost, "dx", true);
    queue(&vhost, "dq", true, false);
    queue(&vhost, "tq", false, false);
    bind(&vhost, "dx", "dq");
    bind(&vhost, "dx", "tq");
    let stored = publish(&vhost, "dx", persistent("k", b"kept"));
    assert!(
        matches!(stored.durably, Some(crate::broker::Durably::Messages(_))),
        "a persistent message reaching a durable queue is written: {stored:?}"
    );
    let transient = Message::new(
        &ShortStr::copy_from_str("dx").expect("short"),
        &ShortStr::copy_from_str("k").expect("short"),
        &Properties::empty(),
        &Bytes::from_static(b"transient"),
    );
    let outcome = publish(&vhost, "dx", transient);
    assert_eq!(outcome.durably, None, "a transient message is not written");
    drop((vhost, broker));

    let broker = restarted(&store);
    let vhost = broker.vhost(DEFAULT_VHOST).expect("default vhost");
    assert!(vhost.queue("tq").is_none(), "a transient queue is gone");
    let dq = vhost.queue("dq").expect("the durable queue is back");
    let (got, _) = dq.get();
    let (item, left) = got.expect("its persistent message is back");
    assert_eq!((item.message.body(), left), (&b"kept"[..], 0));
    assert!(!item.redelivered, "it was never delivered");
    // The binding was replayed into the plugin.
    assert_eq!(
        publish(&vhost, "dx", persistent("k", b"again")).routed,
        Routed::Queues(1)
    );
}

#[test]
fn a_stored_exchange_of_a_type_not_loaded_stays_defined_and_refuses_publishes() {
    let store = Arc::new(MemoryStore::default());
    store
        .put(Definition::Exchange(crate::store::ExchangeDefinition {
            vhost: DEFAULT_VHOST.into(),
            name: "hashed".into(),
            kind: "x-consistent-hash".into(),
            auto_delete: false,
            internal: false,
            arguments: Bytes::new(),
        }))
        .expect("put");
    let broker = restarted(&store);
    let vhost = broker.vhost(DEFAULT_VHOST).expect("default vhost");
    let x = vhost.exchange("hashed").expect("still defined");
    assert!(x.is_unavailable());
    let err = vhost
        .publish(
            Publish {
                exchange: &x,
                message: message("k"),
                keys: &RoutingKeys::default(),
                mandatory: false,
                origin: Origin::Client,
            },
            &mut PublishScratch::default(),
        )
        .expect_err("refused");
    assert_eq!(err.code, ReplyCode::PreconditionFailed);
    assert!(
        err.text
            .contains("'x-consistent-hash', which is not loaded"),
        "{}",
        err.text
    );
    // A redeclare is compared, not refused as an unknown type.
    vhost
        .declare_exchange(&ExchangeDeclare {
            name: "hashed",
            kind: "x-consistent-hash",
            passive: false,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: &FieldTable::default(),
        })
        .expect("an equivalent redeclare is fine");
    assert_eq!(
        stored(&store),
        ["exchange hashed"],
        "never dropped from the store"
    );
}

#[test]
fn exchanges_count_messages_through_them_and_deleted_objects_keep_their_totals() {
    use crate::stats::Counter;
    let (broker, _) = broker();
    let vhost = broker.vhost(DEFAULT_VHOST).expect("default vhost");
    exchange(&vhost, "outer", false);
    exchange(&vhost, "inner", false);
    queue(&vhost, "qa", false, false);
    queue(&vhost, "qb", false, false);
    bind(&vhost, "outer", "qa");
    bind(&vhost, "inner", "qb");
    vhost
        .bind(
            1,
            BindTarget::Exchange("inner"),
            "outer",
            "k",
            &FieldTable::default(),
        )
        .expect("exchange bound");
    assert_eq!(
        publish(&vhost, "outer", message("k")).routed,
        Routed::Queues(2)
    );
    assert_eq!(
        publish(&vhost, "outer", message("none")).routed,
        Routed::Unroutable
    );
    let counted = |name: &str, kind| {
        vhost
            .exchange(name)
            .expect("exchange")
            .stats()
            .counters
            .get(kind)
    };
    assert_eq!(counted("outer", Counter::PublishIn), 2);
    assert_eq!(counted("outer", Counter::PublishOut), 1, "qa only");
    assert_eq!(
        counted("inner", Counter::PublishIn),
        1,
        "through the e2e binding"
    );
    assert_eq!(counted("inner", Counter::PublishOut), 1, "qb");
    let enqueued = vhost
        .queue("qa")
        .expect("qa")
        .stats()
        .counters
        .get(Counter::Publish);
    assert_eq!(enqueued, 1);

    let before = broker.message_totals();
    assert_eq!(before.get(Counter::PublishIn), 3);
    vhost.delete_queue(1, "qa", false, false).expect("deleted");
    vhost.delete_exchange("inner", false).expect("deleted");
    let after = broker.message_totals();
    assert_eq!(
        after, before,
        "a deletion takes nothing from the node's totals"
    );
    assert_eq!(vhost.message_totals().get(Counter::PublishIn), 3);
    let churn = &broker.stats().churn;
    let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (
            read(&churn.queues_declared),
            read(&churn.queues_created),
            read(&churn.queues_deleted)
        ),
        (2, 2, 1)
    );
}
