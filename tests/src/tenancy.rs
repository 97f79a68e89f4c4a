//! Users, vhosts and permissions set up directly on an in-process Warren, for tests of what
//! they allow over AMQP: going through the broker's own API keeps those tests independent of
//! the management endpoints that manage the same things.

use std::sync::Arc;

use lapin::{Connection, ConnectionProperties};
use warren::auth::{Permission, User};
use warren::broker::Broker;
use warren::store::VHostDefinition;

use crate::broker::TestBroker;

/// The in-process broker behind `broker`; tests of tenancy need one.
fn node(broker: &TestBroker) -> &Arc<Broker> {
    broker
        .server()
        .expect("tenancy tests run against an in-process Warren")
        .broker()
}

/// Creates (or replaces) the user `name` with `password` and no tags.
pub fn add_user(broker: &TestBroker, name: &str, password: &str) {
    node(broker)
        .auth()
        .put_user(User::new(name, password, Vec::new()))
        .expect("user stored");
}

/// Creates the vhost `name`.
pub fn add_vhost(broker: &TestBroker, name: &str) {
    node(broker)
        .create_vhost(VHostDefinition {
            name: name.to_owned(),
            description: String::new(),
            tags: Vec::new(),
        })
        .expect("vhost created");
}

/// Deletes the vhost `name` with everything in it.
pub fn delete_vhost(broker: &TestBroker, name: &str) {
    node(broker).delete_vhost(name).expect("vhost deleted");
}

/// Gives `user` the three patterns in `vhost` (RabbitMQ's order: configure, write, read).
pub fn permit(
    broker: &TestBroker,
    vhost: &str,
    user: &str,
    configure: &str,
    write: &str,
    read: &str,
) {
    let permission = Permission::new(configure, write, read).expect("valid patterns");
    node(broker)
        .auth()
        .set_permission(vhost, user, permission)
        .expect("permission stored");
}

/// Takes every permission of `user` in `vhost` away.
pub fn forbid(broker: &TestBroker, vhost: &str, user: &str) {
    node(broker)
        .auth()
        .clear_permission(vhost, user)
        .expect("permission cleared");
}

/// Percent-encodes a vhost name for an AMQP URI (`/` is `%2f`).
pub fn uri_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Connects as `user` to `vhost`; the error is whatever the broker answered.
pub async fn connect_as(
    broker: &TestBroker,
    user: &str,
    password: &str,
    vhost: &str,
) -> lapin::Result<Connection> {
    let uri = format!(
        "amqp://{user}:{password}@{}/{}",
        broker.addr(),
        uri_segment(vhost)
    );
    Connection::connect(&uri, ConnectionProperties::default()).await
}
