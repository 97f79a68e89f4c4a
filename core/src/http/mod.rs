//! The management HTTP API: RabbitMQ's `rabbitmq_management` endpoints, JSON field names and
//! error shapes, so `rabbitmqadmin`, client libraries' test helpers, Terraform and monitoring
//! scripts work against Warren unchanged; plus Warren's own scheduled-message endpoints.
//!
//! One file per resource, each a `routes()` merged here:
//! - [`overview`] `/api/overview`, [`nodes`] `/api/nodes`, [`health`]
//!   `/api/health/checks/alarms`, `/api/aliveness-test/{vhost}`;
//! - [`vhosts`], [`users`] (with `/api/whoami`), [`permissions`];
//! - [`connections`] (with `/api/channels`, `/api/consumers`);
//! - [`exchanges`] (with publish), [`queues`] (with get and purge), [`bindings`];
//! - [`definitions`] `/api/definitions[/{vhost}]` export and import;
//! - [`scheduled`] `/api/scheduled…`, Warren's view of delayed messages;
//! - [`console`] the web console at `/` (its files compiled in), never under `/api/`.
//!
//! Shared pieces: [`caller`] (basic auth against the users, tags), [`error`] (RabbitMQ's
//! error JSON), [`body`] (reading request bodies), [`json_table`] (field tables as JSON). A handler does one thing through the
//! broker's own operations — the same ones AMQP methods use, with the same permission
//! checks — so the API cannot drift from the protocol. A write that changes a durable
//! definition is answered once it is durable ([`Api::durable`]).
//!
//! A vhost in a path is percent-encoded (`/` is `%2F`); axum decodes path segments.

pub mod bindings;
pub mod body;
pub mod caller;
pub mod connections;
pub mod console;
pub mod definitions;
pub mod error;
pub mod exchanges;
pub mod health;
pub mod json_table;
pub mod nodes;
pub mod overview;
pub mod permissions;
pub mod queues;
pub mod rates;
pub mod scheduled;
pub mod users;
pub mod vhosts;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::store::SyncMark;
pub use caller::Caller;
pub use error::{ApiError, ApiResult};

/// What a name in an API path keeps unencoded: RFC 3986's unreserved characters. Everything
/// else is `%XX`, so a `/` in a vhost or queue name can never read as more path.
pub const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `name` as one path segment (`/` is `%2F`).
pub fn encode_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).to_string()
}

/// One listening socket, as `/api/overview` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ListenerInfo {
    /// RabbitMQ's names: `amqp`, `amqp/ssl`, `http`, `https`, `http/prometheus`.
    pub protocol: &'static str,
    /// The address bound.
    pub ip_address: String,
    /// The port bound.
    pub port: u16,
}

/// What the API knows about the node beyond the broker's state.
#[derive(Debug)]
pub struct Node {
    /// The node's name (`warren@<host>`).
    pub name: String,
    /// When it started, in ms since the Unix epoch.
    pub started_at: u64,
    /// Its listeners.
    pub listeners: Vec<ListenerInfo>,
    /// The data directory (its free space is shown).
    pub data_dir: std::path::PathBuf,
    /// `--disk-free-limit`.
    pub disk_free_limit: u64,
}

/// The state every handler gets.
#[derive(Clone, Debug)]
pub struct Api {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The node.
    pub node: Arc<Node>,
}

impl Api {
    /// Waits until the definition store has made `mark` durable; 500 if it failed.
    pub async fn durable(&self, mark: SyncMark) -> ApiResult<()> {
        let durability = self.broker.stores().definitions.durability();
        if crate::store::durable_at(durability, mark).await {
            Ok(())
        } else {
            Err(ApiError::internal(
                "the change could not be stored (the definition store failed); it may be \
                 lost at the next restart",
            ))
        }
    }
}

/// Every route, over `api`.
pub fn router(api: Api) -> Router {
    Router::new()
        .merge(overview::routes())
        .merge(nodes::routes())
        .merge(health::routes())
        .merge(vhosts::routes())
        .merge(users::routes())
        .merge(permissions::routes())
        .merge(connections::routes())
        .merge(exchanges::routes())
        .merge(queues::routes())
        .merge(bindings::routes())
        .merge(definitions::routes())
        .merge(scheduled::routes())
        .merge(console::routes())
        .layer(axum::middleware::from_fn(console::no_browser_dialog))
        .with_state(api)
}

/// Serves the API on `listener` until `shutdown` turns true. The caller binds it (with the
/// AMQP listener, so that either failing stops the start before anything is served).
pub fn serve(listener: TcpListener, api: Api, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    serve_on(listener, api, shutdown)
}

/// Serves the API over TLS on `listener` (see [`crate::tls::listener`]) until `shutdown`
/// turns true. Callers are identified by their peer address as over plain HTTP.
pub fn serve_https(
    listener: crate::tls::listener::HttpsListener,
    api: Api,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    use axum::serve::ListenerExt as _;
    // `tap_io` is how axum gives a listener of ours the peer address as connect info.
    serve_on(listener.tap_io(|_| {}), api, shutdown)
}

fn serve_on<L>(listener: L, api: Api, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    SocketAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    tokio::spawn(async move {
        let app = router(api).into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!("management API stopped: {e}");
        }
    })
}
