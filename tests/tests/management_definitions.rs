//! Definitions export and import over the management API (`/api/definitions`) and at start
//! (`--load-definitions`), checked over AMQP: what an import declares routes and logs in.

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};
use warren_tests::broker::{TestBroker, unique};
use warren_tests::management::{Http, segment};

/// `defs-pw` hashed by RabbitMQ 3.10 (SHA-256), taken from a real export.
const REF_HASH: &str = "utgcFJAsgCcAMIFUJ5/TCjenjqBmgZCsNmsqOrtahGjoOTmy";
const REF_PASSWORD: &str = "defs-pw";

/// A document with one of everything, in vhost `vhost`, for user `user`.
fn sample(user: &str, vhost: &str) -> Value {
    json!({
        "users": [{"name": user, "password_hash": REF_HASH,
                   "hashing_algorithm": "rabbit_password_hashing_sha256",
                   "tags": "management", "limits": {}}],
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": user, "vhost": vhost,
                         "configure": ".*", "write": ".*", "read": ".*"}],
        "policies": [{"vhost": vhost, "name": "p", "pattern": ".*", "definition": {}}],
        "exchanges": [{"name": "x.topic", "vhost": vhost, "type": "topic", "durable": true,
                       "auto_delete": false, "internal": false, "arguments": {}}],
        "queues": [{"name": "q.ttl", "vhost": vhost, "durable": true, "auto_delete": false,
                    "arguments": {"x-message-ttl": 60000}}],
        "bindings": [{"source": "x.topic", "vhost": vhost, "destination": "q.ttl",
                      "destination_type": "queue", "routing_key": "a.*",
                      "arguments": {}}]
    })
}

async fn connect_as(broker: &TestBroker, user: &str, pass: &str, vhost: &str) -> Connection {
    let uri = format!("amqp://{user}:{pass}@{}/{}", broker.addr(), segment(vhost));
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("the imported user logs in to the imported vhost")
}

/// Publishes to `x.topic` with key `a.b` as the sample's user and gets it from `q.ttl`.
async fn assert_sample_routes(broker: &TestBroker, user: &str, vhost: &str) {
    let conn = connect_as(broker, user, REF_PASSWORD, vhost).await;
    let ch = conn.create_channel().await.expect("a channel");
    ch.basic_publish(
        "x.topic",
        "a.b",
        BasicPublishOptions::default(),
        b"routed",
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("published");
    let mut got = None;
    for _ in 0..100 {
        got = ch
            .basic_get("q.ttl", BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        if got.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let message = got.expect("the message was routed through the imported binding");
    assert_eq!(message.delivery.data, b"routed");
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|o| o["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_has_rabbitmqs_shape_and_leaves_out_exclusive_queues_and_amq_exchanges() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, ch) = broker.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("kept", durable, FieldTable::default())
        .await
        .expect("durable queue");
    ch.queue_declare("transient", Default::default(), FieldTable::default())
        .await
        .expect("transient queue");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    ch.queue_declare("mine", exclusive, FieldTable::default())
        .await
        .expect("exclusive queue");
    ch.exchange_declare(
        "fan",
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");

    let (status, all) = http.get("/api/definitions").await;
    assert_eq!(status, 200, "{all}");
    for key in [
        "rabbit_version",
        "rabbitmq_version",
        "product_name",
        "product_version",
    ] {
        assert!(all[key].is_string(), "{key} in {all}");
    }
    for key in [
        "topic_permissions",
        "parameters",
        "global_parameters",
        "policies",
    ] {
        assert_eq!(all[key], json!([]), "{key}");
    }
    let guest = named(&all["users"], "guest").expect("guest is exported");
    assert_eq!(guest["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert!(!guest["password_hash"].as_str().unwrap_or("").is_empty());
    assert_eq!(guest["tags"], json!(["administrator"]));
    assert_eq!(guest["limits"], json!({}));
    assert!(named(&all["vhosts"], "/").is_some(), "{all}");
    assert_eq!(
        all["permissions"],
        json!([{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}])
    );
    let kept = named(&all["queues"], "kept").expect("a durable queue is exported");
    assert_eq!(
        *kept,
        json!({"name": "kept", "vhost": "/", "durable": true, "auto_delete": false,
               "arguments": {}})
    );
    assert!(
        named(&all["queues"], "transient").is_some(),
        "transient queues are exported"
    );
    assert!(
        named(&all["queues"], "mine").is_none(),
        "exclusive queues are not"
    );
    let names: Vec<&str> = all["exchanges"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(names, ["fan"], "no default or amq.* exchange");
    assert_eq!(all["exchanges"][0]["type"], "fanout");

    let (status, one) = http.get("/api/definitions/%2F").await;
    assert_eq!(status, 200, "{one}");
    assert!(
        one.get("users").is_none() && one.get("vhosts").is_none(),
        "{one}"
    );
    assert!(one["queues"][0].get("vhost").is_none(), "{one}");
    assert!(named(&one["queues"], "kept").is_some());

    let (status, err) = http.get("/api/definitions/no-such-vhost").await;
    assert_eq!((status, &err["reason"]), (400, &json!("vhost_not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_answers_an_attachment() {
    let broker = TestBroker::start().await;
    let url = format!(
        "{}/api/definitions?download=node.json",
        broker.admin_url().expect("an API")
    );
    let response = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .set(
                "Authorization",
                &warren_tests::management::basic("guest", "guest"),
            )
            .call()
            .expect("the export")
    })
    .await
    .expect("the request thread");
    assert_eq!(
        response.header("content-disposition"),
        Some("attachment; filename=node.json")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_creates_users_vhosts_permissions_and_a_working_topology() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (user, vhost) = (unique("user"), unique("vh"));
    let (status, body) = http.post("/api/definitions", sample(&user, &vhost)).await;
    assert_eq!(status, 204, "{body}");
    assert_sample_routes(&broker, &user, &vhost).await;

    let (_, all) = http.get("/api/definitions").await;
    let queue = named(&all["queues"], "q.ttl").expect("the queue");
    assert_eq!(queue["arguments"], json!({"x-message-ttl": 60000}));
    let imported = named(&all["users"], &user).expect("the user");
    assert_eq!(imported["password_hash"], REF_HASH);
    assert_eq!(imported["tags"], json!(["management"]));
}

/// A definitions file larger than the 2 MiB other requests are held to still imports: 20 000
/// queues, as a large installation exports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_definitions_file_imports() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let prefix = unique("bulk");
    let queues: Vec<Value> = (0..20_000)
        .map(|i| {
            json!({"name": format!("{prefix}-{i:05}"), "vhost": "/", "durable": true,
                   "auto_delete": false, "arguments": {"x-message-ttl": 60000}})
        })
        .collect();
    let file = json!({ "queues": queues });
    assert!(file.to_string().len() > 2 << 20, "the file is over 2 MiB");
    let (status, body) = http.post("/api/definitions", file).await;
    assert_eq!(status, 204, "{body}");
    let (_, all) = http.get("/api/definitions").await;
    let imported = all["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter(|q| q["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
        .count();
    assert_eq!(imported, 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimporting_the_same_file_changes_nothing() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (user, vhost) = (unique("user"), unique("vh"));
    assert_eq!(
        http.post("/api/definitions", sample(&user, &vhost)).await.0,
        204
    );
    let (_, first) = http.get("/api/definitions").await;
    let (status, body) = http.post("/api/definitions", sample(&user, &vhost)).await;
    assert_eq!(status, 204, "{body}");
    let (_, second) = http.get("/api/definitions").await;
    assert_eq!(first, second);
    // An export imports back to itself too.
    assert_eq!(http.post("/api/definitions", second.clone()).await.0, 204);
    assert_eq!(http.get("/api/definitions").await.1, second);
    assert_sample_routes(&broker, &user, &vhost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inequivalent_queue_is_kept_as_rabbitmq_keeps_it() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (user, vhost) = (unique("user"), unique("vh"));
    assert_eq!(
        http.post("/api/definitions", sample(&user, &vhost)).await.0,
        204
    );
    let mut changed = sample(&user, &vhost);
    changed["queues"][0]["arguments"] = json!({"x-message-ttl": 5});
    changed["exchanges"][0]["type"] = json!("direct");
    changed["queues"]
        .as_array_mut()
        .expect("a list")
        .push(json!({"name": "q.new", "vhost": vhost}));
    // RabbitMQ 3.10 answers 204 and leaves the existing objects alone.
    let (status, body) = http.post("/api/definitions", changed).await;
    assert_eq!(status, 204, "{body}");
    let (_, all) = http.get("/api/definitions").await;
    let queue = named(&all["queues"], "q.ttl").expect("the queue");
    assert_eq!(queue["arguments"], json!({"x-message-ttl": 60000}));
    assert_eq!(
        named(&all["exchanges"], "x.topic").expect("x")["type"],
        "topic"
    );
    assert!(
        named(&all["queues"], "q.new").is_some(),
        "the rest was imported"
    );
    assert_sample_routes(&broker, &user, &vhost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_entry_refuses_the_whole_file_and_changes_nothing() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (user, vhost) = (unique("user"), unique("vh"));
    let mut doc = sample(&user, &vhost);
    doc["exchanges"]
        .as_array_mut()
        .expect("a list")
        .push(json!({"name": "x.bad", "vhost": vhost, "type": "no-such-type"}));
    let (status, body) = http.post("/api/definitions", doc).await;
    assert_eq!(status, 400, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exchanges[1]") && reason.contains("no-such-type"),
        "{reason}"
    );
    let (_, all) = http.get("/api/definitions").await;
    assert!(named(&all["users"], &user).is_none(), "no user was created");
    assert!(
        named(&all["vhosts"], &vhost).is_none(),
        "no vhost was created"
    );

    let bad_args = json!({"queues": [{"name": "q", "vhost": "/",
                                      "arguments": {"x-message-ttl": "soon"}}]});
    let (status, body) = http.post("/api/definitions", bad_args).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("x-message-ttl"),
        "{body}"
    );

    let missing_vhost = json!({"queues": [{"name": "q", "vhost": "nowhere"}]});
    let (status, body) = http.post("/api/definitions", missing_vhost).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("'nowhere'"),
        "{body}"
    );

    let (status, body) = http.post("/api/definitions", json!({"queues": 5})).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_hashing_algorithm_is_refused_with_the_entry_named() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let user = unique("user");
    let doc = json!({"users": [
        {"name": unique("fine"), "password_hash": REF_HASH, "tags": []},
        {"name": user, "password_hash": REF_HASH, "hashing_algorithm": "rot13", "tags": []}
    ]});
    let (status, body) = http.post("/api/definitions", doc).await;
    assert_eq!(status, 400, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("users[1]") && reason.contains("hashing_algorithm 'rot13'"),
        "{reason}"
    );
    let (_, all) = http.get("/api/definitions").await;
    assert_eq!(all["users"].as_array().map(Vec::len), Some(1), "only guest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_import_lands_in_the_path_vhost() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let doc = json!({
        "queues": [{"name": "q.one", "vhost": "ignored", "durable": true,
                    "auto_delete": false, "arguments": {}}],
        "users": [{"name": "not-imported", "password_hash": ""}]
    });
    let (status, body) = http.post("/api/definitions/%2F", doc.clone()).await;
    assert_eq!(status, 204, "{body}");
    let (_, one) = http.get("/api/definitions/%2F").await;
    assert!(named(&one["queues"], "q.one").is_some(), "{one}");
    let (_, all) = http.get("/api/definitions").await;
    assert!(named(&all["users"], "not-imported").is_none());
    let (status, body) = http.post("/api/definitions/nowhere", doc).await;
    assert_eq!((status, &body["reason"]), (404, &json!("vhost_not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_administrators_export_or_import() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (user, vhost) = (unique("user"), unique("vh"));
    assert_eq!(
        http.post("/api/definitions", sample(&user, &vhost)).await.0,
        204
    );
    let manager = http.as_user(&user, REF_PASSWORD);
    for (status, body) in [
        manager.get("/api/definitions").await,
        manager
            .get(&format!("/api/definitions/{}", segment(&vhost)))
            .await,
        manager.post("/api/definitions", json!({})).await,
    ] {
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["reason"], "Not administrator user");
    }
    assert_eq!(http.anonymous().get("/api/definitions").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_definitions_at_start_declares_before_clients_connect() {
    let file = std::env::temp_dir().join(format!("{}.json", unique("defs")));
    let (user, vhost) = (unique("user"), unique("vh"));
    std::fs::write(&file, sample(&user, &vhost).to_string()).expect("the file is written");
    let path = file.clone();
    let broker = TestBroker::start_with(move |c| c.load_definitions = Some(path)).await;
    assert_sample_routes(&broker, &user, &vhost).await;
    // As RabbitMQ: definitions loaded at boot replace the defaults — no guest, no `/`.
    let guest = Connection::connect(&broker.uri(), ConnectionProperties::default()).await;
    assert!(
        guest.is_err(),
        "no default user when definitions are loaded"
    );
    let (_, users) = Http::guest(&broker)
        .as_user(&user, REF_PASSWORD)
        .get("/api/whoami")
        .await;
    assert_eq!(
        users["name"],
        user.as_str(),
        "the imported user reaches the API: {users}"
    );
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_definitions_file_stops_the_start_naming_the_file() {
    let file = std::env::temp_dir().join(format!("{}.json", unique("defs")));
    std::fs::write(
        &file,
        r#"{"users": [{"name": "u", "hashing_algorithm": "x"}]}"#,
    )
    .expect("the file is written");
    let data_dir = std::env::temp_dir().join(unique("data"));
    let config = warren::server::Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        management_listen: None,
        prometheus_listen: None,
        data_dir: data_dir.clone(),
        load_definitions: Some(file.clone()),
        ..Default::default()
    };
    let started = warren::server::start(config).await;
    let message = match started {
        Ok(_) => panic!("a bad definitions file must stop the start"),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains(&file.display().to_string()) && message.contains("users[0]"),
        "{message}"
    );
    let missing = std::env::temp_dir().join(unique("absent"));
    let other_dir = std::env::temp_dir().join(unique("data"));
    let config = warren::server::Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        management_listen: None,
        prometheus_listen: None,
        data_dir: other_dir.clone(),
        load_definitions: Some(missing.clone()),
        ..Default::default()
    };
    let message = match warren::server::start(config).await {
        Ok(_) => panic!("a missing definitions file must stop the start"),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_dir_all(data_dir);
    let _ = std::fs::remove_dir_all(other_dir);
}
