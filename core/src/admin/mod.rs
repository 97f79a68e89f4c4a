//! The admin interface: a small HTTP/JSON API next to the AMQP listener, for what AMQP
//! itself cannot express — today, seeing and cancelling scheduled (delayed) messages.
//!
//! It is deliberately thin: every route is one call on a [`VHost`], so the same operations
//! can later be exposed elsewhere without duplicating rules. It listens on loopback by
//! default (`--admin-listen`, 127.0.0.1:15673) and has no authentication yet, which is why
//! it must not be bound to a public address.
//!
//! Routes (a vhost is written URL-encoded, `/` as `%2f`, as in RabbitMQ's management API):
//! - `GET /api/delayed` → `[{"vhost", "exchange", "pending"}]`
//! - `GET /api/delayed/{vhost}/{exchange}` → `[{"id", "due_ms", "routing_key", "body_size"}]`
//! - `DELETE /api/delayed/{vhost}/{exchange}/{id}` → 204, or 404 if nothing pending has it.
//!
//! Errors are `{"error": "<reply text>"}` with 404 for a missing exchange and 400 otherwise.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{Broker, PendingInfo, VHost};
use crate::error::AmqpError;
use crate::protocol::ReplyCode;

/// Pending count of one delayed exchange.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DelayedCount {
    /// The vhost.
    pub vhost: String,
    /// Exchange name.
    pub exchange: String,
    /// Messages pending.
    pub pending: usize,
}

/// An admin error as JSON.
struct ApiError(StatusCode, String);

impl From<AmqpError> for ApiError {
    fn from(e: AmqpError) -> Self {
        let status = if e.code == ReplyCode::NotFound {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError(status, e.reply_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn find_vhost(broker: &Broker, vhost: &str) -> Result<Arc<VHost>, ApiError> {
    broker.vhost(vhost).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("NOT_FOUND - no vhost '{vhost}'"),
        )
    })
}

async fn counts(State(broker): State<Arc<Broker>>) -> axum::Json<Vec<DelayedCount>> {
    let mut all = Vec::new();
    for name in broker.vhost_names() {
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        all.extend(
            vhost
                .delayed_counts()
                .into_iter()
                .map(|(exchange, pending)| DelayedCount {
                    vhost: name.clone(),
                    exchange,
                    pending,
                }),
        );
    }
    axum::Json(all)
}

async fn list(
    State(broker): State<Arc<Broker>>,
    Path((vhost, exchange)): Path<(String, String)>,
) -> Result<axum::Json<Vec<PendingInfo>>, ApiError> {
    Ok(axum::Json(
        find_vhost(&broker, &vhost)?.delayed_list(&exchange)?,
    ))
}

async fn cancel(
    State(broker): State<Arc<Broker>>,
    Path((vhost, exchange, id)): Path<(String, String, u64)>,
) -> Result<StatusCode, ApiError> {
    let delayed = find_vhost(&broker, &vhost)?.delayed(&exchange)?;
    match delayed.cancel(id) {
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("NOT_FOUND - no pending message {id} in exchange '{exchange}'"),
        )),
        Some(None) => Ok(StatusCode::NO_CONTENT),
        // A cancel is answered once it is durable: it cannot come back after a restart.
        Some(Some(mark)) => {
            let stored = match delayed.durability() {
                Some(durability) => crate::store::durable_at(durability, mark).await,
                None => true,
            };
            if stored {
                Ok(StatusCode::NO_CONTENT)
            } else {
                Err(ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "the cancel of message {id} could not be stored; it may fire after a \
                         restart"
                    ),
                ))
            }
        }
    }
}

/// The routes, over `broker`.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/api/delayed", get(counts))
        .route("/api/delayed/{vhost}/{exchange}", get(list))
        .route("/api/delayed/{vhost}/{exchange}/{id}", delete(cancel))
        .with_state(broker)
}

/// Serves the admin API on `listener` until `shutdown` turns true. The caller binds it (with
/// the AMQP listener, so that either failing stops the start before anything is served).
pub fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let served = axum::serve(listener, router(broker))
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!("admin interface stopped: {e}");
        }
    })
}
