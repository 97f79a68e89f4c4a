//! `GET /api/overview`: the node at a glance — what it is, where it listens, how many
//! objects and messages it holds — in RabbitMQ's shape, which dashboards and client test
//! helpers read (`rabbitmq_version` and `management_version` to pick features,
//! `object_totals`, `queue_totals`).
//!
//! Warren presents itself as `product_name: "Warren"` and its own `product_version`, but
//! reports `rabbitmq_version` and `management_version` as the RabbitMQ release whose
//! behaviour it follows ([`COMPATIBLE_RABBITMQ`]): tools compare those to decide what the
//! server can do. There is no Erlang, so `erlang_version` is `"n/a"`.
//!
//! A user without `monitoring` sees the totals of the vhosts it has permissions in and of
//! its own connections, as RabbitMQ shows them. `message_stats` are the node's totals (each
//! kind from one source, never going down: see `Broker::message_totals`), or for such a user
//! the sum of its vhosts'; `queue_totals` and `churn_rates` carry rates from the sampler;
//! `?msg_rates_age=&msg_rates_incr=` adds the samples the console charts (see
//! [`super::rates`]).
//!
//! One key RabbitMQ's overview does not have: `alarms`, the node's raised resource alarms in
//! the shape of the alarms health check (`[{"node", "resource": "memory"}]`, empty when
//! none), so a dashboard reading only the overview sees a blocked broker.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::connections::visible_connections;
use super::rates::{CHANNEL_KEYS, Key, NODE_EXTRA_KEYS, Window, render_counts, render_series};
use super::{Api, Caller};
use crate::broker::delayed::DELAYED_TYPE;
use crate::stats::{Churn, QUEUE_TOTALS_KEYS, Snapshot, Source, Stats};

/// The RabbitMQ release whose behaviour Warren follows, as `rabbitmq_version` and
/// `management_version` report it.
pub const COMPATIBLE_RABBITMQ: &str = "3.10.8";

/// How the delayed-message exchange type describes itself (it is built in, not a plugin).
const DELAYED_DESCRIPTION: &str = "Delayed message exchange (built in)";

/// A count with RabbitMQ's `<name>_details: {"rate": 0.0}` beside it.
pub(super) fn with_details(into: &mut serde_json::Map<String, Value>, name: &str, n: usize) {
    into.insert(name.to_owned(), json!(n));
    into.insert(format!("{name}_details"), json!({ "rate": 0.0 }));
}

/// `messages`, `messages_ready`, `messages_unacknowledged` with their details.
pub(super) fn message_counts(ready: usize, unacked: usize) -> serde_json::Map<String, Value> {
    let mut counts = serde_json::Map::new();
    with_details(&mut counts, "messages", ready + unacked);
    with_details(&mut counts, "messages_ready", ready);
    with_details(&mut counts, "messages_unacknowledged", unacked);
    counts
}

/// Deliveries not yet acknowledged on the channels of connections to `vhost`.
pub(super) fn unacked_in(api: &Api, vhost: &str) -> usize {
    api.broker
        .connections()
        .list()
        .iter()
        .filter(|c| c.handshake().vhost == vhost)
        .flat_map(|c| c.channels())
        .map(|ch| ch.unacked())
        .sum()
}

fn exchange_types(api: &Api) -> Vec<Value> {
    let registry = api.broker.registry();
    let mut types: Vec<Value> = registry
        .names()
        .into_iter()
        .filter_map(|name| registry.get(name))
        .map(|t| json!({ "name": t.name(), "description": t.description(), "enabled": true }))
        .collect();
    if registry.get(DELAYED_TYPE).is_none() {
        types.push(json!({
            "name": DELAYED_TYPE,
            "description": DELAYED_DESCRIPTION,
            "enabled": true,
        }));
    }
    types
}

/// The node's `message_stats` for a monitor; for another user, the sum of its vhosts'.
fn node_message_stats(api: &Api, caller: &Caller, window: Window) -> Value {
    let keys: Vec<Key> = CHANNEL_KEYS
        .iter()
        .chain(NODE_EXTRA_KEYS)
        .copied()
        .collect();
    let mut m = Map::new();
    if caller.user.can_monitor() {
        let stats = api.broker.stats();
        render_counts(
            &mut m,
            &api.broker.message_totals(),
            &stats.totals,
            &keys,
            window,
        );
        return Value::Object(m);
    }
    let mut counts = Snapshot::default();
    let mut samples: Vec<(u64, Snapshot)> = Vec::new();
    for vhost in caller.visible_vhosts(api) {
        counts.add(&vhost.message_totals());
        counts.add(
            &api.broker
                .connections()
                .channel_totals(Some(vhost.name()))
                .from_source(Source::Channel),
        );
        // Every vhost is sampled on the same tick: add up samples taken at the same time.
        for (at_ms, counts) in vhost.sampled().samples() {
            match samples.iter_mut().find(|(at, _)| *at == at_ms) {
                Some((_, sum)) => sum.add(&counts),
                None => samples.push((at_ms, counts)),
            }
        }
    }
    samples.sort_by_key(|(at, _)| *at);
    let summed = Stats::with_history(samples.len());
    for (at, s) in samples {
        summed.record(at, s);
    }
    render_counts(&mut m, &counts, &summed, &keys, window);
    Value::Object(m)
}

/// `churn_rates`: objects opened and closed since start, with their rates.
fn churn_rates(api: &Api, window: Window) -> Value {
    let stats = api.broker.stats();
    let now = stats.churn.read();
    let mut m = Map::new();
    for (i, key) in Churn::KEYS.iter().enumerate() {
        render_series(&mut m, key, now[i], &stats.churn_sampled, i, window);
    }
    Value::Object(m)
}

/// `queue_totals`: the counts, with the node's sampled rates for a monitor.
fn queue_totals(api: &Api, caller: &Caller, ready: usize, unacked: usize, window: Window) -> Value {
    if !caller.user.can_monitor() {
        return Value::Object(message_counts(ready, unacked));
    }
    let (ready, unacked) = (ready as u64, unacked as u64);
    let series = &api.broker.stats().queue_totals;
    let mut m = Map::new();
    for (i, (key, now)) in QUEUE_TOTALS_KEYS
        .iter()
        .zip([ready, unacked, ready + unacked])
        .enumerate()
    {
        render_series(&mut m, key, now, series, i, window);
    }
    Value::Object(m)
}

async fn overview(State(api): State<Api>, caller: Caller, window: Window) -> Json<Value> {
    let (mut exchanges, mut queues, mut consumers, mut ready, mut unacked) = (0, 0, 0, 0, 0);
    for name in api.broker.vhost_names() {
        if !caller.sees_vhost(&api, &name) {
            continue;
        }
        let Some(vhost) = api.broker.vhost(&name) else {
            continue;
        };
        let totals = vhost.totals();
        exchanges += totals.exchanges;
        queues += totals.queues;
        consumers += totals.consumers;
        ready += totals.messages_ready;
        unacked += unacked_in(&api, &name);
    }
    let connections = visible_connections(&api, &caller);
    let channels: usize = connections.iter().map(|c| c.channels().len()).sum();
    let node = &api.node.name;
    let listeners: Vec<Value> = api
        .node
        .listeners
        .iter()
        .map(|l| {
            json!({
                "node": node,
                "protocol": l.protocol,
                "ip_address": l.ip_address,
                "port": l.port,
                "socket_opts": {},
            })
        })
        .collect();
    let contexts: Vec<Value> = api
        .node
        .listeners
        .iter()
        .filter(|l| l.protocol == "http")
        .map(|l| {
            json!({
                "node": node,
                "description": "Warren Management",
                "path": "/",
                "port": l.port.to_string(),
                "ssl_opts": [],
            })
        })
        .collect();
    Json(json!({
        "management_version": COMPATIBLE_RABBITMQ,
        "rabbitmq_version": COMPATIBLE_RABBITMQ,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "rates_mode": "basic",
        "erlang_version": "n/a",
        "erlang_full_version": "n/a",
        "disable_stats": false,
        "enable_queue_totals": false,
        "cluster_name": node,
        "node": node,
        "exchange_types": exchange_types(&api),
        "listeners": listeners,
        "contexts": contexts,
        "object_totals": {
            "connections": connections.len(),
            "channels": channels,
            "exchanges": exchanges,
            "queues": queues,
            "consumers": consumers,
        },
        "queue_totals": queue_totals(&api, &caller, ready, unacked, window),
        "message_stats": node_message_stats(&api, &caller, window),
        "churn_rates": churn_rates(&api, window),
        "statistics_db_event_queue": 0,
        // Not in RabbitMQ's overview (which sends a console to /api/nodes for alarms): the
        // node's raised alarms, as the alarms health check lists them.
        "alarms": super::health::node_alarms(&api, api.broker.alarms().raised()),
    }))
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new().route("/api/overview", get(overview))
}
