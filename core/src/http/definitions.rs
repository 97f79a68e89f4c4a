//! Definitions over HTTP: the node's (or one vhost's) users, vhosts, permissions, exchanges,
//! queues and bindings as one JSON document, RabbitMQ's `rabbitmq_management` endpoints.
//!
//! - `GET /api/definitions[?download=name.json]` → everything, password hashes included;
//! - `GET /api/definitions/{vhost}` → that vhost's exchanges, queues and bindings;
//! - `POST /api/definitions[/{vhost}]` with the document (JSON, or a form whose `file` field
//!   holds it, as the management UI sends it) → 204 once every change is durable.
//!
//! Administrators only (the export carries password hashes; the import creates users). The
//! format and the import rules live in [`crate::definitions`], shared with
//! `--load-definitions`; an import is checked in full before anything changes, so a 400
//! leaves the node as it was.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Form, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{Api, ApiError, ApiResult, Caller};
use crate::definitions::{self, Definitions, ImportError, Scope};

/// The query of an export.
#[derive(Debug, Default, Deserialize)]
pub struct ExportQuery {
    /// Answer as an attachment with this file name (the UI's "Download").
    download: Option<String>,
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> ApiError {
        match e {
            ImportError::Parse(_) | ImportError::Invalid { .. } => {
                ApiError::bad_request(e.to_string())
            }
            ImportError::Failed { .. } => ApiError::internal(e.to_string()),
        }
    }
}

/// `body` as JSON, with a `Content-Disposition` when a download was asked for.
fn answer(body: impl serde::Serialize, query: &ExportQuery) -> ApiResult<Response> {
    let mut response = Json(body).into_response();
    if let Some(name) = query.download.as_deref() {
        // A name that cannot be a header value (a control character) is refused rather than
        // silently dropped: the caller asked for a file and would not get one.
        let value = HeaderValue::from_str(&format!("attachment; filename={name}"))
            .map_err(|_| ApiError::bad_request(format!("download='{name}' is no file name")))?;
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

async fn export_all(
    State(api): State<Api>,
    caller: Caller,
    Query(query): Query<ExportQuery>,
) -> ApiResult<Response> {
    caller.require_administrator()?;
    answer(definitions::export_node(&api.broker), &query)
}

async fn export_one(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(query): Query<ExportQuery>,
) -> ApiResult<Response> {
    caller.require_administrator()?;
    // RabbitMQ 3.10 answers an export of an unknown vhost with 400 `vhost_not_found`.
    let defs = definitions::export_vhost(&api.broker, &vhost)
        .ok_or_else(|| ApiError::bad_request("vhost_not_found"))?;
    answer(defs, &query)
}

/// The document of an import: the body, or the `file` field of a form.
async fn document(headers: &HeaderMap, body: Bytes) -> ApiResult<Definitions> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Ok(definitions::parse(&body)?);
    }
    // axum's own form reader, fed the body already read.
    let request = Request::builder()
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .map_err(|e| ApiError::internal(format!("the form cannot be read: {e}")))?;
    let Form(mut fields) = Form::<HashMap<String, String>>::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("the form cannot be read: {e}")))?;
    let file = fields
        .remove("file")
        .ok_or_else(|| ApiError::bad_request("the form has no 'file' field"))?;
    Ok(definitions::parse(file.as_bytes())?)
}

/// Applies `defs` within `scope` off the async threads (a large file is many store writes),
/// then waits until all of it is durable.
async fn import(api: &Api, defs: Definitions, scope: Option<String>) -> ApiResult<StatusCode> {
    let broker = api.broker.clone();
    let imported = tokio::task::spawn_blocking(move || {
        let scope = scope.as_deref().map_or(Scope::Node, Scope::VHost);
        definitions::import(&broker, &defs, scope)
    })
    .await
    .map_err(|e| ApiError::internal(format!("the import failed: {e}")))??;
    api.durable(imported.mark).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn import_all(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    let defs = document(&headers, body).await?;
    import(&api, defs, None).await
}

async fn import_one(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require_administrator()?;
    if api.broker.vhost(&vhost).is_none() {
        // RabbitMQ 3.10's answer to an import into an unknown vhost.
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: "not_found",
            reason: "vhost_not_found".into(),
        });
    }
    let defs = document(&headers, body).await?;
    import(&api, defs, Some(vhost)).await
}

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/definitions", get(export_all).post(import_all))
        .route("/api/definitions/{vhost}", get(export_one).post(import_one))
        // Exports of large installations exceed the 2 MiB every other request is held to.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_DEFINITIONS_BODY))
}

/// The largest definitions file accepted over HTTP (`--load-definitions` has no limit).
const MAX_DEFINITIONS_BODY: usize = 64 << 20;
