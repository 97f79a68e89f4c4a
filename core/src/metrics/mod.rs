//! The Prometheus endpoint (`--prometheus-listen`, default `0.0.0.0:15692`): what
//! `rabbitmq_prometheus` serves, under its metric names, types and labels, so the RabbitMQ
//! Grafana dashboards and alert rules read Warren unchanged; plus Warren's own families
//! (`warren_*`: the delayed exchanges and how late they fire).
//!
//! - `GET /metrics`: the aggregated view — node figures, global counters, and each queue
//!   family summed over every queue without labels (cheap at any number of queues);
//! - `GET /metrics/per-object`: the same node figures, with one series per queue
//!   (`vhost`, `queue`) and per exchange (`vhost`, `exchange`) instead of the sums.
//!
//! Nothing is kept for this endpoint: each scrape reads the live state (the objects' relaxed
//! atomics, [`Broker::message_totals`], the node's churn and lateness histogram) and encodes
//! it with `prometheus-client`'s [`Collector`](prometheus_client::collector::Collector)s
//! ([`node::Node`], [`objects::Objects`]). A second copy of the counts in a registry would
//! have to be kept in step with the first; reading them at scrape time cannot drift.
//!
//! The format is Prometheus text 0.0.4 (`text/plain; version=0.0.4`), what RabbitMQ
//! serves, rather than OpenMetrics: every Prometheus scrapes it, and names of counters keep
//! RabbitMQ's `_total` exactly. As RabbitMQ's, the endpoint asks for no credentials: it
//! shows counts and names, never message contents; bind it where only the monitoring system
//! reaches it.

mod families;
pub mod node;
pub mod objects;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::Broker;

/// What the endpoint reads.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The node as the management API describes it (name, start, data directory).
    pub node: Arc<crate::http::Node>,
}

/// Which of the two views a scrape asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// `/metrics`: queue figures summed over the node.
    Aggregated,
    /// `/metrics/per-object`: queue and exchange figures labelled per object.
    PerObject,
}

impl Metrics {
    /// The view encoded now, as Prometheus text.
    pub fn encode(&self, view: View) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(node::Node(self.clone())));
        registry.register_collector(Box::new(objects::Objects {
            broker: self.broker.clone(),
            view,
        }));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// One scrape: encoded on a blocking thread, as reading every queue of a large node and
/// the process's figures under `/proc` is not work for the runtime's threads.
async fn scrape(metrics: Metrics, view: View) -> Response {
    match tokio::task::spawn_blocking(move || metrics.encode(view)).await {
        Ok(Ok(text)) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Ok(Err(_)) | Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
        )
            .into_response(),
    }
}

async fn aggregated(State(metrics): State<Metrics>) -> Response {
    scrape(metrics, View::Aggregated).await
}

async fn per_object(State(metrics): State<Metrics>) -> Response {
    scrape(metrics, View::PerObject).await
}

/// The endpoint's routes.
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .with_state(metrics)
}

/// Serves the endpoint on `listener` until `shutdown` turns true. The caller binds it with
/// the other listeners, so a taken port stops the start before anything is served.
pub fn serve(
    listener: TcpListener,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let served = axum::serve(listener, router(metrics))
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!("Prometheus endpoint stopped: {e}");
        }
    })
}
