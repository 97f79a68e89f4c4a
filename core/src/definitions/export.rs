//! The live state as definitions, with RabbitMQ 3.10's choice of what a definitions file
//! holds: durable and transient objects alike (a transient queue is re-declarable from its
//! definition), but not exclusive queues (they belong to one connection) nor the default and
//! `amq.*` exchanges (every vhost has them). Lists are sorted, so two exports of the same
//! state are the same text.

use serde_json::Value;

use super::{
    BindingEntry, Definitions, ExchangeEntry, PermissionEntry, QueueEntry, RABBITMQ_VERSION, Tags,
    UserEntry, VHostDefinitions, VHostEntry, VHostMetadata,
};
use crate::broker::vhost::BoundTo;
use crate::broker::{Broker, VHost};
use crate::http::json_table::to_json;

/// Everything on the node, password hashes included (administrators only, say the callers).
pub fn export_node(broker: &Broker) -> Definitions {
    let mut users: Vec<UserEntry> = broker
        .auth()
        .users()
        .iter()
        .map(|u| UserEntry {
            name: u.name.clone(),
            password_hash: u.password.to_base64(),
            hashing_algorithm: Some(u.password.hashing.name().to_owned()),
            password: None,
            tags: Tags::List(u.tags.clone()),
            limits: Value::Object(serde_json::Map::new()),
        })
        .collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let names = broker.vhost_names();
    let vhosts = names
        .iter()
        .filter_map(|name| broker.vhost_definition(name))
        .map(|d| VHostEntry {
            name: d.name,
            metadata: Some(VHostMetadata {
                description: d.description,
                tags: Tags::List(d.tags),
            }),
            description: None,
            tags: None,
            limits: None,
        })
        .collect();
    let mut permissions: Vec<PermissionEntry> = broker
        .auth()
        .permissions()
        .into_iter()
        .map(|(vhost, user, p)| PermissionEntry {
            user,
            vhost,
            configure: p.configure.source().to_owned(),
            write: p.write.source().to_owned(),
            read: p.read.source().to_owned(),
        })
        .collect();
    permissions.sort_by(|a, b| (&a.vhost, &a.user).cmp(&(&b.vhost, &b.user)));
    let mut defs = Definitions {
        rabbit_version: Some(RABBITMQ_VERSION.to_owned()),
        rabbitmq_version: Some(RABBITMQ_VERSION.to_owned()),
        product_name: Some("Warren".to_owned()),
        product_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        users,
        vhosts,
        permissions,
        ..Definitions::default()
    };
    for name in &names {
        if let Some(vhost) = broker.vhost(name) {
            let one = catalogue(&vhost, Some(name));
            defs.queues.extend(one.queues);
            defs.exchanges.extend(one.exchanges);
            defs.bindings.extend(one.bindings);
        }
    }
    defs
}

/// One vhost's exchanges, queues and bindings; `None` if there is no such vhost.
pub fn export_vhost(broker: &Broker, vhost: &str) -> Option<VHostDefinitions> {
    let found = broker.vhost(vhost)?;
    let one = catalogue(&found, None);
    Some(VHostDefinitions {
        rabbit_version: RABBITMQ_VERSION.to_owned(),
        parameters: Vec::new(),
        policies: Vec::new(),
        queues: one.queues,
        exchanges: one.exchanges,
        bindings: one.bindings,
    })
}

struct Catalogue {
    queues: Vec<QueueEntry>,
    exchanges: Vec<ExchangeEntry>,
    bindings: Vec<BindingEntry>,
}

/// `vhost`'s objects; each carries `tag` as its `vhost` field (`None` in a one-vhost export).
fn catalogue(vhost: &VHost, tag: Option<&str>) -> Catalogue {
    let tag = tag.map(str::to_owned);
    let mut queues: Vec<_> = vhost
        .queues()
        .into_iter()
        .filter(|q| q.spec.exclusive_owner.is_none() && !q.is_deleted())
        .collect();
    queues.sort_by(|a, b| a.name().cmp(b.name()));
    let exclusive: Vec<String> = vhost
        .queues()
        .iter()
        .filter(|q| q.spec.exclusive_owner.is_some())
        .map(|q| q.name().to_owned())
        .collect();
    let queues = queues
        .iter()
        .map(|q| QueueEntry {
            name: q.name().to_owned(),
            vhost: tag.clone(),
            durable: q.spec.durable,
            auto_delete: q.spec.auto_delete,
            arguments: to_json(&q.spec.arguments),
        })
        .collect();
    let mut exchanges: Vec<_> = vhost
        .exchanges()
        .into_iter()
        .filter(|x| exported_exchange(x.name()) && !x.is_deleted())
        .collect();
    exchanges.sort_by(|a, b| a.name().cmp(b.name()));
    let exchanges = exchanges
        .iter()
        .map(|x| ExchangeEntry {
            name: x.name().to_owned(),
            vhost: tag.clone(),
            kind: x.spec.kind.clone(),
            durable: x.spec.durable,
            auto_delete: x.spec.auto_delete,
            internal: x.spec.internal,
            arguments: to_json(&x.spec.arguments),
        })
        .collect();
    let mut bindings: Vec<BindingEntry> = vhost
        .bindings()
        .into_iter()
        .filter(|b| !b.source.is_empty())
        .filter_map(|b| {
            let (destination, destination_type) = match b.destination {
                // A binding to an exclusive queue would name a queue the file lacks.
                BoundTo::Queue(q) if exclusive.contains(&q) => return None,
                BoundTo::Queue(q) => (q, "queue"),
                BoundTo::Exchange(x) => (x, "exchange"),
            };
            Some(BindingEntry {
                source: b.source,
                vhost: tag.clone(),
                destination,
                destination_type: destination_type.to_owned(),
                routing_key: b.key,
                arguments: to_json(&b.arguments),
            })
        })
        .collect();
    bindings.sort_by(|a, b| {
        (
            &a.source,
            &a.destination_type,
            &a.destination,
            &a.routing_key,
        )
            .cmp(&(
                &b.source,
                &b.destination_type,
                &b.destination,
                &b.routing_key,
            ))
    });
    Catalogue {
        queues,
        exchanges,
        bindings,
    }
}

/// Whether an exchange belongs in a definitions file: not the default one, not `amq.*`.
fn exported_exchange(name: &str) -> bool {
    !name.is_empty() && !name.starts_with("amq.")
}
