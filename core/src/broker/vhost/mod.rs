//! A virtual host: its name, its exchanges and queues by name, the binding table, and every
//! catalogue operation with RabbitMQ's rules (texts in [`crate::broker::replies`], naming
//! this vhost).
//!
//! Catalogue changes (declare, delete, bind, unbind) are rare next to publishes and are
//! serialised by one `catalogue` mutex, which also owns the [`BindingTable`]: multi-step
//! changes (delete a queue and all its bindings, cascading auto-delete exchanges) are atomic
//! without fine-grained locking. Publishing never takes it: the name maps are `RwLock`s read
//! at most once per publish, and channels cache exchange handles by name, revalidated by
//! their `deleted` flag.
//!
//! - [`bindings`]: the binding table.
//! - [`routing`]: routing across exchanges (the first half of the publish path, whose
//!   second half is `broker::publish`).
//! - `restore`: re-creating the stored objects at start.

pub mod bindings;
mod restore;
pub mod routing;
pub mod totals;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use amq_protocol::types::FieldTable;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use super::args::{EXCHANGE_EQUIVALENCE_ARGS, check_args_equivalence, text_arg};
use super::delayed::{self, DELAYED_TYPE, DELAYED_TYPE_ARG, Delayed, DelayedStore};
use super::drivers;
use super::exchange::{Destination, Exchange, ExchangeSpec};
use super::names;
use super::queue::arguments::{DeclareFlags, QUEUE_EQUIVALENCE_ARGS};
use super::queue::{Consumer, ConsumerRemoved, Queue, QueueArguments, QueueSpec};
use super::replies;
use crate::error::AmqpError;
use crate::plugin::ExchangeTypeRegistry;
use crate::protocol::{ReplyCode, encode_table_body};
use crate::stats::{Churn, NodeStats, Retired, Snapshot, Source, Stats};
use crate::store::{
    BindingDefinition, Definition, DefinitionKey, DestinationKind, ExchangeDefinition, ExchangeKey,
    QueueDefinition, Stores, SyncMark,
};
pub use bindings::{Binding, BindingTable, BoundTo};
pub use routing::RouteScratch;

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

/// What a binding's destination is.
#[derive(Clone, Copy, Debug)]
pub enum BindTarget<'a> {
    /// A queue (`queue.bind`).
    Queue(&'a str),
    /// An exchange (`exchange.bind`).
    Exchange(&'a str),
}

/// One virtual host.
#[derive(Debug)]
pub struct VHost {
    name: Arc<str>,
    registry: Arc<ExchangeTypeRegistry>,
    pub(super) exchanges: RwLock<FxHashMap<String, Arc<Exchange>>>,
    pub(super) queues: RwLock<FxHashMap<String, Arc<Queue>>>,
    /// The catalogue lock, and the bindings it guards.
    catalogue: Mutex<BindingTable>,
    /// Where durable definitions, persistent messages and held messages are written.
    stores: Stores,
    /// The definition store's mark of this vhost's last definition write: a reply to a
    /// catalogue method is sent once it is durable.
    definitions_written: AtomicU64,
    next_id: AtomicU64,
    /// The most queues this vhost may hold (RabbitMQ's vhost limit `max-queues`; 0:
    /// unlimited), checked under the catalogue lock when a queue is created.
    max_queues: std::sync::atomic::AtomicUsize,
    /// Itself, for the drivers it starts (which must not keep it alive).
    me: Weak<VHost>,
    /// False while the vhost is being restored at start: its drivers wait, so that nothing
    /// expires or fires before every binding it could be routed through is back.
    open: tokio::sync::watch::Sender<bool>,
    /// The node's statistics: deleted queues' and exchanges' totals are folded into it, and
    /// queue churn counted.
    node: Arc<NodeStats>,
    /// This vhost's own copy of what its deleted queues and exchanges counted.
    retired: Retired,
    /// Samples of its totals (queue, exchange and channel kinds), for its rates.
    sampled: Stats,
}

impl VHost {
    /// A vhost named `name` with the default and `amq.*` exchanges. Must be called inside a
    /// tokio runtime for timers to run (outside one, deadlines are honoured only when a
    /// queue is next used, and delayed exchanges cannot be declared).
    pub fn new(
        name: &str,
        registry: Arc<ExchangeTypeRegistry>,
        stores: Stores,
        node: Arc<NodeStats>,
    ) -> Result<Arc<VHost>, AmqpError> {
        let mut created = Ok(());
        let vhost = Arc::new_cyclic(|me| {
            let vhost = VHost {
                name: name.into(),
                registry,
                exchanges: RwLock::new(FxHashMap::default()),
                queues: RwLock::new(FxHashMap::default()),
                catalogue: Mutex::new(BindingTable::default()),
                stores,
                definitions_written: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                max_queues: std::sync::atomic::AtomicUsize::new(0),
                me: me.clone(),
                open: tokio::sync::watch::Sender::new(true),
                node,
                retired: Retired::default(),
                sampled: Stats::default(),
            };
            created = vhost.predeclare();
            vhost
        });
        created.map(|()| vhost)
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Samples of this vhost's totals, recorded by the sampler.
    pub fn sampled(&self) -> &Stats {
        &self.sampled
    }

    /// What happened in this vhost's queues and exchanges (live and deleted), each kind
    /// from its [`Source`] as in the node's totals; channel kinds are the caller's to add
    /// (they belong to connections, see `Connections::channel_totals`).
    pub fn message_totals(&self) -> Snapshot {
        let mut totals = self.live_totals();
        totals.add(&self.retired.queues.snapshot().from_source(Source::Queue));
        totals.add(
            &self
                .retired
                .exchanges
                .snapshot()
                .from_source(Source::Exchange),
        );
        totals
    }

    /// What this vhost's live queues and exchanges (delayed ones included) have counted,
    /// each kind from its [`Source`]; the node adds its deleted objects' totals to these.
    pub fn live_totals(&self) -> Snapshot {
        let mut queues = Snapshot::default();
        for queue in self.queues() {
            queues.add(&queue.stats().counters.snapshot());
        }
        let mut exchanges = Snapshot::default();
        for exchange in self.exchanges() {
            exchanges.add(&exchange.stats().counters.snapshot());
            if let Some(delayed) = exchange.delayed() {
                exchanges.add(&delayed.stats().counters.snapshot());
            }
        }
        let mut totals = queues.from_source(Source::Queue);
        totals.add(&exchanges.from_source(Source::Exchange));
        totals
    }

    /// Where delayed messages' firing lateness is observed (the node's histogram).
    pub(crate) fn lateness(&self) -> &crate::stats::Histogram {
        &self.node.lateness
    }

    /// Opens or closes the vhost to its drivers (closed while it is restored at start).
    pub(crate) fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }

    /// Whether the vhost is open to its drivers, watched: a driver waits for `true` before
    /// its first action (at once, unless the vhost is being restored).
    pub(crate) fn opened(&self) -> tokio::sync::watch::Receiver<bool> {
        self.open.subscribe()
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

    /// The stores this vhost writes to.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The definition store's mark of this vhost's last definition write (a reply to a
    /// catalogue method waits until it is durable).
    pub fn definitions_written(&self) -> SyncMark {
        SyncMark(self.definitions_written.load(Ordering::Acquire))
    }

    fn wrote_definition(&self, mark: SyncMark) {
        self.definitions_written.fetch_max(mark.0, Ordering::AcqRel);
    }

    /// Records a durable definition; the client hears that it exists once it is durable.
    fn record(&self, definition: Definition) -> Result<(), AmqpError> {
        let mark = self
            .stores
            .definitions
            .put(definition)
            .map_err(|e| AmqpError::internal(format!("cannot store the definition: {e}")))?;
        self.wrote_definition(mark);
        Ok(())
    }

    /// Forgets a durable definition. The object is already gone from memory, so a failure
    /// can only be logged: it would come back at the next start.
    fn forget(&self, key: DefinitionKey) {
        match self.stores.definitions.delete(&key) {
            Ok(mark) => self.wrote_definition(mark),
            Err(e) => {
                tracing::error!(vhost = %self.name, ?key, "cannot delete the stored definition: {e}");
            }
        }
    }

    fn forget_bindings(&self, removed: &[Binding]) {
        for b in removed.iter().filter(|b| b.durable) {
            self.forget(DefinitionKey::Binding(self.binding_definition(b)));
        }
    }

    fn binding_definition(&self, b: &Binding) -> BindingDefinition {
        let (destination_kind, destination) = match &b.destination {
            BoundTo::Queue(q) => (DestinationKind::Queue, q.clone()),
            BoundTo::Exchange(x) => (DestinationKind::Exchange, x.clone()),
        };
        BindingDefinition {
            vhost: self.name.to_string(),
            source: b.source.clone(),
            destination_kind,
            destination,
            key: b.key.clone(),
            arguments: b.raw_arguments.clone(),
        }
    }

    fn create_exchange(&self, spec: ExchangeSpec, raw_args: &[u8]) -> Result<(), AmqpError> {
        // A delayed exchange routes through its inner type's plugin.
        let (router_kind, delayed) = if spec.kind == DELAYED_TYPE {
            let inner = delayed::inner_type(&spec.arguments, &self.registry)?;
            let store = spec.durable.then(|| DelayedStore {
                key: ExchangeKey {
                    vhost: self.name.to_string(),
                    exchange: spec.name.clone(),
                },
                held: self.stores.held.clone(),
            });
            (inner, Some(Delayed::new(inner, store)))
        } else {
            (spec.kind.as_str(), None)
        };
        let ty = self
            .registry
            .get(router_kind)
            .ok_or_else(|| replies::unknown_exchange_type(router_kind))?;
        ty.validate(raw_args)?;
        let router = ty.create(&spec.name, raw_args)?;
        let name = spec.name.clone();
        let exchange = Exchange::new(self.next_id(), spec, router, delayed.clone());
        if let Some(delayed) = delayed {
            drivers::firing::spawn(delayed, Arc::downgrade(&exchange), self.me.clone())?;
        }
        self.exchanges.write().insert(name, exchange);
        Ok(())
    }

    /// The delayed state of exchange `name`: 404 if there is no such exchange, 406 if it is
    /// not an `x-delayed-message` one.
    pub fn delayed(&self, name: &str) -> Result<Arc<Delayed>, AmqpError> {
        let exchange = self
            .exchange(name)
            .ok_or_else(|| replies::no_exchange(&self.name, name))?;
        exchange
            .delayed()
            .cloned()
            .ok_or_else(|| replies::not_delayed(&self.name, name, DELAYED_TYPE))
    }

    /// Every exchange of the vhost, the predeclared ones included (listings and definition
    /// exports; in no particular order).
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.read().values().cloned().collect()
    }

    /// Sets the most queues this vhost may hold (0: unlimited); queues already there stay.
    pub fn set_max_queues(&self, max: usize) {
        self.max_queues.store(max, Ordering::Relaxed);
    }

    /// Every queue of the vhost, exclusive ones included (listings and definition exports;
    /// in no particular order).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }

    /// A copy of every explicit binding (the default exchange's implicit ones are not in
    /// the table), taken under the catalogue lock so that a listing is one moment's state.
    pub fn bindings(&self) -> Vec<Binding> {
        self.catalogue.lock().iter().cloned().collect()
    }

    /// The exchange named `name`.
    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.read().get(name).cloned()
    }

    /// The queue named `name`.
    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    /// The exchange named `name`, or 404.
    pub fn existing_exchange(&self, name: &str) -> Result<Arc<Exchange>, AmqpError> {
        self.exchange(name)
            .ok_or_else(|| replies::no_exchange(&self.name, name))
    }

    /// The queue named `name` if `connection` may use it: 404 or 405 otherwise.
    pub fn usable_queue(&self, connection: u64, name: &str) -> Result<Arc<Queue>, AmqpError> {
        let queue = self
            .queue(name)
            .ok_or_else(|| replies::no_queue(&self.name, name))?;
        queue.check_access(connection)?;
        Ok(queue)
    }

    /// `exchange.declare`.
    pub fn declare_exchange(&self, d: &ExchangeDeclare<'_>) -> Result<(), AmqpError> {
        let _catalogue = self.catalogue.lock();
        let vhost = &*self.name;
        if d.name.is_empty() {
            return Err(replies::default_exchange_refused());
        }
        if d.passive {
            return self.existing_exchange(d.name).map(drop);
        }
        let existing = self.exchange(d.name);
        // An existing exchange is compared, even one whose type is not loaded now.
        if existing.as_ref().is_none_or(|x| !x.is_unavailable()) {
            if d.kind == DELAYED_TYPE {
                delayed::inner_type(d.arguments, &self.registry)?;
            } else if self.registry.get(d.kind).is_none() {
                return Err(replies::unknown_exchange_type(d.kind));
            }
        }
        let raw = encode_args(d.arguments)?;
        if let Some(existing) = existing {
            let s = &existing.spec;
            let name = d.name;
            let flag = |flag: &str, received: bool, current: bool| {
                replies::inequivalent_flag("exchange", vhost, name, flag, received, current)
            };
            if s.kind != d.kind {
                return Err(replies::inequivalent_flag(
                    "exchange", vhost, name, "type", d.kind, &s.kind,
                ));
            }
            if s.durable != d.durable {
                return Err(flag("durable", d.durable, s.durable));
            }
            if s.auto_delete != d.auto_delete {
                return Err(flag("auto_delete", d.auto_delete, s.auto_delete));
            }
            if s.internal != d.internal {
                return Err(flag("internal", d.internal, s.internal));
            }
            check_args_equivalence(
                "exchange",
                vhost,
                name,
                EXCHANGE_EQUIVALENCE_ARGS,
                d.arguments,
                &s.arguments,
            )?;
            if s.kind == DELAYED_TYPE {
                check_args_equivalence(
                    "exchange",
                    vhost,
                    name,
                    &[DELAYED_TYPE_ARG],
                    d.arguments,
                    &s.arguments,
                )?;
            }
            return existing.assert_args_equivalence(&raw);
        }
        if d.name.starts_with("amq.") {
            return Err(replies::reserved_name("exchange", d.name));
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
        let stored = spec.durable.then(|| {
            Definition::Exchange(ExchangeDefinition {
                vhost: vhost.to_owned(),
                name: spec.name.clone(),
                kind: spec.kind.clone(),
                auto_delete: spec.auto_delete,
                internal: spec.internal,
                arguments: raw.clone(),
            })
        });
        self.create_exchange(spec, &raw)?;
        if let Some(definition) = stored
            && let Err(e) = self.record(definition)
        {
            if let Some(created) = self.exchanges.write().remove(d.name) {
                created.mark_deleted();
            }
            return Err(e);
        }
        Ok(())
    }

    /// `exchange.delete`.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        let mut bindings = self.catalogue.lock();
        if name.is_empty() {
            return Err(replies::default_exchange_refused());
        }
        if name.starts_with("amq.") {
            return Err(replies::system_exchange_deletion(&self.name, name));
        }
        let Some(exchange) = self.exchange(name) else {
            return Ok(());
        };
        if if_unused && bindings.has_bindings_from(name) {
            return Err(replies::in_use("exchange", &self.name, name));
        }
        self.delete_exchange_locked(&mut bindings, &exchange);
        Ok(())
    }

    fn delete_exchange_locked(&self, bindings: &mut BindingTable, exchange: &Arc<Exchange>) {
        let name = exchange.name();
        self.exchanges.write().remove(name);
        exchange.mark_deleted();
        let mut counted = exchange.stats().counters.snapshot();
        if let Some(delayed) = exchange.delayed() {
            counted.add(&delayed.stats().counters.snapshot());
        }
        self.node.deleted_exchanges.absorb(&counted);
        self.retired.exchanges.absorb(&counted);
        if exchange.spec.durable {
            self.forget(DefinitionKey::Exchange(
                self.name.to_string(),
                name.to_owned(),
            ));
        }
        // Its own bindings die with its router; the ones to it are removed from their sources.
        let outgoing = bindings.remove_from(name);
        self.forget_bindings(&outgoing);
        let incoming = bindings.remove_to(exchange.id);
        self.unbind_from_sources(bindings, &incoming);
    }

    /// Removes `removed` (already out of the table) from their sources' routers and the
    /// store, then deletes the auto-delete sources left without bindings.
    fn unbind_from_sources(&self, bindings: &mut BindingTable, removed: &[Binding]) {
        self.forget_bindings(removed);
        let mut sources: Vec<&str> = removed.iter().map(|b| b.source.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        for source in sources {
            let Some(exchange) = self.exchange(source) else {
                continue;
            };
            let keys: Vec<_> = removed
                .iter()
                .filter(|b| b.source == source)
                .map(Binding::router_key)
                .collect();
            exchange.remove_bindings(&keys);
            self.maybe_auto_delete(bindings, &exchange);
        }
    }

    fn maybe_auto_delete(&self, bindings: &mut BindingTable, exchange: &Arc<Exchange>) {
        if exchange.spec.auto_delete
            && !exchange.is_deleted()
            && !bindings.has_bindings_from(exchange.name())
        {
            self.delete_exchange_locked(bindings, exchange);
        }
    }

    /// `queue.declare`: the queue (existing or new).
    pub fn declare_queue(
        &self,
        connection: u64,
        d: &QueueDeclare<'_>,
    ) -> Result<Arc<Queue>, AmqpError> {
        self.declare_queue_checked(connection, d, |_, _| Ok(()))
    }

    /// `queue.declare` with a check made before anything changes: a non-passive declare calls
    /// `check` with the queue's name and whether it exists. The name is the generated one for
    /// a server-named queue, which is why the channel's permission check cannot be made
    /// before this call: RabbitMQ generates the name first and checks that.
    pub fn declare_queue_checked(
        &self,
        connection: u64,
        d: &QueueDeclare<'_>,
        check: impl FnOnce(&str, bool) -> Result<(), AmqpError>,
    ) -> Result<Arc<Queue>, AmqpError> {
        let declared = self.declare_queue_locked(connection, d, check);
        if declared.is_ok() {
            Churn::incr(&self.node.churn.queues_declared);
        }
        declared
    }

    fn declare_queue_locked(
        &self,
        connection: u64,
        d: &QueueDeclare<'_>,
        check: impl FnOnce(&str, bool) -> Result<(), AmqpError>,
    ) -> Result<Arc<Queue>, AmqpError> {
        let _catalogue = self.catalogue.lock();
        let vhost = &*self.name;
        if d.passive {
            let queue = self.usable_queue(connection, d.name)?;
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
        check(name, self.queue(name).is_some())?;
        // A redeclare is only compared with the queue (RabbitMQ validates arguments only when
        // it creates the queue).
        if let Some(existing) = self.queue(name) {
            existing.check_access(connection)?;
            let s = &existing.spec;
            if s.exclusive_owner.is_some() != d.exclusive {
                return Err(replies::queue_locked(vhost, name));
            }
            let flag = |flag: &str, received: bool, current: bool| {
                replies::inequivalent_flag("queue", vhost, name, flag, received, current)
            };
            if s.durable != d.durable {
                return Err(flag("durable", d.durable, s.durable));
            }
            if s.auto_delete != d.auto_delete {
                return Err(flag("auto_delete", d.auto_delete, s.auto_delete));
            }
            check_args_equivalence(
                "queue",
                vhost,
                name,
                QUEUE_EQUIVALENCE_ARGS,
                d.arguments,
                &s.arguments,
            )?;
            existing.touch();
            return Ok(existing);
        }
        if name.starts_with("amq.") && d.name == name {
            return Err(replies::reserved_name("queue", name));
        }
        let max_queues = self.max_queues.load(Ordering::Relaxed);
        if crate::broker::limits::reached(self.queues.read().len(), max_queues) {
            return Err(replies::queue_limit(vhost, name, max_queues));
        }
        let flags = DeclareFlags {
            durable: d.durable,
            exclusive: d.exclusive,
            auto_delete: d.auto_delete,
        };
        let QueueArguments {
            limits,
            single_active,
        } = QueueArguments::parse(vhost, name, flags, d.arguments)?;
        let spec = QueueSpec {
            name: name.to_owned(),
            durable: d.durable,
            exclusive_owner: d.exclusive.then_some(connection),
            auto_delete: d.auto_delete,
            arguments: d.arguments.clone(),
            single_active,
            limits,
        };
        if spec.durable && spec.exclusive_owner.is_none() {
            self.record(Definition::Queue(QueueDefinition {
                vhost: vhost.to_owned(),
                name: spec.name.clone(),
                auto_delete: spec.auto_delete,
                arguments: encode_args(d.arguments)?,
            }))?;
        }
        let queue = Queue::new(
            self.next_id(),
            spec,
            self.name.clone(),
            Some(self.stores.messages.clone()),
        );
        drivers::expiry::spawn(&queue, self.me.clone());
        self.queues.write().insert(name.to_owned(), queue.clone());
        Churn::incr(&self.node.churn.queues_created);
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
        let mut bindings = self.catalogue.lock();
        let Some(queue) = self.queue(name) else {
            return Ok(0);
        };
        queue.check_access(connection)?;
        let ((messages, consumers), deaths) = queue.counts();
        self.bury(&queue, deaths);
        if if_unused && consumers > 0 {
            return Err(replies::in_use("queue", &self.name, name));
        }
        if if_empty && messages > 0 {
            return Err(replies::queue_not_empty(&self.name, name));
        }
        Ok(self.delete_queue_locked(&mut bindings, &queue))
    }

    fn delete_queue_locked(&self, bindings: &mut BindingTable, queue: &Arc<Queue>) -> usize {
        {
            let mut queues = self.queues.write();
            if queues
                .get(queue.name())
                .is_some_and(|q| Arc::ptr_eq(q, queue))
            {
                queues.remove(queue.name());
            }
        }
        let (messages, consumers) = queue.mark_deleted();
        let counted = queue.stats().counters.snapshot();
        self.node.deleted_queues.absorb(&counted);
        self.retired.queues.absorb(&counted);
        Churn::incr(&self.node.churn.queues_deleted);
        if queue.is_stored() {
            self.forget(DefinitionKey::Queue(
                self.name.to_string(),
                queue.name().to_owned(),
            ));
        }
        if let Some(store) = queue.store()
            && let Err(e) = store.messages.forget_queue(&store.key)
        {
            tracing::error!(queue = queue.name(), "stored messages not forgotten: {e}");
        }
        let incoming = bindings.remove_to(queue.id);
        self.unbind_from_sources(bindings, &incoming);
        for consumer in consumers {
            consumer.cancelled_by_server();
        }
        messages
    }

    /// Deletes every queue and exchange, with what the stores hold of them (the vhost itself
    /// is being deleted). Its drivers stop as their objects go.
    pub fn delete_everything(&self) {
        let mut bindings = self.catalogue.lock();
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        for queue in queues {
            self.delete_queue_locked(&mut bindings, &queue);
        }
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for exchange in exchanges {
            if !exchange.is_deleted() {
                self.delete_exchange_locked(&mut bindings, &exchange);
            }
        }
    }

    /// Deletes a queue if it is still the one registered under its name (auto-delete,
    /// exclusive queues at connection close).
    pub fn delete_queue_now(&self, queue: &Arc<Queue>) {
        let mut bindings = self.catalogue.lock();
        if !queue.is_deleted() {
            self.delete_queue_locked(&mut bindings, queue);
        }
    }

    /// Deletes `queue` for its `x-expires` if it is still unused (its driver saw it idle;
    /// a consumer or a redeclare may have come in since). Its messages are not
    /// dead-lettered, as in RabbitMQ.
    pub(crate) fn expire_unused_queue(&self, queue: &Arc<Queue>) {
        let mut bindings = self.catalogue.lock();
        if !queue.is_deleted() && queue.is_unused_for_expires() {
            tracing::debug!(queue = queue.name(), "queue expired unused (x-expires)");
            self.delete_queue_locked(&mut bindings, queue);
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
        let mut bindings = self.catalogue.lock();
        let (destination, bound_to) = self.resolve_target(connection, target)?;
        if source.is_empty() {
            return Err(replies::default_exchange_refused());
        }
        let exchange = self.existing_exchange(source)?;
        let raw = encode_args(arguments)?;
        if bindings.contains(source, destination.id(), key, arguments) {
            return Ok(());
        }
        let destination_id = destination.id();
        let durable = exchange.spec.durable
            && match &destination {
                Destination::Queue(q) => q.is_stored(),
                Destination::Exchange(x) => x.spec.durable,
            };
        exchange.add_binding(destination, key, &raw)?;
        let binding = Binding {
            source: source.to_owned(),
            destination: bound_to,
            destination_id,
            key: key.to_owned(),
            arguments: arguments.clone(),
            raw_arguments: raw,
            durable,
        };
        if durable
            && let Err(e) = self.record(Definition::Binding(self.binding_definition(&binding)))
        {
            exchange.remove_bindings(&[binding.router_key()]);
            return Err(e);
        }
        bindings.insert(binding);
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
        let mut bindings = self.catalogue.lock();
        if source.is_empty() {
            return Err(replies::default_exchange_refused());
        }
        // Like RabbitMQ 3.x, unbinding something that does not exist succeeds.
        let destination = match self.resolve_target(connection, target) {
            Ok((destination, _)) => destination,
            Err(e) if e.code == ReplyCode::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(removed) = bindings.remove(source, destination.id(), key, arguments) {
            self.unbind_from_sources(&mut bindings, &[removed]);
        }
        Ok(())
    }

    fn resolve_target(
        &self,
        connection: u64,
        target: BindTarget<'_>,
    ) -> Result<(Destination, BoundTo), AmqpError> {
        match target {
            BindTarget::Queue(name) => {
                let queue = self.usable_queue(connection, name)?;
                Ok((Destination::Queue(queue), BoundTo::Queue(name.to_owned())))
            }
            BindTarget::Exchange(name) => {
                if name.is_empty() {
                    return Err(replies::default_exchange_refused());
                }
                let exchange = self.existing_exchange(name)?;
                Ok((
                    Destination::Exchange(exchange),
                    BoundTo::Exchange(name.to_owned()),
                ))
            }
        }
    }
}

fn encode_args(arguments: &FieldTable) -> Result<bytes::Bytes, AmqpError> {
    encode_table_body(arguments)
        .map_err(|e| AmqpError::precondition_failed(format!("invalid arguments: {e}")))
}

#[cfg(test)]
mod tests;
