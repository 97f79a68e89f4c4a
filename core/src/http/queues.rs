//! Queues in the management API: listing them with their counts, declaring and deleting
//! them, purging them and taking messages out for a look — RabbitMQ's `/api/queues…`
//! endpoints and JSON.
//!
//! - `GET /api/queues[/{vhost}]`, `GET|PUT|DELETE /api/queues/{vhost}/{name}`
//!   (`?if-empty=true&if-unused=true`), `GET /api/queues/{vhost}/{name}/bindings`;
//! - `DELETE /api/queues/{vhost}/{name}/contents` (purge);
//! - `POST /api/queues/{vhost}/{name}/get` with `{"count", "ackmode", "encoding",
//!   "truncate"?}`.
//!
//! The API is not an AMQP connection: it acts as connection 0, which owns no exclusive
//! queue, so an exclusive queue refuses it as it refuses another connection (405
//! RESOURCE_LOCKED, answered 400 as RabbitMQ does), and a queue declared here is never
//! exclusive (RabbitMQ ignores `exclusive` in the body too).
//!
//! A get takes up to `count` messages as `basic.get` does, then settles them all as the
//! ack mode says: the requeue modes put them back at the front in their order, marked
//! redelivered, with their deadlines — nothing is lost by looking.
//!
//! Rates are not measured yet: every `*_details` object says 0.0. `memory` is an estimate
//! (the ready bodies plus a fixed cost per message and per queue).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete as delete_route, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::bindings;
use super::body::{arguments_of, json_body};
use super::exchanges::{
    DeleteFlags, channel_error, check_name, definitions_durable, properties_to_json,
};
use super::json_table::to_json;
use super::rates::{QUEUE_KEYS, Window, message_stats, render_series};
use super::{Api, ApiError, ApiResult, Caller};
use crate::auth::{Operation, ResourceKind};
use crate::broker::vhost::{BoundTo, QueueDeclare};
use crate::broker::{Queue, Queued, VHost};
use crate::stats::RATE_SAMPLES;
use crate::stats::{Counter, Series};

/// The connection id the API acts as: real connections are numbered from 1.
const API_CONNECTION: u64 = 0;

/// Estimated bytes a queue costs besides its messages, and each message besides its body.
const QUEUE_OVERHEAD: u64 = 2_048;
const MESSAGE_OVERHEAD: u64 = 256;

/// A queue as RabbitMQ's listing shows it.
fn queue_json(api: &Api, vhost: &VHost, queue: &Arc<Queue>, window: Window) -> Map<String, Value> {
    let (now, deaths) = queue.snapshot();
    vhost.bury(queue, deaths);
    let s = &queue.spec;
    let kind = crate::broker::args::text_arg(&s.arguments, "x-queue-type").unwrap_or("classic");
    let ready = now.ready as u64;
    let unacked = now.unacked as u64;
    let mut m = Map::new();
    m.insert("name".into(), json!(s.name));
    m.insert("vhost".into(), json!(vhost.name()));
    m.insert("durable".into(), json!(s.durable));
    m.insert("auto_delete".into(), json!(s.auto_delete));
    m.insert("exclusive".into(), json!(s.exclusive_owner.is_some()));
    m.insert("arguments".into(), to_json(&s.arguments));
    m.insert("node".into(), json!(api.node.name));
    m.insert("state".into(), json!("running"));
    m.insert("type".into(), json!(kind));
    m.insert("consumers".into(), json!(now.consumers));
    // Rates of the depths from the sampled [ready, unacked]; `messages` is their sum.
    let depth = queue.depth();
    render_series(&mut m, "messages_ready", ready, depth, 0, window);
    render_series(&mut m, "messages_unacknowledged", unacked, depth, 1, window);
    let total = Series::<1>::new(RATE_SAMPLES);
    for (at, [r, u]) in depth.since(0) {
        total.record(at, [r + u]);
    }
    render_series(&mut m, "messages", ready + unacked, &total, 0, window);
    m.insert(
        "message_stats".into(),
        message_stats(queue.stats(), QUEUE_KEYS, window),
    );
    m.insert("message_bytes_ready".into(), json!(now.ready_bytes));
    m.insert(
        "memory".into(),
        json!(QUEUE_OVERHEAD + now.ready_bytes + ready * MESSAGE_OVERHEAD),
    );
    m.insert("policy".into(), Value::Null);
    m.insert("operator_policy".into(), Value::Null);
    m.insert("effective_policy_definition".into(), json!({}));
    m.insert("exclusive_consumer_tag".into(), Value::Null);
    m.insert("single_active_consumer_tag".into(), Value::Null);
    m.insert("head_message_timestamp".into(), Value::Null);
    m.insert("recoverable_slaves".into(), Value::Null);
    if let Some(owner) = s.exclusive_owner
        && let Some(connection) = api
            .broker
            .connections()
            .list()
            .into_iter()
            .find(|c| c.id == owner)
    {
        m.insert(
            "owner_pid_details".into(),
            json!({
                "name": connection.name,
                "peer_host": connection.peer.ip().to_string(),
                "peer_port": connection.peer.port(),
            }),
        );
    }
    m
}

fn vhost_queues(api: &Api, vhost: &VHost, window: Window) -> Vec<Value> {
    let mut all = vhost.queues();
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all.iter()
        .map(|q| Value::Object(queue_json(api, vhost, q, window)))
        .collect()
}

async fn list_all(State(api): State<Api>, caller: Caller, window: Window) -> Json<Vec<Value>> {
    Json(
        caller
            .visible_vhosts(&api)
            .iter()
            .flat_map(|v| vhost_queues(&api, v, window))
            .collect(),
    )
}

async fn list_vhost(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    Ok(Json(vhost_queues(&api, &vhost, window)))
}

fn existing(vhost: &VHost, name: &str) -> ApiResult<Arc<Queue>> {
    vhost.queue(name).ok_or_else(ApiError::not_found)
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let queue = existing(&vhost, &name)?;
    let mut m = queue_json(&api, &vhost, &queue, window);
    // Per-consumer and per-link details: not listed yet.
    m.insert("consumer_details".into(), json!([]));
    m.insert("deliveries".into(), json!([]));
    m.insert("incoming".into(), json!([]));
    Ok(Json(Value::Object(m)))
}

async fn bindings_to(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Value>>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let queue = existing(&vhost, &name)?;
    Ok(Json(bindings::listing(
        &vhost,
        |b| matches!(&b.destination, BoundTo::Queue(q) if q == queue.name()),
    )))
}

/// The body of `PUT /api/queues/{vhost}/{name}`; RabbitMQ's defaults.
#[derive(Debug, Deserialize)]
struct QueueBody {
    #[serde(default, deserialize_with = "crate::http::body::lenient_bool")]
    durable: bool,
    #[serde(default, deserialize_with = "crate::http::body::lenient_bool")]
    auto_delete: bool,
    #[serde(default)]
    arguments: Option<Value>,
}

async fn declare(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let body: QueueBody = json_body(&body)?;
    let arguments = arguments_of(body.arguments.as_ref())?;
    check_name("queue", &name)?;
    caller.permit(
        &api,
        vhost.name(),
        ResourceKind::Queue,
        Operation::Configure,
        &name,
    )?;
    let existed = vhost.queue(&name).is_some();
    vhost.declare_queue(
        API_CONNECTION,
        &QueueDeclare {
            name: &name,
            passive: false,
            durable: body.durable,
            exclusive: false,
            auto_delete: body.auto_delete,
            arguments: &arguments,
        },
    )?;
    definitions_durable(&api, &vhost).await?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

async fn delete(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(flags): Query<DeleteFlags>,
) -> ApiResult<StatusCode> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    existing(&vhost, &name)?;
    caller.permit(
        &api,
        vhost.name(),
        ResourceKind::Queue,
        Operation::Configure,
        &name,
    )?;
    vhost.delete_queue(API_CONNECTION, &name, flags.if_unused(), flags.if_empty())?;
    definitions_durable(&api, &vhost).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    existing(&vhost, &name)?;
    caller.permit(
        &api,
        vhost.name(),
        ResourceKind::Queue,
        Operation::Read,
        &name,
    )?;
    let queue = vhost.usable_queue(API_CONNECTION, &name)?;
    queue.purge();
    Ok(StatusCode::NO_CONTENT)
}

/// How the messages of a get are settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckMode {
    /// Put back (RabbitMQ's `ack_requeue_true`, which is a requeue despite its name).
    AckRequeue,
    /// Acknowledged: gone.
    Ack,
    /// Rejected with requeue: put back.
    RejectRequeue,
    /// Rejected without requeue: dead-lettered if the queue does so, else gone.
    Reject,
}

impl AckMode {
    fn parse(text: &str) -> ApiResult<AckMode> {
        Ok(match text {
            "ack_requeue_true" => AckMode::AckRequeue,
            "ack_requeue_false" => AckMode::Ack,
            "reject_requeue_true" => AckMode::RejectRequeue,
            "reject_requeue_false" => AckMode::Reject,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown ackmode '{other}' (use ack_requeue_true, ack_requeue_false, \
                     reject_requeue_true or reject_requeue_false)"
                )));
            }
        })
    }
}

/// The body of a get. `count`, `ackmode` and `encoding` are required, as in RabbitMQ.
#[derive(Debug, Deserialize)]
struct GetBody {
    #[serde(deserialize_with = "crate::http::body::lenient_u64")]
    count: u64,
    ackmode: String,
    encoding: String,
    #[serde(default, deserialize_with = "crate::http::body::lenient_opt_u64")]
    truncate: Option<u64>,
}

/// One message taken by a get, as RabbitMQ shows it.
fn got_json(item: &Queued, remaining: usize, base64_only: bool, truncate: Option<u64>) -> Value {
    let message = &item.message;
    let body = message.body();
    let shown = match truncate {
        Some(limit) => &body[..body.len().min(usize::try_from(limit).unwrap_or(usize::MAX))],
        None => body,
    };
    let (payload, encoding) = match std::str::from_utf8(shown) {
        Ok(text) if !base64_only => (text.to_owned(), "string"),
        _ => (BASE64.encode(shown), "base64"),
    };
    json!({
        "payload_bytes": body.len(),
        "redelivered": item.redelivered,
        "exchange": message.exchange(),
        "routing_key": message.routing_key(),
        "message_count": remaining,
        "properties": properties_to_json(message.properties()),
        "payload": payload,
        "payload_encoding": encoding,
    })
}

async fn get_messages(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Vec<Value>>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let body: GetBody = json_body(&body)?;
    // Everything about the request is checked before a message leaves the queue.
    let mode = AckMode::parse(&body.ackmode)?;
    let base64_only = match body.encoding.as_str() {
        "auto" => false,
        "base64" => true,
        _ => {
            return Err(ApiError::bad_request(
                "Unsupported encoding. Please use auto or base64.",
            ));
        }
    };
    if vhost.queue(&name).is_none() {
        // RabbitMQ's words for a get from a missing queue.
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: "not_found",
            reason: crate::broker::replies::no_queue(vhost.name(), &name).reply_text(),
        });
    }
    caller.permit(
        &api,
        vhost.name(),
        ResourceKind::Queue,
        Operation::Read,
        &name,
    )?;
    let queue = vhost
        .usable_queue(API_CONNECTION, &name)
        .map_err(channel_error)?;
    let mut taken = Vec::new();
    let mut shown = Vec::new();
    for _ in 0..body.count {
        let (got, deaths) = queue.get();
        vhost.bury(&queue, deaths);
        let Some((item, remaining)) = got else {
            break;
        };
        // Counted on the queue as a channel's basic.get would be (there is no channel).
        let counters = &queue.stats().counters;
        counters.incr(Counter::Get);
        if item.redelivered {
            counters.incr(Counter::Redeliver);
        }
        shown.push(got_json(&item, remaining, base64_only, body.truncate));
        taken.push(item);
    }
    settle(&vhost, &queue, taken, mode);
    Ok(Json(shown))
}

/// Settles what a get took, as `mode` says.
fn settle(vhost: &VHost, queue: &Arc<Queue>, taken: Vec<Queued>, mode: AckMode) {
    match mode {
        AckMode::AckRequeue | AckMode::RejectRequeue => {
            for item in &taken {
                // Delivered once: after a crash it comes back redelivered, as it does now.
                queue.delivered_stored(item.stored, false);
            }
            let deaths = queue.requeue(
                taken
                    .into_iter()
                    .map(|item| (item.message, item.deadline, item.stored)),
            );
            vhost.bury(queue, deaths);
        }
        AckMode::Ack => {
            queue.stats().counters.add(Counter::Ack, taken.len() as u64);
            for item in &taken {
                queue.settled(item.stored);
            }
        }
        AckMode::Reject => {
            let deaths = queue.reject(taken.into_iter().map(|item| (item.message, item.stored)));
            vhost.bury(queue, deaths);
        }
    }
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/queues", get(list_all))
        .route("/api/queues/{vhost}", get(list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(show).put(declare).delete(delete),
        )
        .route("/api/queues/{vhost}/{name}/bindings", get(bindings_to))
        .route("/api/queues/{vhost}/{name}/contents", delete_route(purge))
        .route("/api/queues/{vhost}/{name}/get", post(get_messages))
}
