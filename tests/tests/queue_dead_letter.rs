//! Dead-lettering: where a message goes when it is rejected or expires
//! (`x-dead-letter-exchange`, `x-dead-letter-routing-key`, the default exchange, a missing
//! DLX), the exact `x-death` history it carries, counts that grow when a (queue, reason)
//! recurs, and RabbitMQ's cycle rule (a TTL-only loop is dropped, a loop with a rejection is
//! not). Dead-lettering by length limit (`maxlen`) is in `queue_length_limits.rs`.

use lapin::options::{BasicNackOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use warren_tests::broker::{Exceptions, TestBroker, assert_no_delivery, next_delivery, reply_of};
use warren_tests::queues::{
    args, assert_empty, bind, confirming, consume, count, death_path, declare, exchange, expiring,
    get, header_str, headers, long, now_secs, publish, publish_to, step, string, strings, wait_get,
    x_death,
};

const REJECT: BasicRejectOptions = BasicRejectOptions { requeue: false };

/// A fanout exchange with one queue bound: a place for dead letters to land.
async fn dead_letter_target(ch: &Channel) -> (String, String) {
    let dlx = exchange(ch, ExchangeKind::Fanout).await;
    let dlq = declare(ch, args([])).await;
    bind(ch, &dlq, &dlx, "").await;
    (dlx, dlq)
}

/// Properties carrying a `CC` header.
fn cc(keys: &[&str]) -> BasicProperties {
    BasicProperties::default().with_headers(args([("CC", strings(keys))]))
}

/// Takes the one message in `q` with manual ack and rejects it without requeue.
async fn get_and_reject(ch: &Channel, q: &str) {
    let m = ch
        .basic_get(q, lapin::options::BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message to reject");
    m.delivery.reject(REJECT).await.expect("reject");
}

/// A message rejected with requeue=false is dead-lettered with exactly RabbitMQ's first-death
/// shape: one `x-death` entry {count 1 (long), reason, queue, time (timestamp), exchange,
/// routing-keys} and no `original-expiration`, `x-first-death-*`, its other headers kept, its
/// original routing key and the DLX as the delivery's exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_message_is_dead_lettered_with_the_exact_x_death_shape() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let q = declare(&ch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    bind(&ch, &q, &x, "rk").await;
    let before = now_secs();
    let props = BasicProperties::default()
        .with_headers(args([("app", string("kept"))]))
        .with_content_type(ShortString::from("text/plain"));
    assert!(publish_to(&ch, &x, "rk", b"body", props).await.is_ack());
    get_and_reject(&ch, &q).await;

    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"body");
    assert_eq!(dead.exchange.as_str(), dlx, "delivered through the DLX");
    assert_eq!(dead.routing_key.as_str(), "rk", "original routing key kept");
    assert_eq!(
        dead.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    let deaths = x_death(&dead.properties);
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    assert_eq!(
        deaths[0].summary(),
        (1, "rejected", q.as_str(), x.as_str(), vec!["rk"], None)
    );
    assert!(
        (before..=now_secs()).contains(&deaths[0].time),
        "x-death time {} is the death's time in seconds",
        deaths[0].time
    );
    let p = &dead.properties;
    assert_eq!(
        header_str(p, "x-first-death-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(header_str(p, "x-first-death-queue"), Some(q.clone()));
    assert_eq!(header_str(p, "x-first-death-exchange"), Some(x.clone()));
    assert_eq!(header_str(p, "app").as_deref(), Some("kept"));
}

/// basic.nack with requeue=false dead-letters as `rejected` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_message_is_dead_lettered_as_rejected() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(&ch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    publish(&ch, &q, b"nacked", BasicProperties::default()).await;
    let cch = conn.create_channel().await.expect("second channel");
    let mut consumer = consume(&cch, &q).await;
    let d = next_delivery(&mut consumer).await;
    d.nack(BasicNackOptions {
        requeue: false,
        multiple: false,
    })
    .await
    .expect("nack");
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"nacked");
    assert_eq!(
        x_death(&dead.properties)[0].summary(),
        (1, "rejected", q.as_str(), "", vec![q.as_str()], None)
    );
    assert_no_delivery(&mut consumer).await;
}

/// A message rejected with requeue=true is not dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_message_is_not_dead_lettered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(&ch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    publish(&ch, &q, b"again", BasicProperties::default()).await;
    let m = ch
        .basic_get(&q, lapin::options::BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message");
    m.delivery
        .reject(BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    assert_empty(&ch, &dlq).await;
    assert_eq!(
        get(&ch, &q).await.expect("back in the queue").data,
        b"again"
    );
}

/// A message expiring by its own `expiration` is dead-lettered as `expired`; the
/// `expiration` property is removed and its value kept as `original-expiration`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_loses_expiration_and_records_original_expiration() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(&ch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    publish(&ch, &q, b"ttl", expiring("100")).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.properties.expiration(), &None, "expiration removed");
    let deaths = x_death(&dead.properties);
    assert_eq!(deaths.len(), 1);
    assert_eq!(
        deaths[0].summary(),
        (1, "expired", q.as_str(), "", vec![q.as_str()], Some("100"))
    );
    assert_eq!(
        header_str(&dead.properties, "x-first-death-reason").as_deref(),
        Some("expired")
    );
}

/// A message expiring by the queue's TTL is dead-lettered as `expired` without
/// `original-expiration` (it had no `expiration`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_expiry_is_dead_lettered_without_original_expiration() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-dead-letter-exchange", string(&dlx)),
            ("x-message-ttl", long(100)),
        ]),
    )
    .await;
    publish(&ch, &q, b"ttl", BasicProperties::default()).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(
        x_death(&dead.properties)[0].summary(),
        (1, "expired", q.as_str(), "", vec![q.as_str()], None)
    );
}

/// When the queue TTL fires on a message that also has a (longer) `expiration`, the
/// message's own value is still recorded as `original-expiration`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_expiry_records_the_messages_own_expiration() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(
        &ch,
        args([
            ("x-dead-letter-exchange", string(&dlx)),
            ("x-message-ttl", long(100)),
        ]),
    )
    .await;
    publish(&ch, &q, b"ttl", expiring("3600000")).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.properties.expiration(), &None);
    assert_eq!(
        x_death(&dead.properties)[0].original_expiration.as_deref(),
        Some("3600000")
    );
}

/// With `x-dead-letter-routing-key` the message is republished with that key; the death's
/// `routing-keys` still lists the original key and its CC keys, and the `CC` header is
/// removed (RabbitMQ 3.10 deletes it so the CC routes are not taken again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_routing_key_replaces_the_routing_keys() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let dlx = exchange(&ch, ExchangeKind::Direct).await;
    let dlq = declare(&ch, args([])).await;
    bind(&ch, &dlq, &dlx, "dead").await;
    let other = declare(&ch, args([])).await;
    bind(&ch, &other, &dlx, "cc-key").await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let q = declare(
        &ch,
        args([
            ("x-dead-letter-exchange", string(&dlx)),
            ("x-dead-letter-routing-key", string("dead")),
        ]),
    )
    .await;
    bind(&ch, &q, &x, "rk").await;
    assert!(
        publish_to(&ch, &x, "rk", b"m", cc(&["cc-key"]))
            .await
            .is_ack()
    );
    get_and_reject(&ch, &q).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.routing_key.as_str(), "dead");
    assert_eq!(x_death(&dead.properties)[0].routing_keys, ["rk", "cc-key"]);
    assert!(
        !headers(&dead.properties).contains_key("CC"),
        "CC removed: {:?}",
        dead.properties.headers()
    );
    assert_empty(&ch, &other).await;
}

/// Without `x-dead-letter-routing-key` the message keeps all its original routing keys, CC
/// included: the DLX routes it by each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dead_letter_routing_key_the_original_keys_and_cc_are_kept() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let dlx = exchange(&ch, ExchangeKind::Direct).await;
    let by_key = declare(&ch, args([])).await;
    bind(&ch, &by_key, &dlx, "rk").await;
    let by_cc = declare(&ch, args([])).await;
    bind(&ch, &by_cc, &dlx, "cc-key").await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let q = declare(&ch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    bind(&ch, &q, &x, "rk").await;
    assert!(
        publish_to(&ch, &x, "rk", b"m", cc(&["cc-key"]))
            .await
            .is_ack()
    );
    get_and_reject(&ch, &q).await;
    for target in [&by_key, &by_cc] {
        let dead = wait_get(&ch, target).await;
        assert_eq!(dead.data, b"m");
        assert_eq!(dead.routing_key.as_str(), "rk");
        assert_eq!(x_death(&dead.properties)[0].routing_keys, ["rk", "cc-key"]);
    }
    assert_empty(&ch, &by_key).await;
    assert_empty(&ch, &by_cc).await;
}

/// `x-dead-letter-exchange: ""` names the default exchange: with a routing key naming a queue,
/// dead letters land in that queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_exchange_is_a_valid_dead_letter_exchange() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let dlq = declare(&ch, args([])).await;
    let q = declare(
        &ch,
        args([
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&dlq)),
        ]),
    )
    .await;
    publish(&ch, &q, b"to-default", BasicProperties::default()).await;
    get_and_reject(&ch, &q).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"to-default");
    assert_eq!(dead.exchange.as_str(), "");
    assert_eq!(dead.routing_key.as_str(), dlq);
}

/// A DLX that does not exist drops the message silently: the publisher was acked, rejecting
/// raises no error and the channel stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_dead_letter_exchange_drops_the_message_silently() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let mut errors = Exceptions::watch(&conn);
    let q = declare(
        &ch,
        args([(
            "x-dead-letter-exchange",
            string("no-such-exchange-anywhere"),
        )]),
    )
    .await;
    publish(&ch, &q, b"lost", expiring("50")).await;
    publish(&ch, &q, b"rejected", BasicProperties::default()).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    get_and_reject(&ch, &q).await;
    publish(&ch, &q, b"still-open", BasicProperties::default()).await;
    assert_eq!(count(&ch, &q).await, 1);
    assert_eq!(get(&ch, &q).await.expect("fetched").data, b"still-open");
    let quiet = tokio::time::timeout(warren_tests::broker::QUIET, errors.next()).await;
    assert!(quiet.is_err(), "no exception: {quiet:?}");
}

/// `x-dead-letter-routing-key` without `x-dead-letter-exchange` is refused with 406.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_routing_key_without_exchange_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = warren_tests::broker::unique("q");
    let err = ch
        .queue_declare(
            &q,
            Default::default(),
            args([("x-dead-letter-routing-key", string("k"))]),
        )
        .await
        .expect_err("refused");
    assert_eq!(
        reply_of(&err),
        (
            406,
            format!(
                "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '{q}' \
                 in vhost '/': routing_key_but_no_dlx_defined"
            )
        )
    );
}

/// A reject → retry queue (TTL) → back loop is not a cycle (a rejection is in it), and each
/// recurring (queue, reason) increments its `count`: the third delivery carries
/// [retry/expired ×2, work/rejected ×2] and the first death stays `rejected` in `work`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_loop_through_a_ttl_queue_counts_each_death() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming(&broker).await;
    let work = warren_tests::broker::unique("work");
    let retry = warren_tests::broker::unique("retry");
    declare_named(
        &ch,
        &work,
        args([
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&retry)),
        ]),
    )
    .await;
    declare_named(
        &ch,
        &retry,
        args([
            ("x-message-ttl", long(50)),
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&work)),
        ]),
    )
    .await;
    publish(&ch, &work, b"job", BasicProperties::default()).await;
    let cch = conn.create_channel().await.expect("second channel");
    let mut consumer = consume(&cch, &work).await;

    let first = next_delivery(&mut consumer).await;
    assert!(!headers(&first.properties).contains_key("x-death"));
    first.reject(REJECT).await.expect("reject");

    let second = next_delivery(&mut consumer).await;
    assert_eq!(
        death_path(&second.properties),
        [step(&retry, "expired", 1), step(&work, "rejected", 1)]
    );
    second.reject(REJECT).await.expect("reject");

    let third = next_delivery(&mut consumer).await;
    assert_eq!(third.data, b"job");
    assert_eq!(
        death_path(&third.properties),
        [step(&retry, "expired", 2), step(&work, "rejected", 2)]
    );
    let deaths = x_death(&third.properties);
    assert_eq!(deaths[1].exchange, "", "first death's exchange kept");
    assert_eq!(deaths[1].routing_keys, [work.as_str()]);
    assert_eq!(deaths[0].routing_keys, [retry.as_str()]);
    let p = &third.properties;
    assert_eq!(
        header_str(p, "x-first-death-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(header_str(p, "x-first-death-queue"), Some(work.clone()));
    assert_eq!(header_str(p, "x-first-death-exchange").as_deref(), Some(""));
    third.ack(Default::default()).await.expect("ack");
}

/// Declares an exclusive queue with a given name.
async fn declare_named(ch: &Channel, q: &str, arguments: FieldTable) {
    ch.queue_declare(
        q,
        lapin::options::QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        arguments,
    )
    .await
    .expect("queue.declare");
}

/// A client that republishes a dead-lettered message with its headers keeps the history,
/// and the next death in the same queue for the same reason increments `count` (retry
/// counters in client libraries read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republished_dead_letter_keeps_its_history_and_counts_up() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(&ch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    publish(&ch, &q, b"retry-me", BasicProperties::default()).await;
    get_and_reject(&ch, &q).await;
    let dead = wait_get(&ch, &dlq).await;
    let first_time = x_death(&dead.properties)[0].time;

    publish(&ch, &q, &dead.data, dead.properties.clone()).await;
    get_and_reject(&ch, &q).await;
    let again = wait_get(&ch, &dlq).await;
    let deaths = x_death(&again.properties);
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    assert_eq!(
        deaths[0].summary(),
        (2, "rejected", q.as_str(), "", vec![q.as_str()], None)
    );
    assert_eq!(
        deaths[0].time, first_time,
        "time of the first such death kept"
    );
    assert_eq!(
        header_str(&again.properties, "x-first-death-queue"),
        Some(q.clone())
    );
}

/// A message that expires in queue A, is dead-lettered to B, expires there and would go
/// back to A is dropped on its way into A (a cycle with no rejection in it), while the
/// other queue the DLX routes it to still gets it — once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_queue_ttl_cycle_is_dropped() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let a = warren_tests::broker::unique("cycle-a");
    let back = exchange(&ch, ExchangeKind::Fanout).await;
    let b = declare(
        &ch,
        args([
            ("x-message-ttl", long(50)),
            ("x-dead-letter-exchange", string(&back)),
        ]),
    )
    .await;
    declare_named(
        &ch,
        &a,
        args([
            ("x-message-ttl", long(50)),
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&b)),
        ]),
    )
    .await;
    let tap = declare(&ch, args([])).await;
    bind(&ch, &a, &back, "").await;
    bind(&ch, &tap, &back, "").await;
    publish(&ch, &a, b"ping", BasicProperties::default()).await;

    let seen = wait_get(&ch, &tap).await;
    assert_eq!(
        death_path(&seen.properties),
        [step(&b, "expired", 1), step(&a, "expired", 1)]
    );
    assert_empty(&ch, &tap).await;
    assert_eq!(count(&ch, &a).await, 0);
    assert_eq!(count(&ch, &b).await, 0);
}

/// A queue whose expired messages are dead-lettered straight back into itself drops them
/// (the other target of the DLX still gets one copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_back_into_the_same_queue_is_dropped() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let back = exchange(&ch, ExchangeKind::Fanout).await;
    let q = declare(
        &ch,
        args([
            ("x-message-ttl", long(50)),
            ("x-dead-letter-exchange", string(&back)),
        ]),
    )
    .await;
    let tap = declare(&ch, args([])).await;
    bind(&ch, &q, &back, "").await;
    bind(&ch, &tap, &back, "").await;
    publish(&ch, &q, b"loop", BasicProperties::default()).await;
    let seen = wait_get(&ch, &tap).await;
    assert_eq!(death_path(&seen.properties), [step(&q, "expired", 1)]);
    assert_empty(&ch, &tap).await;
    assert_eq!(count(&ch, &q).await, 0);
}

/// A loop with a rejection in it is not a cycle: a message rejected from A, expired in B and
/// dead-lettered back to A arrives in A again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycle_with_a_rejection_in_the_loop_is_not_dropped() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let a = warren_tests::broker::unique("cycle-a");
    let b = declare(
        &ch,
        args([
            ("x-message-ttl", long(50)),
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&a)),
        ]),
    )
    .await;
    declare_named(
        &ch,
        &a,
        args([
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&b)),
        ]),
    )
    .await;
    publish(&ch, &a, b"back-again", BasicProperties::default()).await;
    get_and_reject(&ch, &a).await;
    let back = wait_get(&ch, &a).await;
    assert_eq!(back.data, b"back-again");
    assert_eq!(
        death_path(&back.properties),
        [step(&b, "expired", 1), step(&a, "rejected", 1)]
    );
}

/// Warren writes `x-last-death-reason/queue/exchange`, updated on each death, next to the
/// `x-first-death-*` set once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_death_headers_follow_the_latest_death() {
    let broker = TestBroker::start().await;
    // RabbitMQ 3.10 does not write x-last-death-* (they came with 3.13).
    if broker.is_external() {
        return;
    }
    let (_conn, ch) = confirming(&broker).await;
    let (final_x, final_q) = dead_letter_target(&ch).await;
    let to_retry = exchange(&ch, ExchangeKind::Direct).await;
    let retry = declare(
        &ch,
        args([
            ("x-message-ttl", long(50)),
            ("x-dead-letter-exchange", string(&final_x)),
        ]),
    )
    .await;
    bind(&ch, &retry, &to_retry, "r").await;
    let x = exchange(&ch, ExchangeKind::Direct).await;
    let q = declare(
        &ch,
        args([
            ("x-dead-letter-exchange", string(&to_retry)),
            ("x-dead-letter-routing-key", string("r")),
        ]),
    )
    .await;
    bind(&ch, &q, &x, "k").await;
    assert!(
        publish_to(&ch, &x, "k", b"m", BasicProperties::default())
            .await
            .is_ack()
    );
    get_and_reject(&ch, &q).await;
    let dead = wait_get(&ch, &final_q).await;
    let p = &dead.properties;
    assert_eq!(
        header_str(p, "x-first-death-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(header_str(p, "x-first-death-queue"), Some(q.clone()));
    assert_eq!(header_str(p, "x-first-death-exchange"), Some(x.clone()));
    assert_eq!(
        header_str(p, "x-last-death-reason").as_deref(),
        Some("expired")
    );
    assert_eq!(header_str(p, "x-last-death-queue"), Some(retry.clone()));
    assert_eq!(
        header_str(p, "x-last-death-exchange"),
        Some(to_retry.clone())
    );
}

/// `x-death` lists deaths most recent first, all of them: a message that expired through
/// three queues in a row carries [q3, q2, q1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_death_is_most_recent_first_across_three_queues() {
    let broker = TestBroker::start().await;
    // RabbitMQ 3.10 shuffles x-death entries after the head (gives [q3, q1, q2] here).
    if broker.is_external() {
        return;
    }
    let (_conn, ch) = confirming(&broker).await;
    let dlq = declare(&ch, args([])).await;
    let q3 = chained_ttl_queue(&ch, &dlq).await;
    let q2 = chained_ttl_queue(&ch, &q3).await;
    let q1 = chained_ttl_queue(&ch, &q2).await;
    publish(&ch, &q1, b"hops", BasicProperties::default()).await;
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(
        death_path(&dead.properties),
        [
            step(&q3, "expired", 1),
            step(&q2, "expired", 1),
            step(&q1, "expired", 1)
        ]
    );
}

/// A queue with a 50 ms TTL dead-lettering into `next` through the default exchange.
async fn chained_ttl_queue(ch: &Channel, next: &str) -> String {
    declare(
        ch,
        args([
            ("x-message-ttl", long(50)),
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(next)),
        ]),
    )
    .await
}

/// Whatever else the history holds, headers a client set that are not dead-letter headers
/// survive every death unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_survive_dead_lettering() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming(&broker).await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = declare(&ch, args([("x-dead-letter-exchange", string(&dlx))])).await;
    let props = BasicProperties::default().with_headers(args([
        ("attempt", AMQPValue::LongLongInt(3)),
        ("trace", string("abc")),
    ]));
    publish(&ch, &q, b"h", props).await;
    get_and_reject(&ch, &q).await;
    let dead = wait_get(&ch, &dlq).await;
    let h = headers(&dead.properties);
    assert_eq!(h.inner().get("attempt"), Some(&AMQPValue::LongLongInt(3)));
    assert_eq!(
        header_str(&dead.properties, "trace").as_deref(),
        Some("abc")
    );
}
