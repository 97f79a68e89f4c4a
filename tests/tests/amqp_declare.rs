//! Declaring, checking and deleting exchanges and queues: passive declares (404), redeclare
//! equivalence (406), the reserved `amq.` prefix and the default exchange (403), server-named
//! queues, exclusive queues (405, gone with their connection), auto-delete, `x-queue-type`.

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ExchangeBindOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, ExchangeKind};
use warren_tests::broker::{TestBroker, assert_exception, reply_of, unique};

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn auto_delete() -> QueueDeclareOptions {
    QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_of_a_missing_queue_is_404_with_rabbitmq_text() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("missing");
    assert_exception(
        ch.queue_declare(&q, passive(), FieldTable::default()).await,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_of_a_missing_exchange_is_404_with_rabbitmq_text() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let x = unique("missing");
    assert_exception(
        ch.exchange_declare(
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
        &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_reports_message_and_consumer_counts() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("counts");
    ch.queue_declare(&q, auto_delete(), FieldTable::default())
        .await
        .unwrap();
    for i in 0..3u8 {
        ch.basic_publish(
            "",
            &q,
            BasicPublishOptions::default(),
            &[i],
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let (_c2, ch2) = broker.channel().await;
    let _consumer = ch2
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch3 = broker.connect().await.create_channel().await.unwrap();
    let info = ch3
        .queue_declare(&q, passive(), FieldTable::default())
        .await
        .unwrap();
    assert_eq!(info.consumer_count(), 1);
    // The consumer may already hold the messages unacked; those are not counted as ready.
    assert!(info.message_count() <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_of_a_predeclared_exchange_succeeds() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for (name, kind) in [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ] {
        ch.exchange_declare(
            name,
            kind,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} must be predeclared: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_an_exchange_with_another_type_is_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let x = unique("x");
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    ch.exchange_declare(&x, ExchangeKind::Direct, opts, FieldTable::default())
        .await
        .unwrap();
    // Same again is fine.
    ch.exchange_declare(&x, ExchangeKind::Direct, opts, FieldTable::default())
        .await
        .unwrap();
    assert_exception(
        ch.exchange_declare(&x, ExchangeKind::Fanout, opts, FieldTable::default())
            .await,
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': \
             received 'fanout' but current is 'direct'"
        ),
    );
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_delete(&x, ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_an_exchange_with_another_alternate_exchange_is_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let x = unique("x");
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    let ae = |name: &str| {
        args(&[(
            "alternate-exchange",
            AMQPValue::LongString(LongString::from(name)),
        )])
    };
    ch.exchange_declare(&x, ExchangeKind::Direct, opts, ae("one"))
        .await
        .unwrap();
    // Other arguments are not compared.
    ch.exchange_declare(
        &x,
        ExchangeKind::Direct,
        opts,
        args(&[("x-whatever", AMQPValue::LongLongInt(1))]).tap_insert("alternate-exchange", "one"),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(&x, ExchangeKind::Direct, opts, ae("two"))
        .await
        .expect_err("a different alternate-exchange is inequivalent");
    let (code, text) = reply_of(&err);
    assert_eq!(code, 406);
    assert!(
        text.starts_with(&format!(
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/'"
        )),
        "{text}"
    );
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_delete(&x, ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

trait TapInsert {
    fn tap_insert(self, key: &str, value: &str) -> Self;
}

impl TapInsert for FieldTable {
    fn tap_insert(mut self, key: &str, value: &str) -> Self {
        self.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_a_queue_with_another_durable_flag_is_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = unique("q");
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    assert_exception(
        ch.queue_declare(
            &q,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': \
             received 'true' but current is 'false'"
        ),
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_a_queue_with_another_ttl_is_406_with_rabbitmq_text() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    ch.queue_declare(
        &q,
        auto_delete(),
        args(&[("x-message-ttl", AMQPValue::LongLongInt(10))]),
    )
    .await
    .unwrap();
    let err = ch
        .queue_declare(
            &q,
            auto_delete(),
            args(&[("x-message-ttl", AMQPValue::LongLongInt(20))]),
        )
        .await
        .expect_err("a different TTL is inequivalent");
    let (code, text) = reply_of(&err);
    assert_eq!(code, 406);
    // AMQP-NOTES quotes newer RabbitMQ ("received the value '20' of type 'long' but current
    // is the value '10' of type 'long'"); 3.10 says "received '20' but current is '10'".
    // Both start the same way and name both values in this order.
    let prefix = format!(
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received "
    );
    assert!(text.starts_with(&prefix), "{text}");
    let rest = &text[prefix.len()..];
    let (received, current) = rest.split_once(" but current is ").expect("{text}");
    assert!(received.contains("'20'"), "{text}");
    assert!(current.contains("'10'"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_arguments_of_different_widths_are_equivalent() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    ch.queue_declare(
        &q,
        auto_delete(),
        args(&[("x-message-ttl", AMQPValue::LongLongInt(1000))]),
    )
    .await
    .unwrap();
    ch.queue_declare(
        &q,
        auto_delete(),
        args(&[("x-message-ttl", AMQPValue::LongInt(1000))]),
    )
    .await
    .expect("a 32-bit 1000 equals a 64-bit 1000");
    ch.queue_declare(
        &q,
        auto_delete(),
        args(&[("x-message-ttl", AMQPValue::ShortInt(1000))]),
    )
    .await
    .expect("a 16-bit 1000 equals a 64-bit 1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_an_exchange_with_the_amq_prefix_is_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let x = unique("amq.mine");
    assert_exception(
        ch.exchange_declare(
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        &format!("ACCESS_REFUSED - exchange name '{x}' contains reserved prefix 'amq.*'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_a_queue_with_the_amq_prefix_is_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("amq.mine");
    assert_exception(
        ch.queue_declare(&q, auto_delete(), FieldTable::default())
            .await,
        403,
        &format!("ACCESS_REFUSED - queue name '{q}' contains reserved prefix 'amq.*'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_a_predeclared_amq_exchange_is_allowed() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.exchange_declare(
        "amq.direct",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("an existing amq. exchange may be redeclared equivalently");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_queue_to_the_default_exchange_is_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    ch.queue_declare(&q, auto_delete(), FieldTable::default())
        .await
        .unwrap();
    assert_exception(
        ch.queue_bind(
            &q,
            "",
            &q,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbinding_a_queue_from_the_default_exchange_is_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    ch.queue_declare(&q, auto_delete(), FieldTable::default())
        .await
        .unwrap();
    assert_exception(
        ch.queue_unbind(&q, "", &q, FieldTable::default()).await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_default_exchange_is_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    assert_exception(
        ch.exchange_delete("", ExchangeDeleteOptions::default())
            .await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_named_queues_are_amq_gen_with_22_url_safe_characters() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let mut names = Vec::new();
    for _ in 0..5 {
        let q = ch
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let name = q.name().to_string();
        let suffix = name
            .strip_prefix("amq.gen-")
            .unwrap_or_else(|| panic!("{name} must start with amq.gen-"));
        assert_eq!(suffix.len(), 22, "{name}");
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name} must be url-safe base64"
        );
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 5, "server-named queues are distinct");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_queue_name_means_the_last_queue_declared_on_the_channel() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let x = unique("x");
    ch.exchange_declare(
        &x,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    // bind with an empty queue name: binds the server-named queue.
    ch.queue_bind(
        "",
        &x,
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        &x,
        "",
        BasicPublishOptions::default(),
        b"to the last queue",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let msg = loop {
        if let Some(m) = ch
            .basic_get("", BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(msg.delivery.data, b"to the last queue");
    assert_eq!(msg.delivery.routing_key.as_str(), "");
    let purged = ch
        .queue_purge("", QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(purged, 0);
    let deleted = ch
        .queue_delete("", QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    let (_c2, ch2) = broker.channel().await;
    assert_exception(
        ch2.queue_declare(q.name().as_str(), passive(), FieldTable::default())
            .await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_is_locked_to_other_connections_with_405() {
    let broker = TestBroker::start().await;
    let (_owner, ch) = broker.channel().await;
    let q = unique("excl");
    ch.queue_declare(
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let (_other, ch2) = broker.channel().await;
    assert_exception(
        ch2.queue_declare(
            &q,
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        405,
        &format!(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'"
        ),
    );
    let ch3 = _other.create_channel().await.unwrap();
    assert_exception(
        ch3.basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
        405,
        "RESOURCE_LOCKED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_is_gone_once_its_connection_closes() {
    let broker = TestBroker::start().await;
    let (owner, ch) = broker.channel().await;
    let q = unique("excl");
    ch.queue_declare(
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    owner.close(200, "bye").await.unwrap();
    let (_c, ch2) = broker.channel().await;
    assert_exception(
        ch2.queue_declare(&q, passive(), FieldTable::default())
            .await,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_queue_is_deleted_after_its_last_consumer_cancels() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = unique("ad");
    ch.queue_declare(&q, auto_delete(), FieldTable::default())
        .await
        .unwrap();
    let c1 = ch
        .basic_consume(
            &q,
            "c1",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let c2 = ch
        .basic_consume(
            &q,
            "c2",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_cancel(c1.tag().as_str(), Default::default())
        .await
        .unwrap();
    // One consumer left: still there.
    ch.queue_declare(&q, passive(), FieldTable::default())
        .await
        .expect("the queue survives while a consumer remains");
    ch.basic_cancel(c2.tag().as_str(), Default::default())
        .await
        .unwrap();
    assert_exception(
        ch.queue_declare(&q, passive(), FieldTable::default()).await,
        404,
        "NOT_FOUND",
    );
    conn.close(200, "bye").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_queue_that_never_had_a_consumer_stays() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("ad");
    ch.queue_declare(&q, auto_delete(), FieldTable::default())
        .await
        .unwrap();
    ch.basic_get(&q, BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    let (_c2, ch2) = broker.channel().await;
    ch2.queue_declare(&q, passive(), FieldTable::default())
        .await
        .expect("never consumed from, so not auto-deleted");
    ch2.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_exchange_is_deleted_after_its_last_binding_goes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let x = unique("adx");
    let q = unique("q");
    ch.exchange_declare(
        &x,
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(&q, auto_delete(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        &q,
        &x,
        "a",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        &q,
        &x,
        "b",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_unbind(&q, &x, "a", FieldTable::default())
        .await
        .unwrap();
    ch.exchange_declare(
        &x,
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("one binding left: the exchange stays");
    ch.queue_unbind(&q, &x, "b", FieldTable::default())
        .await
        .unwrap();
    assert_exception(
        ch.exchange_declare(
            &x,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
        &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_exchange_goes_when_its_only_bound_queue_is_deleted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let x = unique("adx");
    let q = unique("q");
    ch.exchange_declare(
        &x,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        &q,
        &x,
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_exception(
        ch.exchange_declare(
            &x,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await,
        404,
        "NOT_FOUND",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_queue_type_classic_is_accepted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        &unique("classic"),
        auto_delete(),
        args(&[("x-queue-type", AMQPValue::LongString("classic".into()))]),
    )
    .await
    .expect("classic queues are accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_queue_type_quorum_is_accepted_when_durable() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("quorum");
    ch.queue_declare(
        &q,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args(&[("x-queue-type", AMQPValue::LongString("quorum".into()))]),
    )
    .await
    .expect("durable quorum queues are accepted");
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_queue_type_quorum_that_is_not_durable_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    assert_exception(
        ch.queue_declare(
            &unique("quorum"),
            QueueDeclareOptions::default(),
            args(&[("x-queue-type", AMQPValue::LongString("quorum".into()))]),
        )
        .await,
        406,
        "PRECONDITION_FAILED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_x_queue_type_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    assert_exception(
        ch.queue_declare(
            &unique("weird"),
            auto_delete(),
            args(&[("x-queue-type", AMQPValue::LongString("bogus".into()))]),
        )
        .await,
        406,
        "PRECONDITION_FAILED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_single_active_consumer_that_is_not_a_bool_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    assert_exception(
        ch.queue_declare(
            &unique("sac"),
            auto_delete(),
            args(&[(
                "x-single-active-consumer",
                AMQPValue::LongString("yes".into()),
            )]),
        )
        .await,
        406,
        "PRECONDITION_FAILED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_exchange_type_closes_the_connection_with_503() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let x = unique("x");
    assert_exception(
        ch.exchange_declare(
            &x,
            ExchangeKind::Custom("x-no-such-type".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
        503,
        "COMMAND_INVALID - unknown exchange type 'x-no-such-type'",
    );
    assert!(
        conn.create_channel().await.is_err(),
        "503 is a connection-level exception"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_if_unused_with_a_consumer_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = unique("q");
    ch.queue_declare(&q, auto_delete(), FieldTable::default())
        .await
        .unwrap();
    let _consumer = ch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (_c2, ch2) = broker.channel().await;
    assert_exception(
        ch2.queue_delete(
            &q,
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await,
        406,
        "PRECONDITION_FAILED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_if_empty_with_messages_is_406_and_purge_counts() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let q = unique("q");
    ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for _ in 0..4 {
        ch.basic_publish(
            "",
            &q,
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    assert_exception(
        ch.queue_delete(
            &q,
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        )
        .await,
        406,
        "PRECONDITION_FAILED",
    );
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        ch.queue_purge(&q, QueuePurgeOptions::default())
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        ch.queue_delete(
            &q,
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            }
        )
        .await
        .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_delete_if_unused_with_bindings_is_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let x = unique("x");
    ch.exchange_declare(
        &x,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().as_str(),
        &x,
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert_exception(
        ch.exchange_delete(
            &x,
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await,
        406,
        "PRECONDITION_FAILED",
    );
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_delete(&x, ExchangeDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_bind_to_a_missing_exchange_is_404() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let missing = unique("missing");
    assert_exception(
        ch.exchange_bind(
            "amq.fanout",
            &missing,
            "",
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await,
        404,
        &format!("NOT_FOUND - no exchange '{missing}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_a_missing_exchange_closes_the_channel_with_404() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let missing = unique("missing");
    ch.basic_publish(
        &missing,
        "k",
        BasicPublishOptions::default(),
        b"lost",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    // The error arrives asynchronously; the next synchronous call sees the closed channel.
    let res = ch
        .queue_declare(&unique("q"), auto_delete(), FieldTable::default())
        .await;
    let err = res.expect_err("the channel was closed by the broker");
    if let lapin::ErrorKind::ProtocolError(e) = err.kind() {
        assert_eq!(e.get_id(), 404);
        assert_eq!(
            e.get_message().as_str(),
            format!("NOT_FOUND - no exchange '{missing}' in vhost '/'")
        );
    }
    assert!(!ch.status().connected());
}
