//! The node as RabbitMQ's API shows it: `/api/nodes` (a cluster of one), `/api/nodes/{node}`,
//! `/api/cluster-name` and `/api/extensions` (no console extensions). Monitoring scripts and
//! `rabbitmqadmin list nodes` read memory, file descriptors, disk space and the alarms here.
//!
//! Figures are read from the process when asked (`/proc/self` on Linux): resident memory,
//! open file descriptors and their limit, free disk space under the data directory. The
//! memory figures are the memory alarm's: `mem_limit` is the high watermark in bytes (0 when
//! the alarm is off), `mem_alarm` whether it is raised. What an
//! Erlang node reports and Warren has no counterpart for (reductions, garbage collection,
//! Mnesia transactions, I/O averages) is left out.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Api, ApiError, ApiResult, Caller};

/// Open file descriptors and the soft limit on them (also the Prometheus endpoint's).
pub(crate) fn file_descriptors() -> (u64, u64) {
    let used = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(0);
    (used, limit)
}

async fn node_json(api: &Api) -> Value {
    let data_dir = api.node.data_dir.clone();
    let disk_free = tokio::task::spawn_blocking(move || crate::alarm::free_bytes(&data_dir).ok())
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    let (fd_used, fd_total) = file_descriptors();
    let raised = api.broker.alarms().raised();
    // The monitor's figure is at most one sample old; a fresh read costs as little and is
    // what a caller asking right now expects.
    let mem_used = crate::alarm::memory::resident_bytes()
        .or(api.broker.alarms().memory().map(|m| m.used))
        .unwrap_or(0);
    let mem_limit = api.broker.alarms().memory().map_or(0, |m| m.limit);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({
        "name": api.node.name,
        "type": "disc",
        "running": true,
        "os_pid": std::process::id().to_string(),
        "uptime": now.saturating_sub(api.node.started_at),
        "mem_used": mem_used,
        "mem_limit": mem_limit,
        "mem_alarm": raised.memory,
        "mem_calculation_strategy": "rss",
        "disk_free": disk_free,
        "disk_free_limit": api.node.disk_free_limit,
        "disk_free_alarm": raised.disk,
        "fd_used": fd_used,
        "fd_total": fd_total,
        "sockets_used": api.broker.connections().list().len(),
        "sockets_total": fd_total,
        "processors": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "db_dir": api.node.data_dir.display().to_string(),
        "rates_mode": "basic",
        "net_ticktime": 60,
        "run_queue": 0,
        "partitions": [],
        "cluster_links": [],
        "applications": [],
        "enabled_plugins": [],
        "auth_mechanisms": [
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
        ],
    })
}

async fn nodes(State(api): State<Api>, caller: Caller) -> ApiResult<Json<Vec<Value>>> {
    caller.require_monitoring()?;
    Ok(Json(vec![node_json(&api).await]))
}

async fn node(
    State(api): State<Api>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_monitoring()?;
    if name != api.node.name {
        return Err(ApiError::not_found());
    }
    Ok(Json(node_json(&api).await))
}

async fn cluster_name(State(api): State<Api>, _caller: Caller) -> Json<Value> {
    Json(json!({ "name": api.node.name }))
}

async fn extensions(_caller: Caller) -> Json<Value> {
    Json(json!([]))
}

/// The routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{node}", get(node))
        .route("/api/cluster-name", get(cluster_name))
        .route("/api/extensions", get(extensions))
}
