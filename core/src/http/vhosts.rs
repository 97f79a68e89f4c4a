//! Virtual hosts: the node's separate namespaces of exchanges, queues and permissions —
//! RabbitMQ's `/api/vhosts` endpoints.
//!
//! - `GET /api/vhosts`: the vhosts the caller sees (monitors and administrators all, other
//!   users those they have permissions in), with their message counts;
//! - `GET /api/vhosts/{vhost}` (administrators, as in RabbitMQ 3.10);
//! - `PUT /api/vhosts/{vhost}` (administrators), optional body `{"description", "tags"}`
//!   (tags a comma-separated string or a list) → 201 created, 204 updated. The body
//!   replaces the description and tags: what it leaves out is cleared, as in RabbitMQ
//!   (`warren ctl add_vhost` leaves an existing vhost alone). As in RabbitMQ, the administrator
//!   who creates a vhost is given full permissions in it (`.*` for all three);
//! - `DELETE /api/vhosts/{vhost}` (administrators) → 204: its connections are closed with
//!   320, its exchanges, queues (with their messages), bindings and permissions deleted.
//!
//! `tracing` is always false and `default_queue_type` `"undefined"`: Warren has one queue
//! type and no tracing; both are accepted in a PUT and ignored.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::body::{json_object, string_field, tags_from};
use super::overview::{message_counts, unacked_in};
use super::rates::{CHANNEL_KEYS, Key, NODE_EXTRA_KEYS, Window, render_counts};
use super::{Api, ApiError, ApiResult, Caller};
use crate::auth::Permission;
use crate::stats::Source;
use crate::store::VHostDefinition;

fn vhost_json(api: &Api, name: &str, window: Window) -> Option<Value> {
    let definition = api.broker.vhost_definition(name)?;
    let vhost = api.broker.vhost(name)?;
    let totals = vhost.totals();
    let mut cluster_state = serde_json::Map::new();
    cluster_state.insert(api.node.name.clone(), json!("running"));
    let mut shown = json!({
        "name": definition.name,
        "description": definition.description,
        "tags": definition.tags,
        "default_queue_type": "undefined",
        "metadata": { "description": definition.description, "tags": definition.tags },
        "tracing": false,
        "cluster_state": cluster_state,
    });
    if let Value::Object(fields) = &mut shown {
        fields.extend(message_counts(totals.messages_ready, unacked_in(api, name)));
        // Its queues' and exchanges' kinds, and its connections' channel kinds.
        let mut counts = vhost.message_totals();
        counts.add(
            &api.broker
                .connections()
                .channel_totals(Some(name))
                .from_source(Source::Channel),
        );
        let keys: Vec<Key> = CHANNEL_KEYS
            .iter()
            .chain(NODE_EXTRA_KEYS)
            .copied()
            .collect();
        let mut stats = serde_json::Map::new();
        render_counts(&mut stats, &counts, vhost.sampled(), &keys, window);
        fields.insert("message_stats".into(), Value::Object(stats));
    }
    Some(shown)
}

async fn list(State(api): State<Api>, caller: Caller, window: Window) -> Json<Vec<Value>> {
    Json(
        api.broker
            .vhost_names()
            .iter()
            .filter(|name| caller.sees_vhost(&api, name))
            .filter_map(|name| vhost_json(&api, name, window))
            .collect(),
    )
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    window: Window,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    // RabbitMQ 3.10 shows one vhost to administrators only (the list shows others theirs).
    caller.require_administrator()?;
    vhost_json(&api, &vhost, window)
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

async fn put(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    if vhost.is_empty() {
        return Err(ApiError::bad_request("a vhost needs a name"));
    }
    let body = json_object(&body)?;
    let created = api.broker.vhost(&vhost).is_none();
    // As in RabbitMQ, the body replaces the metadata: what it leaves out is cleared.
    let description = string_field(&body, "description")?
        .unwrap_or_default()
        .to_owned();
    let tags = match body.get("tags") {
        Some(tags) => tags_from(tags, "tags")?,
        None => Vec::new(),
    };
    let (_, mut mark) = api.broker.create_vhost(VHostDefinition {
        name: vhost.clone(),
        description,
        tags,
    })?;
    if created {
        mark = mark.max(
            api.broker
                .auth()
                .set_permission(&vhost, caller.name(), Permission::all())
                .map_err(|e| {
                    ApiError::internal(format!(
                        "vhost '{vhost}' created, but the permissions of '{}' in it not \
                         stored: {e}",
                        caller.name()
                    ))
                })?,
        );
    }
    api.durable(mark).await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

async fn delete(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let mark = api
        .broker
        .delete_vhost(&vhost)?
        .ok_or_else(ApiError::not_found)?;
    api.durable(mark).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/vhosts", get(list))
        .route("/api/vhosts/{vhost}", get(show).put(put).delete(delete))
}
