//! An exchange: its declared properties, its plugin router, and the map from the destination
//! ids the router answers with to the queues and exchanges they name.
//!
//! The plugin decides *which* destination ids a message goes to; the vhost's binding table
//! (`vhost::bindings`) is the record of the bindings themselves (source, destination, key,
//! arguments). What routing needs — the router and the id map — sits behind one `RwLock`:
//! publishing takes it for reading only, once per exchange traversed, and resolves ids while
//! holding it; binding changes take it for writing. No lock is shared between exchanges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use amq_protocol::types::FieldTable;
use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use super::delayed::Delayed;
use super::queue::Queue;
use crate::error::AmqpError;
use crate::plugin::{ExchangeRouter, RouteRequest};

/// Declared properties of an exchange.
#[derive(Clone, Debug)]
pub struct ExchangeSpec {
    /// Name (`""` is the default exchange).
    pub name: String,
    /// Type name.
    pub kind: String,
    /// Durable (remembered only).
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Cannot be published to directly.
    pub internal: bool,
    /// Declare arguments.
    pub arguments: FieldTable,
    /// `alternate-exchange` argument.
    pub alternate: Option<String>,
}

/// Where a binding leads.
#[derive(Clone, Debug)]
pub enum Destination {
    /// A queue.
    Queue(Arc<Queue>),
    /// Another exchange (exchange-to-exchange binding).
    Exchange(Arc<Exchange>),
}

impl Destination {
    /// The destination's id.
    pub fn id(&self) -> u64 {
        match self {
            Destination::Queue(q) => q.id,
            Destination::Exchange(e) => e.id,
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// `None` for a stored exchange whose type is not loaded (see [`Exchange::unavailable`]).
    router: Option<ExchangeRouter>,
    /// Destination and how many bindings lead to it.
    destinations: FxHashMap<u64, (Destination, usize)>,
}

/// An exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Destination id, for exchange-to-exchange bindings.
    pub id: u64,
    /// Declared properties.
    pub spec: ExchangeSpec,
    deleted: AtomicBool,
    inner: RwLock<Inner>,
    /// Pending messages, for an `x-delayed-message` exchange.
    delayed: Option<Arc<Delayed>>,
    /// Messages in and out.
    stats: crate::stats::Stats,
}

impl Exchange {
    /// A new exchange around its plugin state (for a delayed exchange, the inner type's) and,
    /// for a delayed exchange, its pending messages.
    pub fn new(
        id: u64,
        spec: ExchangeSpec,
        router: ExchangeRouter,
        delayed: Option<Arc<Delayed>>,
    ) -> Arc<Exchange> {
        Self::with_router(id, spec, Some(router), delayed)
    }

    /// A stored exchange whose type (or, for a delayed exchange, inner type) is not loaded
    /// at start: it stays defined — listed, compared on redeclare, its bindings kept — and
    /// refuses publishes and new bindings with a clear error until the plugin is back.
    pub fn unavailable(id: u64, spec: ExchangeSpec) -> Arc<Exchange> {
        Self::with_router(id, spec, None, None)
    }

    fn with_router(
        id: u64,
        spec: ExchangeSpec,
        router: Option<ExchangeRouter>,
        delayed: Option<Arc<Delayed>>,
    ) -> Arc<Exchange> {
        Arc::new(Exchange {
            id,
            spec,
            deleted: AtomicBool::new(false),
            inner: RwLock::new(Inner {
                router,
                destinations: FxHashMap::default(),
            }),
            delayed,
            stats: crate::stats::Stats::default(),
        })
    }

    /// What the exchange counted (`publish_in`, `publish_out`; a delayed exchange's held,
    /// fired and cancelled are on its [`Delayed`]).
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.stats
    }

    /// The pending messages of an `x-delayed-message` exchange; `None` for other types.
    pub fn delayed(&self) -> Option<&Arc<Delayed>> {
        self.delayed.as_ref()
    }

    /// The exchange's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether this is the default exchange.
    pub fn is_default(&self) -> bool {
        self.spec.name.is_empty()
    }

    /// Whether it was deleted (handles to it are stale).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        if let Some(delayed) = &self.delayed {
            delayed.stop();
        }
    }

    /// Whether its type is not loaded (see [`Exchange::unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        self.inner.read().router.is_none()
    }

    /// The 406 an unavailable exchange answers with.
    fn not_loaded(&self) -> AmqpError {
        let kind = match (&self.spec.kind[..], &self.spec.arguments) {
            (super::delayed::DELAYED_TYPE, args) => {
                super::args::text_arg(args, super::delayed::DELAYED_TYPE_ARG)
                    .unwrap_or("?")
                    .to_owned()
            }
            (kind, _) => kind.to_owned(),
        };
        AmqpError::precondition_failed(format!(
            "exchange '{}' has type '{kind}', which is not loaded (its plugin is missing); it \
             accepts no messages or bindings until the broker starts with that plugin",
            self.spec.name
        ))
    }

    /// Asks the plugin about redeclare arguments (nothing to ask without one).
    pub fn assert_args_equivalence(&self, raw: &[u8]) -> Result<(), AmqpError> {
        match &self.inner.read().router {
            Some(router) => router.assert_args_equivalence(raw),
            None => Ok(()),
        }
    }

    /// Routes through the plugin, resolving ids into destinations (appended to `out`).
    pub fn route(
        &self,
        request: &RouteRequest<'_>,
        ids: &mut Vec<u64>,
        out: &mut Vec<Destination>,
    ) -> Result<(), AmqpError> {
        let inner = self.inner.read();
        let Some(router) = &inner.router else {
            return Err(self.not_loaded());
        };
        router.route(request, ids)?;
        for id in ids.iter() {
            if let Some((dest, _)) = inner.destinations.get(id) {
                out.push(dest.clone());
            }
        }
        Ok(())
    }

    /// Adds a binding to the router (the vhost's table checked it is new), after the plugin
    /// validated it.
    pub fn add_binding(
        &self,
        destination: Destination,
        key: &str,
        raw_arguments: &[u8],
    ) -> Result<(), AmqpError> {
        let id = destination.id();
        let mut inner = self.inner.write();
        let Some(router) = &mut inner.router else {
            return Err(self.not_loaded());
        };
        router.validate_binding(id, key.as_bytes(), raw_arguments)?;
        router.add_binding(id, key.as_bytes(), raw_arguments)?;
        inner.destinations.entry(id).or_insert((destination, 0)).1 += 1;
        Ok(())
    }

    /// Removes bindings from the router: `(destination id, key, raw arguments)` each.
    pub fn remove_bindings<'a>(&self, removed: &[(u64, &'a [u8], &'a [u8])]) {
        if removed.is_empty() {
            return;
        }
        let mut inner = self.inner.write();
        if let Some(router) = &mut inner.router
            && let Err(e) = router.remove_bindings(removed.iter().copied())
        {
            tracing::error!(exchange = %self.spec.name, "plugin failed to remove bindings: {e}");
        }
        for (id, _, _) in removed {
            if let Some(entry) = inner.destinations.get_mut(id) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    inner.destinations.remove(id);
                }
            }
        }
    }
}
