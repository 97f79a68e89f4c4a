//! The `warren` binary: parses flags, sets up logging, runs the server until SIGINT or
//! SIGTERM, then shuts it down gracefully (connections closed with 320). With a subcommand
//! (`warren ctl …`) it is instead a client of a running broker's management API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use clap::{Parser, Subcommand};
use warren::config::{FileConfig, Overrides, resolve};

/// The log filter unless told otherwise: Warren at info, the storage engines' own
/// bookkeeping (recovering each LSM tree at start, …) only when it warns.
const DEFAULT_LOG: &str = "info,fjall=warn,lsm_tree=warn";

/// An AMQP 0-9-1 message broker.
#[derive(Debug, Parser)]
#[command(name = "warren", version, about)]
struct Args {
    /// Address to listen on [default: 0.0.0.0:5672].
    #[arg(long, env = "WARREN_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the management HTTP API [default: 0.0.0.0:15672].
    #[arg(long, env = "WARREN_MANAGEMENT_LISTEN")]
    management_listen: Option<SocketAddr>,
    /// Address of the Prometheus endpoint (`/metrics`, `/metrics/per-object`), as
    /// rabbitmq_prometheus serves it [default: 0.0.0.0:15692].
    #[arg(long, env = "WARREN_PROMETHEUS_LISTEN")]
    prometheus_listen: Option<SocketAddr>,
    /// The user created on first start, an administrator [default: guest].
    #[arg(long, env = "RABBITMQ_DEFAULT_USER")]
    default_user: Option<String>,
    /// Its password [default: guest].
    #[arg(long, env = "RABBITMQ_DEFAULT_PASS", hide_env_values = true)]
    default_pass: Option<String>,
    /// Users who may only connect from loopback addresses, comma-separated (`""`: none)
    /// [default: guest].
    #[arg(long, env = "WARREN_LOOPBACK_USERS")]
    loopback_users: Option<String>,
    /// A definitions file (RabbitMQ's JSON export) to import at start.
    #[arg(long, env = "WARREN_LOAD_DEFINITIONS")]
    load_definitions: Option<PathBuf>,
    /// Data directory [default: ./warren-data].
    #[arg(long, env = "WARREN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of exchange-type plugin libraries [default: <data-dir>/plugins if present].
    #[arg(long, env = "WARREN_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// When persistent messages are synced to disk: `always` (a confirm means synced) or
    /// `interval:<duration>` (synced on that timer; faster, loses up to that much on power
    /// loss) [default: always].
    #[arg(long, env = "WARREN_SYNC")]
    sync: Option<String>,
    /// Free disk space below which publishing connections are blocked, e.g. `50MB`,
    /// `2GiB`; `0` turns the disk alarm off [default: 50MB].
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT")]
    disk_free_limit: Option<String>,
    /// Memory the broker may hold before publishing connections are blocked: a fraction of
    /// the machine's (or the cgroup's) memory, e.g. `0.4`, or a size, e.g. `1GiB`; `0`
    /// blocks all publishing [default: 0.4].
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK")]
    memory_high_watermark: Option<String>,
    /// Most open connections on the node (RabbitMQ's `connection_max`); 0: unlimited
    /// [default: 0].
    #[arg(long, env = "WARREN_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most open connections to each vhost (RabbitMQ's vhost limit `max-connections`);
    /// 0: unlimited [default: 0].
    #[arg(long, env = "WARREN_MAX_CONNECTIONS_PER_VHOST")]
    max_connections_per_vhost: Option<usize>,
    /// Most open connections of each user (RabbitMQ's user limit `max-connections`);
    /// 0: unlimited [default: 0].
    #[arg(long, env = "WARREN_MAX_CONNECTIONS_PER_USER")]
    max_connections_per_user: Option<usize>,
    /// Most queues in each vhost (RabbitMQ's vhost limit `max-queues`); 0: unlimited
    /// [default: 0].
    #[arg(long, env = "WARREN_MAX_QUEUES_PER_VHOST")]
    max_queues_per_vhost: Option<usize>,
    /// Most consumers on each channel (RabbitMQ's `consumer_max_per_channel`); 0: unlimited
    /// [default: 0].
    #[arg(long, env = "WARREN_MAX_CONSUMERS_PER_CHANNEL")]
    max_consumers_per_channel: Option<usize>,
    /// How often message rates are sampled, in milliseconds (RabbitMQ's
    /// `collect_statistics_interval`) [default: 5000].
    #[arg(long, env = "WARREN_COLLECT_STATISTICS_INTERVAL")]
    collect_statistics_interval: Option<u64>,
    /// TOML config file with the same keys (underscores for dashes).
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `warren=debug` [default: info, storage engines at warn].
    #[arg(long, env = "WARREN_LOG_LEVEL")]
    log_level: Option<String>,
    /// The server's TLS certificate chain (PEM); with --tls-key, AMQPS and HTTPS are on.
    /// Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "WARREN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "WARREN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) to verify client certificates against; clients are then asked
    /// for one (optional unless --tls-verify-peer) and may log in with EXTERNAL.
    #[arg(long, env = "WARREN_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Refuse TLS clients that present no certificate (needs --tls-ca).
    #[arg(long, env = "WARREN_TLS_VERIFY_PEER")]
    tls_verify_peer: bool,
    /// Address of the AMQPS listener, started with TLS [default: 0.0.0.0:5671].
    #[arg(long, env = "WARREN_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// Address of the management API over HTTPS, started with TLS [default: 0.0.0.0:15671].
    #[arg(long, env = "WARREN_MANAGEMENT_TLS_LISTEN")]
    management_tls_listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Administers a running broker through its management HTTP API, like rabbitmqctl
    /// (works against RabbitMQ's management plugin too).
    Ctl(cli::ctl::Ctl),
    /// Old spelling of `warren ctl scheduled`.
    #[command(hide = true)]
    Scheduled(cli::ctl::LegacyScheduled),
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    match args.command.take() {
        Some(Command::Ctl(ctl)) => return cli::ctl::run(ctl),
        Some(Command::Scheduled(legacy)) => return cli::ctl::run_legacy(legacy),
        None => {}
    }
    let file = match &args.config {
        Some(path) => match FileConfig::load(path) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("warren: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => FileConfig::default(),
    };
    let level = args
        .log_level
        .clone()
        .or(file.log_level.clone())
        .unwrap_or_else(|| DEFAULT_LOG.to_owned());
    let filter = match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("warren: invalid log level '{level}': {e}");
            return ExitCode::FAILURE;
        }
    };
    // Colours only for a person at a terminal; a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    warren::server::raise_fd_limit();
    let config = match resolve(
        Overrides {
            listen: args.listen,
            management_listen: args.management_listen,
            prometheus_listen: args.prometheus_listen,
            default_user: args.default_user,
            default_pass: args.default_pass,
            load_definitions: args.load_definitions,
            loopback_users: args.loopback_users.map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            data_dir: args.data_dir,
            plugins_dir: args.plugins_dir,
            sync: args.sync,
            disk_free_limit: args.disk_free_limit,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            tls_ca: args.tls_ca,
            tls_verify_peer: args.tls_verify_peer.then_some(true),
            tls_listen: args.tls_listen,
            management_tls_listen: args.management_tls_listen,
            memory_high_watermark: args.memory_high_watermark,
            max_connections: args.max_connections,
            max_connections_per_vhost: args.max_connections_per_vhost,
            max_connections_per_user: args.max_connections_per_user,
            max_queues_per_vhost: args.max_queues_per_vhost,
            max_consumers_per_channel: args.max_consumers_per_channel,
            collect_statistics_interval: args.collect_statistics_interval,
        },
        file,
    ) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match warren::server::start(config).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
