//! Exchanges, queues and bindings through the management API, checked over AMQP: what the
//! API declares, an AMQP client can use, and what an AMQP client declares, the API lists and
//! deletes; messages published over HTTP are consumed over AMQP; a get looks at messages
//! without losing them unless asked; bindings are found again by their properties key; and
//! bad requests, missing objects and missing permissions are refused with a reason.

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::{Value, json};
use warren::auth::{Permission, User};
use warren_tests::broker::{TestBroker, unique};
use warren_tests::management::{Http, basic, segment};
use warren_tests::queues::{
    args, bind, confirming, consume, count, declare, get, long, publish, string, wait_get,
};

const V: &str = "%2F";

fn queue_path(q: &str) -> String {
    format!("/api/queues/{V}/{}", segment(q))
}

fn exchange_path(x: &str) -> String {
    format!("/api/exchanges/{V}/{}", segment(x))
}

/// Whether `name` exists as a queue, by a passive declare on a throwaway channel.
async fn queue_exists(broker: &TestBroker, name: &str) -> bool {
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare(
        name,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .is_ok()
}

/// Whether `name` exists as an exchange, by a passive declare on a throwaway channel.
async fn exchange_exists(broker: &TestBroker, name: &str) -> bool {
    let (_conn, ch) = broker.channel().await;
    ch.exchange_declare(
        name,
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .is_ok()
}

/// A shared (non-exclusive) queue declared over AMQP, so the API may use it.
async fn shared_queue(ch: &Channel, arguments: FieldTable) -> String {
    let q = unique("q");
    ch.queue_declare(&q, QueueDeclareOptions::default(), arguments)
        .await
        .expect("queue.declare");
    q
}

/// Publishes `body` over HTTP; the `routed` answer.
async fn http_publish(http: &Http, x: &str, key: &str, body: &str, properties: Value) -> bool {
    let (status, answer) = http
        .post(
            &format!("{}/publish", exchange_path(x)),
            json!({"properties": properties, "routing_key": key,
                   "payload": body, "payload_encoding": "string"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["routed"].as_bool().expect("routed is a bool")
}

/// `POST /api/queues/%2F/{q}/get`.
async fn http_get(http: &Http, q: &str, count: u64, ackmode: &str) -> Vec<Value> {
    let (status, answer) = http
        .post(
            &format!("{}/get", queue_path(q)),
            json!({"count": count, "ackmode": ackmode, "encoding": "auto"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer.as_array().expect("a list of messages").clone()
}

fn payloads(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["payload"].as_str().expect("a string payload"))
        .collect()
}

/// A POST that returns the `Location` header too (the test client does not expose headers).
async fn post_with_location(http: &Http, path: &str, body: Value) -> (u16, Option<String>) {
    let (status, location, text) = post_raw(http, path, body).await;
    assert!(status < 300, "{status}: {text}");
    (status, location)
}

/// A POST answered with its status, `Location` header and body text.
async fn post_raw(http: &Http, path: &str, body: Value) -> (u16, Option<String>, String) {
    let url = format!("{}{path}", http.base);
    let (user, pass) = http.user.clone().expect("credentials");
    tokio::task::spawn_blocking(move || {
        let answer = ureq::post(&url)
            .set("Authorization", &basic(&user, &pass))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        let response = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("POST {url}: {e}"),
        };
        let location = response.header("location").map(str::to_owned);
        (
            response.status(),
            location,
            response.into_string().unwrap_or_default(),
        )
    })
    .await
    .expect("the request thread")
}

/// Adds a `management` user with permissions `(configure, write, read)` on `/`.
fn add_user(broker: &TestBroker, name: &str, permissions: (&str, &str, &str)) {
    let auth = broker
        .server()
        .expect("an in-process Warren")
        .broker()
        .auth();
    auth.put_user(User::new(name, "secret", vec!["management".into()]))
        .expect("user stored");
    let (c, w, r) = permissions;
    auth.set_permission("/", name, Permission::new(c, w, r).expect("valid patterns"))
        .expect("permission stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_declared_over_http_is_usable_over_amqp_until_deleted() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let x = unique("x");
    let body = json!({"type": "topic", "durable": true, "arguments": {"alternate-exchange": "ae"}});
    assert_eq!(http.put(&exchange_path(&x), body.clone()).await.0, 201);
    assert_eq!(
        http.put(&exchange_path(&x), body).await.0,
        204,
        "exists now"
    );
    let (status, shown) = http.get(&exchange_path(&x)).await;
    assert_eq!(status, 200);
    assert_eq!(shown["name"], x.as_str());
    assert_eq!(shown["vhost"], "/");
    assert_eq!(shown["type"], "topic");
    assert_eq!(shown["durable"], true);
    assert_eq!(shown["auto_delete"], false);
    assert_eq!(shown["internal"], false);
    assert_eq!(shown["arguments"], json!({"alternate-exchange": "ae"}));
    assert!(exchange_exists(&broker, &x).await);

    let (_, listed) = http.get(&format!("/api/exchanges/{V}")).await;
    let names: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&x.as_str()), "{names:?}");
    assert!(
        names.contains(&""),
        "the default exchange is listed as \"\""
    );
    let (status, default) = http.get(&exchange_path("amq.default")).await;
    assert_eq!((status, &default["name"]), (200, &json!("")));

    assert_eq!(http.delete(&exchange_path(&x)).await.0, 204);
    assert!(!exchange_exists(&broker, &x).await);
    assert_eq!(http.get(&exchange_path(&x)).await.0, 404);
}

/// Unacknowledged counts every delivery awaiting an ack — a `basic.get` with manual ack, and
/// a consumer's after it cancelled — until it is acked or its channel closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_counts_gets_and_cancelled_consumers_until_settled() {
    use futures_lite::StreamExt as _;
    use lapin::options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions,
    };
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let q = shared_queue(&ch, FieldTable::default()).await;
    for body in [b"1", b"2", b"3"] {
        publish(&ch, &q, body, BasicProperties::default()).await;
    }
    let unacked = |shown: &Value| {
        (
            shown["messages_ready"].clone(),
            shown["messages_unacknowledged"].clone(),
        )
    };

    let (conn2, getter) = broker.channel().await;
    let got = getter
        .basic_get(&q, BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
        .expect("a message");
    let (_, shown) = http.get(&queue_path(&q)).await;
    assert_eq!(
        unacked(&shown),
        (json!(2), json!(1)),
        "the get awaits its ack: {shown}"
    );

    let (_conn3, consuming) = broker.channel().await;
    let mut consumer = consuming
        .basic_consume(
            &q,
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut tags = Vec::new();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery in time")
            .expect("a delivery")
            .expect("no error");
        tags.push(delivery.delivery_tag);
    }
    consuming
        .basic_cancel("c", BasicCancelOptions::default())
        .await
        .expect("cancel");
    let (_, shown) = http.get(&queue_path(&q)).await;
    assert_eq!(shown["consumers"], 0);
    assert_eq!(
        unacked(&shown),
        (json!(0), json!(3)),
        "cancelled, still unacked: {shown}"
    );

    consuming
        .basic_ack(tags[0], BasicAckOptions::default())
        .await
        .expect("ack");
    got.ack(BasicAckOptions::default())
        .await
        .expect("ack the get");
    let (_, shown) = http.get(&queue_path(&q)).await;
    assert_eq!(unacked(&shown), (json!(0), json!(1)), "{shown}");
    drop(conn2);
    consuming.close(200, "bye").await.expect("close");
    let (_, shown) = http.get(&queue_path(&q)).await;
    assert_eq!(
        unacked(&shown),
        (json!(1), json!(0)),
        "requeued at close: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_over_amqp_is_listed_with_its_counts_and_deleted_over_http() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let q = shared_queue(&ch, args([("x-max-length", long(10))])).await;
    publish(&ch, &q, b"one", BasicProperties::default()).await;
    publish(&ch, &q, b"two", BasicProperties::default()).await;

    let (status, shown) = http.get(&queue_path(&q)).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["name"], q.as_str());
    assert_eq!(shown["messages"], 2);
    assert_eq!(shown["messages_ready"], 2);
    assert_eq!(shown["messages_unacknowledged"], 0);
    assert_eq!(shown["consumers"], 0);
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["type"], "classic");
    assert_eq!(shown["exclusive"], false);
    assert_eq!(shown["arguments"], json!({"x-max-length": 10}));
    // Sampled (see management_rates.rs): present as a number.
    assert!(shown["messages_details"]["rate"].is_f64(), "{shown}");
    assert!(shown["memory"].as_u64().is_some_and(|m| m > 0));

    let _consumer = consume(&ch, &q).await;
    let (_, shown) = http.get(&queue_path(&q)).await;
    assert_eq!(shown["consumers"], 1);
    assert_eq!(shown["messages_ready"], 0);
    assert_eq!(shown["messages_unacknowledged"], 2, "delivered, not acked");

    let (_, listed) = http.get(&format!("/api/queues/{V}")).await;
    assert!(
        listed
            .as_array()
            .expect("a list")
            .iter()
            .any(|e| e["name"] == q.as_str())
    );
    let (status, refused) = http
        .delete(&format!("{}?if-unused=true", queue_path(&q)))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        refused["reason"],
        format!("queue '{q}' in vhost '/' in use").as_str()
    );
    assert_eq!(http.delete(&queue_path(&q)).await.0, 204);
    assert!(!queue_exists(&broker, &q).await);
    assert_eq!(http.delete(&queue_path(&q)).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_over_http_takes_amqp_messages_and_refuses_if_empty_delete() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let q = unique("q");
    let body = json!({"durable": true, "arguments": {"x-message-ttl": 60000}});
    assert_eq!(http.put(&queue_path(&q), body.clone()).await.0, 201);
    assert_eq!(http.put(&queue_path(&q), body).await.0, 204);
    let (status, clash) = http.put(&queue_path(&q), json!({"durable": false})).await;
    assert_eq!(status, 400);
    assert_eq!(
        clash["reason"],
        format!(
            "inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but \
             current is 'true'"
        )
        .as_str()
    );
    let (_conn, ch) = confirming(&broker).await;
    publish(&ch, &q, b"kept", BasicProperties::default()).await;
    let (status, refused) = http
        .delete(&format!("{}?if-empty=true", queue_path(&q)))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        refused["reason"],
        format!("queue '{q}' in vhost '/' not empty").as_str()
    );
    assert_eq!(count(&ch, &q).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_over_http_reaches_an_amqp_consumer_with_its_properties() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    let x = unique("x");
    assert_eq!(
        http.put(&exchange_path(&x), json!({"type": "direct"}))
            .await
            .0,
        201
    );
    bind(&ch, &q, &x, "k").await;

    let properties = json!({
        "content_type": "text/plain", "delivery_mode": 2, "priority": 3,
        "message_id": "m-1", "correlation_id": "c-1", "reply_to": "back",
        "timestamp": 1700000000, "type": "greeting", "app_id": "tests",
        "headers": {"n": 7, "s": "text"}
    });
    assert!(http_publish(&http, &x, "k", "hello", properties).await);
    let m = wait_get(&ch, &q).await;
    assert_eq!(m.data, b"hello");
    assert_eq!(m.exchange.as_str(), x);
    assert_eq!(m.routing_key.as_str(), "k");
    let p = &m.properties;
    assert_eq!(
        p.content_type().as_ref().map(ShortString::as_str),
        Some("text/plain")
    );
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(*p.priority(), Some(3));
    assert_eq!(
        p.message_id().as_ref().map(ShortString::as_str),
        Some("m-1")
    );
    assert_eq!(*p.timestamp(), Some(1_700_000_000));
    let headers = p.headers().clone().unwrap_or_default();
    assert_eq!(headers.inner().get("n"), Some(&AMQPValue::LongLongInt(7)));

    let (status, answer) = http
        .post(
            &format!("{}/publish", exchange_path("amq.default")),
            json!({"properties": {}, "routing_key": q, "payload": "AAEC",
                   "payload_encoding": "base64"}),
        )
        .await;
    assert_eq!((status, &answer["routed"]), (200, &json!(true)));
    assert_eq!(wait_get(&ch, &q).await.data, [0u8, 1, 2]);

    assert!(!http_publish(&http, &x, "nowhere", "lost", json!({})).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_over_http_is_checked_as_basic_publish_is() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let publish = |x: &str, properties: Value, encoding: &str| {
        let path = format!("{}/publish", exchange_path(x));
        let body = json!({"properties": properties, "routing_key": "k", "payload": "p",
                          "payload_encoding": encoding});
        let http = http.clone();
        async move { http.post(&path, body).await }
    };
    let (status, e) = publish("no-such-exchange", json!({}), "string").await;
    assert_eq!(status, 400);
    assert_eq!(
        e["reason"],
        "404 NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'"
    );
    let (status, e) = publish("amq.direct", json!({"expiration": "soon"}), "string").await;
    assert_eq!(status, 400);
    assert_eq!(
        e["reason"],
        "406 PRECONDITION_FAILED - invalid expiration 'soon': no_integer"
    );
    let (status, e) = publish("amq.direct", json!({"user_id": "someone"}), "string").await;
    assert_eq!(status, 400);
    assert_eq!(
        e["reason"],
        "406 PRECONDITION_FAILED - user_id property set to 'someone' but authenticated user \
         was 'guest'"
    );
    let (status, e) = publish("amq.direct", json!({}), "rot13").await;
    assert_eq!(status, 400);
    assert!(
        e["reason"].as_str().is_some_and(|r| r.contains("rot13")),
        "{e}"
    );
    let (status, e) = publish("amq.direct", json!({"priority": 300}), "string").await;
    assert_eq!(status, 400);
    assert!(
        e["reason"].as_str().is_some_and(|r| r.contains("priority")),
        "{e}"
    );
    let (status, e) = http
        .post(
            &format!("{}/publish", exchange_path("amq.direct")),
            json!({"payload": "p"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("missing field")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_requeues_or_removes_as_its_ackmode_says() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let dlq = shared_queue(&ch, FieldTable::default()).await;
    let q = shared_queue(
        &ch,
        args([
            ("x-dead-letter-exchange", string("")),
            ("x-dead-letter-routing-key", string(&dlq)),
        ]),
    )
    .await;
    for body in ["a", "b", "c"] {
        publish(&ch, &q, body.as_bytes(), BasicProperties::default()).await;
    }

    let seen = http_get(&http, &q, 2, "ack_requeue_true").await;
    assert_eq!(payloads(&seen), ["a", "b"]);
    assert_eq!(seen[0]["message_count"], 2);
    assert_eq!(seen[1]["message_count"], 1);
    assert_eq!(seen[0]["redelivered"], false);
    assert_eq!(seen[0]["exchange"], "");
    assert_eq!(seen[0]["routing_key"], q.as_str());
    assert_eq!(seen[0]["payload_bytes"], 1);
    assert_eq!(seen[0]["payload_encoding"], "string");
    assert_eq!(count(&ch, &q).await, 3, "requeued");

    let seen = http_get(&http, &q, 1, "reject_requeue_true").await;
    assert_eq!(payloads(&seen), ["a"]);
    assert_eq!(seen[0]["redelivered"], true, "it was requeued once");
    assert_eq!(count(&ch, &q).await, 3, "requeued");

    let seen = http_get(&http, &q, 1, "ack_requeue_false").await;
    assert_eq!(payloads(&seen), ["a"]);
    assert_eq!(count(&ch, &q).await, 2, "acked away");

    let seen = http_get(&http, &q, 1, "reject_requeue_false").await;
    assert_eq!(payloads(&seen), ["b"]);
    assert_eq!(count(&ch, &q).await, 1, "rejected away");
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.data, b"b", "a rejection is dead-lettered");

    let (status, e) = http
        .post(
            &format!("{}/get", queue_path(&q)),
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64",
                   "truncate": 0}),
        )
        .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e[0]["payload"], "", "truncated to nothing");
    assert_eq!(e[0]["payload_encoding"], "base64");
    assert_eq!(e[0]["payload_bytes"], 1);
    assert!(http_get(&http, &q, 5, "ack_requeue_false").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_get_request_takes_nothing() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let q = shared_queue(&ch, FieldTable::default()).await;
    publish(&ch, &q, b"safe", BasicProperties::default()).await;
    for body in [
        json!({"count": 1, "ackmode": "ack_everything", "encoding": "auto"}),
        json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "utf-16"}),
        json!({"count": "one", "ackmode": "ack_requeue_false", "encoding": "auto"}),
        json!({"ackmode": "ack_requeue_false", "encoding": "auto"}),
    ] {
        let (status, e) = http
            .post(&format!("{}/get", queue_path(&q)), body.clone())
            .await;
        assert_eq!(status, 400, "{body} → {e}");
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
    }
    assert_eq!(count(&ch, &q).await, 1);
    let (status, e) = http
        .post(
            &format!("{}/get", queue_path("no-such-queue")),
            json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        e["reason"],
        "NOT_FOUND - no queue 'no-such-queue' in vhost '/'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_over_http_empties_the_queue() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let q = shared_queue(&ch, FieldTable::default()).await;
    for _ in 0..3 {
        publish(&ch, &q, b"x", BasicProperties::default()).await;
    }
    assert_eq!(
        http.delete(&format!("{}/contents", queue_path(&q))).await.0,
        204
    );
    assert_eq!(count(&ch, &q).await, 0);
    assert!(get(&ch, &q).await.is_none());
    assert_eq!(
        http.delete(&format!("{}/contents", queue_path("no-such-queue")))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_queue_refuses_the_api() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    let (_, shown) = http.get(&queue_path(&q)).await;
    assert_eq!(shown["exclusive"], true);
    assert!(shown["owner_pid_details"]["name"].is_string(), "{shown}");
    let (status, e) = http
        .post(
            &format!("{}/get", queue_path(&q)),
            json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        e["reason"].as_str().is_some_and(|r| r
            .starts_with("405 RESOURCE_LOCKED - cannot obtain exclusive access to locked queue")),
        "{e}"
    );
    let (status, e) = http.delete(&queue_path(&q)).await;
    assert_eq!(status, 400);
    assert!(
        e["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("cannot obtain exclusive access to locked queue")),
        "{e}"
    );
    assert!(queue_exists_on(&ch, &q).await);
}

async fn queue_exists_on(ch: &Channel, q: &str) -> bool {
    ch.queue_declare(
        q,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_bindings_are_made_listed_and_deleted_by_properties_key() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = broker.channel().await;
    let q = shared_queue(&ch, FieldTable::default()).await;
    let x = unique("x");
    assert_eq!(
        http.put(&exchange_path(&x), json!({"type": "direct"}))
            .await
            .0,
        201
    );
    let pair = format!("/api/bindings/{V}/e/{}/q/{}", segment(&x), segment(&q));

    let (status, location) =
        post_with_location(&http, &pair, json!({"routing_key": "a b/c"})).await;
    assert_eq!(status, 201);
    assert_eq!(
        location.as_deref(),
        Some(format!("{}/a%2Bb%252Fc", segment(&q)).as_str())
    );
    let (status, _) = post_with_location(
        &http,
        &pair,
        json!({"routing_key": "k", "arguments": {"x-match": "all"}}),
    )
    .await;
    assert_eq!(status, 201);
    assert!(http_publish(&http, &x, "a b/c", "routed", json!({})).await);
    assert_eq!(wait_get(&ch, &q).await.data, b"routed");

    let (_, listed) = http.get(&pair).await;
    let listed = listed.as_array().expect("a list").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let plain = listed
        .iter()
        .find(|b| b["routing_key"] == "a b/c")
        .expect("the plain binding");
    assert_eq!(plain["properties_key"], "a+b%2Fc");
    assert_eq!(plain["destination_type"], "queue");
    assert_eq!(plain["source"], x.as_str());
    let with_args = listed
        .iter()
        .find(|b| b["routing_key"] == "k")
        .expect("the binding with arguments");
    let key = with_args["properties_key"]
        .as_str()
        .expect("a key")
        .to_owned();
    assert!(key.starts_with("k~") && key.len() > 2, "{key}");
    assert_eq!(with_args["arguments"], json!({"x-match": "all"}));

    let (_, all) = http.get(&format!("/api/bindings/{V}")).await;
    assert!(
        all.as_array()
            .expect("a list")
            .iter()
            .any(|b| b["source"] == ""
                && b["destination"] == q.as_str()
                && b["routing_key"] == q.as_str()),
        "the default exchange's binding is listed"
    );
    let (_, to_queue) = http.get(&format!("{}/bindings", queue_path(&q))).await;
    assert_eq!(to_queue.as_array().map(Vec::len), Some(3));
    let (_, from_x) = http
        .get(&format!("{}/bindings/source", exchange_path(&x)))
        .await;
    assert_eq!(from_x.as_array().map(Vec::len), Some(2));

    let one = format!("{pair}/{}", segment(&key));
    let (status, shown) = http.get(&one).await;
    assert_eq!((status, &shown["routing_key"]), (200, &json!("k")));
    assert_eq!(http.delete(&one).await.0, 204);
    assert_eq!(http.get(&one).await.0, 404);
    assert_eq!(
        http.delete(&format!("{pair}/{}", segment("a+b%2Fc")))
            .await
            .0,
        204
    );
    assert!(!http_publish(&http, &x, "a b/c", "unrouted", json!({})).await);
    let (_, left) = http.get(&pair).await;
    assert_eq!(left, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_bindings_route_and_are_deleted_by_properties_key() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    let (source, destination) = (unique("src"), unique("dst"));
    for x in [&source, &destination] {
        assert_eq!(
            http.put(&exchange_path(x), json!({"type": "fanout"}))
                .await
                .0,
            201
        );
    }
    bind(&ch, &q, &destination, "").await;
    let pair = format!(
        "/api/bindings/{V}/e/{}/e/{}",
        segment(&source),
        segment(&destination)
    );
    let (status, location) = post_with_location(&http, &pair, json!({})).await;
    assert_eq!(status, 201);
    assert_eq!(location, Some(format!("{}/~", segment(&destination))));
    assert!(http_publish(&http, &source, "any", "through", json!({})).await);
    assert_eq!(wait_get(&ch, &q).await.data, b"through");
    let (_, to_destination) = http
        .get(&format!(
            "{}/bindings/destination",
            exchange_path(&destination)
        ))
        .await;
    assert_eq!(to_destination[0]["source"], source.as_str());
    assert_eq!(to_destination[0]["destination_type"], "exchange");
    assert_eq!(to_destination[0]["properties_key"], "~");

    assert_eq!(http.delete(&format!("{pair}/~")).await.0, 204);
    assert!(!http_publish(&http, &source, "any", "stopped", json!({})).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_vhosts_queues_and_exchanges_are_404() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    for path in [
        "/api/queues/no-such-vhost".to_owned(),
        "/api/exchanges/no-such-vhost".to_owned(),
        "/api/bindings/no-such-vhost".to_owned(),
        "/api/queues/no-such-vhost/q".to_owned(),
        queue_path("no-such-queue"),
        exchange_path("no-such-exchange"),
        format!("{}/bindings/source", exchange_path("no-such-exchange")),
    ] {
        let (status, e) = http.get(&path).await;
        assert_eq!(status, 404, "GET {path}: {e}");
        assert_eq!(e["error"], "Object Not Found", "GET {path}");
    }
    assert_eq!(http.delete(&exchange_path("no-such-exchange")).await.0, 404);
    assert_eq!(
        http.put("/api/queues/no-such-vhost/q", json!({})).await.0,
        404
    );
    let (status, e) = http
        .post(
            &format!("/api/bindings/{V}/e/amq.direct/q/no-such-queue"),
            json!({"routing_key": "k"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(e["reason"], "no queue 'no-such-queue' in vhost '/'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_malformed_json_are_400_with_a_reason() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let q = unique("q");
    let (status, e) = http
        .put(
            &queue_path(&q),
            json!({"arguments": {"x-message-ttl": -10}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        e["reason"],
        format!("invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': {{value_negative,-10}}")
            .as_str()
    );
    assert!(!queue_exists(&broker, &q).await);
    let (status, e) = http
        .put(
            &exchange_path(&unique("x")),
            json!({"type": "no-such-type"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(e["reason"], "unknown exchange type 'no-such-type'");
    let (status, e) = http.put(&queue_path(&"q".repeat(256)), json!({})).await;
    assert_eq!(status, 400, "no AMQP client could name it: {e}");

    let raw = |path: String, body: &'static str| {
        let http = http.clone();
        tokio::task::spawn_blocking(move || {
            let url = format!("{}{path}", http.base);
            let (user, pass) = http.user.clone().expect("credentials");
            match ureq::put(&url)
                .set("Authorization", &basic(&user, &pass))
                .send_string(body)
            {
                Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
                Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
                Err(e) => panic!("PUT {url}: {e}"),
            }
        })
    };
    let (status, text) = raw(queue_path(&unique("q")), "{\"durable\": tru")
        .await
        .expect("thread");
    assert_eq!(status, 400);
    let e: Value = serde_json::from_str(&text).expect("a JSON error");
    assert_eq!(e["error"], "bad_request");
    assert!(
        e["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not_json")),
        "{e}"
    );
    let (status, e) = http
        .put(&exchange_path(&unique("x")), json!({"durable": "yes"}))
        .await;
    assert_eq!(status, 400);
    assert!(
        e["reason"].as_str().is_some_and(|r| r.contains("boolean")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_management_user_without_permission_on_the_object_is_refused() {
    let broker = TestBroker::start().await;
    let guest = Http::guest(&broker);
    let (_conn, ch) = confirming(&broker).await;
    let q = shared_queue(&ch, FieldTable::default()).await;
    publish(&ch, &q, b"private", BasicProperties::default()).await;
    let user = unique("viewer");
    add_user(&broker, &user, ("^$", "^$", "^$"));
    let viewer = guest.as_user(&user, "secret");

    let (status, shown) = viewer.get(&queue_path(&q)).await;
    assert_eq!(
        status, 200,
        "listing needs only access to the vhost: {shown}"
    );
    let expected = format!("access to queue '{q}' in vhost '/' refused for user '{user}'");
    let (status, e) = viewer
        .post(
            &format!("{}/get", queue_path(&q)),
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["reason"], expected.as_str());
    assert_eq!(
        viewer
            .delete(&format!("{}/contents", queue_path(&q)))
            .await
            .0,
        403
    );
    assert_eq!(viewer.delete(&queue_path(&q)).await.0, 403);
    assert_eq!(
        viewer.put(&queue_path(&unique("q")), json!({})).await.0,
        403
    );
    assert_eq!(
        viewer
            .put(&exchange_path(&unique("x")), json!({"type": "direct"}))
            .await
            .0,
        403
    );
    let (status, e) = viewer
        .post(
            &format!("{}/publish", exchange_path("amq.direct")),
            json!({"properties": {}, "routing_key": q, "payload": "p",
                   "payload_encoding": "string"}),
        )
        .await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(
        viewer
            .post(
                &format!("/api/bindings/{V}/e/amq.direct/q/{}", segment(&q)),
                json!({"routing_key": "k"}),
            )
            .await
            .0,
        403
    );
    assert_eq!(count(&ch, &q).await, 1, "nothing was taken");
    assert!(queue_exists(&broker, &q).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_exchange_shows_its_pending_messages() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let x = unique("delayed");
    let body = json!({"type": "x-delayed-message", "arguments": {"x-delayed-type": "direct"}});
    assert_eq!(http.put(&exchange_path(&x), body).await.0, 201);
    let (_, shown) = http.get(&exchange_path(&x)).await;
    assert_eq!(shown["messages_delayed"], 0, "{shown}");
    assert!(
        http_publish(
            &http,
            &x,
            "k",
            "later",
            json!({"headers": {"x-delay": 600000}})
        )
        .await
    );
    let (_, shown) = http.get(&exchange_path(&x)).await;
    assert_eq!(shown["type"], "x-delayed-message");
    assert_eq!(shown["messages_delayed"], 1);
    let (_, listed) = http.get(&format!("/api/exchanges/{V}")).await;
    let entry = listed
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["name"] == x.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(entry["messages_delayed"], 1);
    let (_, plain) = http.get(&exchange_path("amq.direct")).await;
    assert!(
        plain.get("messages_delayed").is_none(),
        "only delayed exchanges carry it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_and_amq_exchanges_cannot_be_changed() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (status, e) = http.delete(&exchange_path("amq.direct")).await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(http.delete(&exchange_path("amq.default")).await.0, 403);
    assert_eq!(
        http.put(&exchange_path("amq.custom"), json!({"type": "direct"}))
            .await
            .0,
        403
    );
    let (_conn, ch) = broker.channel().await;
    let q = declare(&ch, FieldTable::default()).await;
    let (status, _) = http
        .delete(&format!(
            "/api/bindings/{V}/e/amq.default/q/{}/{}",
            segment(&q),
            segment(&q)
        ))
        .await;
    assert_eq!(status, 403);
}
