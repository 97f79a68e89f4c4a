//! Health checks, as load balancers and orchestrators probe RabbitMQ:
//!
//! - `GET /api/health/checks/alarms`: 200 `{"status": "ok"}` while no resource alarm is
//!   raised, 503 `{"status": "failed", "reason": …, "alarms": [{"node", "resource"}]}` while
//!   one is (a probe reads the status code), with RabbitMQ's reason and resource names
//!   (`memory`, `disk space`);
//! - `GET /api/aliveness-test/{vhost}`: proves that the vhost takes and hands back a message
//!   — it declares the queue `aliveness-test` (left in place, as RabbitMQ leaves it),
//!   publishes a message to it through the default exchange and gets it back, all through
//!   the broker's own operations. `{"status": "ok"}`, or 503 saying which step failed.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use super::{Api, ApiError, ApiResult, Caller};
use crate::alarm::Raised;
use crate::broker::vhost::QueueDeclare;
use crate::broker::{Message, Origin, Publish, PublishScratch, Routed, RoutingKeys};
use crate::protocol::{Properties, ShortStr};

/// RabbitMQ's name for the aliveness test's queue (and its routing key).
const ALIVENESS_QUEUE: &str = "aliveness-test";
/// The body it sends (RabbitMQ's).
const ALIVENESS_BODY: &[u8] = b"test_message";
/// The connection id the API's own declares use: no connection owns what they make.
const NO_CONNECTION: u64 = 0;

/// RabbitMQ's reason text for a failed alarms check.
const ALARMS_REASON: &str = "There are alarms in effect in the cluster";

/// The raised alarms as RabbitMQ lists them: `{"node": …, "resource": "memory"}` (or
/// `"disk space"`). Also what `/api/overview` shows under `alarms`.
pub(super) fn node_alarms(api: &Api, raised: Raised) -> Vec<serde_json::Value> {
    raised
        .resources()
        .into_iter()
        .map(|resource| json!({ "node": api.node.name, "resource": resource }))
        .collect()
}

async fn alarms(State(api): State<Api>, _caller: Caller) -> Response {
    let raised = api.broker.alarms().raised();
    if !raised.any() {
        return Json(json!({ "status": "ok" })).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "status": "failed",
            "reason": ALARMS_REASON,
            "alarms": node_alarms(&api, raised),
        })),
    )
        .into_response()
}

fn failed(step: &str, why: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "failed", "reason": format!("{step}: {why}") })),
    )
        .into_response()
}

async fn aliveness(
    State(api): State<Api>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    caller.require_vhost(&api, &vhost)?;
    let v = api.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let arguments = Default::default();
    let declare = QueueDeclare {
        name: ALIVENESS_QUEUE,
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: &arguments,
    };
    let queue = match v.declare_queue(NO_CONNECTION, &declare) {
        Ok(queue) => queue,
        Err(e) => return Ok(failed("declaring the queue", e.text)),
    };
    let Some(exchange) = v.exchange("") else {
        return Ok(failed("publishing", "the vhost has no default exchange"));
    };
    let message = Message::new(
        &ShortStr::empty(),
        &ShortStr::copy_from_str(ALIVENESS_QUEUE)
            .map_err(|_| ApiError::internal("the aliveness queue name is not a short string"))?,
        &Properties::empty(),
        &Bytes::from_static(ALIVENESS_BODY),
    );
    let keys = RoutingKeys::default();
    let publish = Publish {
        exchange: &exchange,
        message,
        keys: &keys,
        mandatory: false,
        origin: Origin::Client,
    };
    match v.publish(publish, &mut PublishScratch::default()) {
        Ok(outcome) if outcome.refused => {
            return Ok(failed("publishing", "the queue refused the message"));
        }
        Ok(outcome) if matches!(outcome.routed, Routed::Queues(n) if n > 0) => {}
        Ok(_) => return Ok(failed("publishing", "the message was not routed")),
        Err(e) => return Ok(failed("publishing", e.text)),
    }
    let (got, deaths) = queue.get();
    v.bury(&queue, deaths);
    match got {
        Some((item, _)) => {
            queue.delivered_stored(item.stored, true);
            Ok(Json(json!({ "status": "ok" })).into_response())
        }
        None => Ok(failed(
            "getting",
            "the message published is not in the queue",
        )),
    }
}

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/health/checks/alarms", get(alarms))
        .route("/api/aliveness-test/{vhost}", get(aliveness))
}
