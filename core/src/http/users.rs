//! Users: who may log in, with which password and tags — RabbitMQ's `/api/users`
//! endpoints, for administrators only (as RabbitMQ), plus `/api/whoami` for anyone with a
//! management tag.
//!
//! - `GET /api/users`, `GET /api/users/without-permissions`, `GET /api/users/{user}`;
//! - `PUT /api/users/{user}` with `{"password"}` or `{"password_hash", "hashing_algorithm"}`
//!   and `"tags"` (required, a comma-separated string or a list) → 201 created, 204
//!   replaced. The body replaces the whole user, as in RabbitMQ: one without a password or
//!   hash leaves the user without a password (nothing logs it in). Clients that only change
//!   tags send the hash back;
//! - `DELETE /api/users/{user}` → 204: its permissions go with it, and its open connections
//!   are closed with 320 (RabbitMQ's "user '…' is deleted");
//! - `POST /api/users/bulk-delete` with `{"users": […]}`: deleted in order; an unknown name
//!   stops there with a 400 (the ones before it stay deleted, as in RabbitMQ).
//!
//! Changes are answered once they are durable ([`Api::durable`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::body::{json_object, string_field, tags_from};
use super::{Api, ApiError, ApiResult, Caller};
use crate::auth::{PasswordHash, User};
use crate::store::SyncMark;

fn user_json(user: &User) -> Value {
    json!({
        "name": user.name,
        "password_hash": user.password.to_base64(),
        "hashing_algorithm": user.password.hashing.name(),
        "tags": user.tags,
        "limits": {},
    })
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({ "name": caller.user.name, "tags": caller.user.tags }))
}

async fn list(State(api): State<Api>, caller: Caller) -> ApiResult<Json<Vec<Value>>> {
    caller.require_administrator()?;
    Ok(Json(
        api.broker
            .auth()
            .users()
            .iter()
            .map(|u| user_json(u))
            .collect(),
    ))
}

async fn without_permissions(
    State(api): State<Api>,
    caller: Caller,
) -> ApiResult<Json<Vec<Value>>> {
    caller.require_administrator()?;
    let auth = api.broker.auth();
    let permissions = auth.permissions();
    Ok(Json(
        auth.users()
            .iter()
            .filter(|u| !permissions.iter().any(|(_, user, _)| *user == u.name))
            .map(|u| user_json(u))
            .collect(),
    ))
}

async fn show(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_administrator()?;
    let user = api
        .broker
        .auth()
        .user(&name)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(&user)))
}

/// The password of a PUT body: a password, a hash, or none.
fn password_from(body: &Map<String, Value>) -> ApiResult<PasswordHash> {
    if let Some(password) = string_field(body, "password")? {
        // An empty password logs nobody in (RabbitMQ refuses empty passwords too).
        return Ok(if password.is_empty() {
            PasswordHash::none()
        } else {
            PasswordHash::new(password)
        });
    }
    if let Some(hash) = string_field(body, "password_hash")? {
        let algorithm = string_field(body, "hashing_algorithm")?;
        return PasswordHash::from_definition(hash, algorithm).map_err(ApiError::bad_request);
    }
    Ok(PasswordHash::none())
}

async fn put(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let body = json_object(&body)?;
    let Some(tags) = body.get("tags") else {
        return Err(ApiError::bad_request("tags_not_present"));
    };
    let tags = tags_from(tags, "tags")?;
    let password = password_from(&body)?;
    let auth = api.broker.auth();
    let created = auth.user(&name).is_none();
    let mark = auth
        .put_user(User {
            name: name.clone(),
            password,
            tags,
        })
        .map_err(|e| ApiError::internal(format!("user '{name}' not stored: {e}")))?;
    api.durable(mark).await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Deletes user `name` and closes its connections; `None` if there is no such user.
fn delete_one(api: &Api, name: &str) -> ApiResult<Option<SyncMark>> {
    let auth = api.broker.auth();
    if auth.user(name).is_none() {
        return Ok(None);
    }
    let mark = auth
        .delete_user(name)
        .map_err(|e| ApiError::internal(format!("user '{name}' not deleted: {e}")))?;
    api.broker
        .connections()
        .close_where(|h| h.user == name, &format!("user '{name}' is deleted"));
    Ok(Some(mark))
}

async fn delete(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let mark = delete_one(&api, &name)?.ok_or_else(ApiError::not_found)?;
    api.durable(mark).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk_delete(State(api): State<Api>, caller: Caller, body: Bytes) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let body = json_object(&body)?;
    let Some(Value::Array(names)) = body.get("users") else {
        return Err(ApiError::bad_request(
            "the body must be {\"users\": [names…]}",
        ));
    };
    let mut mark = SyncMark::default();
    let mut refused = None;
    for name in names {
        let Value::String(name) = name else {
            refused = Some(ApiError::bad_request(format!(
                "users must be names (strings), not {name}"
            )));
            break;
        };
        match delete_one(&api, name)? {
            Some(m) => mark = mark.max(m),
            None => {
                refused = Some(ApiError::bad_request(format!("no_such_user: {name}")));
                break;
            }
        }
    }
    // What was deleted before a refusal stays deleted; it is made durable either way.
    api.durable(mark).await?;
    match refused {
        Some(e) => Err(e),
        None => Ok(StatusCode::NO_CONTENT),
    }
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/users", get(list))
        .route("/api/users/without-permissions", get(without_permissions))
        .route("/api/users/bulk-delete", post(bulk_delete))
        .route("/api/users/{user}", get(show).put(put).delete(delete))
}
