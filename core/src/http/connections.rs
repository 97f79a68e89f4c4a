//! Who is connected: AMQP connections, their channels and the channels' consumers, in
//! RabbitMQ's shapes, and closing a connection from outside.
//!
//! - `GET /api/connections`, `GET /api/vhosts/{vhost}/connections`;
//! - `GET /api/connections/{name}` and `DELETE` it (320 CONNECTION_FORCED to the client, the
//!   `X-Reason` header as the text; RabbitMQ's default "Closed via management plugin");
//! - `GET /api/connections/{name}/channels`, `GET /api/channels`,
//!   `GET /api/vhosts/{vhost}/channels`, `GET /api/channels/{name}` (`"<connection> (<n>)"`);
//! - `GET /api/consumers`, `GET /api/consumers/{vhost}`.
//!
//! Who sees what follows RabbitMQ: `monitoring` and `administrator` users see every
//! connection and channel, other users only their own; consumers are listed per vhost the
//! caller sees. Closing a connection is for its own user or an administrator.
//!
//! Everything is read from the node's connection list ([`crate::broker::connections`]),
//! which the connection tasks keep; nothing here touches a socket. A channel's
//! `message_stats` are its own counters; a connection's are the sum of its channels', closed
//! ones included; `recv_oct`, `send_oct`, `recv_cnt`, `send_cnt` count its socket's bytes and
//! reads or writes (see [`crate::http::rates`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::json_table::to_json;
use super::rates::{CHANNEL_KEYS, Window, message_stats, render_counts, render_series};
use super::{Api, ApiError, ApiResult, Caller};
use crate::broker::connections::{ChannelEntry, ConnectionEntry};
use crate::broker::queue::Consumer;
use crate::stats::Io;

/// What a client hears when an operator closes its connection without saying why
/// (RabbitMQ's words).
const DEFAULT_CLOSE_REASON: &str = "Closed via management plugin";

/// Whether `caller` sees `connection` (and its channels): monitors see all, others their
/// own.
pub(super) fn sees_connection(caller: &Caller, connection: &ConnectionEntry) -> bool {
    caller.user.can_monitor() || connection.handshake().user == caller.name()
}

/// The connections `caller` sees, oldest first.
pub(super) fn visible_connections(api: &Api, caller: &Caller) -> Vec<Arc<ConnectionEntry>> {
    api.broker
        .connections()
        .list()
        .into_iter()
        .filter(|c| sees_connection(caller, c))
        .collect()
}

fn connection_json(api: &Api, c: &ConnectionEntry, window: Window) -> Value {
    let h = c.handshake();
    let mut stats = Map::new();
    render_counts(
        &mut stats,
        &c.message_stats(),
        &c.sampled,
        CHANNEL_KEYS,
        window,
    );
    let mut io = Map::new();
    let now = c.io.read();
    for i in [Io::RECV_OCT, Io::SEND_OCT] {
        render_series(&mut io, Io::KEYS[i], now[i], &c.io.series, i, window);
    }
    for i in [Io::RECV_CNT, Io::SEND_CNT] {
        io.insert(Io::KEYS[i].to_owned(), json!(now[i]));
    }
    let mut shown = json!({
        "name": c.name,
        "node": api.node.name,
        "vhost": h.vhost,
        "user": h.user,
        "user_who_performed_action": h.user,
        "state": if h.open { "running" } else { "starting" },
        "channels": c.channels().len(),
        "peer_host": c.peer.ip().to_canonical().to_string(),
        "peer_port": c.peer.port(),
        "host": c.local.ip().to_canonical().to_string(),
        "port": c.local.port(),
        "protocol": "AMQP 0-9-1",
        "auth_mechanism": h.mechanism,
        "connected_at": c.connected_at,
        "timeout": h.heartbeat,
        "frame_max": h.frame_max,
        "channel_max": h.channel_max,
        "client_properties": to_json(&h.client_properties),
        "ssl": c.tls.is_some(),
        "ssl_protocol": c.tls.as_ref().and_then(|t| t.protocol.as_deref()),
        "ssl_key_exchange": null,
        "ssl_cipher": c.tls.as_ref().and_then(|t| t.cipher.as_deref()),
        "ssl_hash": null,
        "peer_cert_subject": null,
        "peer_cert_issuer": null,
        "peer_cert_validity": null,
        "type": "network",
        "message_stats": stats,
    });
    if let Value::Object(m) = &mut shown {
        m.extend(io);
    }
    shown
}

/// RabbitMQ's name for a channel: `"<connection name> (<number>)"`.
fn channel_name(connection: &ConnectionEntry, number: u16) -> String {
    format!("{} ({number})", connection.name)
}

fn connection_details(c: &ConnectionEntry) -> Value {
    json!({
        "name": c.name,
        "peer_host": c.peer.ip().to_canonical().to_string(),
        "peer_port": c.peer.port(),
    })
}

fn channel_json(api: &Api, c: &ConnectionEntry, ch: &ChannelEntry, window: Window) -> Value {
    let h = c.handshake();
    json!({
        "name": channel_name(c, ch.number),
        "number": ch.number,
        "node": api.node.name,
        "connection_details": connection_details(c),
        "vhost": h.vhost,
        "user": h.user,
        "user_who_performed_action": h.user,
        "prefetch_count": ch.prefetch_count(),
        "global_prefetch_count": ch.global_prefetch_count(),
        "confirm": ch.confirm(),
        "transactional": ch.transactional(),
        "consumer_count": ch.consumer_count(),
        "messages_unacknowledged": ch.unacked(),
        "messages_unconfirmed": 0,
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "state": "running",
        "message_stats": message_stats(ch.stats(), CHANNEL_KEYS, window),
    })
}

fn consumer_json(api: &Api, c: &ConnectionEntry, ch: &ChannelEntry, consumer: &Consumer) -> Value {
    let h = c.handshake();
    json!({
        "consumer_tag": consumer.tag.as_str(),
        "queue": { "name": consumer.queue.name(), "vhost": consumer.queue.vhost() },
        "channel_details": {
            "name": channel_name(c, ch.number),
            "number": ch.number,
            "node": api.node.name,
            "connection_name": c.name,
            "peer_host": c.peer.ip().to_canonical().to_string(),
            "peer_port": c.peer.port(),
            "user": h.user,
        },
        "ack_required": !consumer.no_ack,
        "exclusive": consumer.exclusive,
        "prefetch_count": consumer.prefetch,
        // Warren does not keep a consumer's arguments (it acts on none of them yet).
        "arguments": {},
        "active": true,
        "activity_status": "up",
    })
}

/// The connection named `name`, if `caller` may see it (404 otherwise, so that a user
/// cannot probe for other users' connections).
fn find_connection(api: &Api, caller: &Caller, name: &str) -> ApiResult<Arc<ConnectionEntry>> {
    api.broker
        .connections()
        .by_name(name)
        .filter(|c| sees_connection(caller, c))
        .ok_or_else(ApiError::not_found)
}

async fn list(State(api): State<Api>, caller: Caller, window: Window) -> Json<Vec<Value>> {
    Json(
        visible_connections(&api, &caller)
            .iter()
            .map(|c| connection_json(&api, c, window))
            .collect(),
    )
}

async fn list_in_vhost(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require_vhost(&api, &vhost)?;
    Ok(Json(
        visible_connections(&api, &caller)
            .iter()
            .filter(|c| c.handshake().vhost == vhost)
            .map(|c| connection_json(&api, c, window))
            .collect(),
    ))
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find_connection(&api, &caller, &name)?;
    Ok(Json(connection_json(&api, &c, window)))
}

async fn close(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let c = find_connection(&api, &caller, &name)?;
    if !caller.user.is_administrator() && c.handshake().user != caller.name() {
        return Err(ApiError::forbidden(
            "only an administrator may close another user's connection",
        ));
    }
    let reason = match headers.get("x-reason") {
        None => DEFAULT_CLOSE_REASON.to_owned(),
        Some(value) => value
            .to_str()
            .map_err(|_| ApiError::bad_request("the X-Reason header is not printable ASCII"))?
            .to_owned(),
    };
    tracing::info!(connection = %c.name, user = %caller.name(), %reason, "connection closed through the management API");
    c.close(reason);
    Ok(StatusCode::NO_CONTENT)
}

/// Every channel of `connections`, as JSON.
fn channels_of(api: &Api, connections: &[Arc<ConnectionEntry>], window: Window) -> Vec<Value> {
    connections
        .iter()
        .flat_map(|c| {
            c.channels()
                .into_iter()
                .map(|ch| channel_json(api, c, &ch, window))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn connection_channels(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let c = find_connection(&api, &caller, &name)?;
    Ok(Json(channels_of(&api, &[c], window)))
}

async fn list_channels(State(api): State<Api>, caller: Caller, window: Window) -> Json<Vec<Value>> {
    Json(channels_of(
        &api,
        &visible_connections(&api, &caller),
        window,
    ))
}

async fn list_channels_in_vhost(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require_vhost(&api, &vhost)?;
    let mut in_vhost = visible_connections(&api, &caller);
    in_vhost.retain(|c| c.handshake().vhost == vhost);
    Ok(Json(channels_of(&api, &in_vhost, window)))
}

async fn show_channel(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    for c in visible_connections(&api, &caller) {
        for ch in c.channels() {
            if channel_name(&c, ch.number) == name {
                let mut shown = channel_json(&api, &c, &ch, window);
                shown["consumer_details"] = ch
                    .consumers()
                    .iter()
                    .map(|consumer| consumer_json(&api, &c, &ch, consumer))
                    .collect();
                return Ok(Json(shown));
            }
        }
    }
    Err(ApiError::not_found())
}

/// The consumers on every connection, in vhosts for which `which` holds.
fn consumers_where(api: &Api, which: impl Fn(&str) -> bool) -> Vec<Value> {
    let mut all = Vec::new();
    for c in api.broker.connections().list() {
        let vhost = c.handshake().vhost;
        if vhost.is_empty() || !which(&vhost) {
            continue;
        }
        for ch in c.channels() {
            for consumer in ch.consumers() {
                all.push(consumer_json(api, &c, &ch, &consumer));
            }
        }
    }
    all
}

async fn list_consumers(State(api): State<Api>, caller: Caller) -> Json<Vec<Value>> {
    Json(consumers_where(&api, |v| caller.sees_vhost(&api, v)))
}

async fn list_consumers_in_vhost(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require_vhost(&api, &vhost)?;
    Ok(Json(consumers_where(&api, |v| v == vhost)))
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/connections", get(list))
        .route("/api/connections/{name}", get(show).delete(close))
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/vhosts/{vhost}/connections", get(list_in_vhost))
        .route("/api/vhosts/{vhost}/channels", get(list_channels_in_vhost))
        .route("/api/channels", get(list_channels))
        .route("/api/channels/{name}", get(show_channel))
        .route("/api/consumers", get(list_consumers))
        .route("/api/consumers/{vhost}", get(list_consumers_in_vhost))
}
