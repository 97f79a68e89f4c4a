//! The broker's state and the operations AMQP methods perform on it.
//!
//! - [`Broker`] (this file): the process-level node — the exchange-type registry, the
//!   stores ([`crate::store`]), the vhosts by name, and later users and permissions.
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
pub mod dead_letter;
pub mod delayed;
pub mod drivers;
pub mod exchange;
pub mod message;
pub mod names;
pub mod publish;
pub mod queue;
pub mod recovery;
pub mod replies;
pub mod routing_keys;
pub mod vhost;

use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::alarm::Alarms;
use crate::error::AmqpError;
use crate::plugin::ExchangeTypeRegistry;
use crate::store::Stores;
pub use delayed::{Delayed, PendingInfo};
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

/// The broker node: what is shared by every vhost, and the vhosts themselves.
#[derive(Debug)]
pub struct Broker {
    registry: Arc<ExchangeTypeRegistry>,
    /// What vhosts record; each vhost gets its definition store.
    stores: Stores,
    vhosts: RwLock<FxHashMap<String, Arc<VHost>>>,
    /// Resource alarms (free disk space), which block publishing connections.
    alarms: Arc<Alarms>,
}

impl Broker {
    /// A broker with the default vhost `/`, routing through `registry`'s exchange types,
    /// keeping what must survive a restart in memory. Call inside a tokio runtime (the
    /// vhost's timers run on it).
    pub fn new(registry: ExchangeTypeRegistry) -> Result<Arc<Broker>, AmqpError> {
        Broker::with_stores(registry, Stores::memory())
    }

    /// A broker over `stores`.
    pub fn with_stores(
        registry: ExchangeTypeRegistry,
        stores: Stores,
    ) -> Result<Arc<Broker>, AmqpError> {
        let broker = Broker {
            registry: Arc::new(registry),
            stores,
            vhosts: RwLock::new(FxHashMap::default()),
            alarms: Arc::default(),
        };
        broker.add_vhost(DEFAULT_VHOST)?;
        Ok(Arc::new(broker))
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
        self.vhosts.read().get(name).cloned()
    }

    /// The names of every vhost, sorted.
    pub fn vhost_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.vhosts.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Creates vhost `name` (with its predeclared exchanges) unless it exists; returns it.
    pub fn add_vhost(&self, name: &str) -> Result<Arc<VHost>, AmqpError> {
        if let Some(existing) = self.vhost(name) {
            return Ok(existing);
        }
        let vhost = VHost::new(name, self.registry.clone(), self.stores.clone())?;
        Ok(self
            .vhosts
            .write()
            .entry(name.to_owned())
            .or_insert(vhost)
            .clone())
    }
}
