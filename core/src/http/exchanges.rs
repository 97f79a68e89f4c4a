//! Exchanges in the management API: listing, declaring and deleting them, their bindings
//! from either side, and publishing a message through one — RabbitMQ's
//! `/api/exchanges…` endpoints and JSON.
//!
//! - `GET /api/exchanges[/{vhost}]`, `GET|PUT|DELETE /api/exchanges/{vhost}/{name}`
//!   (`?if-unused=true`);
//! - `GET /api/exchanges/{vhost}/{name}/bindings/source|destination`;
//! - `POST /api/exchanges/{vhost}/{name}/publish` → `{"routed": bool}`.
//!
//! Every change is the vhost's own `exchange.declare` / `exchange.delete` / publish path with
//! the caller's AMQP permissions (declare and delete need configure on the exchange, publish
//! needs write), so nothing here can do what a client could not. The default exchange is
//! `amq.default` in a path and `""` in JSON, as in RabbitMQ.
//!
//! This file also holds the small pieces the queue and binding resources share with it
//! (request bodies, the error form of channel operations), because
//! they are one concept: how an object resource reads a request and answers.

use std::sync::Arc;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::ShortString;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::bindings;
use super::body::{arguments_of, json_body};
use super::json_table::{from_json, to_json};
use super::rates::{DELAYED_KEYS, EXCHANGE_KEYS, Window, render};
use super::{Api, ApiError, ApiResult, Caller};
use crate::auth::{Operation, ResourceKind};
use crate::broker::queue::expiration::parse_expiration;
use crate::broker::vhost::{BoundTo, ExchangeDeclare};
use crate::broker::{
    Durably, Exchange, Message, Origin, Publish, PublishScratch, Routed, RoutingKeys, VHost,
    replies,
};
use crate::error::AmqpError;
use crate::protocol::{Properties, ShortStr};

/// The name of the default exchange in a path.
pub const DEFAULT_EXCHANGE_ALIAS: &str = "amq.default";

/// The exchange a path names: `amq.default` is the default exchange `""`.
pub fn exchange_name(in_path: &str) -> &str {
    if in_path == DEFAULT_EXCHANGE_ALIAS {
        ""
    } else {
        in_path
    }
}

/// The answer to an operation RabbitMQ runs on an internal AMQP channel (publish, get): 400
/// with the reply code and text the channel was closed with (`404 NOT_FOUND - no exchange
/// …`), as RabbitMQ answers; a refused permission stays 403 (see [`crate::http::error`]).
pub fn channel_error(e: AmqpError) -> ApiError {
    if e.code == crate::protocol::ReplyCode::AccessRefused && e.text.starts_with("access to ") {
        return ApiError::from(e);
    }
    ApiError::bad_request(format!("{} {}", e.code.code(), e.reply_text()))
}

/// 400 unless `name` could be a name over AMQP (a short string, 1 to 255 bytes): the API
/// must not create what no AMQP client could ever name.
pub fn check_name(what: &str, name: &str) -> ApiResult<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::bad_request(format!(
            "{what} name must be 1 to 255 bytes long, got {} bytes",
            name.len()
        )));
    }
    Ok(())
}

/// Answers once the vhost's definition writes so far are durable (a PUT or DELETE of a
/// durable object must not be acknowledged before it would survive a crash).
pub async fn definitions_durable(api: &Api, vhost: &VHost) -> ApiResult<()> {
    api.durable(vhost.definitions_written()).await
}

/// `?if-unused=…&if-empty=…`: only `true` sets a flag, as in RabbitMQ.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteFlags {
    #[serde(rename = "if-unused")]
    if_unused: Option<String>,
    #[serde(rename = "if-empty")]
    if_empty: Option<String>,
}

impl DeleteFlags {
    /// `if-unused=true`.
    pub fn if_unused(&self) -> bool {
        self.if_unused.as_deref() == Some("true")
    }

    /// `if-empty=true`.
    pub fn if_empty(&self) -> bool {
        self.if_empty.as_deref() == Some("true")
    }
}

/// Who declared an exchange, as far as Warren knows: RabbitMQ's `rmq-internal` for the
/// predeclared ones; the declaring user is not recorded, so others say `""`.
fn performed_by(x: &Exchange) -> &'static str {
    if x.is_default() || x.name().starts_with("amq.") {
        "rmq-internal"
    } else {
        ""
    }
}

/// An exchange as RabbitMQ's listing shows it (a delayed one with its pending count, as
/// the delayed-message plugin adds it).
fn exchange_json(vhost: &str, x: &Exchange, window: Window) -> Map<String, Value> {
    let s = &x.spec;
    let mut m = Map::new();
    m.insert("name".into(), json!(s.name));
    m.insert("vhost".into(), json!(vhost));
    m.insert("type".into(), json!(s.kind));
    m.insert("durable".into(), json!(s.durable));
    m.insert("auto_delete".into(), json!(s.auto_delete));
    m.insert("internal".into(), json!(s.internal));
    m.insert("arguments".into(), to_json(&s.arguments));
    m.insert("user_who_performed_action".into(), json!(performed_by(x)));
    m.insert("policy".into(), Value::Null);
    let mut stats = Map::new();
    render(&mut stats, x.stats(), EXCHANGE_KEYS, window);
    if let Some(delayed) = x.delayed() {
        m.insert("messages_delayed".into(), json!(delayed.len()));
        render(&mut stats, delayed.stats(), DELAYED_KEYS, window);
    }
    m.insert("message_stats".into(), Value::Object(stats));
    m
}

fn vhost_exchanges(vhost: &VHost, window: Window) -> Vec<Value> {
    let mut all = vhost.exchanges();
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all.iter()
        .map(|x| Value::Object(exchange_json(vhost.name(), x, window)))
        .collect()
}

async fn list_all(State(api): State<Api>, caller: Caller, window: Window) -> Json<Vec<Value>> {
    Json(
        caller
            .visible_vhosts(&api)
            .iter()
            .flat_map(|v| vhost_exchanges(v, window))
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
    Ok(Json(vhost_exchanges(&vhost, window)))
}

/// The exchange a path names, or 404.
fn existing(vhost: &VHost, in_path: &str) -> ApiResult<Arc<Exchange>> {
    vhost
        .exchange(exchange_name(in_path))
        .ok_or_else(ApiError::not_found)
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let x = existing(&vhost, &name)?;
    let mut m = exchange_json(vhost.name(), &x, window);
    // Per-link message statistics: not measured yet.
    m.insert("incoming".into(), json!([]));
    m.insert("outgoing".into(), json!([]));
    Ok(Json(Value::Object(m)))
}

/// The body of `PUT /api/exchanges/{vhost}/{name}`; RabbitMQ's defaults.
#[derive(Debug, Deserialize)]
struct ExchangeBody {
    #[serde(rename = "type", default = "direct")]
    kind: String,
    #[serde(default, deserialize_with = "crate::http::body::lenient_bool")]
    durable: bool,
    #[serde(default, deserialize_with = "crate::http::body::lenient_bool")]
    auto_delete: bool,
    #[serde(default, deserialize_with = "crate::http::body::lenient_bool")]
    internal: bool,
    #[serde(default)]
    arguments: Option<Value>,
}

fn direct() -> String {
    "direct".into()
}

async fn declare(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let body: ExchangeBody = json_body(&body)?;
    let arguments = arguments_of(body.arguments.as_ref())?;
    check_name("exchange", &name)?;
    let name = exchange_name(&name);
    caller.permit(
        &api,
        vhost.name(),
        ResourceKind::Exchange,
        Operation::Configure,
        name,
    )?;
    let existed = vhost.exchange(name).is_some();
    vhost.declare_exchange(&ExchangeDeclare {
        name,
        kind: &body.kind,
        passive: false,
        durable: body.durable,
        auto_delete: body.auto_delete,
        internal: body.internal,
        arguments: &arguments,
    })?;
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
    let x = existing(&vhost, &name)?;
    caller.permit(
        &api,
        vhost.name(),
        ResourceKind::Exchange,
        Operation::Configure,
        x.name(),
    )?;
    vhost.delete_exchange(x.name(), flags.if_unused())?;
    definitions_durable(&api, &vhost).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bindings_from(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Value>>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let x = existing(&vhost, &name)?;
    Ok(Json(bindings::listing(&vhost, |b| b.source == x.name())))
}

async fn bindings_to(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<Value>>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let x = existing(&vhost, &name)?;
    Ok(Json(bindings::listing(
        &vhost,
        |b| matches!(&b.destination, BoundTo::Exchange(d) if d == x.name()),
    )))
}

/// The body of a publish. Every field is required, as in RabbitMQ.
#[derive(Debug, Deserialize)]
struct PublishBody {
    properties: Value,
    routing_key: String,
    payload: String,
    payload_encoding: String,
}

/// A short-string property from JSON.
fn shortstr_prop(name: &str, value: &Value) -> ApiResult<ShortString> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(ApiError::bad_request(format!(
                "property '{name}' must be a string, got {other}"
            )));
        }
    };
    if text.len() > 255 {
        return Err(ApiError::bad_request(format!(
            "property '{name}' is longer than 255 bytes"
        )));
    }
    Ok(ShortString::from(text))
}

fn octet_prop(name: &str, value: &Value) -> ApiResult<u8> {
    value
        .as_u64()
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "property '{name}' must be an integer from 0 to 255, got {value}"
            ))
        })
}

/// Message properties from RabbitMQ's JSON form. Unknown names are ignored, as RabbitMQ
/// ignores them.
fn properties_from_json(value: &Value) -> ApiResult<BasicProperties> {
    let object = match value {
        Value::Object(object) => object,
        Value::Array(items) if items.is_empty() => return Ok(BasicProperties::default()),
        Value::Null => return Ok(BasicProperties::default()),
        other => {
            return Err(ApiError::bad_request(format!(
                "properties must be a JSON object, got {other}"
            )));
        }
    };
    let mut p = BasicProperties::default();
    for (name, value) in object {
        let s = |v: &Value| shortstr_prop(name, v);
        p = match name.as_str() {
            "content_type" => p.with_content_type(s(value)?),
            "content_encoding" => p.with_content_encoding(s(value)?),
            "headers" => p.with_headers(
                from_json(value)
                    .map_err(|e| ApiError::bad_request(format!("property 'headers': {e}")))?,
            ),
            "delivery_mode" => p.with_delivery_mode(octet_prop(name, value)?),
            "priority" => p.with_priority(octet_prop(name, value)?),
            "correlation_id" => p.with_correlation_id(s(value)?),
            "reply_to" => p.with_reply_to(s(value)?),
            "expiration" => p.with_expiration(s(value)?),
            "message_id" => p.with_message_id(s(value)?),
            "timestamp" => p.with_timestamp(value.as_u64().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "property 'timestamp' must be a non-negative integer (seconds), got {value}"
                ))
            })?),
            "type" => p.with_type(s(value)?),
            "user_id" => p.with_user_id(s(value)?),
            "app_id" => p.with_app_id(s(value)?),
            "cluster_id" => p.with_cluster_id(s(value)?),
            _ => p,
        };
    }
    Ok(p)
}

/// Message properties in RabbitMQ's JSON form (only those present).
pub fn properties_to_json(properties: &crate::protocol::Props) -> Value {
    let Ok(p) = properties.to_basic_properties() else {
        // Non-UTF-8 strings: what can be shown byte-for-byte, lossily.
        return lossy_properties(properties);
    };
    let mut m = Map::new();
    let mut text = |name: &str, v: &Option<ShortString>| {
        if let Some(v) = v {
            m.insert(name.into(), json!(v.as_str()));
        }
    };
    text("content_type", p.content_type());
    text("content_encoding", p.content_encoding());
    text("correlation_id", p.correlation_id());
    text("reply_to", p.reply_to());
    text("expiration", p.expiration());
    text("message_id", p.message_id());
    text("type", p.kind());
    text("user_id", p.user_id());
    text("app_id", p.app_id());
    text("cluster_id", p.cluster_id());
    if let Some(h) = p.headers() {
        m.insert("headers".into(), to_json(h));
    }
    if let Some(d) = p.delivery_mode() {
        m.insert("delivery_mode".into(), json!(d));
    }
    if let Some(prio) = p.priority() {
        m.insert("priority".into(), json!(prio));
    }
    if let Some(t) = p.timestamp() {
        m.insert("timestamp".into(), json!(t));
    }
    Value::Object(m)
}

fn lossy_properties(properties: &crate::protocol::Props) -> Value {
    use crate::protocol::Property as P;
    let names = [
        (P::ContentType, "content_type"),
        (P::ContentEncoding, "content_encoding"),
        (P::CorrelationId, "correlation_id"),
        (P::ReplyTo, "reply_to"),
        (P::Expiration, "expiration"),
        (P::MessageId, "message_id"),
        (P::Type, "type"),
        (P::UserId, "user_id"),
        (P::AppId, "app_id"),
        (P::ClusterId, "cluster_id"),
    ];
    let mut m = Map::new();
    for (property, name) in names {
        if let Some(raw) = properties.shortstr(property) {
            m.insert(name.into(), json!(String::from_utf8_lossy(raw)));
        }
    }
    if let Some(d) = properties.delivery_mode() {
        m.insert("delivery_mode".into(), json!(d));
    }
    if let Some(prio) = properties.priority() {
        m.insert("priority".into(), json!(prio));
    }
    if let Some(t) = properties.timestamp() {
        m.insert("timestamp".into(), json!(t));
    }
    Value::Object(m)
}

/// Builds the message a publish request describes, checked as `basic.publish` checks it.
fn message_of(
    caller: &Caller,
    exchange: &str,
    body: &PublishBody,
) -> ApiResult<(Message, RoutingKeys)> {
    let payload = match body.payload_encoding.as_str() {
        "string" => Bytes::from(body.payload.clone().into_bytes()),
        "base64" => Bytes::from(
            BASE64
                .decode(body.payload.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("payload is not valid base64: {e}")))?,
        ),
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported payload_encoding '{other}' (use 'string' or 'base64')"
            )));
        }
    };
    let basic = properties_from_json(&body.properties)?;
    if let Some(user_id) = basic.user_id()
        && user_id.as_str() != caller.name()
    {
        // RabbitMQ validates user-id against the publisher's login.
        return Err(channel_error(crate::broker::replies::user_id_mismatch(
            user_id.as_str(),
            caller.name(),
        )));
    }
    let mut properties = Properties::from_basic_properties(&basic)
        .map_err(|e| ApiError::bad_request(format!("invalid properties: {e}")))?;
    let distribution = RoutingKeys::at_publish(&properties)
        .map_err(|e| channel_error(AmqpError::new(e.reply_code(), e.to_string())))?;
    if let Some(stored) = distribution.properties {
        properties = stored;
    }
    if let Some(raw) = properties.expiration()
        && let Err(e) = parse_expiration(raw)
    {
        return Err(channel_error(e.to_amqp_error(raw)));
    }
    let routing_key = ShortStr::copy_from_str(&body.routing_key)
        .map_err(|_| ApiError::bad_request("routing_key is longer than 255 bytes"))?;
    let exchange = ShortStr::copy_from_str(exchange)
        .map_err(|_| ApiError::bad_request("exchange name is longer than 255 bytes"))?;
    Ok((
        Message::new(&exchange, &routing_key, &properties, &payload),
        distribution.keys,
    ))
}

/// Waits until a published message's store write (if any) is durable, as a confirm would.
async fn published_durable(api: &Api, durably: Option<Durably>) -> ApiResult<()> {
    let Some(durably) = durably else {
        return Ok(());
    };
    let [_, messages, held] = api.broker.stores().watches();
    let (watch, mark) = match durably {
        Durably::Messages(mark) => (messages, mark),
        Durably::Held(mark) => (held, mark),
        Durably::Definitions(mark) => return api.durable(mark).await,
    };
    if crate::store::durable_at(watch, mark).await {
        Ok(())
    } else {
        Err(ApiError::internal(
            "the message could not be stored (the store failed)",
        ))
    }
}

async fn publish(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let body: PublishBody = json_body(&body)?;
    let name = exchange_name(&name);
    let exchange = vhost.existing_exchange(name).map_err(channel_error)?;
    caller.permit(
        &api,
        vhost.name(),
        ResourceKind::Exchange,
        Operation::Write,
        name,
    )?;
    if exchange.spec.internal {
        return Err(channel_error(replies::internal_exchange(
            vhost.name(),
            exchange.name(),
        )));
    }
    let (message, keys) = message_of(&caller, name, &body)?;
    let outcome = vhost
        .publish(
            Publish {
                exchange: &exchange,
                message,
                keys: &keys,
                mandatory: false,
                origin: Origin::Client,
            },
            &mut PublishScratch::default(),
        )
        .map_err(channel_error)?;
    published_durable(&api, outcome.durably).await?;
    let routed = match outcome.routed {
        Routed::Queues(n) => n > 0,
        // Held by a delayed exchange: it will be routed when due.
        Routed::Held => true,
        Routed::Unroutable => false,
    };
    Ok(Json(json!({ "routed": routed })))
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/exchanges", get(list_all))
        .route("/api/exchanges/{vhost}", get(list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(show).put(declare).delete(delete),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(bindings_from),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(bindings_to),
        )
}
