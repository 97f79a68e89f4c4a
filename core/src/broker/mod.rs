//! The broker's state and the operations AMQP methods perform on it.
//!
//! - [`Broker`] (this file): the process-level node — the exchange-type registry, the
//!   stores ([`crate::store`]), the vhosts by name, users and permissions
//!   ([`crate::auth::Auth`]) and the open connections ([`connections`]).
//! - [`connections`]: every open connection, to list and to close from outside.
//! - [`vhost`]: one virtual host — its exchanges, queues and binding table, the catalogue
//!   operations (declare, delete, bind), and routing across exchanges.
//! - [`publish`]: the one publish path every message enters queues through.
//! - [`routing_keys`]: the keys a message is routed with (its key, `CC`, `BCC`).
//! - [`exchange`]: one exchange — plugin router, destinations.
//! - [`queue`]: one queue — ready messages by priority, consumers and the channel side of
//!   deliveries, TTL, length limits, `x-expires`, and its argument rules.
//! - [`dead_letter`]: what a dead message becomes (`x-death`, the cycle rule).
//! - [`delayed`]: the `x-delayed-message` type — held messages and their timer wheel.
//! - [`drivers`]: the tasks that act when time passes (queue expiry, delayed firing).
//! - [`sampler`]: the task that samples every object's counters for rates.
//! - [`recovery`]: start-up — what the stores kept, read and put back.
//! - [`replies`]: every reply text, in RabbitMQ's words.
//! - [`message`], [`args`] (argument equivalence), [`names`] (generated names).
//!
//! Dependencies point down: vhost → publish → {exchange, queue, delayed, dead_letter} →
//! message. A queue never calls up: it returns what happened (deaths, "unused now") and its
//! caller acts on it.
//!
//! Lock order (never taken in the other direction):
//! vhost catalogue (with its binding table) → exchange router (`RwLock`) → queue state →
//! channel delivery state → outbox; a delayed exchange's wheel mutex is a leaf (never held
//! while routing). A queue's lock is never held while dead-lettering (which routes and locks
//! other queues, or the same one): what dies under it is handed back and dead-lettered after
//! it is released. The publish path takes no catalogue lock: it reads an exchange's
//! `RwLock` (shared), then locks each destination queue in turn, one at a time.

pub mod args;
pub mod connections;
pub mod dead_letter;
pub mod delayed;
pub mod drivers;
pub mod exchange;
pub mod limits;
pub mod message;
pub mod names;
pub(crate) mod packed;
pub mod publish;
pub mod queue;
pub mod recovery;
pub mod replies;
pub mod routing_keys;
pub mod sampler;
pub mod vhost;

use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::alarm::Alarms;
use crate::auth::Auth;
use crate::error::AmqpError;
use crate::plugin::ExchangeTypeRegistry;
use crate::store::{Definition, DefinitionKey, Stores, SyncMark, VHostDefinition};
pub use connections::Connections;
pub use delayed::{Delayed, PendingInfo, PendingQuery};
pub use exchange::{Exchange, ExchangeSpec};
pub use message::Message;
pub use publish::{Confirm, Durably, Origin, Outcome, Publish, PublishScratch, Routed};
pub use queue::{
    Consumer, Dead, Deaths, DeliveryChannel, DeliverySink, Enqueued, Queue, QueueSpec, Queued,
    Unacked,
};
pub use routing_keys::RoutingKeys;
pub use vhost::{RouteScratch, VHost};

/// The vhost every broker starts with.
pub const DEFAULT_VHOST: &str = "/";

/// A vhost and what an operator said about it.
#[derive(Debug)]
struct VHostEntry {
    vhost: Arc<VHost>,
    definition: VHostDefinition,
}

/// The broker node: what is shared by every vhost, and the vhosts themselves.
#[derive(Debug)]
pub struct Broker {
    registry: Arc<ExchangeTypeRegistry>,
    /// What vhosts record; each vhost gets its definition store.
    stores: Stores,
    vhosts: RwLock<FxHashMap<String, VHostEntry>>,
    /// Resource alarms (free disk space), which block publishing connections.
    alarms: Arc<Alarms>,
    /// Users and permissions.
    auth: Auth,
    /// Open connections.
    connections: Arc<Connections>,
    /// Resource limits (connections, queues, consumers); set at start.
    limits: parking_lot::RwLock<limits::Limits>,
    /// Message statistics beyond the live objects' own counters (shared with the vhosts
    /// and the connection list, which fold into it what deleted and closed objects counted).
    stats: Arc<crate::stats::NodeStats>,
}

impl Broker {
    /// A broker with the default vhost `/`, routing through `registry`'s exchange types,
    /// keeping what must survive a restart in memory. Call inside a tokio runtime (the
    /// vhost's timers run on it).
    pub fn new(registry: ExchangeTypeRegistry) -> Result<Arc<Broker>, AmqpError> {
        Broker::with_stores(registry, Stores::memory())
    }

    /// A broker over `stores`, with the vhost `/` (not recorded).
    pub fn with_stores(
        registry: ExchangeTypeRegistry,
        stores: Stores,
    ) -> Result<Arc<Broker>, AmqpError> {
        let broker = Broker::with_loopback_users(registry, stores, vec!["guest".to_owned()])?;
        broker.add_vhost(DEFAULT_VHOST)?;
        Ok(broker)
    }

    /// A broker over `stores` whose `loopback_users` may only connect from loopback
    /// addresses, with no vhost and no user yet (start-up restores them, or makes the
    /// defaults on a first start).
    pub fn with_loopback_users(
        registry: ExchangeTypeRegistry,
        stores: Stores,
        loopback_users: Vec<String>,
    ) -> Result<Arc<Broker>, AmqpError> {
        Broker::with_stats_interval(
            registry,
            stores,
            loopback_users,
            crate::stats::DEFAULT_INTERVAL,
        )
    }

    /// [`Broker::with_loopback_users`] whose statistics are sampled every `interval` (the
    /// history kept for the overview's charts is sized for it).
    pub fn with_stats_interval(
        registry: ExchangeTypeRegistry,
        stores: Stores,
        loopback_users: Vec<String>,
        interval: std::time::Duration,
    ) -> Result<Arc<Broker>, AmqpError> {
        let stats = Arc::new(crate::stats::NodeStats::new(interval));
        let broker = Broker {
            registry: Arc::new(registry),
            auth: Auth::new(stores.definitions.clone(), loopback_users),
            stores,
            vhosts: RwLock::new(FxHashMap::default()),
            alarms: Arc::default(),
            connections: Arc::new(Connections::with_stats(stats.clone())),
            limits: parking_lot::RwLock::default(),
            stats,
        };
        Ok(Arc::new(broker))
    }

    /// The node's statistics (retired totals, lateness, churn, sampled history).
    pub fn stats(&self) -> &crate::stats::NodeStats {
        &self.stats
    }

    /// The node's message totals now: each kind summed from its [`crate::stats::Source`]
    /// (live channels, queues, exchanges and delayed exchanges, plus what closed and deleted
    /// ones had counted), so no event is counted twice and no total goes down.
    pub fn message_totals(&self) -> crate::stats::Snapshot {
        use crate::stats::Source;
        let mut totals = self
            .connections
            .channel_totals(None)
            .from_source(Source::Channel);
        totals.add(
            &self
                .stats
                .deleted_queues
                .snapshot()
                .from_source(Source::Queue),
        );
        totals.add(
            &self
                .stats
                .deleted_exchanges
                .snapshot()
                .from_source(Source::Exchange),
        );
        for name in self.vhost_names() {
            if let Some(vhost) = self.vhost(&name) {
                totals.add(&vhost.live_totals());
            }
        }
        totals
    }

    /// The node's resource limits.
    pub fn limits(&self) -> limits::Limits {
        *self.limits.read()
    }

    /// Sets the node's resource limits (at start, before clients connect); vhosts that
    /// exist already take the new queue limit too.
    pub fn set_limits(&self, limits: limits::Limits) {
        *self.limits.write() = limits;
        for entry in self.vhosts.read().values() {
            entry.vhost.set_max_queues(limits.max_queues_per_vhost);
        }
    }

    /// Users and permissions.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Open connections.
    pub fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// The resource alarms.
    pub fn alarms(&self) -> &Arc<Alarms> {
        &self.alarms
    }

    /// The stores every vhost writes to.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The exchange types every vhost routes through.
    pub fn registry(&self) -> &ExchangeTypeRegistry {
        &self.registry
    }

    /// The vhost named `name`.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).map(|e| e.vhost.clone())
    }

    /// What an operator said about vhost `name` (its description and tags).
    pub fn vhost_definition(&self, name: &str) -> Option<VHostDefinition> {
        self.vhosts.read().get(name).map(|e| e.definition.clone())
    }

    /// The names of every vhost, sorted.
    pub fn vhost_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.vhosts.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Creates vhost `name` (with its predeclared exchanges) unless it exists, without
    /// recording it; returns it. Start-up and embedders use it; an operator's vhost is made
    /// with [`Broker::create_vhost`].
    pub fn add_vhost(&self, name: &str) -> Result<Arc<VHost>, AmqpError> {
        self.add_vhost_as(VHostDefinition {
            name: name.to_owned(),
            description: String::new(),
            tags: Vec::new(),
        })
    }

    fn add_vhost_as(&self, definition: VHostDefinition) -> Result<Arc<VHost>, AmqpError> {
        if let Some(existing) = self.vhosts.write().get_mut(&definition.name) {
            existing.definition = definition;
            return Ok(existing.vhost.clone());
        }
        let vhost = VHost::new(
            &definition.name,
            self.registry.clone(),
            self.stores.clone(),
            self.stats.clone(),
        )?;
        vhost.set_max_queues(self.limits().max_queues_per_vhost);
        Ok(self
            .vhosts
            .write()
            .entry(definition.name.clone())
            .or_insert(VHostEntry { vhost, definition })
            .vhost
            .clone())
    }

    /// Creates vhost `definition.name` (or updates its description and tags) and records
    /// it; durable at the mark.
    pub fn create_vhost(
        &self,
        definition: VHostDefinition,
    ) -> Result<(Arc<VHost>, SyncMark), AmqpError> {
        let mark = self
            .stores
            .definitions
            .put(Definition::VHost(definition.clone()))
            .map_err(|e| AmqpError::internal(format!("vhost not recorded: {e}")))?;
        Ok((self.add_vhost_as(definition)?, mark))
    }

    /// Deletes vhost `name`: its connections are closed with 320, its exchanges, queues
    /// (with their messages), bindings and permissions removed. `None` if there is no such
    /// vhost; otherwise durable at the mark.
    pub fn delete_vhost(&self, name: &str) -> Result<Option<SyncMark>, AmqpError> {
        let Some(entry) = self.vhosts.write().remove(name) else {
            return Ok(None);
        };
        self.connections
            .close_where(|h| h.vhost == name, &format!("vhost '{name}' is deleted"));
        entry.vhost.delete_everything();
        self.connections.forget_vhost(name);
        let internal = |e: &dyn std::fmt::Display| {
            AmqpError::internal(format!("vhost '{name}' not fully deleted: {e}"))
        };
        let mut mark = self.auth.forget_vhost(name).map_err(|e| internal(&e))?;
        mark = mark.max(
            self.stores
                .definitions
                .delete(&DefinitionKey::VHost(name.to_owned()))
                .map_err(|e| internal(&e))?,
        );
        Ok(Some(mark.max(entry.vhost.definitions_written())))
    }
}
