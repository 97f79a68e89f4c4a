//! The node's tenancy and access through the management API, checked over the wire: vhosts,
//! users and permissions made over HTTP decide who an AMQP client may be and what it may do;
//! connections, channels and consumers are listed as RabbitMQ lists them and can be closed;
//! the overview, `whoami` and the health checks answer in RabbitMQ's shapes.

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use warren_tests::broker::{Exceptions, TestBroker, reply_of, unique};
use warren_tests::management::{Http, segment};

/// The AMQP URI of `broker` as `user` in `vhost`.
fn uri_as(broker: &TestBroker, user: &str, pass: &str, vhost: &str) -> String {
    format!(
        "amqp://{}:{}@{}/{}",
        segment(user),
        segment(pass),
        broker.addr(),
        segment(vhost)
    )
}

async fn connect_as(
    broker: &TestBroker,
    user: &str,
    pass: &str,
    vhost: &str,
) -> lapin::Result<Connection> {
    Connection::connect(
        &uri_as(broker, user, pass, vhost),
        ConnectionProperties::default(),
    )
    .await
}

/// A vhost, a user with `tags` and (when `grant`) full permissions in that vhost, all made
/// through the API; (vhost, user, password).
async fn tenant(http: &Http, tags: &str, grant: bool) -> (String, String, String) {
    let vhost = unique("node-v");
    let user = unique("node-u");
    let pass = unique("pw");
    let (status, body) = http
        .put(&format!("/api/vhosts/{}", segment(&vhost)), json!({}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = http
        .put(
            &format!("/api/users/{}", segment(&user)),
            json!({"password": pass, "tags": tags}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    if grant {
        let (status, body) = http
            .put(
                &format!("/api/permissions/{}/{}", segment(&vhost), segment(&user)),
                json!({"configure": ".*", "write": ".*", "read": ".*"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    (vhost, user, pass)
}

/// The entry of `list` whose `key` is `value`.
fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|all| all.iter().find(|e| e[key] == value))
        .unwrap_or_else(|| panic!("no entry with {key}={value} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_made_over_http_connects_only_where_and_as_it_is_permitted() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (vhost, user, pass) = tenant(&http, "", false).await;

    let refused = connect_as(&broker, &user, &pass, &vhost)
        .await
        .expect_err("no permissions yet");
    let (code, text) = reply_of(&refused);
    assert_eq!(code, 530, "{text}");
    assert_eq!(
        text,
        format!("NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'")
    );

    let (status, body) = http
        .put(
            &format!("/api/permissions/{}/{}", segment(&vhost), segment(&user)),
            json!({"configure": "^mine-", "write": ".*", "read": ".*"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let conn = connect_as(&broker, &user, &pass, &vhost)
        .await
        .expect("permitted now");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "mine-q",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("permitted to configure mine-q");
    let wrong = connect_as(&broker, &user, "not-the-password", &vhost)
        .await
        .expect_err("wrong password");
    let (code, text) = reply_of(&wrong);
    assert_eq!(code, 403, "{text}");
    assert!(text.starts_with("ACCESS_REFUSED"), "{text}");

    let (status, shown) = http
        .get(&format!(
            "/api/permissions/{}/{}",
            segment(&vhost),
            segment(&user)
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        shown,
        json!({"user": user, "vhost": vhost, "configure": "^mine-", "write": ".*", "read": ".*"})
    );
    let (status, _) = http
        .put(
            &format!("/api/permissions/{}/{}", segment(&vhost), segment(&user)),
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await;
    assert_eq!(status, 204, "replacing permissions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_vhost_closes_its_connections_with_320_and_drops_its_queues() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (vhost, user, pass) = tenant(&http, "", true).await;
    let conn = connect_as(&broker, &user, &pass, &vhost)
        .await
        .expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "doomed",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declared");
    let mut exceptions = Exceptions::watch(&conn);

    let (status, body) = http
        .delete(&format!("/api/vhosts/{}", segment(&vhost)))
        .await;
    assert_eq!(status, 204, "{body}");
    let (code, text) = exceptions.next().await;
    assert_eq!(code, 320, "{text}");
    assert_eq!(
        text,
        format!("CONNECTION_FORCED - vhost '{vhost}' is deleted")
    );

    let (status, _) = http.get(&format!("/api/vhosts/{}", segment(&vhost))).await;
    assert_eq!(status, 404);
    let (status, _) = http
        .delete(&format!("/api/vhosts/{}", segment(&vhost)))
        .await;
    assert_eq!(status, 404, "deleting it again");
    // Made again, it is empty: the durable queue went with the old one, and so did the
    // permissions (only guest, who made it, has some).
    let (status, _) = http
        .put(&format!("/api/vhosts/{}", segment(&vhost)), json!({}))
        .await;
    assert_eq!(status, 201);
    let (_, perms) = http
        .get(&format!("/api/vhosts/{}/permissions", segment(&vhost)))
        .await;
    assert_eq!(
        perms,
        json!([{"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}])
    );
    let again = Connection::connect(
        &uri_as(&broker, "guest", "guest", &vhost),
        ConnectionProperties::default(),
    )
    .await
    .expect("guest may connect");
    let ch = again.create_channel().await.expect("channel");
    let err = ch
        .queue_declare(
            "doomed",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("the queue is gone");
    assert_eq!(reply_of(&err).0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts_are_listed_with_their_description_tags_and_counts() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let vhost = unique("node-v");
    let path = format!("/api/vhosts/{}", segment(&vhost));
    let (status, _) = http
        .put(&path, json!({"description": "first", "tags": "a, b"}))
        .await;
    assert_eq!(status, 201);
    let (status, shown) = http.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(shown["name"], vhost.as_str());
    assert_eq!(shown["description"], "first");
    assert_eq!(shown["tags"], json!(["a", "b"]));
    let (status, _) = http.put(&path, json!({"tags": ["c"]})).await;
    assert_eq!(status, 204, "an update");
    let (_, shown) = http.get(&path).await;
    assert_eq!(shown["description"], "", "replaced: cleared when left out");
    assert_eq!(shown["tags"], json!(["c"]));
    assert_eq!(shown["metadata"], json!({"description": "", "tags": ["c"]}));
    assert_eq!(shown["tracing"], false);
    assert_eq!(shown["messages"], 0);
    let (_, all) = http.get("/api/vhosts").await;
    find(&all, "name", "/");
    find(&all, "name", &vhost);
    let (status, body) = http.put(&path, json!({"tags": 7})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http.call("PUT", &path, Some(json!("text"))).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_and_consumers_are_listed_with_their_fields() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (vhost, user, pass) = tenant(&http, "", true).await;
    let conn = connect_as(&broker, &user, &pass, &vhost)
        .await
        .expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(7, BasicQosOptions::default())
        .await
        .expect("qos");
    ch.queue_declare("q", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declared");
    let _consumer = ch
        .basic_consume(
            "q",
            "node-tag",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consumes");
    let confirming = conn.create_channel().await.expect("second channel");
    confirming
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");

    let (status, all) = http.get("/api/connections").await;
    assert_eq!(status, 200);
    let c = find(&all, "user", &user);
    let name = c["name"].as_str().expect("a name").to_owned();
    assert_eq!(c["vhost"], vhost.as_str());
    assert_eq!(c["state"], "running");
    assert_eq!(c["channels"], 2);
    assert_eq!(c["protocol"], "AMQP 0-9-1");
    assert_eq!(c["auth_mechanism"], "PLAIN");
    assert_eq!(c["peer_host"], "127.0.0.1");
    assert_eq!(
        name,
        format!(
            "127.0.0.1:{} -> 127.0.0.1:{}",
            c["peer_port"],
            broker.addr().port()
        )
    );
    assert_eq!(c["port"], broker.addr().port());
    assert_eq!(c["ssl"], false);
    assert_eq!(c["type"], "network");
    assert!(c["frame_max"].as_u64().is_some_and(|f| f > 0), "{c}");
    assert!(
        c["client_properties"]["capabilities"]["publisher_confirms"] == true,
        "{c}"
    );

    let (status, one) = http
        .get(&format!("/api/connections/{}", segment(&name)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], name.as_str());
    let (_, in_vhost) = http
        .get(&format!("/api/vhosts/{}/connections", segment(&vhost)))
        .await;
    assert_eq!(in_vhost.as_array().map(Vec::len), Some(1), "{in_vhost}");

    let (_, channels) = http
        .get(&format!("/api/connections/{}/channels", segment(&name)))
        .await;
    let first = find(&channels, "name", &format!("{name} (1)"));
    assert_eq!(first["number"], 1);
    assert_eq!(first["prefetch_count"], 7);
    assert_eq!(first["global_prefetch_count"], 0);
    assert_eq!(first["consumer_count"], 1);
    assert_eq!(first["confirm"], false);
    assert_eq!(first["transactional"], false);
    assert_eq!(first["messages_unacknowledged"], 0);
    assert_eq!(first["vhost"], vhost.as_str());
    assert_eq!(first["user"], user.as_str());
    assert_eq!(first["connection_details"]["name"], name.as_str());
    let second = find(&channels, "name", &format!("{name} (2)"));
    assert_eq!(second["confirm"], true);
    assert_eq!(second["consumer_count"], 0);
    let (status, shown) = http
        .get(&format!(
            "/api/channels/{}",
            segment(&format!("{name} (1)"))
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown["consumer_details"][0]["consumer_tag"], "node-tag");
    let (_, all_channels) = http.get("/api/channels").await;
    find(&all_channels, "name", &format!("{name} (2)"));

    let (status, consumers) = http
        .get(&format!("/api/consumers/{}", segment(&vhost)))
        .await;
    assert_eq!(status, 200);
    let consumer = find(&consumers, "consumer_tag", "node-tag");
    assert_eq!(consumer["queue"], json!({"name": "q", "vhost": vhost}));
    assert_eq!(consumer["ack_required"], true);
    assert_eq!(consumer["exclusive"], false);
    assert_eq!(consumer["prefetch_count"], 7);
    assert_eq!(consumer["active"], true);
    assert_eq!(
        consumer["channel_details"]["connection_name"],
        name.as_str()
    );
    assert_eq!(consumer["channel_details"]["number"], 1);
    assert_eq!(consumer["channel_details"]["user"], user.as_str());
    let (_, everywhere) = http.get("/api/consumers").await;
    find(&everywhere, "consumer_tag", "node-tag");

    // A user sees its own connection only; guest's is not listed to it.
    let (status, body) = http
        .put(
            &format!("/api/users/{}", segment(&user)),
            json!({"password": pass, "tags": "management"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let _guest_conn = broker.connect().await;
    let (status, own) = http.as_user(&user, &pass).get("/api/connections").await;
    assert_eq!(status, 200);
    let users: Vec<&Value> = own
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| &c["user"])
        .collect();
    assert_eq!(users, vec![&json!(user)], "{own}");

    drop(ch);
    conn.close(200, "bye").await.expect("closed");
    // The client has its close-ok as the server's connection task winds down: the entry goes
    // with the task, a moment later.
    let path = format!("/api/connections/{}", segment(&name));
    let mut status = http.get(&path).await.0;
    for _ in 0..200 {
        if status == 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        status = http.get(&path).await.0;
    }
    assert_eq!(status, 404, "gone once closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_connection_closes_it_with_320_and_the_reason_given() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let mut closed: Vec<String> = Vec::new();
    for (reason, expected) in [
        (
            Some("node maintenance"),
            "CONNECTION_FORCED - node maintenance",
        ),
        (None, "CONNECTION_FORCED - Closed via management plugin"),
    ] {
        let conn = broker.connect().await;
        let mut exceptions = Exceptions::watch(&conn);
        let (_, all) = http.get("/api/connections").await;
        let names: Vec<String> = all
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .filter(|name| !closed.contains(name))
            .collect();
        assert_eq!(names.len(), 1, "{all}");
        closed.push(names[0].clone());
        let path = format!("/api/connections/{}", segment(&names[0]));
        let caller = http.clone();
        let (status, body) = tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = reason.iter().map(|r| ("X-Reason", *r)).collect();
            caller.call_blocking("DELETE", &path, None, &headers)
        })
        .await
        .expect("request thread");
        assert_eq!(status, 204, "{body}");
        let (code, text) = exceptions.next().await;
        assert_eq!((code, text.as_str()), (320, expected));
    }
    let (status, _) = http.delete("/api/connections/no%20such").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_closes_its_connections_and_forgets_its_permissions() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (vhost, user, pass) = tenant(&http, "", true).await;
    let conn = connect_as(&broker, &user, &pass, &vhost)
        .await
        .expect("connects");
    let mut exceptions = Exceptions::watch(&conn);
    let (status, _) = http.delete(&format!("/api/users/{}", segment(&user))).await;
    assert_eq!(status, 204);
    let (code, text) = exceptions.next().await;
    assert_eq!(
        (code, text),
        (320, format!("CONNECTION_FORCED - user '{user}' is deleted"))
    );
    let (status, _) = http
        .get(&format!(
            "/api/permissions/{}/{}",
            segment(&vhost),
            segment(&user)
        ))
        .await;
    assert_eq!(status, 404);
    let (status, _) = http.get(&format!("/api/users/{}", segment(&user))).await;
    assert_eq!(status, 404);
    let (status, _) = http.delete(&format!("/api/users/{}", segment(&user))).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_put_with_a_password_a_hash_or_none_and_tags_required() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let user = unique("node-u");
    let path = format!("/api/users/{}", segment(&user));
    let (status, body) = http.put(&path, json!({"password": "p1"})).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (400, json!("tags_not_present"))
    );
    let (status, _) = http
        .put(
            &path,
            json!({"password": "p1", "tags": "management,custom"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, shown) = http.get(&path).await;
    assert_eq!(shown["tags"], json!(["management", "custom"]));
    assert_eq!(shown["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert_eq!(shown["limits"], json!({}));
    let (status, me) = http.as_user(&user, "p1").get("/api/whoami").await;
    assert_eq!(status, 200);
    assert_eq!(me, json!({"name": user, "tags": ["management", "custom"]}));

    // A hash exported from RabbitMQ 3.10 (password `refpass`) logs in as it is.
    let (status, _) = http
        .put(
            &path,
            json!({
                "password_hash": "Wwgxf4aJGnkikYilKM5go5T2eXAgtn5IHMw+JEzF8ncbl1VN",
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["management"],
            }),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        http.as_user(&user, "refpass").get("/api/whoami").await.0,
        200
    );
    assert_eq!(http.as_user(&user, "p1").get("/api/whoami").await.0, 401);
    let (status, _) = http
        .put(&path, json!({"password_hash": "!!", "tags": ""}))
        .await;
    assert_eq!(status, 400);

    // Without a password or hash the user has none: nothing logs it in.
    let (status, _) = http.put(&path, json!({"tags": "management"})).await;
    assert_eq!(status, 204);
    let (_, shown) = http.get(&path).await;
    assert_eq!(shown["password_hash"], "");
    assert_eq!(
        http.as_user(&user, "refpass").get("/api/whoami").await.0,
        401
    );
    assert_eq!(http.as_user(&user, "").get("/api/whoami").await.0, 401);

    let (_, lonely) = http.get("/api/users/without-permissions").await;
    find(&lonely, "name", &user);
    let (_, all) = http.get("/api/users").await;
    find(&all, "name", "guest");

    let other = unique("node-u");
    let (status, _) = http
        .put(
            &format!("/api/users/{}", segment(&other)),
            json!({"tags": ""}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = http
        .post(
            "/api/users/bulk-delete",
            json!({"users": [user, other, "node-missing"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        http.get(&path).await.0,
        404,
        "deleted before the unknown name"
    );
    assert_eq!(
        http.get(&format!("/api/users/{}", segment(&other))).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_tags_decide_what_the_api_answers() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (status, body) = http.anonymous().get("/api/overview").await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("not_authorized"))
    );
    assert_eq!(
        http.as_user("guest", "wrong").get("/api/whoami").await.0,
        401
    );

    let (vhost, manager, pass) = tenant(&http, "management", true).await;
    let as_manager = http.as_user(&manager, &pass);
    for admin_only in ["/api/users", "/api/permissions", "/api/users/guest"] {
        let (status, body) = as_manager.get(admin_only).await;
        assert_eq!(status, 403, "{admin_only}: {body}");
        assert_eq!(body["reason"], "Not administrator user", "{admin_only}");
    }
    let (status, _) = as_manager
        .put(
            &format!("/api/vhosts/{}", segment(&unique("node-v"))),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = as_manager.get("/api/vhosts/%2F").await;
    assert_eq!(status, 403, "one vhost is shown to administrators only");
    let (status, _) = as_manager
        .get(&format!("/api/vhosts/{}", segment(&vhost)))
        .await;
    assert_eq!(status, 403, "even its own");
    let (status, own) = as_manager.get("/api/vhosts").await;
    assert_eq!(status, 200);
    let names: Vec<&Value> = own
        .as_array()
        .expect("list")
        .iter()
        .map(|v| &v["name"])
        .collect();
    assert_eq!(
        names,
        vec![&json!(vhost)],
        "only the vhosts it has permissions in"
    );
    let (status, overview) = as_manager.get("/api/overview").await;
    assert_eq!(status, 200);
    assert_eq!(overview["object_totals"]["queues"], 0);
    assert_eq!(overview["object_totals"]["exchanges"], 6, "{overview}");

    let (_, plain, plain_pass) = tenant(&http, "", true).await;
    let (status, body) = http.as_user(&plain, &plain_pass).get("/api/whoami").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "Not management user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_404_and_bad_permissions_400() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    for path in [
        "/api/vhosts/node-none",
        "/api/users/node-none",
        "/api/permissions/%2F/node-none",
        "/api/vhosts/node-none/permissions",
        "/api/users/node-none/permissions",
        "/api/vhosts/node-none/connections",
        "/api/consumers/node-none",
        "/api/channels/node-none",
        "/api/aliveness-test/node-none",
    ] {
        let (status, body) = http.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"], "Object Not Found", "{path}");
    }
    let pattern = |configure: &str| json!({"configure": configure, "write": "", "read": ""});
    let (status, body) = http.put("/api/permissions/%2F/guest", pattern("(")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("invalid_regexp")),
        "{body}"
    );
    let (status, body) = http
        .put("/api/permissions/node-none/guest", pattern(".*"))
        .await;
    assert_eq!(
        (status, body["reason"].clone()),
        (400, json!("vhost_or_user_not_found"))
    );
    let (status, body) = http
        .put("/api/permissions/%2F/node-none", pattern(".*"))
        .await;
    assert_eq!(
        (status, body["reason"].clone()),
        (400, json!("vhost_or_user_not_found"))
    );
    let (status, body) = http
        .put("/api/permissions/%2F/guest", json!({"configure": ".*"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = http.delete("/api/permissions/%2F/node-none").await;
    assert_eq!(status, 404);
    let (status, still) = http.get("/api/permissions/%2F/guest").await;
    assert_eq!(status, 200);
    assert_eq!(still["configure"], ".*", "a refused PUT changes nothing");
    assert_eq!(http.get("/api/topic-permissions").await.1, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_what_clients_declared_and_the_health_checks_pass() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_, before) = http.get("/api/overview").await;
    assert_eq!(before["product_name"], "Warren");
    assert_eq!(before["rabbitmq_version"], "3.10.8");
    assert_eq!(before["rates_mode"], "basic");
    assert!(
        before["node"].as_str().is_some_and(|n| !n.is_empty()),
        "{before}"
    );
    let protocols: Vec<&Value> = before["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .map(|l| &l["protocol"])
        .collect();
    assert!(protocols.contains(&&json!("amqp")), "{before}");
    let types = &before["exchange_types"];
    find(types, "name", "direct");
    find(types, "name", "x-delayed-message");
    let totals = &before["object_totals"];
    assert_eq!(totals["connections"], 0);
    let exchanges = totals["exchanges"].as_u64().expect("a count");
    let queues = totals["queues"].as_u64().expect("a count");

    let (_conn, ch) = broker.channel().await;
    for q in ["node-a", "node-b"] {
        ch.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declared");
    }
    ch.exchange_declare(
        "node-x",
        lapin::ExchangeKind::Fanout,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("declared");
    ch.basic_publish("", "node-a", Default::default(), b"one", Default::default())
        .await
        .expect("published");
    let _consumer = ch
        .basic_consume(
            "node-b",
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consumes");
    ch.queue_declare(
        "node-a",
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("a round trip after the publish");

    let (_, after) = http.get("/api/overview").await;
    let totals = &after["object_totals"];
    assert_eq!(totals["connections"], 1, "{after}");
    assert_eq!(totals["channels"], 1);
    assert_eq!(totals["consumers"], 1);
    assert_eq!(totals["queues"], queues + 2);
    assert_eq!(totals["exchanges"], exchanges + 1);
    assert_eq!(after["queue_totals"]["messages_ready"], 1, "{after}");
    assert_eq!(after["queue_totals"]["messages"], 1);

    let (status, body) = http.get("/api/health/checks/alarms").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = http.get("/api/aliveness-test/%2F").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let passive = ch
        .queue_declare(
            "aliveness-test",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the aliveness test's queue stays, as in RabbitMQ");
    assert_eq!(passive.message_count(), 0, "its message was taken back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_shows_its_memory_descriptors_disk_and_alarms_to_monitors() {
    let broker = TestBroker::start().await;
    let http = Http::guest(&broker);
    let (_conn, _ch) = broker.channel().await;
    let (status, nodes) = http.get("/api/nodes").await;
    assert_eq!(status, 200, "{nodes}");
    let node = &nodes[0];
    let name = node["name"].as_str().expect("a name").to_owned();
    assert!(name.starts_with("warren@"), "{node}");
    assert_eq!(node["running"], true);
    assert!(
        node["mem_used"].as_u64().is_some_and(|m| m > 1 << 20),
        "{node}"
    );
    assert!(
        node["fd_used"].as_u64().is_some_and(
            |used| used > 0 && node["fd_total"].as_u64().is_some_and(|total| total >= used)
        ),
        "{node}"
    );
    assert!(node["disk_free"].as_u64().is_some_and(|d| d > 0), "{node}");
    assert_eq!(node["disk_free_alarm"], false);
    assert!(
        node["sockets_used"].as_u64().is_some_and(|s| s >= 1),
        "{node}"
    );
    let (status, one) = http.get(&format!("/api/nodes/{}", segment(&name))).await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], name.as_str());
    assert_eq!(http.get("/api/nodes/rabbit@elsewhere").await.0, 404);
    let (_, cluster) = http.get("/api/cluster-name").await;
    assert_eq!(cluster["name"], name.as_str());
    // Node figures are for monitors, not for every management user.
    let (_, user, pass) = tenant(&http, "management", true).await;
    assert_eq!(http.as_user(&user, &pass).get("/api/nodes").await.0, 403);
}
