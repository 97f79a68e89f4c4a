//! Tenancy survives restarts: vhosts (with their description and tags), users (with their
//! password and tags) and permissions made through the management API are there after the
//! real `warren` binary is stopped — gracefully or with SIGKILL — and started again on its
//! data directory, and what was deleted through the API stays deleted.
//!
//! The API answers a change once it is durable, so a kill right after the answers must not
//! lose any of them.

// This file uses the broker harness, not the one-shot helpers beside it.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};

use common::broker_process::{BrokerProcess, TempDataDir};

/// How long one request may take before the test calls it a failure.
const PATIENCE: Duration = Duration::from_secs(15);

/// `method path` on `broker`'s API as `user`, with `body`: the status and the JSON answer
/// (`Null` when there is none).
fn call(
    broker: &BrokerProcess,
    (user, pass): (&str, &str),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", broker.admin_url());
    let auth = format!("Basic {}", BASE64.encode(format!("{user}:{pass}")));
    let request = ureq::request(method, &url)
        .set("Authorization", &auth)
        .timeout(PATIENCE);
    let answer = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(&body.to_string()),
        None => request.call(),
    };
    let response = match answer {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const GUEST: (&str, &str) = ("guest", "guest");

fn put(broker: &BrokerProcess, path: &str, body: Value) {
    let (status, answer) = call(broker, GUEST, "PUT", path, Some(body));
    assert!(
        status == 201 || status == 204,
        "PUT {path}: {status} {answer}"
    );
}

fn delete(broker: &BrokerProcess, path: &str) {
    let (status, answer) = call(broker, GUEST, "DELETE", path, None);
    assert_eq!(status, 204, "DELETE {path}: {answer}");
}

fn get(broker: &BrokerProcess, path: &str) -> (u16, Value) {
    call(broker, GUEST, "GET", path, None)
}

/// Makes the tenancy the test expects back, and what it expects gone.
fn set_up(broker: &BrokerProcess) {
    put(
        broker,
        "/api/vhosts/node-keep",
        json!({"description": "kept", "tags": "blue,green"}),
    );
    put(broker, "/api/vhosts/node-gone", json!({}));
    put(
        broker,
        "/api/users/node-keeper",
        json!({"password": "s3cret", "tags": "management,custom"}),
    );
    put(
        broker,
        "/api/users/node-goner",
        json!({"password": "x", "tags": "management"}),
    );
    put(
        broker,
        "/api/permissions/node-keep/node-keeper",
        json!({"configure": "^k-", "write": ".*", "read": ""}),
    );
    put(
        broker,
        "/api/permissions/node-gone/node-keeper",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    );
    delete(broker, "/api/vhosts/node-gone");
    delete(broker, "/api/users/node-goner");
}

/// What [`set_up`] made is there, what it deleted is not.
async fn check(broker: &BrokerProcess, after: &str) {
    let (status, vhost) = get(broker, "/api/vhosts/node-keep");
    assert_eq!(status, 200, "{after}: {}", broker.run_output());
    assert_eq!(vhost["description"], "kept", "{after}");
    assert_eq!(vhost["tags"], json!(["blue", "green"]), "{after}");
    assert_eq!(get(broker, "/api/vhosts/node-gone").0, 404, "{after}");

    let (status, user) = get(broker, "/api/users/node-keeper");
    assert_eq!(status, 200, "{after}");
    assert_eq!(user["tags"], json!(["management", "custom"]), "{after}");
    let (status, me) = call(
        broker,
        ("node-keeper", "s3cret"),
        "GET",
        "/api/whoami",
        None,
    );
    assert_eq!(status, 200, "{after}: the password still logs in");
    assert_eq!(me["name"], "node-keeper");
    let (status, _) = call(broker, ("node-keeper", "wrong"), "GET", "/api/whoami", None);
    assert_eq!(status, 401, "{after}");
    assert_eq!(get(broker, "/api/users/node-goner").0, 404, "{after}");
    let (status, _) = call(broker, ("node-goner", "x"), "GET", "/api/whoami", None);
    assert_eq!(status, 401, "{after}: a deleted user does not log in");

    let (status, permission) = get(broker, "/api/permissions/node-keep/node-keeper");
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        permission,
        json!({"user": "node-keeper", "vhost": "node-keep", "configure": "^k-", "write": ".*", "read": ""}),
        "{after}"
    );
    let (_, of_user) = get(broker, "/api/users/node-keeper/permissions");
    assert_eq!(
        of_user.as_array().map(Vec::len),
        Some(1),
        "{after}: the deleted vhost's permissions stay deleted: {of_user}"
    );

    let uri = broker
        .amqp_uri()
        .replace("guest:guest", "node-keeper:s3cret")
        .replace("/%2f", "/node-keep");
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{after}: node-keeper connects to node-keep: {e}"));
    conn.close(200, "done").await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts_users_and_permissions_survive_a_graceful_stop_and_a_kill() {
    let dir = TempDataDir::new("tenancy");
    let mut broker = BrokerProcess::start(dir.path());
    set_up(&broker);
    check(&broker, "before any restart").await;

    broker.stop();
    broker.restart();
    check(&broker, "after SIGTERM").await;

    broker.kill9();
    broker.restart();
    check(&broker, "after SIGKILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_answered_just_before_a_kill_are_kept() {
    let dir = TempDataDir::new("tenancy-kill");
    let mut broker = BrokerProcess::start(dir.path());
    set_up(&broker);
    // Killed at once after the last answer: nothing had time to be written later.
    broker.kill9();
    broker.restart();
    check(&broker, "after a SIGKILL right after the changes").await;
}
