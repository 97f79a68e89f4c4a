//! The `warren` binary: parses flags, sets up logging, runs the server until SIGINT or
//! SIGTERM, then shuts it down gracefully (connections closed with 320). With a subcommand
//! (`warren scheduled …`) it is instead a client of a running broker's admin interface.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use clap::{Parser, Subcommand};
use cli::scheduled as client;
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
    /// The user created on first start, an administrator [default: guest].
    #[arg(long, env = "RABBITMQ_DEFAULT_USER")]
    default_user: Option<String>,
    /// Its password [default: guest].
    #[arg(long, env = "RABBITMQ_DEFAULT_PASS", hide_env_values = true)]
    default_pass: Option<String>,
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
    /// TOML config file with the same keys (underscores for dashes).
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `warren=debug` [default: info, storage engines at warn].
    #[arg(long, env = "WARREN_LOG_LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// See and cancel messages held by x-delayed-message exchanges (via the admin interface).
    Scheduled {
        /// The broker's admin interface.
        #[arg(
            long,
            env = "WARREN_ADMIN_URL",
            default_value = "http://127.0.0.1:15672",
            global = true
        )]
        admin: String,
        #[command(subcommand)]
        action: Scheduled,
    },
}

#[derive(Debug, Subcommand)]
enum Scheduled {
    /// Pending messages per delayed exchange.
    Counts,
    /// Pending messages of one exchange: id, due time, routing key, body size.
    List {
        /// The delayed exchange.
        #[arg(long)]
        exchange: String,
    },
    /// Cancels one pending message by id (it is never delivered).
    Cancel {
        /// The delayed exchange.
        #[arg(long)]
        exchange: String,
        /// The id shown by `list`.
        id: u64,
    },
}

fn scheduled(admin: &str, action: Scheduled) -> ExitCode {
    let result = match action {
        Scheduled::Counts => client::counts(admin).map(|c| print!("{}", client::counts_table(&c))),
        Scheduled::List { exchange } => {
            client::list(admin, &exchange).map(|p| print!("{}", client::list_table(&p)))
        }
        Scheduled::Cancel { exchange, id } => {
            client::cancel(admin, &exchange, id).map(|()| println!("cancelled {id}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::Scheduled { admin, action }) = args.command.take() {
        return scheduled(&admin, action);
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
    let config = match resolve(
        Overrides {
            listen: args.listen,
            management_listen: args.management_listen,
            default_user: args.default_user,
            default_pass: args.default_pass,
            load_definitions: args.load_definitions,
            data_dir: args.data_dir,
            plugins_dir: args.plugins_dir,
            sync: args.sync,
            disk_free_limit: args.disk_free_limit,
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
