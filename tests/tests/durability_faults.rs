//! Warren on a store that syncs only when the test says so, and fails when told
//! ([`FailingStore`]): a confirm or a `tx.commit-ok` for a stored publish waits for its sync;
//! a failed sync nacks whatever waited on it and every stored publish after it, and never
//! lets an ack (or a commit-ok) out for a write that was not synced; traffic that is not
//! stored does not depend on the store. In-process only (the store is the test's).

#![cfg(feature = "in-process")]

use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::poll_once;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

use warren_tests::broker::{PATIENCE, QUIET, TestBroker, reply_of, unique};
use warren_tests::delayed::{delay_ms, with_headers};
use warren_tests::failing_store::FailingStore;

/// Warren running on `store`; `None` (the test is skipped) against an external broker.
async fn broker_on(store: &Arc<FailingStore>) -> Option<TestBroker> {
    let stores = store.stores();
    let broker = TestBroker::start_with(|c| c.stores = Some(stores)).await;
    if broker.is_external() {
        eprintln!("skipped: needs Warren in-process, on the test's store");
        return None;
    }
    Some(broker)
}

async fn durable_queue(ch: &Channel) -> String {
    let q = unique("durable");
    ch.queue_declare(
        &q,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declares a durable queue");
    q
}

/// Ready messages in `q`, asked on a connection of its own (a connection whose output is held
/// for a commit answers nothing meanwhile).
async fn depth(broker: &TestBroker, q: &str) -> u32 {
    let (_conn, ch) = broker.channel().await;
    warren_tests::queues::count(&ch, q).await
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn transient() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(1)
}

async fn publish(
    ch: &Channel,
    exchange: &str,
    key: &str,
    properties: BasicProperties,
) -> PublisherConfirm {
    ch.basic_publish(
        exchange,
        key,
        BasicPublishOptions::default(),
        b"body",
        properties,
    )
    .await
    .expect("publishes")
}

async fn confirming(broker: &TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    (conn, ch)
}

/// The broker's answer to a publish.
async fn outcome(confirm: PublisherConfirm) -> Confirmation {
    tokio::time::timeout(PATIENCE, confirm)
        .await
        .unwrap_or_else(|_| panic!("no confirm within {PATIENCE:?}"))
        .expect("the channel is still open")
}

/// Asserts that none of `confirms` arrives within [`QUIET`].
async fn assert_unconfirmed(confirms: &mut [PublisherConfirm], why: &str) {
    tokio::time::sleep(QUIET).await;
    for (n, confirm) in confirms.iter_mut().enumerate() {
        if let Some(got) = poll_once(confirm).await {
            panic!("publish {n} was answered ({got:?}) {why}");
        }
    }
}

/// Waits until the broker has written `writes` more times than `before`.
async fn await_writes(store: &FailingStore, before: u64, writes: u64, what: &str) {
    assert!(
        store.wait_for_writes(before + writes, PATIENCE).await,
        "{what} should have been written to the store (written {} of {})",
        store.written() - before,
        writes
    );
}

#[tokio::test]
async fn confirms_wait_for_the_sync_of_their_writes() {
    let store = FailingStore::new();
    let Some(broker) = broker_on(&store).await else {
        return;
    };
    let (_conn, ch) = confirming(&broker).await;
    let q = durable_queue(&ch).await;

    let before = store.written();
    let mut confirms = Vec::new();
    for _ in 0..5 {
        confirms.push(publish(&ch, "", &q, persistent()).await);
    }
    await_writes(
        &store,
        before,
        5,
        "five persistent publishes to a durable queue",
    )
    .await;
    assert_unconfirmed(&mut confirms, "while its write is not synced").await;

    store.sync_now().expect("the sync succeeds");
    for (n, confirm) in confirms.into_iter().enumerate() {
        let got = outcome(confirm).await;
        assert!(got.is_ack(), "publish {n} after the sync: {got:?}");
    }
    assert_eq!(depth(&broker, &q).await, 5);
}

#[tokio::test]
async fn a_failed_sync_nacks_what_waited_and_every_later_stored_publish() {
    let store = FailingStore::new();
    let Some(broker) = broker_on(&store).await else {
        return;
    };
    let (_conn, ch) = confirming(&broker).await;
    let q = durable_queue(&ch).await;
    let tq = warren_tests::delayed::queue(&ch).await;

    // Synced: acked.
    let before = store.written();
    let synced = publish(&ch, "", &q, persistent()).await;
    await_writes(&store, before, 1, "a persistent publish").await;
    store.sync_now().expect("the sync succeeds");
    assert!(outcome(synced).await.is_ack(), "a synced publish is acked");

    // Written but never synced: the sync fails under them.
    let before = store.written();
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(publish(&ch, "", &q, persistent()).await);
    }
    await_writes(&store, before, 3, "three persistent publishes").await;
    assert_unconfirmed(&mut waiting, "before any sync").await;
    store.fail_next_sync();
    assert!(store.sync_now().is_err(), "the sync was made to fail");
    for (n, confirm) in waiting.into_iter().enumerate() {
        let got = outcome(confirm).await;
        assert!(
            got.is_nack(),
            "publish {n}, whose write was never synced, must be nacked: {got:?}"
        );
    }

    // The store refuses writes now: a stored publish is nacked at once.
    let later = outcome(publish(&ch, "", &q, persistent()).await).await;
    assert!(
        later.is_nack(),
        "a persistent publish after the failure: {later:?}"
    );

    // Nothing of this is written: the store does not matter.
    let got = outcome(publish(&ch, "", &tq, transient()).await).await;
    assert!(
        got.is_ack(),
        "a transient publish to a transient queue: {got:?}"
    );
    let got = outcome(publish(&ch, "", &tq, persistent()).await).await;
    assert!(
        got.is_ack(),
        "a persistent publish to a transient queue: {got:?}"
    );
    for n in 0..2 {
        let got = ch
            .basic_get(&tq, BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        assert!(got.is_some(), "message {n} of the transient queue is there");
    }
}

#[tokio::test]
async fn commit_ok_waits_for_the_sync_of_the_commits_writes() {
    let store = FailingStore::new();
    let Some(broker) = broker_on(&store).await else {
        return;
    };
    let (_conn, ch) = broker.channel().await;
    let q = durable_queue(&ch).await;
    ch.tx_select().await.expect("tx mode");

    publish(&ch, "", &q, persistent()).await;
    let before = store.written();
    let commit = tokio::spawn({
        let ch = ch.clone();
        async move { ch.tx_commit().await }
    });
    await_writes(&store, before, 1, "the committed publish").await;
    tokio::time::sleep(QUIET).await;
    assert!(
        !commit.is_finished(),
        "tx.commit-ok arrived before the commit's write was synced: {:?}",
        commit.await
    );

    store.sync_now().expect("the sync succeeds");
    tokio::time::timeout(PATIENCE, commit)
        .await
        .expect("commit-ok after the sync")
        .expect("the task")
        .expect("the commit succeeds");
    assert_eq!(depth(&broker, &q).await, 1);
}

#[tokio::test]
async fn a_failed_sync_under_a_commit_closes_the_connection_with_541() {
    let store = FailingStore::new();
    let Some(broker) = broker_on(&store).await else {
        return;
    };
    let (conn, ch) = broker.channel().await;
    let q = durable_queue(&ch).await;
    ch.tx_select().await.expect("tx mode");

    publish(&ch, "", &q, persistent()).await;
    let before = store.written();
    let commit = tokio::spawn({
        let ch = ch.clone();
        async move { ch.tx_commit().await }
    });
    await_writes(&store, before, 1, "the committed publish").await;
    store.fail_next_sync();
    assert!(store.sync_now().is_err(), "the sync was made to fail");

    let result = tokio::time::timeout(PATIENCE, commit)
        .await
        .expect("the commit is answered")
        .expect("the task");
    let err = result.expect_err("no commit-ok for a write that was never synced");
    let (code, text) = reply_of(&err);
    assert_eq!(
        code, 541,
        "the connection is closed as an internal error: {text}"
    );
    assert!(!conn.status().connected(), "the connection is closed");
}

/// A durable `x-delayed-message` exchange (over `direct`) with a durable queue bound by its
/// name; returns both names.
async fn durable_delayed(ch: &Channel) -> (String, String) {
    let x = unique("delayed");
    let mut args = FieldTable::default();
    args.insert(
        "x-delayed-type".into(),
        AMQPValue::LongString(LongString::from("direct")),
    );
    ch.exchange_declare(
        &x,
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declares a durable delayed exchange");
    let q = durable_queue(ch).await;
    ch.queue_bind(
        &q,
        &x,
        &q,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("binds");
    (x, q)
}

#[tokio::test]
async fn a_held_delayed_message_is_confirmed_once_its_hold_is_synced() {
    let store = FailingStore::new();
    let Some(broker) = broker_on(&store).await else {
        return;
    };
    let (_conn, ch) = confirming(&broker).await;
    let (x, q) = durable_delayed(&ch).await;
    // Far enough out that nothing fires during the test.
    let later = Duration::from_secs(600).as_millis() as i64;

    // A transient one is held in memory only: acked with no sync.
    let got = outcome(publish(&ch, &x, &q, with_headers(delay_ms(later))).await).await;
    assert!(got.is_ack(), "a transient delayed publish: {got:?}");

    let before = store.written();
    let mut held = vec![
        publish(
            &ch,
            &x,
            &q,
            with_headers(delay_ms(later)).with_delivery_mode(2),
        )
        .await,
    ];
    await_writes(&store, before, 1, "the persistent delayed publish").await;
    assert_unconfirmed(&mut held, "while its hold is not synced").await;
    store.sync_now().expect("the sync succeeds");
    let got = outcome(held.pop().expect("one")).await;
    assert!(got.is_ack(), "the delayed publish after the sync: {got:?}");

    // And a hold whose sync fails is nacked.
    let before = store.written();
    let mut failing = vec![
        publish(
            &ch,
            &x,
            &q,
            with_headers(delay_ms(later)).with_delivery_mode(2),
        )
        .await,
    ];
    await_writes(&store, before, 1, "the second persistent delayed publish").await;
    assert_unconfirmed(&mut failing, "while its hold is not synced").await;
    store.fail_next_sync();
    assert!(store.sync_now().is_err(), "the sync was made to fail");
    let got = outcome(failing.pop().expect("one")).await;
    assert!(
        got.is_nack(),
        "a delayed publish whose hold was never synced: {got:?}"
    );
    assert_eq!(depth(&broker, &q).await, 0, "nothing fired");
}
