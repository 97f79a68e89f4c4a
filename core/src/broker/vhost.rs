//! The virtual host `/`: exchanges and queues by name, and every catalogue operation with
//! RabbitMQ's rules and reply texts.
//!
//! Catalogue changes (declare, delete, bind, unbind) are rare next to publishes and are
//! serialised by one `catalogue` mutex, which keeps multi-step changes (delete a queue and
//! all its bindings, cascading auto-delete exchanges) atomic without fine-grained locking.
//! Publishing never takes it: the name maps are `RwLock`s read at most once per publish, and
//! channels cache exchange handles by name, revalidated by their `deleted` flag.

use crate::protocol::type_name;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use amq_protocol::types::{AMQPValue, FieldTable};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use super::args::{
    EXCHANGE_EQUIVALENCE_ARGS, QUEUE_EQUIVALENCE_ARGS, check_args_equivalence, inequivalent_flag,
    text_arg,
};
use super::consumer::Consumer;
use super::delayed::{self, DELAYED_TYPE, DELAYED_TYPE_ARG, Delayed, PendingInfo};
use super::exchange::{Binding, Destination, Exchange, ExchangeSpec};
use super::names;
use super::queue::{ConsumerRemoved, IncomingBinding, Queue, QueueSpec};
use crate::dead_letter::QueueLimits;
use crate::error::AmqpError;
use crate::exchange::{ExchangeTypeRegistry, RouteRequest};
use crate::protocol::encode_table_body;

/// 404 for a missing queue.
pub fn no_queue(name: &str) -> AmqpError {
    AmqpError::not_found(format!("no queue '{name}' in vhost '/'"))
}

/// 404 for a missing exchange.
pub fn no_exchange(name: &str) -> AmqpError {
    AmqpError::not_found(format!("no exchange '{name}' in vhost '/'"))
}

/// 403 for any change to the default exchange.
pub fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

/// Arguments of `exchange.declare`.
#[derive(Debug)]
pub struct ExchangeDeclare<'a> {
    /// Name.
    pub name: &'a str,
    /// Type.
    pub kind: &'a str,
    /// Only check existence.
    pub passive: bool,
    /// Durable.
    pub durable: bool,
    /// Auto-delete.
    pub auto_delete: bool,
    /// Internal.
    pub internal: bool,
    /// Arguments.
    pub arguments: &'a FieldTable,
}

/// Arguments of `queue.declare`.
#[derive(Debug)]
pub struct QueueDeclare<'a> {
    /// Name (empty: server-named).
    pub name: &'a str,
    /// Only check existence.
    pub passive: bool,
    /// Durable.
    pub durable: bool,
    /// Exclusive to the declaring connection.
    pub exclusive: bool,
    /// Auto-delete.
    pub auto_delete: bool,
    /// Arguments.
    pub arguments: &'a FieldTable,
}

/// Reusable buffers for routing one message after another on a channel.
#[derive(Debug, Default)]
pub struct RouteScratch {
    ids: Vec<u64>,
    dests: Vec<Destination>,
    visited: Vec<u64>,
}

/// What a binding's destination is.
#[derive(Clone, Copy, Debug)]
pub enum BindTarget<'a> {
    /// A queue (`queue.bind`).
    Queue(&'a str),
    /// An exchange (`exchange.bind`).
    Exchange(&'a str),
}

/// The virtual host.
#[derive(Debug)]
pub struct Broker {
    registry: ExchangeTypeRegistry,
    exchanges: RwLock<FxHashMap<String, Arc<Exchange>>>,
    queues: RwLock<FxHashMap<String, Arc<Queue>>>,
    catalogue: Mutex<()>,
    next_id: AtomicU64,
    /// Itself, for the delayed exchanges' drivers (which must not keep it alive).
    me: Weak<Broker>,
}

impl Broker {
    /// A vhost with the default and `amq.*` exchanges.
    pub fn new(registry: ExchangeTypeRegistry) -> Result<Arc<Broker>, AmqpError> {
        let mut created = Ok(());
        let broker = Arc::new_cyclic(|me| {
            let broker = Broker {
                registry,
                exchanges: RwLock::new(FxHashMap::default()),
                queues: RwLock::new(FxHashMap::default()),
                catalogue: Mutex::new(()),
                next_id: AtomicU64::new(1),
                me: me.clone(),
            };
            created = broker.predeclare();
            broker
        });
        created.map(|()| broker)
    }

    fn predeclare(&self) -> Result<(), AmqpError> {
        let predeclared = [
            ("", "direct"),
            ("amq.direct", "direct"),
            ("amq.fanout", "fanout"),
            ("amq.topic", "topic"),
            ("amq.headers", "headers"),
            ("amq.match", "headers"),
        ];
        for (name, kind) in predeclared {
            let spec = ExchangeSpec {
                name: name.to_owned(),
                kind: kind.to_owned(),
                durable: true,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
                alternate: None,
            };
            self.create_exchange(spec, &[])?;
        }
        Ok(())
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn create_exchange(&self, spec: ExchangeSpec, raw_args: &[u8]) -> Result<(), AmqpError> {
        // A delayed exchange routes through its inner type's plugin.
        let (router_kind, delayed) = if spec.kind == DELAYED_TYPE {
            let inner = delayed::inner_type(&spec.arguments, &self.registry)?;
            (inner, Some(Delayed::new(inner)))
        } else {
            (spec.kind.as_str(), None)
        };
        let ty = self
            .registry
            .get(router_kind)
            .ok_or_else(|| unknown_type(router_kind))?;
        ty.validate(raw_args)?;
        let router = ty.create(&spec.name, raw_args)?;
        let name = spec.name.clone();
        let exchange = Exchange::new(self.next_id(), spec, router, delayed.clone());
        if let Some(delayed) = delayed {
            delayed::spawn_driver(delayed, Arc::downgrade(&exchange), self.me.clone())?;
        }
        self.exchanges.write().insert(name, exchange);
        Ok(())
    }

    /// Pending messages per delayed exchange, by name.
    pub fn delayed_counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = self
            .exchanges
            .read()
            .values()
            .filter_map(|x| x.delayed().map(|d| (x.name().to_owned(), d.len())))
            .collect();
        counts.sort();
        counts
    }

    /// The delayed state of exchange `name`: 404 if there is no such exchange, 406 if it is
    /// not an `x-delayed-message` one.
    pub fn delayed(&self, name: &str) -> Result<Arc<Delayed>, AmqpError> {
        let exchange = self.exchange(name).ok_or_else(|| no_exchange(name))?;
        exchange.delayed().cloned().ok_or_else(|| {
            AmqpError::precondition_failed(format!(
                "exchange '{name}' in vhost '/' is not of type '{DELAYED_TYPE}'"
            ))
        })
    }

    /// Pending messages of delayed exchange `name`, by due time.
    pub fn delayed_list(&self, name: &str) -> Result<Vec<PendingInfo>, AmqpError> {
        Ok(self.delayed(name)?.list())
    }

    /// The exchange named `name`.
    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.read().get(name).cloned()
    }

    /// The queue named `name`.
    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    /// `exchange.declare`.
    pub fn declare_exchange(&self, d: &ExchangeDeclare<'_>) -> Result<(), AmqpError> {
        let _catalogue = self.catalogue.lock();
        if d.name.is_empty() {
            return Err(default_exchange_refused());
        }
        if d.passive {
            return match self.exchange(d.name) {
                Some(_) => Ok(()),
                None => Err(no_exchange(d.name)),
            };
        }
        if d.name.is_empty() {
            return Err(default_exchange_refused());
        }
        if d.kind == DELAYED_TYPE {
            delayed::inner_type(d.arguments, &self.registry)?;
        } else if self.registry.get(d.kind).is_none() {
            return Err(unknown_type(d.kind));
        }
        let raw = encode_args(d.arguments)?;
        if let Some(existing) = self.exchange(d.name) {
            let s = &existing.spec;
            let name = d.name;
            if s.kind != d.kind {
                return Err(inequivalent_flag("exchange", "type", name, d.kind, &s.kind));
            }
            if s.durable != d.durable {
                return Err(inequivalent_flag(
                    "exchange", "durable", name, d.durable, s.durable,
                ));
            }
            if s.auto_delete != d.auto_delete {
                return Err(inequivalent_flag(
                    "exchange",
                    "auto_delete",
                    name,
                    d.auto_delete,
                    s.auto_delete,
                ));
            }
            if s.internal != d.internal {
                return Err(inequivalent_flag(
                    "exchange", "internal", name, d.internal, s.internal,
                ));
            }
            check_args_equivalence(
                "exchange",
                name,
                EXCHANGE_EQUIVALENCE_ARGS,
                d.arguments,
                &s.arguments,
            )?;
            if s.kind == DELAYED_TYPE {
                check_args_equivalence(
                    "exchange",
                    name,
                    &[DELAYED_TYPE_ARG],
                    d.arguments,
                    &s.arguments,
                )?;
            }
            return existing.assert_args_equivalence(&raw);
        }
        if d.name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let spec = ExchangeSpec {
            name: d.name.to_owned(),
            kind: d.kind.to_owned(),
            durable: d.durable,
            auto_delete: d.auto_delete,
            internal: d.internal,
            arguments: d.arguments.clone(),
            alternate: text_arg(d.arguments, "alternate-exchange").map(str::to_owned),
        };
        self.create_exchange(spec, &raw)
    }

    /// `exchange.delete`.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        let _catalogue = self.catalogue.lock();
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "deletion of system exchange '{name}' in vhost '/' not allowed"
            )));
        }
        let Some(exchange) = self.exchange(name) else {
            return Ok(());
        };
        if if_unused && exchange.has_bindings() {
            return Err(AmqpError::precondition_failed(format!(
                "exchange '{name}' in vhost '/' in use"
            )));
        }
        self.delete_exchange_locked(&exchange);
        Ok(())
    }

    fn delete_exchange_locked(&self, exchange: &Arc<Exchange>) {
        let name = exchange.name().to_owned();
        self.exchanges.write().remove(&name);
        exchange.mark_deleted();
        for dest in exchange.destinations() {
            match dest {
                Destination::Queue(q) => q.remove_incoming_from(&name),
                Destination::Exchange(e) => e.remove_incoming_from(&name),
            }
        }
        exchange.remove_bindings(|_| true);
        for incoming in exchange.take_incoming() {
            if let Some(source) = self.exchange(&incoming.exchange) {
                source.remove_bindings(|b| b.destination == exchange.id);
                self.maybe_auto_delete(&source);
            }
        }
    }

    fn maybe_auto_delete(&self, exchange: &Arc<Exchange>) {
        if exchange.spec.auto_delete && !exchange.is_deleted() && !exchange.has_bindings() {
            self.delete_exchange_locked(exchange);
        }
    }

    /// `queue.declare`: the queue (existing or new).
    pub fn declare_queue(
        &self,
        connection: u64,
        d: &QueueDeclare<'_>,
    ) -> Result<Arc<Queue>, AmqpError> {
        let _catalogue = self.catalogue.lock();
        if d.passive {
            let queue = self.queue(d.name).ok_or_else(|| no_queue(d.name))?;
            queue.check_access(connection)?;
            queue.touch();
            return Ok(queue);
        }
        let generated;
        let name = if d.name.is_empty() {
            generated = names::generate(names::QUEUE_PREFIX);
            generated.as_str()
        } else {
            d.name
        };
        // A redeclare is only compared with the queue (RabbitMQ validates arguments only when
        // it creates the queue).
        if let Some(existing) = self.queue(name) {
            existing.check_access(connection)?;
            let s = &existing.spec;
            if s.exclusive_owner.is_some() != d.exclusive {
                return Err(AmqpError::resource_locked(format!(
                    "cannot obtain exclusive access to locked queue '{name}' in vhost '/'. It \
                     could be originally declared on another connection or the exclusive \
                     property value does not match that of the original declaration."
                )));
            }
            if s.durable != d.durable {
                return Err(inequivalent_flag(
                    "queue", "durable", name, d.durable, s.durable,
                ));
            }
            if s.auto_delete != d.auto_delete {
                return Err(inequivalent_flag(
                    "queue",
                    "auto_delete",
                    name,
                    d.auto_delete,
                    s.auto_delete,
                ));
            }
            check_args_equivalence(
                "queue",
                name,
                QUEUE_EQUIVALENCE_ARGS,
                d.arguments,
                &s.arguments,
            )?;
            existing.touch();
            return Ok(existing);
        }
        if name.starts_with("amq.") && d.name == name {
            return Err(AmqpError::access_refused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let limits = QueueLimits::from_arguments(name, "/", d.arguments)?;
        let single_active = validate_queue_args(name, d)?;
        let spec = QueueSpec {
            name: name.to_owned(),
            durable: d.durable,
            exclusive_owner: d.exclusive.then_some(connection),
            auto_delete: d.auto_delete,
            arguments: d.arguments.clone(),
            single_active,
            limits,
        };
        let queue = Queue::new(self.next_id(), spec, self.me.clone());
        self.queues.write().insert(name.to_owned(), queue.clone());
        Ok(queue)
    }

    /// `queue.delete`: the number of messages deleted.
    pub fn delete_queue(
        &self,
        connection: u64,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<usize, AmqpError> {
        let _catalogue = self.catalogue.lock();
        let Some(queue) = self.queue(name) else {
            return Ok(0);
        };
        queue.check_access(connection)?;
        let (messages, consumers) = queue.counts();
        if if_unused && consumers > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{name}' in vhost '/' in use"
            )));
        }
        if if_empty && messages > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{name}' in vhost '/' not empty"
            )));
        }
        Ok(self.delete_queue_locked(&queue))
    }

    fn delete_queue_locked(&self, queue: &Arc<Queue>) -> usize {
        {
            let mut queues = self.queues.write();
            if queues
                .get(queue.name())
                .is_some_and(|q| Arc::ptr_eq(q, queue))
            {
                queues.remove(queue.name());
            }
        }
        let (messages, consumers, bindings) = queue.mark_deleted();
        for binding in bindings {
            if let Some(source) = self.exchange(&binding.exchange) {
                source.remove_bindings(|b| b.destination == queue.id);
                self.maybe_auto_delete(&source);
            }
        }
        for consumer in consumers {
            consumer.cancelled_by_server();
        }
        messages
    }

    /// Deletes a queue if it is still the one registered under its name (auto-delete,
    /// exclusive queues at connection close).
    pub fn delete_queue_now(&self, queue: &Arc<Queue>) {
        let _catalogue = self.catalogue.lock();
        if !queue.is_deleted() {
            self.delete_queue_locked(queue);
        }
    }

    /// Deletes `queue` for its `x-expires` if it is still unused (its driver saw it idle;
    /// a consumer or a redeclare may have come in since). Its messages are not
    /// dead-lettered, as in RabbitMQ.
    pub(crate) fn expire_unused_queue(&self, queue: &Arc<Queue>) {
        let _catalogue = self.catalogue.lock();
        if !queue.is_deleted() && queue.is_unused_for_expires() {
            tracing::debug!(queue = queue.name(), "queue expired unused (x-expires)");
            self.delete_queue_locked(queue);
        }
    }

    /// Removes a consumer from its queue; deletes an auto-delete queue left without any.
    pub fn remove_consumer(&self, consumer: &Arc<Consumer>) {
        if consumer.queue.remove_consumer(consumer) == ConsumerRemoved::LastOfAutoDelete {
            self.delete_queue_now(&consumer.queue);
        }
    }

    /// `queue.bind` / `exchange.bind`.
    pub fn bind(
        &self,
        connection: u64,
        target: BindTarget<'_>,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<(), AmqpError> {
        let _catalogue = self.catalogue.lock();
        let (destination, dest_name) = self.resolve_target(connection, target)?;
        if source.is_empty() {
            return Err(default_exchange_refused());
        }
        let exchange = self.exchange(source).ok_or_else(|| no_exchange(source))?;
        let raw = encode_args(arguments)?;
        let binding = Binding {
            destination: destination.id(),
            key: key.to_owned(),
            arguments: arguments.clone(),
            raw_arguments: raw,
        };
        let incoming = IncomingBinding {
            exchange: source.to_owned(),
            key: key.to_owned(),
            arguments: arguments.clone(),
        };
        let _ = dest_name;
        if exchange.add_binding(destination.clone(), binding)? {
            match destination {
                Destination::Queue(q) => q.add_incoming(incoming),
                Destination::Exchange(e) => e.add_incoming(incoming),
            }
        }
        Ok(())
    }

    /// `queue.unbind` / `exchange.unbind`.
    pub fn unbind(
        &self,
        connection: u64,
        target: BindTarget<'_>,
        source: &str,
        key: &str,
        arguments: &FieldTable,
    ) -> Result<(), AmqpError> {
        let _catalogue = self.catalogue.lock();
        if source.is_empty() {
            return Err(default_exchange_refused());
        }
        // Like RabbitMQ 3.x, unbinding something that does not exist succeeds.
        let destination = match self.resolve_target(connection, target) {
            Ok((destination, _)) => destination,
            Err(e) if e.code == crate::protocol::ReplyCode::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(exchange) = self.exchange(source) else {
            return Ok(());
        };
        let id = destination.id();
        let removed = exchange
            .remove_bindings(|b| b.destination == id && b.key == key && &b.arguments == arguments);
        if !removed.is_empty() {
            match &destination {
                Destination::Queue(q) => q.remove_incoming(source, key, arguments),
                Destination::Exchange(e) => e.remove_incoming(source, key, arguments),
            }
            self.maybe_auto_delete(&exchange);
        }
        Ok(())
    }

    fn resolve_target(
        &self,
        connection: u64,
        target: BindTarget<'_>,
    ) -> Result<(Destination, String), AmqpError> {
        match target {
            BindTarget::Queue(name) => {
                let queue = self.queue(name).ok_or_else(|| no_queue(name))?;
                queue.check_access(connection)?;
                Ok((Destination::Queue(queue), name.to_owned()))
            }
            BindTarget::Exchange(name) => {
                if name.is_empty() {
                    return Err(default_exchange_refused());
                }
                let exchange = self.exchange(name).ok_or_else(|| no_exchange(name))?;
                Ok((Destination::Exchange(exchange), name.to_owned()))
            }
        }
    }

    /// Routes a message published to `exchange`; the distinct destination queues are left
    /// in `out` (cleared first).
    pub fn route(
        &self,
        exchange: &Arc<Exchange>,
        request: &RouteRequest<'_>,
        scratch: &mut RouteScratch,
        out: &mut Vec<Arc<Queue>>,
    ) -> Result<(), AmqpError> {
        out.clear();
        scratch.dests.clear();
        scratch.visited.clear();
        self.route_exchange(exchange, request, scratch, out)?;
        if scratch.visited.len() > 1 && out.len() > 1 {
            out.sort_unstable_by_key(|q| q.id);
            out.dedup_by_key(|q| q.id);
        }
        Ok(())
    }

    fn route_exchange(
        &self,
        exchange: &Arc<Exchange>,
        request: &RouteRequest<'_>,
        scratch: &mut RouteScratch,
        out: &mut Vec<Arc<Queue>>,
    ) -> Result<(), AmqpError> {
        scratch.visited.push(exchange.id);
        let found_before = out.len();
        if exchange.is_default() {
            let queues = self.queues.read();
            for key in request.routing_keys {
                if let Some(q) = std::str::from_utf8(key).ok().and_then(|k| queues.get(k))
                    && !out.iter().any(|o| o.id == q.id)
                {
                    out.push(q.clone());
                }
            }
            return Ok(());
        }
        let start = scratch.dests.len();
        exchange.route(request, &mut scratch.ids, &mut scratch.dests)?;
        let end = scratch.dests.len();
        for i in start..end {
            match scratch.dests[i].clone() {
                Destination::Queue(q) => out.push(q),
                Destination::Exchange(e) => {
                    if !scratch.visited.contains(&e.id) && !e.is_deleted() {
                        self.route_exchange(&e, request, scratch, out)?;
                    }
                }
            }
        }
        scratch.dests.truncate(start);
        if out.len() == found_before
            && let Some(ae) = exchange
                .spec
                .alternate
                .as_deref()
                .and_then(|n| self.exchange(n))
            && !scratch.visited.contains(&ae.id)
        {
            self.route_exchange(&ae, request, scratch, out)?;
        }
        Ok(())
    }
}

fn unknown_type(kind: &str) -> AmqpError {
    AmqpError::command_invalid(format!("unknown exchange type '{kind}'"))
}

fn encode_args(arguments: &FieldTable) -> Result<bytes::Bytes, AmqpError> {
    encode_table_body(arguments)
        .map_err(|e| AmqpError::precondition_failed(format!("invalid arguments: {e}")))
}

/// Checks the queue arguments Warren acts on; returns whether single-active-consumer is on.
fn validate_queue_args(name: &str, d: &QueueDeclare<'_>) -> Result<bool, AmqpError> {
    let invalid = |key: &str, what: String| {
        AmqpError::precondition_failed(format!(
            "invalid arg '{key}' for queue '{name}' in vhost '/': {what}"
        ))
    };
    let args = d.arguments.inner();
    if let Some(value) = args.get("x-queue-type") {
        match value {
            AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {}
            other => {
                return Err(invalid(
                    "x-queue-type",
                    format!("{{unacceptable_type,{}}}", type_name(other)),
                ));
            }
        }
        match text_arg(d.arguments, "x-queue-type") {
            Some("classic") => {}
            Some("quorum") => {
                let property = if !d.durable {
                    Some("non-durable")
                } else if d.exclusive {
                    Some("exclusive-owner")
                } else if d.auto_delete {
                    Some("auto-delete")
                } else {
                    None
                };
                if let Some(property) = property {
                    return Err(AmqpError::precondition_failed(format!(
                        "invalid property '{property}' for queue '{name}' in vhost '/'"
                    )));
                }
            }
            other => {
                return Err(invalid(
                    "x-queue-type",
                    format!("\"unsupported queue type '{}'\"", other.unwrap_or_default()),
                ));
            }
        }
    }
    match args.get("x-single-active-consumer") {
        None => Ok(false),
        Some(AMQPValue::Boolean(b)) => Ok(*b),
        Some(other) => Err(invalid(
            "x-single-active-consumer",
            format!("{{unacceptable_type,{}}}", type_name(other)),
        )),
    }
}
