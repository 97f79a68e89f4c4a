//! Applying definitions to the broker, for `POST /api/definitions[/{vhost}]` and
//! `--load-definitions` alike.
//!
//! Two passes. The first reads the whole document into a plan and refuses it, naming the
//! entry (`users[2] (user 'bob'): unknown hashing_algorithm …`), if any entry cannot be
//! applied: a bad hash, a permission pattern that is no regular expression, an unknown
//! exchange type, queue arguments a declare would refuse, a vhost or user that neither
//! exists nor is in the file. Nothing has changed when it refuses. The second pass applies
//! the plan in dependency order (users, vhosts, permissions, exchanges, queues, bindings)
//! through the broker's own operations, so an import obeys the same rules as AMQP.
//!
//! What exists already is updated where RabbitMQ 3.10 updates it (users' hashes and tags,
//! permissions, vhost metadata) and otherwise kept: an exchange or queue whose properties
//! differ from the file's stays as it is, as do bindings whose source or destination is
//! missing, and `amq.*` exchanges are not imported — RabbitMQ answers 204 to all of these, so
//! Warren does too, and says in the log what it kept or skipped.

use std::collections::BTreeSet;

use amq_protocol::types::FieldTable;

use super::{Definitions, Tags};
use crate::auth::{AuthError, PasswordHash, Permission, User};
use crate::broker::Broker;
use crate::broker::delayed::{self, DELAYED_TYPE};
use crate::broker::queue::QueueArguments;
use crate::broker::queue::arguments::DeclareFlags;
use crate::broker::vhost::{BindTarget, ExchangeDeclare, QueueDeclare};
use crate::error::AmqpError;
use crate::http::json_table::from_json;
use crate::protocol::ReplyCode;
use crate::store::{SyncMark, VHostDefinition};

/// The connection id of an import: no AMQP connection (connections are numbered from 1), so
/// it owns no exclusive queue.
const NO_CONNECTION: u64 = 0;

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The document is not definitions JSON.
    #[error("failed to parse the definitions JSON: {0}")]
    Parse(String),
    /// An entry cannot be applied; nothing was changed.
    #[error("{at}: {reason}")]
    Invalid {
        /// Which entry (`queues[3] (queue 'q' in vhost '/')`).
        at: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker failed while applying (a store write); what came before it is applied.
    #[error("{at}: {reason}")]
    Failed {
        /// The entry being applied.
        at: String,
        /// The broker's reason.
        reason: String,
    },
}

/// What an import covers.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// The node: every list, each object naming its vhost.
    Node,
    /// One vhost (`POST /api/definitions/{vhost}`): its exchanges, queues and bindings; the
    /// objects' own `vhost` fields are ignored, users, vhosts and permissions skipped.
    VHost(&'a str),
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    /// Users, vhosts, permissions, exchanges, queues and bindings applied.
    pub applied: usize,
    /// What was kept as it was or skipped, and why, one line each (also logged).
    pub skipped: Vec<String>,
    /// Everything written is durable once the definition store reaches this mark.
    pub mark: SyncMark,
}

struct PlannedExchange {
    at: String,
    vhost: String,
    name: String,
    kind: String,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    arguments: FieldTable,
}

struct PlannedQueue {
    at: String,
    vhost: String,
    name: String,
    durable: bool,
    auto_delete: bool,
    arguments: FieldTable,
}

struct PlannedBinding {
    at: String,
    vhost: String,
    source: String,
    destination: String,
    to_exchange: bool,
    key: String,
    arguments: FieldTable,
}

#[derive(Default)]
struct Plan {
    users: Vec<(String, User)>,
    vhosts: Vec<(String, VHostDefinition)>,
    permissions: Vec<(String, String, String, Permission)>,
    exchanges: Vec<PlannedExchange>,
    queues: Vec<PlannedQueue>,
    bindings: Vec<PlannedBinding>,
    skipped: Vec<String>,
}

/// Checks `defs` in full, then applies it to `broker` within `scope`.
pub fn import(
    broker: &Broker,
    defs: &Definitions,
    scope: Scope<'_>,
) -> Result<Imported, ImportError> {
    let plan = plan(broker, defs, scope)?;
    let done = apply(broker, plan)?;
    for line in &done.skipped {
        tracing::warn!("definitions import: {line}");
    }
    tracing::info!(
        applied = done.applied,
        skipped = done.skipped.len(),
        "definitions imported"
    );
    Ok(done)
}

fn invalid(at: &str, reason: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        at: at.to_owned(),
        reason: reason.into(),
    }
}

/// The first pass: every entry read and judged against the broker and the file itself.
fn plan(broker: &Broker, defs: &Definitions, scope: Scope<'_>) -> Result<Plan, ImportError> {
    let mut plan = Plan::default();
    note_unsupported(defs, scope, &mut plan.skipped);
    let mut vhosts: BTreeSet<String> = broker.vhost_names().into_iter().collect();
    if let Scope::VHost(v) = scope
        && !vhosts.contains(v)
    {
        return Err(invalid("the vhost", format!("vhost '{v}' does not exist")));
    }
    if matches!(scope, Scope::Node) {
        plan_tenancy(broker, defs, &mut vhosts, &mut plan)?;
    }
    // The vhost of an object: the scope's, or its own field, which must name a vhost that
    // exists or that the file creates.
    let vhost_of = |at: &str, own: &Option<String>| -> Result<String, ImportError> {
        match scope {
            Scope::VHost(v) => Ok(v.to_owned()),
            Scope::Node => {
                let v = own
                    .as_deref()
                    .ok_or_else(|| invalid(at, "no 'vhost' field"))?;
                if vhosts.contains(v) {
                    Ok(v.to_owned())
                } else {
                    Err(invalid(at, format!("vhost '{v}' does not exist")))
                }
            }
        }
    };
    let table = |at: &str, value: &serde_json::Value| {
        from_json(value).map_err(|e| invalid(at, format!("arguments: {e}")))
    };
    for (i, x) in defs.exchanges.iter().enumerate() {
        let mut at = format!("exchanges[{i}] (exchange '{}')", x.name);
        let vhost = vhost_of(&at, &x.vhost)?;
        at = format!("exchanges[{i}] (exchange '{}' in vhost '{vhost}')", x.name);
        if x.name.is_empty() || x.name.starts_with("amq.") {
            plan.skipped.push(format!(
                "{at}: not imported, the default and amq.* exchanges are predeclared"
            ));
            continue;
        }
        let arguments = table(&at, &x.arguments)?;
        let known = if x.kind == DELAYED_TYPE {
            delayed::inner_type(&arguments, broker.registry()).map(drop)
        } else if broker.registry().get(&x.kind).is_none() {
            Err(crate::broker::replies::unknown_exchange_type(&x.kind))
        } else {
            Ok(())
        };
        known.map_err(|e| invalid(&at, e.text))?;
        plan.exchanges.push(PlannedExchange {
            at,
            vhost,
            name: x.name.clone(),
            kind: x.kind.clone(),
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments,
        });
    }
    for (i, q) in defs.queues.iter().enumerate() {
        let mut at = format!("queues[{i}] (queue '{}')", q.name);
        let vhost = vhost_of(&at, &q.vhost)?;
        at = format!("queues[{i}] (queue '{}' in vhost '{vhost}')", q.name);
        if q.name.is_empty() {
            return Err(invalid(&at, "a queue in definitions needs a name"));
        }
        if q.name.starts_with("amq.") {
            return Err(invalid(
                &at,
                crate::broker::replies::reserved_name("queue", &q.name).text,
            ));
        }
        let arguments = table(&at, &q.arguments)?;
        // Arguments are judged as the declare that creates the queue would judge them; a
        // queue that exists is only compared (at apply), as a redeclare is.
        let exists = broker
            .vhost(&vhost)
            .is_some_and(|v| v.queue(&q.name).is_some());
        if !exists {
            let flags = DeclareFlags {
                durable: q.durable,
                exclusive: false,
                auto_delete: q.auto_delete,
            };
            QueueArguments::parse(&vhost, &q.name, flags, &arguments)
                .map_err(|e| invalid(&at, e.text))?;
        }
        plan.queues.push(PlannedQueue {
            at,
            vhost,
            name: q.name.clone(),
            durable: q.durable,
            auto_delete: q.auto_delete,
            arguments,
        });
    }
    for (i, b) in defs.bindings.iter().enumerate() {
        let mut at = format!("bindings[{i}] ('{}' -> '{}')", b.source, b.destination);
        let vhost = vhost_of(&at, &b.vhost)?;
        at = format!(
            "bindings[{i}] ('{}' -> '{}' in vhost '{vhost}')",
            b.source, b.destination
        );
        let to_exchange = match b.destination_type.as_str() {
            "queue" => false,
            "exchange" => true,
            other => {
                return Err(invalid(
                    &at,
                    format!("destination_type '{other}' is neither 'queue' nor 'exchange'"),
                ));
            }
        };
        if b.source.is_empty() {
            plan.skipped.push(format!(
                "{at}: not imported, the default exchange's bindings are implicit"
            ));
            continue;
        }
        let arguments = table(&at, &b.arguments)?;
        plan.bindings.push(PlannedBinding {
            at,
            vhost,
            source: b.source.clone(),
            destination: b.destination.clone(),
            to_exchange,
            key: b.routing_key.clone(),
            arguments,
        });
    }
    Ok(plan)
}

/// Users, vhosts and permissions of a node-wide import; adds the file's vhosts to `vhosts`.
fn plan_tenancy(
    broker: &Broker,
    defs: &Definitions,
    vhosts: &mut BTreeSet<String>,
    plan: &mut Plan,
) -> Result<(), ImportError> {
    let mut users: BTreeSet<String> = broker
        .auth()
        .users()
        .iter()
        .map(|u| u.name.clone())
        .collect();
    for (i, u) in defs.users.iter().enumerate() {
        let at = format!("users[{i}] (user '{}')", u.name);
        if u.name.is_empty() {
            return Err(invalid(&at, "a user needs a name"));
        }
        let password = match (&u.password, u.password_hash.is_empty()) {
            (Some(clear), true) => PasswordHash::new(clear),
            _ => PasswordHash::from_definition(&u.password_hash, u.hashing_algorithm.as_deref())
                .map_err(|e| invalid(&at, e))?,
        };
        if u.limits.as_object().is_some_and(|l| !l.is_empty()) {
            plan.skipped.push(format!(
                "{at}: limits not imported (Warren has no user limits)"
            ));
        }
        users.insert(u.name.clone());
        let user = User {
            name: u.name.clone(),
            password,
            tags: u.tags.to_vec(),
        };
        plan.users.push((at, user));
    }
    for (i, v) in defs.vhosts.iter().enumerate() {
        let at = format!("vhosts[{i}] (vhost '{}')", v.name);
        if v.name.is_empty() {
            return Err(invalid(&at, "a vhost needs a name"));
        }
        if v.limits.as_ref().is_some_and(has_content) {
            plan.skipped.push(format!(
                "{at}: limits not imported (Warren has no vhost limits)"
            ));
        }
        let existing = broker.vhost_definition(&v.name);
        let said = v.metadata.is_some() || v.description.is_some() || v.tags.is_some();
        if existing.is_some() && !said {
            // A 3.10 export names the vhost only: keep what the operator said about it.
            vhosts.insert(v.name.clone());
            continue;
        }
        let metadata = v.metadata.clone().unwrap_or_default();
        let description = v.description.clone().unwrap_or(metadata.description);
        let tags = v
            .tags
            .as_ref()
            .map_or_else(|| metadata.tags.to_vec(), Tags::to_vec);
        vhosts.insert(v.name.clone());
        let definition = VHostDefinition {
            name: v.name.clone(),
            description,
            tags,
        };
        plan.vhosts.push((at, definition));
    }
    for (i, p) in defs.permissions.iter().enumerate() {
        let at = format!(
            "permissions[{i}] (user '{}' in vhost '{}')",
            p.user, p.vhost
        );
        if !users.contains(&p.user) {
            return Err(invalid(&at, format!("user '{}' does not exist", p.user)));
        }
        if !vhosts.contains(&p.vhost) {
            return Err(invalid(&at, format!("vhost '{}' does not exist", p.vhost)));
        }
        let permission =
            Permission::new(&p.configure, &p.write, &p.read).map_err(|e| invalid(&at, e))?;
        plan.permissions
            .push((at, p.vhost.clone(), p.user.clone(), permission));
    }
    Ok(())
}

fn has_content(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Object(o) => !o.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Lists the kinds of the document Warren has no equivalent of.
fn note_unsupported(defs: &Definitions, scope: Scope<'_>, skipped: &mut Vec<String>) {
    let mut kinds = vec![
        ("parameters", defs.parameters.len()),
        ("policies", defs.policies.len()),
    ];
    match scope {
        Scope::Node => {
            kinds.push(("topic_permissions", defs.topic_permissions.len()));
            kinds.push(("global_parameters", defs.global_parameters.len()));
        }
        Scope::VHost(_) => {
            kinds.push(("users", defs.users.len()));
            kinds.push(("vhosts", defs.vhosts.len()));
            kinds.push(("permissions", defs.permissions.len()));
        }
    }
    for (kind, count) in kinds.into_iter().filter(|(_, n)| *n > 0) {
        skipped.push(format!("{kind}: {count} not imported"));
    }
}

fn failed(at: &str, e: impl std::fmt::Display) -> ImportError {
    ImportError::Failed {
        at: at.to_owned(),
        reason: e.to_string(),
    }
}

/// Whether a refused redeclare means "it exists and differs" (kept, as RabbitMQ keeps it)
/// rather than a failure.
fn kept_as_is(e: &AmqpError) -> bool {
    matches!(
        e.code,
        ReplyCode::PreconditionFailed | ReplyCode::ResourceLocked
    )
}

/// The second pass, in dependency order.
fn apply(broker: &Broker, plan: Plan) -> Result<Imported, ImportError> {
    let mut done = Imported {
        skipped: plan.skipped,
        ..Imported::default()
    };
    let mut mark = SyncMark::default();
    let auth_failed = |at: &str, e: AuthError| failed(at, e);
    for (at, user) in plan.users {
        mark = mark.max(
            broker
                .auth()
                .put_user(user)
                .map_err(|e| auth_failed(&at, e))?,
        );
        done.applied += 1;
    }
    for (at, definition) in plan.vhosts {
        let (_, written) = broker
            .create_vhost(definition)
            .map_err(|e| failed(&at, e.text))?;
        mark = mark.max(written);
        done.applied += 1;
    }
    for (at, vhost, user, permission) in plan.permissions {
        let written = broker
            .auth()
            .set_permission(&vhost, &user, permission)
            .map_err(|e| auth_failed(&at, e))?;
        mark = mark.max(written);
        done.applied += 1;
    }
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let vhost = |at: &str, name: &str| {
        broker
            .vhost(name)
            .ok_or_else(|| failed(at, format!("vhost '{name}' went away during the import")))
    };
    for x in plan.exchanges {
        let v = vhost(&x.at, &x.vhost)?;
        touched.insert(x.vhost.clone());
        let existed = v.exchange(&x.name).is_some();
        let declared = v.declare_exchange(&ExchangeDeclare {
            name: &x.name,
            kind: &x.kind,
            passive: false,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments: &x.arguments,
        });
        match declared {
            Ok(()) => done.applied += 1,
            Err(e) if existed && kept_as_is(&e) => {
                done.skipped
                    .push(format!("{}: kept as it is: {}", x.at, e.text));
            }
            Err(e) => return Err(failed(&x.at, e.text)),
        }
    }
    for q in plan.queues {
        let v = vhost(&q.at, &q.vhost)?;
        touched.insert(q.vhost.clone());
        let existed = v.queue(&q.name).is_some();
        let declared = v.declare_queue(
            NO_CONNECTION,
            &QueueDeclare {
                name: &q.name,
                passive: false,
                durable: q.durable,
                exclusive: false,
                auto_delete: q.auto_delete,
                arguments: &q.arguments,
            },
        );
        match declared {
            Ok(_) => done.applied += 1,
            Err(e) if existed && kept_as_is(&e) => {
                done.skipped
                    .push(format!("{}: kept as it is: {}", q.at, e.text));
            }
            Err(e) => return Err(failed(&q.at, e.text)),
        }
    }
    for b in plan.bindings {
        let v = vhost(&b.at, &b.vhost)?;
        touched.insert(b.vhost.clone());
        let target = if b.to_exchange {
            BindTarget::Exchange(&b.destination)
        } else {
            BindTarget::Queue(&b.destination)
        };
        match v.bind(NO_CONNECTION, target, &b.source, &b.key, &b.arguments) {
            Ok(()) => done.applied += 1,
            Err(e) if matches!(e.code, ReplyCode::NotFound | ReplyCode::ResourceLocked) => {
                done.skipped
                    .push(format!("{}: not imported: {}", b.at, e.text));
            }
            Err(e) => return Err(failed(&b.at, e.text)),
        }
    }
    for name in &touched {
        if let Some(v) = broker.vhost(name) {
            mark = mark.max(v.definitions_written());
        }
    }
    done.mark = mark;
    Ok(done)
}
