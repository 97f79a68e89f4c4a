//! Bindings in the management API: RabbitMQ's `/api/bindings…` endpoints — list them,
//! create one between an exchange and a queue or another exchange, and show or delete one
//! by its *properties key*.
//!
//! - `GET /api/bindings[/{vhost}]`;
//! - `GET|POST /api/bindings/{vhost}/e/{source}/q/{queue}` and `…/e/{source}/e/{exchange}`
//!   (`POST {"routing_key", "arguments"}` → 201, `Location: {destination}/{props}`);
//! - `GET|DELETE /api/bindings/{vhost}/e/{source}/q|e/{destination}/{props}`.
//!
//! A binding has no name, so RabbitMQ names it within its (source, destination) pair by a
//! properties key: the routing key URL-quoted (`~` alone for the empty key), then, when it
//! has arguments, `~` and a short hash of them. Warren forms it the same way; its hash is
//! its own (a CRC-32C of the encoded arguments, URL-safe base64 — RabbitMQ hashes the
//! Erlang term, which cannot be reproduced), so a key is stable across restarts and what
//! matters holds: a key taken from a listing or a `Location` finds that binding.
//!
//! Listings include the default exchange's implicit binding to every queue (source `""`,
//! the queue's name as key), as RabbitMQ shows them; they cannot be deleted. Binding and
//! unbinding need write permission on the destination and read permission on the source,
//! the AMQP rule.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{arguments_of, json_body};
use super::exchanges::{definitions_durable, exchange_name};
use super::json_table::to_json;
use super::{Api, ApiError, ApiResult, Caller};
use crate::auth::{Operation, ResourceKind};
use crate::broker::VHost;
use crate::broker::vhost::{BindTarget, Binding, BoundTo};

/// Which kind of destination a path names (`q` or `e`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Queue,
    Exchange,
}

impl Kind {
    fn target(self, name: &str) -> BindTarget<'_> {
        match self {
            Kind::Queue => BindTarget::Queue(name),
            Kind::Exchange => BindTarget::Exchange(name),
        }
    }

    fn resource(self) -> ResourceKind {
        match self {
            Kind::Queue => ResourceKind::Queue,
            Kind::Exchange => ResourceKind::Exchange,
        }
    }

    fn leads_to(self, destination: &BoundTo, name: &str) -> bool {
        match (self, destination) {
            (Kind::Queue, BoundTo::Queue(q)) => q == name,
            (Kind::Exchange, BoundTo::Exchange(x)) => x == name,
            _ => false,
        }
    }
}

/// What a properties key keeps of a routing key: letters, digits, `.`, `-` and `_` (so `~`
/// never appears inside a part and can separate them).
const PROPERTIES_KEY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

/// URL-quotes a routing key the way RabbitMQ's properties keys do: the characters above
/// stay, a space is `+`, every other byte `%XX`.
fn quote(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, PROPERTIES_KEY)
        .to_string()
        .replace("%20", "+")
}

/// Decodes `%XX` escapes once (what a server does to a path segment), leaving anything
/// else as it is.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The properties key of `binding` within its (source, destination) pair.
pub fn properties_key(binding: &Binding) -> String {
    let key = quote(&binding.key);
    if binding.arguments.inner().is_empty() {
        return if key.is_empty() { "~".into() } else { key };
    }
    let hash = crc32c::crc32c(&binding.raw_arguments).to_be_bytes();
    format!("{key}~{}", URL_SAFE_NO_PAD.encode(hash))
}

/// Whether `given` (a path segment, decoded once by the router) names `binding`: either
/// the client encoded the key as a segment (the `Location` form), or it pasted the key
/// from a listing into the path unencoded, which the router decoded once more.
fn names(given: &str, binding: &Binding) -> bool {
    let key = properties_key(binding);
    given == key || given == percent_decode(&key)
}

/// The default exchange's implicit binding to `queue`.
fn implicit(queue: &crate::broker::Queue) -> Binding {
    Binding {
        source: String::new(),
        destination: BoundTo::Queue(queue.name().to_owned()),
        destination_id: queue.id,
        key: queue.name().to_owned(),
        arguments: Default::default(),
        raw_arguments: Default::default(),
        durable: queue.spec.durable,
    }
}

/// Every binding of `vhost`, the implicit ones first, then by source, destination and key.
fn all_of(vhost: &VHost) -> Vec<Binding> {
    let mut all: Vec<Binding> = vhost.queues().iter().map(|q| implicit(q)).collect();
    all.extend(vhost.bindings());
    let order = |b: &Binding| {
        let (kind, name) = match &b.destination {
            BoundTo::Exchange(x) => (0, x.clone()),
            BoundTo::Queue(q) => (1, q.clone()),
        };
        (
            b.source.clone(),
            kind,
            name,
            b.key.clone(),
            properties_key(b),
        )
    };
    all.sort_by_cached_key(order);
    all
}

/// A binding as RabbitMQ shows it.
fn binding_json(vhost: &str, b: &Binding) -> Value {
    let (destination, destination_type) = match &b.destination {
        BoundTo::Queue(q) => (q, "queue"),
        BoundTo::Exchange(x) => (x, "exchange"),
    };
    json!({
        "source": b.source,
        "vhost": vhost,
        "destination": destination,
        "destination_type": destination_type,
        "routing_key": b.key,
        "arguments": to_json(&b.arguments),
        "properties_key": properties_key(b),
    })
}

/// The bindings of `vhost` that `keep` selects, as JSON (for the exchange and queue
/// resources' binding listings too).
pub fn listing(vhost: &VHost, keep: impl Fn(&Binding) -> bool) -> Vec<Value> {
    all_of(vhost)
        .iter()
        .filter(|b| keep(b))
        .map(|b| binding_json(vhost.name(), b))
        .collect()
}

async fn list_all(State(api): State<Api>, caller: Caller) -> Json<Vec<Value>> {
    Json(
        caller
            .visible_vhosts(&api)
            .iter()
            .flat_map(|v| listing(v, |_| true))
            .collect(),
    )
}

async fn list_vhost(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    Ok(Json(listing(&vhost, |_| true)))
}

/// The bindings from `source` to `destination`: empty if either is missing, as RabbitMQ
/// answers.
fn between(vhost: &VHost, source: &str, kind: Kind, destination: &str) -> Vec<Binding> {
    let source = exchange_name(source);
    all_of(vhost)
        .into_iter()
        .filter(|b| b.source == source && kind.leads_to(&b.destination, destination))
        .collect()
}

async fn list_between(
    api: Api,
    caller: Caller,
    (vhost, source, destination): (String, String, String),
    kind: Kind,
) -> ApiResult<Json<Vec<Value>>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let found = between(&vhost, &source, kind, &destination);
    Ok(Json(
        found
            .iter()
            .map(|b| binding_json(vhost.name(), b))
            .collect(),
    ))
}

/// The body of a new binding.
#[derive(Debug, Deserialize)]
struct BindingBody {
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Write on the destination, read on the source: what `queue.bind` / `exchange.bind` need.
fn permit_binding(
    api: &Api,
    caller: &Caller,
    vhost: &str,
    source: &str,
    kind: Kind,
    destination: &str,
) -> ApiResult<()> {
    caller.permit(api, vhost, kind.resource(), Operation::Write, destination)?;
    caller.permit(api, vhost, ResourceKind::Exchange, Operation::Read, source)
}

async fn create(
    api: Api,
    caller: Caller,
    (vhost, source, destination): (String, String, String),
    kind: Kind,
    body: Bytes,
) -> ApiResult<Response> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let body: BindingBody = json_body(&body)?;
    let arguments = arguments_of(body.arguments.as_ref())?;
    if body.routing_key.len() > 255 {
        return Err(ApiError::bad_request(
            "routing_key is longer than 255 bytes",
        ));
    }
    let source = exchange_name(&source);
    permit_binding(&api, &caller, vhost.name(), source, kind, &destination)?;
    vhost.bind(
        0,
        kind.target(&destination),
        source,
        &body.routing_key,
        &arguments,
    )?;
    definitions_durable(&api, &vhost).await?;
    let made = between(&vhost, source, kind, &destination)
        .into_iter()
        .find(|b| b.key == body.routing_key && b.arguments == arguments)
        .ok_or_else(|| {
            ApiError::internal("the binding was made but is gone already (deleted meanwhile)")
        })?;
    let location = format!(
        "{}/{}",
        super::encode_segment(&destination),
        super::encode_segment(&properties_key(&made))
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The binding a full binding path names, or 404.
fn named(
    vhost: &VHost,
    source: &str,
    kind: Kind,
    destination: &str,
    props: &str,
) -> ApiResult<Binding> {
    between(vhost, source, kind, destination)
        .into_iter()
        .find(|b| names(props, b))
        .ok_or_else(ApiError::not_found)
}

async fn show(
    api: Api,
    caller: Caller,
    (vhost, source, destination, props): (String, String, String, String),
    kind: Kind,
) -> ApiResult<Json<Value>> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let b = named(&vhost, &source, kind, &destination, &props)?;
    Ok(Json(binding_json(vhost.name(), &b)))
}

async fn delete(
    api: Api,
    caller: Caller,
    (vhost, source, destination, props): (String, String, String, String),
    kind: Kind,
) -> ApiResult<StatusCode> {
    let vhost = caller.require_vhost(&api, &vhost)?;
    let b = named(&vhost, &source, kind, &destination, &props)?;
    permit_binding(&api, &caller, vhost.name(), &b.source, kind, &destination)?;
    vhost.unbind(
        0,
        kind.target(&destination),
        &b.source,
        &b.key,
        &b.arguments,
    )?;
    definitions_durable(&api, &vhost).await?;
    Ok(StatusCode::NO_CONTENT)
}

type Pair = Path<(String, String, String)>;
type Named = Path<(String, String, String, String)>;

/// The routes of one destination kind (`q` or `e`).
fn routes_to(letter: &str, kind: Kind) -> Router<Api> {
    let pair = format!("/api/bindings/{{vhost}}/e/{{source}}/{letter}/{{destination}}");
    let one = format!("{pair}/{{props}}");
    Router::new()
        .route(
            &pair,
            get(
                move |State(api): State<Api>, caller: Caller, Path(p): Pair| {
                    list_between(api, caller, p, kind)
                },
            )
            .post(
                move |State(api): State<Api>, caller: Caller, Path(p): Pair, body: Bytes| {
                    create(api, caller, p, kind, body)
                },
            ),
        )
        .route(
            &one,
            get(
                move |State(api): State<Api>, caller: Caller, Path(p): Named| {
                    show(api, caller, p, kind)
                },
            )
            .delete(
                move |State(api): State<Api>, caller: Caller, Path(p): Named| {
                    delete(api, caller, p, kind)
                },
            ),
        )
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/bindings", get(list_all))
        .route("/api/bindings/{vhost}", get(list_vhost))
        .merge(routes_to("q", Kind::Queue))
        .merge(routes_to("e", Kind::Exchange))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(key: &str) -> Binding {
        Binding {
            source: "x".into(),
            destination: BoundTo::Queue("q".into()),
            destination_id: 1,
            key: key.into(),
            arguments: Default::default(),
            raw_arguments: Default::default(),
            durable: false,
        }
    }

    #[test]
    fn properties_keys_quote_the_routing_key_as_rabbitmq_does() {
        assert_eq!(properties_key(&binding("")), "~");
        assert_eq!(properties_key(&binding("k1")), "k1");
        // Observed on RabbitMQ 3.10: "a b/c~d.e*+%" → "a+b%2Fc%7Ed.e%2A%2B%25".
        assert_eq!(
            properties_key(&binding("a b/c~d.e*+%")),
            "a+b%2Fc%7Ed.e%2A%2B%25"
        );
    }

    #[test]
    fn a_key_names_its_binding_encoded_or_pasted_raw() {
        let b = binding("a b/c");
        assert!(names("a+b%2Fc", &b));
        assert!(names("a+b/c", &b), "pasted into a path, decoded once");
        assert!(!names("a+b", &b));
    }
}
