//! `warren ctl …`: a `rabbitmqctl`-like client of the RabbitMQ management HTTP API. It
//! speaks only that API (same paths, JSON fields and error bodies as `rabbitmq_management`),
//! so it works against Warren's `--management-listen` and against a RabbitMQ node alike.
//!
//! Commands keep rabbitmqctl's names (`list_queues`), argument order and output (an info
//! line, a header row, tab-separated rows), so scripts move over with a changed binary
//! name. Each command group has its own file; this one holds the flags and the dispatch.
//! The one Warren-only group is `scheduled` (messages held by x-delayed-message exchanges).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

mod definitions;
pub mod http;
mod objects;
mod progress;
pub mod scheduled;
mod status;
mod table;
#[cfg(test)]
mod testing;
mod users;
mod vhosts;

use http::{ApiError, Client};
use scheduled::ScheduledAction;
use table::Style;

/// Where `--management` points unless told otherwise: Warren's default
/// `--management-listen`, seen from the same machine.
pub const DEFAULT_MANAGEMENT: &str = "127.0.0.1:15672";

/// `warren ctl`: its global flags and one command.
#[derive(Debug, Args)]
pub struct Ctl {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The flags every command shares: which API, as whom, in which vhost, how to print.
#[derive(Debug, Args)]
pub struct Connection {
    /// The management API: HOST:PORT (as given to the server's --management-listen) or an
    /// http:// URL [default: 127.0.0.1:15672].
    #[arg(
        long,
        env = "WARREN_MANAGEMENT",
        value_name = "HOST:PORT",
        global = true
    )]
    pub management: Option<String>,
    /// User to log in as.
    #[arg(long, env = "WARREN_USER", default_value = "guest", global = true)]
    pub username: String,
    /// Password of that user.
    #[arg(
        long,
        env = "WARREN_PASSWORD",
        default_value = "guest",
        hide_default_value = true,
        hide_env_values = true,
        global = true
    )]
    pub password: String,
    /// Virtual host of the command.
    #[arg(short = 'p', long, default_value = "/", global = true)]
    pub vhost: String,
    /// No info line ("Listing users ...").
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// No info line and no header row.
    #[arg(short, long, global = true)]
    pub silent: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub formatter: Formatter,
    /// Seconds to wait for each answer.
    #[arg(short, long, default_value_t = 60, global = true)]
    pub timeout: u64,
}

/// `--formatter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Formatter {
    /// Header row and tab-separated rows, as rabbitmqctl prints.
    Table,
    /// The rows as a JSON array of objects.
    Json,
}

/// The commands, named as rabbitmqctl names them.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Creates a user (with no tags and no permissions).
    #[command(name = "add_user")]
    AddUser {
        user: String,
        /// (Not `password`: that id is the global --password flag's.)
        #[arg(value_name = "PASSWORD", allow_hyphen_values = true)]
        new_password: String,
    },
    /// Deletes a user.
    #[command(name = "delete_user")]
    DeleteUser { user: String },
    /// Changes a user's password, keeping its tags.
    #[command(name = "change_password")]
    ChangePassword {
        user: String,
        /// (Not `password`: that id is the global --password flag's.)
        #[arg(value_name = "PASSWORD", allow_hyphen_values = true)]
        new_password: String,
    },
    /// Sets a user's tags (administrator, monitoring, management, …); none clears them.
    #[command(name = "set_user_tags")]
    SetUserTags { user: String, tags: Vec<String> },
    /// Lists users and their tags.
    #[command(name = "list_users")]
    ListUsers,
    /// Creates a virtual host (nothing happens if it exists).
    #[command(name = "add_vhost")]
    AddVhost {
        #[arg(value_name = "VHOST")]
        name: String,
        /// Free-text description.
        #[arg(long)]
        description: Option<String>,
        /// Comma-separated tags.
        #[arg(long)]
        tags: Option<String>,
        /// Queue type for queues declared without x-queue-type.
        #[arg(long)]
        default_queue_type: Option<String>,
    },
    /// Deletes a virtual host and everything in it.
    #[command(name = "delete_vhost")]
    DeleteVhost {
        #[arg(value_name = "VHOST")]
        name: String,
    },
    /// Lists virtual hosts [columns: name tracing description tags default_queue_type
    /// messages …; default name].
    #[command(name = "list_vhosts")]
    ListVhosts { columns: Vec<String> },
    /// Sets a user's configure, write and read permissions in a vhost (regular expressions).
    #[command(name = "set_permissions")]
    SetPermissions {
        user: String,
        #[arg(allow_hyphen_values = true)]
        conf: String,
        #[arg(allow_hyphen_values = true)]
        write: String,
        #[arg(allow_hyphen_values = true)]
        read: String,
    },
    /// Revokes a user's permissions in a vhost.
    #[command(name = "clear_permissions")]
    ClearPermissions { user: String },
    /// Lists the permissions of every user in a vhost.
    #[command(name = "list_permissions")]
    ListPermissions,
    /// Lists one user's permissions in every vhost.
    #[command(name = "list_user_permissions")]
    ListUserPermissions { user: String },
    /// Lists queues [columns: name messages messages_ready messages_unacknowledged
    /// consumers durable auto_delete exclusive arguments memory state policy type …;
    /// default name messages].
    #[command(name = "list_queues")]
    ListQueues { columns: Vec<String> },
    /// Lists exchanges [columns: name type durable auto_delete internal arguments policy;
    /// default name type].
    #[command(name = "list_exchanges")]
    ListExchanges { columns: Vec<String> },
    /// Lists bindings [columns: source_name source_kind destination_name destination_kind
    /// routing_key arguments; default all of them].
    #[command(name = "list_bindings")]
    ListBindings { columns: Vec<String> },
    /// Lists client connections [columns: name user vhost peer_host peer_port state
    /// channels protocol …; default user peer_host peer_port state].
    #[command(name = "list_connections")]
    ListConnections { columns: Vec<String> },
    /// Closes a client connection (by the name list_connections shows) with a reason.
    #[command(name = "close_connection")]
    CloseConnection { name: String, explanation: String },
    /// Removes every ready message from a queue.
    #[command(name = "purge_queue")]
    PurgeQueue { queue: String },
    /// Deletes a queue.
    #[command(name = "delete_queue")]
    DeleteQueue {
        queue: String,
        /// Only if it has no messages.
        #[arg(short = 'e', long)]
        if_empty: bool,
        /// Only if it has no consumers.
        #[arg(short = 'u', long)]
        if_unused: bool,
    },
    /// Writes every definition (users, vhosts, permissions, queues, exchanges, bindings, …)
    /// to a JSON file; `-` is standard output.
    #[command(name = "export_definitions")]
    ExportDefinitions { file: String },
    /// Loads definitions from a JSON file written by export_definitions; `-` is standard
    /// input.
    ///
    /// The whole file is checked first, so a bad one changes nothing. One of more than
    /// --chunk-size objects is sent in chunks in dependency order (users, vhosts,
    /// permissions, exchanges, queues, bindings) with progress on stderr; a refused chunk
    /// stops the import, and the error says what was imported before it.
    #[command(name = "import_definitions")]
    ImportDefinitions {
        /// The definitions file (`-`: standard input).
        file: String,
        /// No progress lines on stderr (-q and -s imply it).
        #[arg(long)]
        no_progress: bool,
        /// Objects per request; a file with no more is sent as one request.
        #[arg(long, value_name = "OBJECTS", default_value_t = definitions::DEFAULT_CHUNK as u64,
              value_parser = clap::value_parser!(u64).range(1..))]
        chunk_size: u64,
    },
    /// The node: memory, alarms, listeners, uptime, totals and message rates.
    ///
    /// Memory is shown against the high watermark, each raised alarm on a line, rates per
    /// second from the overview's message_stats (0.0 where the server reports none).
    /// With --formatter json: the same facts as one JSON object.
    #[command(name = "status")]
    Status,
    /// Messages held by x-delayed-message exchanges (Warren only).
    Scheduled {
        #[command(subcommand)]
        action: ScheduledAction,
    },
}

/// The old `warren scheduled …` (hidden): the same commands as `warren ctl scheduled`,
/// with its `--admin URL` flag kept as another spelling of `--management`.
#[derive(Debug, Args)]
pub struct LegacyScheduled {
    /// The broker's management API (old name of --management).
    #[arg(long, env = "WARREN_ADMIN_URL", global = true, hide = true)]
    pub admin: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: ScheduledAction,
}

/// What every command gets: the client, the vhost and how to print.
pub struct Ctx {
    /// The API client.
    pub client: Client,
    /// `-p`.
    pub vhost: String,
    /// Output flags.
    pub style: Style,
}

impl Ctx {
    fn new(connection: &Connection, management: Option<&str>) -> Result<Ctx, ApiError> {
        let base = http::base_url(management.unwrap_or(DEFAULT_MANAGEMENT))?;
        Ok(Ctx {
            client: Client::new(
                base,
                &connection.username,
                &connection.password,
                Duration::from_secs(connection.timeout.max(1)),
            ),
            vhost: connection.vhost.clone(),
            style: Style {
                quiet: connection.quiet,
                silent: connection.silent,
                json: connection.formatter == Formatter::Json,
            },
        })
    }
}

/// Runs `warren ctl …`.
pub fn run(ctl: Ctl) -> ExitCode {
    let management = ctl.connection.management.clone();
    finish(
        Ctx::new(&ctl.connection, management.as_deref())
            .and_then(|ctx| execute(&ctx, ctl.command, &mut io::stdout().lock())),
    )
}

/// Runs the old `warren scheduled …`.
pub fn run_legacy(legacy: LegacyScheduled) -> ExitCode {
    let management = legacy
        .admin
        .clone()
        .or(legacy.connection.management.clone());
    finish(
        Ctx::new(&legacy.connection, management.as_deref())
            .and_then(|ctx| scheduled::execute(&ctx, legacy.action, &mut io::stdout().lock())),
    )
}

fn finish(result: Result<(), ApiError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren ctl: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// sysexits-style codes, as rabbitmqctl uses them: 69 when nothing answers, 77 when the
/// login or its permissions fail, 1 for anything else.
fn exit_code(e: &ApiError) -> u8 {
    match e {
        ApiError::Unreachable { .. } => 69,
        ApiError::Status(s) if s.status == 401 || s.status == 403 => 77,
        ApiError::Partial { cause, .. } => exit_code(cause),
        _ => 1,
    }
}

/// Runs one command, printing to `out`.
pub fn execute(ctx: &Ctx, command: CtlCommand, out: &mut dyn Write) -> Result<(), ApiError> {
    match command {
        CtlCommand::AddUser { user, new_password } => users::add(ctx, &user, &new_password, out),
        CtlCommand::DeleteUser { user } => users::delete(ctx, &user, out),
        CtlCommand::ChangePassword { user, new_password } => {
            users::change_password(ctx, &user, &new_password, out)
        }
        CtlCommand::SetUserTags { user, tags } => users::set_tags(ctx, &user, &tags, out),
        CtlCommand::ListUsers => users::list(ctx, out),
        CtlCommand::AddVhost {
            name,
            description,
            tags,
            default_queue_type,
        } => vhosts::add(
            ctx,
            &name,
            vhosts::Metadata {
                description,
                tags,
                default_queue_type,
            },
            out,
        ),
        CtlCommand::DeleteVhost { name } => vhosts::delete(ctx, &name, out),
        CtlCommand::ListVhosts { columns } => vhosts::list(ctx, &columns, out),
        CtlCommand::SetPermissions {
            user,
            conf,
            write,
            read,
        } => users::set_permissions(ctx, &user, [&conf, &write, &read], out),
        CtlCommand::ClearPermissions { user } => users::clear_permissions(ctx, &user, out),
        CtlCommand::ListPermissions => users::list_permissions(ctx, out),
        CtlCommand::ListUserPermissions { user } => users::list_user_permissions(ctx, &user, out),
        CtlCommand::ListQueues { columns } => objects::list_queues(ctx, &columns, out),
        CtlCommand::ListExchanges { columns } => objects::list_exchanges(ctx, &columns, out),
        CtlCommand::ListBindings { columns } => objects::list_bindings(ctx, &columns, out),
        CtlCommand::ListConnections { columns } => objects::list_connections(ctx, &columns, out),
        CtlCommand::CloseConnection { name, explanation } => {
            objects::close_connection(ctx, &name, &explanation, out)
        }
        CtlCommand::PurgeQueue { queue } => objects::purge_queue(ctx, &queue, out),
        CtlCommand::DeleteQueue {
            queue,
            if_empty,
            if_unused,
        } => objects::delete_queue(ctx, &queue, if_empty, if_unused, out),
        CtlCommand::ExportDefinitions { file } => definitions::export(ctx, &file, out),
        CtlCommand::ImportDefinitions {
            file,
            no_progress,
            chunk_size,
        } => definitions::import(
            ctx,
            &file,
            definitions::ImportOptions {
                chunk_size: usize::try_from(chunk_size).unwrap_or(usize::MAX),
                progress: !no_progress,
            },
            out,
        ),
        CtlCommand::Status => status::show(ctx, out),
        CtlCommand::Scheduled { action } => scheduled::execute(ctx, action, out),
    }
}

/// Columns as typed (`name messages` or `name,messages`), or `default` when none.
fn columns(typed: &[String], default: &[&str]) -> Vec<String> {
    let picked: Vec<String> = typed
        .iter()
        .flat_map(|c| c.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    if picked.is_empty() {
        default.iter().map(|c| (*c).to_owned()).collect()
    } else {
        picked
    }
}

/// Prints the info line, then the table; warns on stderr about columns no row has.
fn print_table(
    ctx: &Ctx,
    info: &str,
    columns: &[String],
    objects: &[serde_json::Value],
    out: &mut dyn Write,
) -> Result<(), ApiError> {
    let table = table::Table::pick(columns, objects);
    for column in table.unknown_columns() {
        eprintln!("warren ctl: note: no row has a field named '{column}'");
    }
    ctx.style.info(out, info).map_err(output_error)?;
    table.print(out, ctx.style).map_err(output_error)
}

/// Prints a line of result text (not suppressed by `-q`; it is the answer).
fn say(out: &mut dyn Write, line: &str) -> Result<(), ApiError> {
    writeln!(out, "{line}").map_err(output_error)
}

fn info(ctx: &Ctx, out: &mut dyn Write, line: &str) -> Result<(), ApiError> {
    ctx.style.info(out, line).map_err(output_error)
}

fn output_error(e: io::Error) -> ApiError {
    ApiError::Other(format!("cannot write the output: {e}"))
}

/// The rows of a list endpoint: a JSON array (or, for a paged answer, its `items`).
fn rows(value: serde_json::Value) -> Result<Vec<serde_json::Value>, ApiError> {
    match value {
        serde_json::Value::Array(items) => Ok(items),
        serde_json::Value::Object(mut map) => match map.remove("items") {
            Some(serde_json::Value::Array(items)) => Ok(items),
            _ => Err(ApiError::Other(
                "unexpected answer from the server: not a list".into(),
            )),
        },
        _ => Err(ApiError::Other(
            "unexpected answer from the server: not a list".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Top {
        #[command(flatten)]
        ctl: Ctl,
    }

    fn parse(args: &[&str]) -> Ctl {
        let mut all = vec!["ctl"];
        all.extend_from_slice(args);
        Top::try_parse_from(all)
            .map(|t| t.ctl)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn commands_keep_rabbitmqctl_names_and_flags_go_anywhere() {
        let ctl = parse(&["list_queues", "-p", "v", "name", "messages_ready", "-q"]);
        assert_eq!(ctl.connection.vhost, "v");
        assert!(ctl.connection.quiet);
        match ctl.command {
            CtlCommand::ListQueues { columns } => assert_eq!(columns, ["name", "messages_ready"]),
            other => panic!("{other:?}"),
        }
        let ctl = parse(&["set_permissions", "-p", "/", "bob", "^-x", "", ".*"]);
        match ctl.command {
            CtlCommand::SetPermissions { conf, write, .. } => {
                assert_eq!(conf, "^-x");
                assert_eq!(write, "");
            }
            other => panic!("{other:?}"),
        }
        let ctl = parse(&[
            "--formatter",
            "json",
            "delete_queue",
            "q",
            "--if-empty",
            "-u",
        ]);
        assert_eq!(ctl.connection.formatter, Formatter::Json);
        assert!(matches!(
            ctl.command,
            CtlCommand::DeleteQueue {
                if_empty: true,
                if_unused: true,
                ..
            }
        ));
    }

    #[test]
    fn a_new_password_is_not_the_login_password() {
        let ctl = parse(&["--password", "admin-pw", "add_user", "bob", "-bob-pw"]);
        assert_eq!(ctl.connection.password, "admin-pw");
        match ctl.command {
            CtlCommand::AddUser { new_password, .. } => assert_eq!(new_password, "-bob-pw"),
            other => panic!("{other:?}"),
        }
        let ctl = parse(&["change_password", "bob", "pw2"]);
        assert_eq!(ctl.connection.password, "guest");
    }

    #[test]
    fn columns_may_be_spaced_or_comma_separated() {
        assert_eq!(columns(&[], &["name", "type"]), ["name", "type"]);
        assert_eq!(
            columns(&["name,messages".into(), "consumers".into()], &["x"]),
            ["name", "messages", "consumers"]
        );
    }
}
