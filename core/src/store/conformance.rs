//! The contract of [`crate::store`]'s traits as tests that any implementation must pass: the
//! in-memory store runs them in its unit tests, and a disk store runs the same ones, where
//! "reopen" is a restart over the same files.
//!
//! Use: implement [`Reopen`] for a handle to a fresh, empty store, then call the `run_*`
//! function of each contract it implements ([`run_all`] for all three) with a function
//! that makes such a handle (each check starts from an empty store). Each check panics with
//! what it expected.

use std::sync::Arc;

use bytes::Bytes;

use super::{
    BindingDefinition, Definition, DefinitionKey, DefinitionStore, DestinationKind, Durable,
    ExchangeDefinition, ExchangeKey, HeldStore, MessageStore, QueueDefinition, QueueKey,
};
use crate::broker::message::Message;
use crate::clock::NEVER;
use crate::protocol::{Properties, ShortStr};

/// A store under test that can be opened again over what it has written.
pub trait Reopen {
    /// The implementation.
    type Store: Durable + ?Sized;

    /// The store as it is after a restart (the first call opens it; the caller drops the
    /// previous handle first).
    fn reopen(&mut self) -> Arc<Self::Store>;
}

/// Runs every check of all three contracts, each on a fresh store from `fresh`.
pub fn run_all<R: Reopen>(fresh: &mut dyn FnMut() -> R)
where
    R::Store: DefinitionStore + MessageStore + HeldStore,
{
    run_definitions(fresh);
    run_messages(fresh);
    run_held(fresh);
}

/// The [`DefinitionStore`] checks.
pub fn run_definitions<R: Reopen>(fresh: &mut dyn FnMut() -> R)
where
    R::Store: DefinitionStore,
{
    definitions_survive_and_keep_their_order(&mut fresh());
    a_definition_put_again_replaces_and_a_deleted_one_is_gone(&mut fresh());
    definition_writes_become_durable(&mut fresh());
}

/// The [`MessageStore`] checks.
pub fn run_messages<R: Reopen>(fresh: &mut dyn FnMut() -> R)
where
    R::Store: MessageStore,
{
    messages_come_back_per_queue_in_order_byte_for_byte(&mut fresh());
    removed_messages_stay_gone_and_delivered_ones_are_redelivered(&mut fresh());
    a_forgotten_queue_keeps_nothing(&mut fresh());
    sync_marks_only_grow(&mut fresh());
}

/// The [`HeldStore`] checks.
pub fn run_held<R: Reopen>(fresh: &mut dyn FnMut() -> R)
where
    R::Store: HeldStore,
{
    held_messages_are_read_by_due_time_a_page_at_a_time(&mut fresh());
    released_and_forgotten_held_messages_are_gone(&mut fresh());
}

/// Waits (a bounded time) until `store` reports `mark` durable.
fn wait_durable<S: Durable + ?Sized>(store: &S, mark: super::SyncMark) {
    let rx = store.durability();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = *rx.borrow();
        assert!(!now.failed, "the store failed before {mark:?} was durable");
        if now.synced >= mark {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{mark:?} never became durable (synced: {:?})",
            now.synced
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn message(routing_key: &str, body: &'static [u8]) -> Message {
    // Headers and another property, so that "byte for byte" means something.
    let properties = Properties::parse(Bytes::from_static(&[
        0xA0, 0x00, // flags: content-type, headers
        4, b't', b'e', b'x', b't', // content-type
        0, 0, 0, 8, 1, b'x', b'S', 0, 0, 0, 1, b'y', // headers {x: "y"}
    ]))
    .expect("valid properties");
    Message::new(
        &ShortStr::copy_from_str("ex").expect("short"),
        &ShortStr::copy_from_str(routing_key).expect("short"),
        &properties,
        &Bytes::from_static(body),
    )
}

fn assert_same(a: &Message, b: &Message) {
    assert_eq!(a.exchange(), b.exchange(), "exchange");
    assert_eq!(a.routing_key(), b.routing_key(), "routing key");
    assert_eq!(
        a.properties().raw(),
        b.properties().raw(),
        "properties byte for byte"
    );
    assert_eq!(a.body(), b.body(), "body");
}

fn queue(name: &str) -> QueueKey {
    QueueKey {
        vhost: "/".into(),
        queue: name.into(),
    }
}

fn exchange_key(name: &str) -> ExchangeKey {
    ExchangeKey {
        vhost: "/".into(),
        exchange: name.into(),
    }
}

fn exchange(name: &str, kind: &str) -> Definition {
    Definition::Exchange(ExchangeDefinition {
        vhost: "/".into(),
        name: name.into(),
        kind: kind.into(),
        auto_delete: false,
        internal: false,
        arguments: Bytes::new(),
    })
}

fn queue_definition(name: &str) -> Definition {
    Definition::Queue(QueueDefinition {
        vhost: "/".into(),
        name: name.into(),
        auto_delete: false,
        arguments: Bytes::from_static(&[1, b'k', b't', 1]),
    })
}

fn binding(source: &str, queue: &str, key: &str) -> Definition {
    Definition::Binding(BindingDefinition {
        vhost: "/".into(),
        source: source.into(),
        destination_kind: DestinationKind::Queue,
        destination: queue.into(),
        key: key.into(),
        arguments: Bytes::new(),
    })
}

fn vhost_definition(name: &str) -> Definition {
    Definition::VHost(super::VHostDefinition {
        name: name.into(),
        description: String::new(),
        tags: Vec::new(),
    })
}

fn user_definition(name: &str) -> Definition {
    Definition::User(super::UserDefinition {
        name: name.into(),
        password_hash: Bytes::from_static(b"1234digest"),
        hashing_algorithm: "rabbit_password_hashing_sha256".into(),
        tags: vec!["management".into()],
    })
}

fn permission_definition(vhost: &str, user: &str) -> Definition {
    Definition::Permission(super::PermissionDefinition {
        vhost: vhost.into(),
        user: user.into(),
        configure: ".*".into(),
        write: "".into(),
        read: "^q".into(),
    })
}

/// Vhosts, users and permissions load first, then exchanges and queues, then bindings, each
/// rank in first-put order, after a reopen.
pub fn definitions_survive_and_keep_their_order<R: Reopen>(r: &mut R)
where
    R::Store: DefinitionStore,
{
    let store = r.reopen();
    store.put(permission_definition("dev", "bob")).expect("put");
    store.put(binding("x", "q", "k")).expect("put");
    store.put(user_definition("bob")).expect("put");
    store.put(vhost_definition("dev")).expect("put");
    store.put(queue_definition("q")).expect("put");
    store.put(exchange("x", "topic")).expect("put");
    store.put(exchange("d", "x-delayed-message")).expect("put");
    store.sync().expect("sync");
    drop(store);
    let loaded = r.reopen().load().expect("load");
    assert_eq!(
        loaded,
        vec![
            vhost_definition("dev"),
            user_definition("bob"),
            permission_definition("dev", "bob"),
            queue_definition("q"),
            exchange("x", "topic"),
            exchange("d", "x-delayed-message"),
            binding("x", "q", "k"),
        ],
        "by rank, each in put order"
    );
}

/// A definition put under an existing key replaces it; a removed one does not come back.
pub fn a_definition_put_again_replaces_and_a_deleted_one_is_gone<R: Reopen>(r: &mut R)
where
    R::Store: DefinitionStore,
{
    let store = r.reopen();
    store.put(exchange("x", "direct")).expect("put");
    store.put(exchange("y", "direct")).expect("put");
    store.put(exchange("x", "fanout")).expect("put again");
    store.put(binding("x", "q", "k")).expect("put");
    store
        .delete(&DefinitionKey::Exchange("/".into(), "y".into()))
        .expect("delete");
    store
        .delete(&binding("x", "q", "k").key())
        .expect("remove binding");
    store
        .delete(&DefinitionKey::Queue("/".into(), "never-put".into()))
        .expect("removing nothing is fine");
    store.sync().expect("sync");
    drop(store);
    assert_eq!(
        r.reopen().load().expect("load"),
        vec![exchange("x", "fanout")],
        "replaced in place, removed ones gone"
    );
}

/// Each queue gets back its own messages, in append order, every byte as appended, with
/// the deadline it was given; a fan-out is one message for every queue.
pub fn messages_come_back_per_queue_in_order_byte_for_byte<R: Reopen>(r: &mut R)
where
    R::Store: MessageStore,
{
    let store = r.reopen();
    let (a, b) = (queue("a"), queue("b"));
    let first = message("k1", b"first");
    let second = message("k2", b"second");
    let (id1, _) = store
        .append(&first, &[(&a, NEVER), (&b, 1_000)])
        .expect("append");
    let (id2, _) = store.append(&second, &[(&a, 2_000)]).expect("append");
    assert_ne!(id1, id2, "ids are unique");
    store.sync().expect("sync");
    drop(store);
    let store = r.reopen();
    let in_a = store.recover(&a).expect("recover a");
    assert_eq!(in_a.len(), 2);
    assert_eq!((in_a[0].id, in_a[0].deadline), (id1, NEVER));
    assert_eq!((in_a[1].id, in_a[1].deadline), (id2, 2_000));
    assert_same(&in_a[0].message, &first);
    assert_same(&in_a[1].message, &second);
    assert!(in_a.iter().all(|m| !m.redelivered), "never delivered");
    let in_b = store.recover(&b).expect("recover b");
    assert_eq!(in_b.len(), 1);
    assert_eq!((in_b[0].id, in_b[0].deadline), (id1, 1_000));
    assert!(
        store.recover(&queue("other")).expect("recover").is_empty(),
        "an unknown queue has nothing"
    );
}

/// Removing a message from one queue leaves it in the others; a delivered one comes back
/// redelivered.
pub fn removed_messages_stay_gone_and_delivered_ones_are_redelivered<R: Reopen>(r: &mut R)
where
    R::Store: MessageStore,
{
    let store = r.reopen();
    let (a, b) = (queue("a"), queue("b"));
    let (id1, _) = store
        .append(&message("k", b"1"), &[(&a, NEVER), (&b, NEVER)])
        .expect("append");
    let (id2, _) = store
        .append(&message("k", b"2"), &[(&a, NEVER)])
        .expect("append");
    store.remove(&a, id1).expect("ack in a");
    store.delivered(&a, id2).expect("delivered");
    store.sync().expect("sync");
    drop(store);
    let store = r.reopen();
    let in_a = store.recover(&a).expect("recover");
    assert_eq!(in_a.len(), 1, "the acked one is gone from a");
    assert_eq!(in_a[0].id, id2);
    assert!(in_a[0].redelivered, "delivered before the restart");
    let in_b = store.recover(&b).expect("recover");
    assert_eq!(in_b.len(), 1, "still in b");
    assert_eq!(in_b[0].id, id1);
    assert!(!in_b[0].redelivered);
}

/// A deleted queue's messages are gone, and only its.
pub fn a_forgotten_queue_keeps_nothing<R: Reopen>(r: &mut R)
where
    R::Store: MessageStore,
{
    let store = r.reopen();
    let (a, b) = (queue("a"), queue("b"));
    store
        .append(&message("k", b"1"), &[(&a, NEVER), (&b, NEVER)])
        .expect("append");
    store.forget_queue(&a).expect("forget");
    store.sync().expect("sync");
    drop(store);
    let store = r.reopen();
    assert!(store.recover(&a).expect("recover").is_empty());
    assert_eq!(store.recover(&b).expect("recover").len(), 1);
}

/// Every write moves the mark forward; a sync reaches the last write's mark.
pub fn sync_marks_only_grow<R: Reopen>(r: &mut R)
where
    R::Store: MessageStore,
{
    let store = r.reopen();
    let a = queue("a");
    let (_, m1) = store
        .append(&message("k", b"1"), &[(&a, NEVER)])
        .expect("append");
    let (_, m2) = store
        .append(&message("k", b"2"), &[(&a, NEVER)])
        .expect("append");
    assert!(m2 > m1, "later writes have later marks");
    let synced = store.sync().expect("sync");
    assert!(synced >= m2, "a sync covers every write before it");
    assert!(
        store.durability().borrow().synced >= synced,
        "the synced mark never goes back"
    );
    let (_, m3) = store
        .append(&message("k", b"3"), &[(&a, NEVER)])
        .expect("append");
    wait_durable(&*store, m3);
}

/// A definition write's mark becomes durable without anyone calling `sync` (the writer
/// syncs on its own), and what it wrote is then there after a reopen.
pub fn definition_writes_become_durable<R: Reopen>(r: &mut R)
where
    R::Store: DefinitionStore,
{
    let store = r.reopen();
    let mark = store.put(exchange("x", "direct")).expect("put");
    wait_durable(&*store, mark);
    drop(store);
    assert_eq!(
        r.reopen().load().expect("load"),
        vec![exchange("x", "direct")]
    );
}

/// Held messages come back by due time (ties by id), a page at a time, up to a horizon.
pub fn held_messages_are_read_by_due_time_a_page_at_a_time<R: Reopen>(r: &mut R)
where
    R::Store: HeldStore,
{
    let store = r.reopen();
    let (x, y) = (exchange_key("x"), exchange_key("y"));
    let far = 1u64 << 40; // beyond 2^32 ms
    let keys = vec![b"cc".to_vec()];
    let (late, _) = store
        .hold(&x, far, &message("late", b"l"), &[])
        .expect("hold");
    let (early, _) = store
        .hold(&x, 1_000, &message("early", b"e"), &keys)
        .expect("hold");
    let (tie, _) = store
        .hold(&x, 1_000, &message("tie", b"t"), &[])
        .expect("hold");
    store
        .hold(&y, 5, &message("other", b"o"), &[])
        .expect("hold");
    store.sync().expect("sync");
    drop(store);
    let store = r.reopen();
    assert_eq!(store.count(&x).expect("count"), 3);
    let first = store.page(&x, None, NEVER, 2).expect("page");
    let ids: Vec<_> = first.iter().map(|h| h.id).collect();
    assert_eq!(ids, [early, tie], "due order, ties in hold order");
    assert_eq!(first[0].keys, keys, "extra keys kept");
    assert_same(&first[0].message, &message("early", b"e"));
    let cursor = first.last().map(|h| (h.due, h.id));
    let rest = store.page(&x, cursor, NEVER, 10).expect("page");
    assert_eq!(rest.len(), 1);
    assert_eq!((rest[0].id, rest[0].due), (late, far));
    assert!(
        store.page(&x, None, 999, 10).expect("page").is_empty(),
        "nothing due before the horizon"
    );
    assert_eq!(
        store.page(&x, None, far - 1, 10).expect("page").len(),
        2,
        "the far one is past the horizon"
    );
}

/// A released (fired or cancelled) message and a deleted exchange's messages stay gone.
pub fn released_and_forgotten_held_messages_are_gone<R: Reopen>(r: &mut R)
where
    R::Store: HeldStore,
{
    let store = r.reopen();
    let (x, y) = (exchange_key("x"), exchange_key("y"));
    let (fired, _) = store.hold(&x, 10, &message("a", b"a"), &[]).expect("hold");
    store.hold(&x, 20, &message("b", b"b"), &[]).expect("hold");
    store.hold(&y, 10, &message("c", b"c"), &[]).expect("hold");
    store.release(&x, fired).expect("release");
    store.forget_exchange(&y).expect("forget");
    store.sync().expect("sync");
    drop(store);
    let store = r.reopen();
    let left = store.page(&x, None, NEVER, 10).expect("page");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message.routing_key(), "b");
    assert_eq!(store.count(&y).expect("count"), 0);
}
