//! Permissions: what a user may configure, write and read in a vhost, as three regular
//! expressions matched against exchange and queue names — RabbitMQ's `/api/permissions`
//! endpoints, for administrators only (as RabbitMQ).
//!
//! - `GET /api/permissions`, `GET /api/vhosts/{vhost}/permissions`,
//!   `GET /api/users/{user}/permissions` (404 for an unknown vhost or user);
//! - `GET|PUT|DELETE /api/permissions/{vhost}/{user}`: PUT takes
//!   `{"configure", "write", "read"}` (all three required; an empty string allows nothing)
//!   → 201 set, 204 replaced; an unknown vhost or user is RabbitMQ's 400
//!   `vhost_or_user_not_found`, a pattern that is not a regular expression a 400 saying
//!   why. DELETE of permissions that are not set is a 404.
//!
//! A change applies to open connections at their next operation (their cached checks are
//! re-made, see [`crate::auth::Grants`]) and is answered once it is durable.
//!
//! Topic permissions (RabbitMQ's per-exchange routing-key patterns) are not implemented:
//! their lists answer `[]`, so tools that read them work, and nothing can be set.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::body::{json_object, string_field};
use super::{Api, ApiError, ApiResult, Caller};
use crate::auth::Permission;

fn permission_json(vhost: &str, user: &str, p: &Permission) -> Value {
    json!({
        "user": user,
        "vhost": vhost,
        "configure": p.configure.source(),
        "write": p.write.source(),
        "read": p.read.source(),
    })
}

/// Every permission for which `which(vhost, user)` holds.
fn permissions_where(api: &Api, which: impl Fn(&str, &str) -> bool) -> Vec<Value> {
    api.broker
        .auth()
        .permissions()
        .iter()
        .filter(|(v, u, _)| which(v, u))
        .map(|(v, u, p)| permission_json(v, u, p))
        .collect()
}

async fn list(State(api): State<Api>, caller: Caller) -> ApiResult<Json<Vec<Value>>> {
    caller.require_administrator()?;
    Ok(Json(permissions_where(&api, |_, _| true)))
}

async fn of_vhost(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require_administrator()?;
    if api.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    Ok(Json(permissions_where(&api, |v, _| v == vhost)))
}

async fn of_user(
    State(api): State<Api>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require_administrator()?;
    if api.broker.auth().user(&user).is_none() {
        return Err(ApiError::not_found());
    }
    Ok(Json(permissions_where(&api, |_, u| u == user)))
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let p = api
        .broker
        .auth()
        .permission(&vhost, &user)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&vhost, &user, &p)))
}

async fn put(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let body = json_object(&body)?;
    let mut patterns = Vec::with_capacity(3);
    let mut missing = Vec::new();
    for key in ["configure", "write", "read"] {
        match string_field(&body, key)? {
            Some(pattern) => patterns.push(pattern),
            None => missing.push(key),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "key_missing: {}",
            missing.join(", ")
        )));
    }
    let auth = api.broker.auth();
    if api.broker.vhost(&vhost).is_none() || auth.user(&user).is_none() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    let permission = Permission::new(patterns[0], patterns[1], patterns[2])
        .map_err(|why| ApiError::bad_request(format!("invalid_regexp: {why}")))?;
    let created = auth.permission(&vhost, &user).is_none();
    let mark = auth
        .set_permission(&vhost, &user, permission)
        .map_err(|e| match e {
            crate::auth::AuthError::NoUser(_) => ApiError::bad_request("vhost_or_user_not_found"),
            other => ApiError::internal(format!("permissions not stored: {other}")),
        })?;
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
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let auth = api.broker.auth();
    if auth.permission(&vhost, &user).is_none() {
        return Err(ApiError::not_found());
    }
    let mark = auth
        .clear_permission(&vhost, &user)
        .map_err(|e| ApiError::internal(format!("permissions not deleted: {e}")))?;
    api.durable(mark).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Topic permissions are not implemented: every list of them is empty.
async fn no_topic_permissions(caller: Caller) -> ApiResult<Json<Vec<Value>>> {
    caller.require_administrator()?;
    Ok(Json(Vec::new()))
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/permissions", get(list))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(show).put(put).delete(delete),
        )
        .route("/api/vhosts/{vhost}/permissions", get(of_vhost))
        .route("/api/users/{user}/permissions", get(of_user))
        .route("/api/topic-permissions", get(no_topic_permissions))
        .route(
            "/api/vhosts/{vhost}/topic-permissions",
            get(no_topic_permissions),
        )
        .route(
            "/api/users/{user}/topic-permissions",
            get(no_topic_permissions),
        )
}
