//! Warren's own endpoints for scheduled (delayed) messages — what RabbitMQ's plugin cannot
//! show: which messages an `x-delayed-message` exchange holds, when each falls due, and
//! cancelling them, one or by filter.
//!
//! - `GET /api/scheduled` → `[{"vhost", "exchange", "pending", "next_due_ms", "held",
//!   "fired", "cancelled"}]` for the vhosts the caller sees (`next_due_ms`: the earliest due
//!   time, or null; the last three count since the exchange was declared);
//! - `GET /api/scheduled/{vhost}/{exchange}?page_size=&after=&from_ms=&to_ms=&routing_key=`
//!   → `{"items": [{"id", "due_ms", "routing_key", "body_size"}], "next": cursor | null}`,
//!   by due time; pass `next` back as `after` for the following page;
//! - `GET /api/scheduled/{vhost}/{exchange}/due` → `{"now_ms", "pending", "exact",
//!   "buckets": [{"label", "from_ms", "to_ms", "count"}]}`: how many fall due in the next
//!   minute (with any overdue), hour, day and later, from the wheel's slot counts rather
//!   than a scan ([`Delayed::due_histogram`]);
//! - `DELETE /api/scheduled/{vhost}/{exchange}/{id}` → 204, 404 if nothing pending has it;
//! - `POST /api/scheduled/{vhost}/{exchange}/cancel` with `{"routing_key"?, "from_ms"?,
//!   "to_ms"?, "limit"?}` → `{"cancelled": n, "more": bool}`: with a `limit`, at most that
//!   many, and `more` says whether matching messages remain — a client cancelling millions
//!   does it in batches and can show progress.
//!
//! Listing needs read permission on the exchange, cancelling configure permission (it
//! changes what the exchange will deliver). A cancel is answered once it is durable: a
//! cancelled message cannot come back after a restart. No request holds the exchange's lock
//! for a whole scan (see [`crate::broker::Delayed::page`]).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{Api, ApiError, ApiResult, Caller};
use crate::auth::{Operation, ResourceKind};
use crate::broker::delayed::DueHistogram;
use crate::broker::{Delayed, PendingInfo, PendingQuery};
use crate::stats::Counter;
use crate::store::SyncMark;

/// Largest page served.
const MAX_PAGE: usize = 10_000;
/// Page size when none is asked for.
const DEFAULT_PAGE: usize = 100;

/// Pending count of one delayed exchange, and what it has counted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScheduledCount {
    /// The vhost.
    pub vhost: String,
    /// Exchange name.
    pub exchange: String,
    /// Messages pending.
    pub pending: usize,
    /// When the earliest pending message is due (ms since the epoch); `None` if none is.
    pub next_due_ms: Option<u64>,
    /// Messages held since the exchange was declared.
    pub held: u64,
    /// Held messages that fell due and were routed.
    pub fired: u64,
    /// Held messages cancelled through the API.
    pub cancelled: u64,
}

/// One page of pending messages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page {
    /// The messages, by due time.
    pub items: Vec<PendingInfo>,
    /// The cursor of the next page (`None`: this was the last).
    pub next: Option<String>,
}

/// The query of a listing.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    page_size: Option<usize>,
    after: Option<String>,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    routing_key: Option<String>,
}

/// The filter of a cancel, and how many at most.
#[derive(Debug, Default, Deserialize)]
pub struct CancelFilter {
    routing_key: Option<String>,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    limit: Option<usize>,
}

/// A cursor is `<due_ms>-<id>` of the last message of a page.
fn cursor(p: &PendingInfo) -> String {
    format!("{}-{}", p.due_ms, p.id)
}

fn parse_cursor(text: &str) -> ApiResult<(u64, u64)> {
    text.split_once('-')
        .and_then(|(due, id)| Some((due.parse().ok()?, id.parse().ok()?)))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "after='{text}' is not a cursor (pass the 'next' of the previous page)"
            ))
        })
}

/// The delayed exchange `exchange` of `vhost`, with `operation` permitted to the caller.
fn delayed(
    api: &Api,
    caller: &Caller,
    vhost: &str,
    exchange: &str,
    operation: Operation,
) -> ApiResult<std::sync::Arc<Delayed>> {
    let delayed = caller.require_vhost(api, vhost)?.delayed(exchange)?;
    caller.permit(api, vhost, ResourceKind::Exchange, operation, exchange)?;
    Ok(delayed)
}

async fn counts(State(api): State<Api>, caller: Caller) -> Json<Vec<ScheduledCount>> {
    let mut all = Vec::new();
    for name in api.broker.vhost_names() {
        if !caller.sees_vhost(&api, &name) {
            continue;
        }
        let Some(vhost) = api.broker.vhost(&name) else {
            continue;
        };
        let mut counts: Vec<ScheduledCount> = vhost
            .exchanges()
            .iter()
            .filter_map(|x| {
                let delayed = x.delayed()?;
                let counters = &delayed.stats().counters;
                Some(ScheduledCount {
                    vhost: name.clone(),
                    exchange: x.name().to_owned(),
                    pending: delayed.len(),
                    next_due_ms: delayed.next_due_ms(),
                    held: counters.get(Counter::Held),
                    fired: counters.get(Counter::Fired),
                    cancelled: counters.get(Counter::Cancelled),
                })
            })
            .collect();
        counts.sort_by(|a, b| a.exchange.cmp(&b.exchange));
        all.extend(counts);
    }
    Json(all)
}

async fn due(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, exchange)): Path<(String, String)>,
) -> ApiResult<Json<DueHistogram>> {
    let delayed = delayed(&api, &caller, &vhost, &exchange, Operation::Read)?;
    Ok(Json(delayed.due_histogram(crate::clock::now_ms())))
}

async fn list(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, exchange)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page>> {
    let delayed = delayed(&api, &caller, &vhost, &exchange, Operation::Read)?;
    let limit = query.page_size.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "page_size must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = query.after.as_deref().map(parse_cursor).transpose()?;
    let pending = PendingQuery {
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        routing_key: query.routing_key,
        after,
        limit,
    };
    let items = tokio::task::spawn_blocking(move || delayed.page(&pending))
        .await
        .map_err(|e| ApiError::internal(format!("listing failed: {e}")))?;
    let next = (items.len() == limit)
        .then(|| items.last().map(cursor))
        .flatten();
    Ok(Json(Page { items, next }))
}

/// Answers once `mark` (if any) is durable in the held store.
async fn durable(delayed: &Delayed, mark: Option<SyncMark>, what: &str) -> ApiResult<()> {
    let (Some(mark), Some(durability)) = (mark, delayed.durability()) else {
        return Ok(());
    };
    if crate::store::durable_at(durability, mark).await {
        Ok(())
    } else {
        Err(ApiError::internal(format!(
            "{what} could not be stored; it may fire after a restart"
        )))
    }
}

async fn cancel(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, exchange, id)): Path<(String, String, u64)>,
) -> ApiResult<StatusCode> {
    let delayed = delayed(&api, &caller, &vhost, &exchange, Operation::Configure)?;
    match delayed.cancel(id) {
        None => Err(ApiError::not_found_because(format!(
            "no pending message {id} in exchange '{exchange}'"
        ))),
        Some(mark) => {
            durable(&delayed, mark, &format!("the cancel of message {id}")).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

async fn cancel_matching(
    State(api): State<Api>,
    caller: Caller,
    Path((vhost, exchange)): Path<(String, String)>,
    filter: Option<Json<CancelFilter>>,
) -> ApiResult<Json<serde_json::Value>> {
    let delayed = delayed(&api, &caller, &vhost, &exchange, Operation::Configure)?;
    let filter = filter.map(|Json(f)| f).unwrap_or_default();
    if filter.limit == Some(0) {
        return Err(ApiError::bad_request(
            "limit must be at least 1 (leave it out to cancel every match)",
        ));
    }
    let query = PendingQuery {
        from_ms: filter.from_ms,
        to_ms: filter.to_ms,
        routing_key: filter.routing_key,
        after: None,
        limit: filter.limit.unwrap_or(usize::MAX),
    };
    let scanning = delayed.clone();
    let done = tokio::task::spawn_blocking(move || scanning.cancel_matching(&query))
        .await
        .map_err(|e| ApiError::internal(format!("cancel failed: {e}")))?;
    durable(
        &delayed,
        done.mark,
        &format!("the cancel of {} messages", done.count),
    )
    .await?;
    Ok(Json(
        serde_json::json!({ "cancelled": done.count, "more": done.more }),
    ))
}

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/scheduled", get(counts))
        .route("/api/scheduled/{vhost}/{exchange}", get(list))
        .route("/api/scheduled/{vhost}/{exchange}/due", get(due))
        .route("/api/scheduled/{vhost}/{exchange}/{id}", delete(cancel))
        .route(
            "/api/scheduled/{vhost}/{exchange}/cancel",
            post(cancel_matching),
        )
}
