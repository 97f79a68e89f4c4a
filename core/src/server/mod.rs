//! The AMQP server: the listener with its accept loop and graceful shutdown, and one task
//! per connection driving the connection and channel state machines.
//!
//! - [`connection`]: handshake, frame dispatch, heartbeats, connection-level errors.
//! - [`channel`]: one channel's methods (declare, bind, publish, consume, ack, tx, confirm).
//! - [`outbox`]: the connection's batched output buffer and its writer task.
//! - [`stream`]: the socket, plain or TLS (AMQPS, see [`crate::tls`]), split for the two.
//! - [`budget`]: what a connection's client makes the broker hold (content being
//!   assembled, uncommitted transactions, unconfirmed publishes), bounded per connection.
//!
//! [`start`] also starts the management HTTP API ([`crate::http`]) and the Prometheus
//! endpoint ([`crate::metrics`]) when configured.
//!
//! Shutdown is designed in: [`RunningServer::shutdown`] stops accepting, tells every
//! connection to close with 320 CONNECTION_FORCED, and waits (bounded) for them to finish.

pub mod budget;
pub mod channel;
pub mod connection;
pub mod fd_limit;
pub mod outbox;
pub mod stream;

pub use fd_limit::raise_fd_limit;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use self::outbox::OutboxStats;
use crate::broker::Broker;
use crate::broker::recovery::Kept;
use crate::error::AmqpError;
use crate::plugin::ExchangeTypeRegistry;
use crate::store::data_dir::{DataDir, DataDirError};
use crate::store::{StoreError, Stores, SyncPolicy};
use crate::tls::{Tls, TlsError, TlsSettings};

/// Where the management API listens unless told otherwise (RabbitMQ's port).
pub const DEFAULT_MANAGEMENT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 15672);

/// Where the Prometheus endpoint listens unless told otherwise (`rabbitmq_prometheus`'s port).
pub const DEFAULT_PROMETHEUS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 15692);

/// Where AMQPS listens unless told otherwise (RabbitMQ's `listeners.ssl.default`).
pub const DEFAULT_TLS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 5671);

/// Where the management API listens over HTTPS unless told otherwise (RabbitMQ's
/// `management.ssl.port`).
pub const DEFAULT_MANAGEMENT_TLS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 15671);

/// Server settings. Field defaults are RabbitMQ's.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where state lives (plugins default to `<data_dir>/plugins`).
    pub data_dir: PathBuf,
    /// Directory of exchange-type plugin libraries.
    pub plugins_dir: Option<PathBuf>,
    /// Largest frame offered in `connection.tune`.
    pub frame_max: u32,
    /// Most channels per connection offered in `connection.tune`.
    pub channel_max: u16,
    /// Heartbeat interval (seconds) offered in `connection.tune`; 0 disables.
    pub heartbeat: u16,
    /// Largest message body accepted (406 beyond).
    pub max_message_size: usize,
    /// The user created on first start (an administrator with every permission on `/`).
    pub default_user: String,
    /// Its password.
    pub default_pass: String,
    /// Users who may only connect from loopback addresses (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    /// A definitions file (RabbitMQ's JSON) imported at start, after what the data directory
    /// kept (RabbitMQ's `load_definitions`).
    pub load_definitions: Option<PathBuf>,
    /// How long a client has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Address of the management HTTP API (`None`: not started).
    pub management_listen: Option<SocketAddr>,
    /// Address of the Prometheus endpoint, `/metrics` (`None`: not started).
    pub prometheus_listen: Option<SocketAddr>,
    /// When the disk stores sync.
    pub sync: SyncPolicy,
    /// Free bytes under the data directory below which publishers are blocked (0: never).
    pub disk_free_limit: u64,
    /// Stores to run on instead of the disk stores in the data directory (tests that make a
    /// store fail on demand, embedders).
    pub stores: Option<Stores>,
    /// The certificate, key and client CA for TLS (`None`: no AMQPS or HTTPS listener).
    pub tls: Option<TlsSettings>,
    /// Address of the AMQPS listener, started when `tls` is set.
    pub tls_listen: SocketAddr,
    /// Address of the management API over HTTPS, started when `tls` is set (`None`: not).
    pub management_tls_listen: Option<SocketAddr>,
    /// Memory the process may hold before publishers are blocked (RabbitMQ's
    /// `vm_memory_high_watermark`).
    pub memory_high_watermark: crate::alarm::MemoryWatermark,
    /// Open connections on the node (RabbitMQ's `connection_max`; 0: unlimited).
    pub max_connections: usize,
    /// Open connections per vhost (RabbitMQ's vhost limit `max-connections`; 0: unlimited).
    pub max_connections_per_vhost: usize,
    /// Open connections per user (RabbitMQ's user limit `max-connections`; 0: unlimited).
    pub max_connections_per_user: usize,
    /// Queues per vhost (RabbitMQ's vhost limit `max-queues`; 0: unlimited).
    pub max_queues_per_vhost: usize,
    /// Consumers per channel (RabbitMQ's `consumer_max_per_channel`; 0: unlimited).
    pub max_consumers_per_channel: usize,
    /// How often message statistics are sampled for rates (RabbitMQ's
    /// `collect_statistics_interval`; at least 100 ms is used).
    pub stats_interval: Duration,
}

impl Config {
    /// The resource limits the broker enforces.
    pub fn limits(&self) -> crate::broker::limits::Limits {
        crate::broker::limits::Limits {
            max_connections: self.max_connections,
            max_connections_per_vhost: self.max_connections_per_vhost,
            max_connections_per_user: self.max_connections_per_user,
            max_queues_per_vhost: self.max_queues_per_vhost,
            max_consumers_per_channel: self.max_consumers_per_channel,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 5672)),
            data_dir: PathBuf::from("./warren-data"),
            plugins_dir: None,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 << 20,
            default_user: "guest".to_owned(),
            default_pass: "guest".to_owned(),
            loopback_users: vec!["guest".to_owned()],
            load_definitions: None,
            handshake_timeout: Duration::from_secs(10),
            management_listen: Some(DEFAULT_MANAGEMENT_LISTEN),
            prometheus_listen: Some(DEFAULT_PROMETHEUS_LISTEN),
            sync: SyncPolicy::Always,
            disk_free_limit: 50_000_000,
            stores: None,
            tls: None,
            tls_listen: DEFAULT_TLS_LISTEN,
            management_tls_listen: Some(DEFAULT_MANAGEMENT_TLS_LISTEN),
            memory_high_watermark: crate::alarm::MemoryWatermark::default(),
            max_connections: 0,
            max_connections_per_vhost: 0,
            max_connections_per_user: 0,
            max_queues_per_vhost: 0,
            max_consumers_per_channel: 0,
            stats_interval: crate::stats::DEFAULT_INTERVAL,
        }
    }
}

/// One of the server's listening sockets, named as an operator knows it: what it serves and
/// the flag that moves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// AMQP clients (`--listen`).
    Amqp,
    /// The management HTTP API (`--management-listen`).
    Management,
    /// AMQP clients over TLS (`--tls-listen`).
    AmqpTls,
    /// The management HTTP API over TLS (`--management-tls-listen`).
    ManagementTls,
    /// The Prometheus endpoint (`--prometheus-listen`).
    Prometheus,
}

impl Listener {
    /// What the socket is for, as a sentence fragment.
    pub fn purpose(self) -> &'static str {
        match self {
            Listener::Amqp => "AMQP connections",
            Listener::Management => "the management API",
            Listener::AmqpTls => "AMQP connections over TLS",
            Listener::ManagementTls => "the management API over HTTPS",
            Listener::Prometheus => "the Prometheus endpoint",
        }
    }

    /// The `warren` flag that sets its address (also `WARREN_*` and the config file).
    pub fn flag(self) -> &'static str {
        match self {
            Listener::Amqp => "--listen",
            Listener::Management => "--management-listen",
            Listener::AmqpTls => "--tls-listen",
            Listener::ManagementTls => "--management-tls-listen",
            Listener::Prometheus => "--prometheus-listen",
        }
    }
}

/// Why [`start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening socket could not be bound (typically: the port is taken).
    #[error(
        "cannot listen for {} on {addr}: {source}; choose another address with {}",
        .listener.purpose(),
        .listener.flag()
    )]
    Bind {
        /// Which socket.
        listener: Listener,
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The broker state could not be built from the registry.
    #[error("cannot set up the broker: {0}")]
    Broker(#[from] AmqpError),
    /// The data directory cannot be used (another broker holds it, an unknown format, …).
    #[error("{0}")]
    DataDir(#[from] DataDirError),
    /// The `--load-definitions` file cannot be read, parsed or imported.
    #[error("cannot load definitions from {}: {reason}", .file.display())]
    Definitions {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The stores in the data directory cannot be opened or read.
    #[error("cannot open the stores in {dir}: {source}")]
    Store {
        /// The data directory.
        dir: PathBuf,
        /// The cause.
        source: StoreError,
    },
    /// The TLS certificate, key or CA files cannot be used.
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Binds `addr` for `listener`, returning the socket and the address actually bound.
async fn bind(
    listener: Listener,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let error = |source| StartError::Bind {
        listener,
        addr,
        source,
    };
    let socket = TcpListener::bind(addr).await.map_err(error)?;
    let local = socket.local_addr().map_err(error)?;
    Ok((socket, local))
}

/// A server accepting connections; dropping it does not stop it, [`shutdown`](Self::shutdown)
/// does.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
    broker: Arc<Broker>,
    outbox_stats: Arc<OutboxStats>,
    management: Option<(SocketAddr, JoinHandle<()>)>,
    tls_addr: Option<SocketAddr>,
    management_tls: Option<(SocketAddr, JoinHandle<()>)>,
    prometheus: Option<(SocketAddr, JoinHandle<()>)>,
    /// Held (and so locked) until the server is dropped.
    _data_dir: DataDir,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the management API actually bound, if it was started.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().map(|(addr, _)| *addr)
    }

    /// The address the AMQPS listener actually bound, if TLS is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The address the management API's HTTPS listener actually bound, if it was started.
    pub fn management_tls_addr(&self) -> Option<SocketAddr> {
        self.management_tls.as_ref().map(|(addr, _)| *addr)
    }

    /// The address the Prometheus endpoint actually bound, if it was started.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus.as_ref().map(|(addr, _)| *addr)
    }

    /// The broker state (for embedding and tests).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// How the connections' output buffers have fared (their high-water mark, read pauses).
    pub fn outbox_stats(&self) -> &OutboxStats {
        &self.outbox_stats
    }

    /// Stops accepting, closes every connection with 320 CONNECTION_FORCED and waits for
    /// them (at most a few seconds).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept_loop.await;
        if let Some((_, management)) = self.management {
            let _ = management.await;
        }
        if let Some((_, management)) = self.management_tls {
            let _ = management.await;
        }
        if let Some((_, prometheus)) = self.prometheus {
            let _ = prometheus.await;
        }
        // Whatever was written (removals, delivery marks) is made durable before the data
        // directory is let go.
        let stores = self.broker.stores().clone();
        let synced = tokio::task::spawn_blocking(move || {
            let results = [
                stores.definitions.sync(),
                stores.messages.sync(),
                stores.held.sync(),
            ];
            results.into_iter().find_map(Result::err)
        })
        .await;
        match synced {
            Ok(None) => {}
            Ok(Some(e)) => tracing::error!("stores not synced at shutdown: {e}"),
            Err(e) => tracing::error!("stores not synced at shutdown: {e}"),
        }
    }
}

/// Binds every listener, starts the accept loop and returns at once. Nothing is announced as
/// listening until every socket is bound, so a failure is the last word in the log.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let path = config.data_dir.clone();
    let data_dir = tokio::task::spawn_blocking(move || DataDir::open(&path))
        .await
        .map_err(|e| AmqpError::internal(format!("data directory check failed: {e}")))??;
    let mut registry = ExchangeTypeRegistry::with_builtins();
    if let Some(dir) = &config.plugins_dir {
        for e in registry.load_dir(dir) {
            tracing::warn!("plugin not loaded: {e}");
        }
    }
    let stores = match config.stores.clone() {
        Some(stores) => stores,
        None => {
            let dir = config.data_dir.clone();
            let sync = config.sync;
            tokio::task::spawn_blocking(move || crate::store::disk::open(&dir, sync))
                .await
                .map_err(|e| AmqpError::internal(format!("opening the stores failed: {e}")))?
                .map_err(|source| StartError::Store {
                    dir: config.data_dir.clone(),
                    source,
                })?
        }
    };
    let started = std::time::Instant::now();
    let reading = stores.clone();
    let kept = tokio::task::spawn_blocking(move || Kept::read(&reading))
        .await
        .map_err(|e| AmqpError::internal(format!("reading the stores failed: {e}")))?
        .map_err(|source| StartError::Store {
            dir: config.data_dir.clone(),
            source,
        })?;
    let broker = Broker::with_stats_interval(
        registry,
        stores,
        config.loopback_users.clone(),
        config.stats_interval,
    )?;
    broker.set_limits(config.limits());
    let restored = broker.restore(kept);
    match &config.load_definitions {
        // As RabbitMQ: definitions loaded at boot replace the defaults, so a RabbitMQ export
        // without guest does not gain one.
        Some(file) => {
            load_definitions(&broker, file).await?;
            if broker.auth().users().is_empty() {
                tracing::warn!(
                    file = %file.display(),
                    "no users after loading definitions: nobody can log in; add users to the \
                     file, or start once without --load-definitions to get the default user"
                );
            }
        }
        None => first_start_defaults(&broker, &config, &restored)?,
    }
    tracing::info!(
        exchanges = restored.exchanges,
        queues = restored.queues,
        bindings = restored.bindings,
        messages = restored.messages,
        delayed = restored.held,
        not_restored = restored.failed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restored what the data directory kept"
    );
    crate::alarm::watch_disk(
        Arc::downgrade(broker.alarms()),
        config.data_dir.clone(),
        config.disk_free_limit,
    );
    // Read before any socket is bound: broken files stop the start like a taken port.
    let tls = config.tls.as_ref().map(Tls::new).transpose()?;
    crate::alarm::watch_memory(
        Arc::downgrade(broker.alarms()),
        config.memory_high_watermark,
    );
    let (listener, local_addr) = bind(Listener::Amqp, config.listen).await?;
    let management_listener = match config.management_listen {
        Some(addr) => Some(bind(Listener::Management, addr).await?),
        None => None,
    };
    let (tls_listener, management_tls_listener) = match &tls {
        Some(_) => (
            Some(bind(Listener::AmqpTls, config.tls_listen).await?),
            match config.management_tls_listen {
                Some(addr) => Some(bind(Listener::ManagementTls, addr).await?),
                None => None,
            },
        ),
        None => (None, None),
    };
    let prometheus_listener = match config.prometheus_listen {
        Some(addr) => Some(bind(Listener::Prometheus, addr).await?),
        None => None,
    };
    tracing::info!(%local_addr, "listening");
    let tls_addr = tls_listener.as_ref().map(|(_, local)| *local);
    if let Some(local) = tls_addr {
        tracing::info!(%local, "AMQP over TLS listening");
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    crate::broker::sampler::spawn(&broker, shutdown_rx.clone());
    let mut listeners = vec![crate::http::ListenerInfo {
        protocol: "amqp",
        ip_address: local_addr.ip().to_string(),
        port: local_addr.port(),
    }];
    if let Some((_, local)) = &management_listener {
        listeners.push(crate::http::ListenerInfo {
            protocol: "http",
            ip_address: local.ip().to_string(),
            port: local.port(),
        });
    }
    // RabbitMQ's protocol names for its TLS listeners.
    for (protocol, bound) in [
        ("amqp/ssl", tls_listener.as_ref()),
        ("https", management_tls_listener.as_ref()),
        ("http/prometheus", prometheus_listener.as_ref()),
    ] {
        if let Some((_, local)) = bound {
            listeners.push(crate::http::ListenerInfo {
                protocol,
                ip_address: local.ip().to_string(),
                port: local.port(),
            });
        }
    }
    let node = Arc::new(crate::http::Node {
        name: node_name(),
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        listeners,
        data_dir: config.data_dir.clone(),
        disk_free_limit: config.disk_free_limit,
    });
    let management = management_listener.map(|(socket, local)| {
        tracing::info!(%local, "management API listening");
        let api = crate::http::Api {
            broker: broker.clone(),
            node: node.clone(),
        };
        let task = crate::http::serve(socket, api, shutdown_rx.clone());
        (local, task)
    });
    let management_tls = match (&tls, management_tls_listener) {
        (Some(tls), Some((socket, local))) => {
            tracing::info!(%local, "management API listening (https)");
            let api = crate::http::Api {
                broker: broker.clone(),
                node: node.clone(),
            };
            let listener = crate::tls::listener::HttpsListener::new(
                socket,
                local,
                tls.https.clone(),
                config.handshake_timeout,
            );
            let task = crate::http::serve_https(listener, api, shutdown_rx.clone());
            Some((local, task))
        }
        _ => None,
    };
    let prometheus = prometheus_listener.map(|(socket, local)| {
        tracing::info!(%local, "Prometheus endpoint listening");
        let metrics = crate::metrics::Metrics {
            broker: broker.clone(),
            node: node.clone(),
        };
        (
            local,
            crate::metrics::serve(socket, metrics, shutdown_rx.clone()),
        )
    });
    if let Some(tls) = &tls {
        crate::tls::reload::watch(tls.resolver.clone(), shutdown_rx.clone());
    }
    let amqps = tls_listener
        .zip(tls)
        .map(|((socket, _), tls)| (socket, tls.amqp));
    let outbox_stats = Arc::new(OutboxStats::default());
    let accept_loop = tokio::spawn(accept_loop(
        listener,
        amqps,
        Arc::new(config),
        broker.clone(),
        outbox_stats.clone(),
        shutdown_rx,
    ));
    Ok(RunningServer {
        local_addr,
        shutdown,
        accept_loop,
        broker,
        outbox_stats,
        management,
        tls_addr,
        management_tls,
        prometheus,
        _data_dir: data_dir,
    })
}

/// The node's name as RabbitMQ forms it: `warren@<hostname>`.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("warren@{host}")
}

/// On a data directory that has never recorded them, unless definitions are loaded at start
/// (which then say what exists): the vhost `/` and the default user, an administrator with
/// every permission on `/` (RabbitMQ's first boot). Written, not
/// waited for: the next durable write waits for them in order.
fn first_start_defaults(
    broker: &Broker,
    config: &Config,
    restored: &crate::broker::recovery::Restored,
) -> Result<(), StartError> {
    use crate::auth::{Permission, User};
    use crate::broker::DEFAULT_VHOST;
    if restored.vhosts == 0 {
        broker.create_vhost(crate::store::VHostDefinition {
            name: DEFAULT_VHOST.to_owned(),
            description: "Default virtual host".to_owned(),
            tags: Vec::new(),
        })?;
    }
    if restored.users == 0 {
        let store_failed = |e: crate::auth::AuthError| {
            StartError::Broker(AmqpError::internal(format!(
                "the default user could not be recorded: {e}"
            )))
        };
        let user = User::new(
            &config.default_user,
            &config.default_pass,
            vec![crate::auth::user::ADMINISTRATOR.to_owned()],
        );
        broker.auth().put_user(user).map_err(store_failed)?;
        broker
            .auth()
            .set_permission(DEFAULT_VHOST, &config.default_user, Permission::all())
            .map_err(store_failed)?;
        tracing::info!(user = %config.default_user, "created the default user");
    }
    Ok(())
}

/// Imports the `--load-definitions` file (RabbitMQ's `load_definitions`), at every start as
/// RabbitMQ does, before any listener binds: clients never see the node without what the
/// file declares. Waited until durable, so a crash right after start cannot lose it.
async fn load_definitions(broker: &Arc<Broker>, file: &std::path::Path) -> Result<(), StartError> {
    let refused = |reason: String| StartError::Definitions {
        file: file.to_owned(),
        reason,
    };
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let defs = crate::definitions::parse(&bytes).map_err(|e| refused(e.to_string()))?;
    let importing = broker.clone();
    let imported = tokio::task::spawn_blocking(move || {
        crate::definitions::import(&importing, &defs, crate::definitions::Scope::Node)
    })
    .await
    .map_err(|e| refused(format!("the import failed: {e}")))?
    .map_err(|e| refused(e.to_string()))?;
    let durability = broker.stores().definitions.durability();
    if !crate::store::durable_at(durability, imported.mark).await {
        return Err(refused(
            "the definition store failed while recording them".into(),
        ));
    }
    tracing::info!(file = %file.display(), applied = imported.applied, "loaded definitions");
    Ok(())
}

/// Accepts on the AMQP listener and, with TLS, the AMQPS one (whose handshakes happen in the
/// connections' tasks), until shutdown; then waits (bounded) for the connections to end.
async fn accept_loop(
    listener: TcpListener,
    amqps: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    config: Arc<Config>,
    broker: Arc<Broker>,
    outbox_stats: Arc<OutboxStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let resume_at = backoff.resume_at;
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = tokio::time::sleep_until(resume_at.unwrap_or_else(tokio::time::Instant::now)),
                if resume_at.is_some() => backoff.resume_at = None,
            (accepted, tls) = accept(&listener, amqps.as_ref()), if resume_at.is_none() => match accepted {
                Ok((socket, peer)) => {
                    backoff.accepted();
                    let _ = socket.set_nodelay(true);
                    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
                    let socket = match tls {
                        Some(acceptor) => stream::Incoming::Tls(socket, acceptor),
                        None => stream::Incoming::Tcp(socket),
                    };
                    connections.spawn(connection::serve(
                        socket,
                        peer,
                        id,
                        broker.clone(),
                        config.clone(),
                        outbox_stats.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(e) => backoff.failed(&e),
            },
        }
    }
    drop(listener);
    drop(amqps);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections did not close in time; aborting them");
        connections.abort_all();
    }
}

/// The next socket accepted on either listener, with the TLS acceptor if it came in on the
/// AMQPS one.
async fn accept(
    plain: &TcpListener,
    amqps: Option<&(TcpListener, tokio_rustls::TlsAcceptor)>,
) -> (
    std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
    Option<tokio_rustls::TlsAcceptor>,
) {
    match amqps {
        None => (plain.accept().await, None),
        Some((tls, acceptor)) => tokio::select! {
            accepted = plain.accept() => (accepted, None),
            accepted = tls.accept() => (accepted, Some(acceptor.clone())),
        },
    }
}

/// The first pause after `accept` fails; each further failure in a row doubles it.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause between attempts while `accept` keeps failing: how long a freed
/// descriptor can wait before the listener takes the next connection.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long accepting must work without a failure for an episode to be over. Freed
/// descriptors are taken at once by connections waiting in the backlog, so success and
/// failure alternate for a while before the listener catches up.
const ACCEPT_EPISODE_QUIET: Duration = Duration::from_secs(1);

/// What the accept loop does when `accept` fails. Out of file descriptors (or socket
/// memory), every attempt fails at once until a connection closes, so retrying in a loop
/// would spin and flood the log. Instead a run of failures is one *episode*: one warning
/// when it starts (naming the limit), pauses growing from [`ACCEPT_BACKOFF_MIN`] to
/// [`ACCEPT_BACKOFF_MAX`] between attempts (the pending connections wait in the listen
/// backlog meanwhile), and one line at the first accept after [`ACCEPT_EPISODE_QUIET`]
/// without failures. Shutdown is not held up: the pause is one arm of the accept loop's
/// `select!`.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// Failures in the current episode (0: accepting normally).
    failures: u64,
    /// Failures in a row (for the pause).
    in_a_row: u64,
    /// The last failure of the episode.
    last_failure: Option<tokio::time::Instant>,
    /// While paused: when to try again.
    resume_at: Option<tokio::time::Instant>,
}

impl AcceptBackoff {
    fn failed(&mut self, e: &std::io::Error) {
        if self.failures == 0 {
            let limit = fd_limit::current_fd_limit()
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
            if is_out_of_descriptors(e) {
                tracing::warn!(
                    "out of file descriptors: not accepting connections for now (limit {limit}): \
                     {e}; raise `ulimit -n` or lower --max-connections"
                );
            } else if is_out_of_memory(e) {
                tracing::warn!("out of socket memory: not accepting connections for now: {e}");
            } else {
                tracing::warn!("accept failed: {e}; retrying with back-off");
            }
        }
        self.failures += 1;
        self.in_a_row += 1;
        let now = tokio::time::Instant::now();
        self.last_failure = Some(now);
        let shift = (self.in_a_row - 1).min(16) as u32;
        let pause = ACCEPT_BACKOFF_MIN
            .saturating_mul(1 << shift)
            .min(ACCEPT_BACKOFF_MAX);
        self.resume_at = Some(now + pause);
    }

    fn accepted(&mut self) {
        self.in_a_row = 0;
        let quiet = self
            .last_failure
            .is_some_and(|at| at.elapsed() >= ACCEPT_EPISODE_QUIET);
        if self.failures > 0 && quiet {
            tracing::info!(
                "accepting connections again after {} failed attempts",
                self.failures
            );
            self.failures = 0;
            self.last_failure = None;
        }
    }
}

fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

fn is_out_of_memory(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM))
}
