//! An exchange: its declared properties, its plugin router and the bindings the broker owns.
//!
//! The plugin decides *which* destination ids a message goes to; the broker keeps the
//! bindings themselves (destination, key, arguments) and the map from id to queue or
//! exchange, inside the same `RwLock` as the router. Publishing takes that lock for reading
//! only, once per exchange traversed, and resolves ids while holding it; binding changes take
//! it for writing. No lock is shared between exchanges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use super::delayed::Delayed;
use super::queue::{IncomingBinding, Queue};
use crate::error::AmqpError;
use crate::exchange::{ExchangeRouter, RouteRequest};

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

/// One binding with this exchange as source.
#[derive(Clone, Debug)]
pub struct Binding {
    /// Destination id.
    pub destination: u64,
    /// Binding key.
    pub key: String,
    /// Arguments (normalised: re-encoded from the decoded table, keys sorted).
    pub arguments: FieldTable,
    /// The same arguments as the plugin sees them.
    pub raw_arguments: Bytes,
}

#[derive(Debug)]
struct Inner {
    router: ExchangeRouter,
    bindings: Vec<Binding>,
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
    /// Bindings where this exchange is the destination.
    incoming: Mutex<Vec<IncomingBinding>>,
    /// Pending messages, for an `x-delayed-message` exchange.
    delayed: Option<Arc<Delayed>>,
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
        Arc::new(Exchange {
            id,
            spec,
            deleted: AtomicBool::new(false),
            inner: RwLock::new(Inner {
                router,
                bindings: Vec::new(),
                destinations: FxHashMap::default(),
            }),
            incoming: Mutex::new(Vec::new()),
            delayed,
        })
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

    /// Asks the plugin about redeclare arguments.
    pub fn assert_args_equivalence(&self, raw: &[u8]) -> Result<(), AmqpError> {
        self.inner.read().router.assert_args_equivalence(raw)
    }

    /// Routes through the plugin, resolving ids into destinations (appended to `out`).
    pub fn route(
        &self,
        request: &RouteRequest<'_>,
        ids: &mut Vec<u64>,
        out: &mut Vec<Destination>,
    ) -> Result<(), AmqpError> {
        let inner = self.inner.read();
        inner.router.route(request, ids)?;
        for id in ids.iter() {
            if let Some((dest, _)) = inner.destinations.get(id) {
                out.push(dest.clone());
            }
        }
        Ok(())
    }

    /// Whether any binding has this exchange as source.
    pub fn has_bindings(&self) -> bool {
        !self.inner.read().bindings.is_empty()
    }

    /// Whether any binding has this exchange as destination.
    pub fn has_incoming(&self) -> bool {
        !self.incoming.lock().is_empty()
    }

    /// Adds a binding (idempotent: an identical one is not added twice).
    pub fn add_binding(
        &self,
        destination: Destination,
        binding: Binding,
    ) -> Result<bool, AmqpError> {
        let mut inner = self.inner.write();
        if inner.bindings.iter().any(|b| {
            b.destination == binding.destination
                && b.key == binding.key
                && b.arguments == binding.arguments
        }) {
            return Ok(false);
        }
        inner.router.validate_binding(
            binding.destination,
            binding.key.as_bytes(),
            &binding.raw_arguments,
        )?;
        inner.router.add_binding(
            binding.destination,
            binding.key.as_bytes(),
            &binding.raw_arguments,
        )?;
        inner
            .destinations
            .entry(binding.destination)
            .or_insert((destination, 0))
            .1 += 1;
        inner.bindings.push(binding);
        Ok(true)
    }

    /// Removes bindings matching `keep == false`; returns them.
    pub fn remove_bindings(&self, mut matches: impl FnMut(&Binding) -> bool) -> Vec<Binding> {
        let mut inner = self.inner.write();
        let (removed, kept): (Vec<Binding>, Vec<Binding>) = std::mem::take(&mut inner.bindings)
            .into_iter()
            .partition(|b| matches(b));
        inner.bindings = kept;
        if removed.is_empty() {
            return removed;
        }
        if let Err(e) = inner.router.remove_bindings(
            removed
                .iter()
                .map(|b| (b.destination, b.key.as_bytes(), &b.raw_arguments[..])),
        ) {
            tracing::error!(exchange = %self.spec.name, "plugin failed to remove bindings: {e}");
        }
        for b in &removed {
            if let Some(entry) = inner.destinations.get_mut(&b.destination) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    inner.destinations.remove(&b.destination);
                }
            }
        }
        removed
    }

    /// Every destination currently bound (for deletion bookkeeping).
    pub fn destinations(&self) -> Vec<Destination> {
        self.inner
            .read()
            .destinations
            .values()
            .map(|(d, _)| d.clone())
            .collect()
    }

    pub(crate) fn add_incoming(&self, binding: IncomingBinding) {
        self.incoming.lock().push(binding);
    }

    pub(crate) fn remove_incoming(&self, source: &str, key: &str, arguments: &FieldTable) {
        self.incoming
            .lock()
            .retain(|b| !(b.exchange == source && b.key == key && &b.arguments == arguments));
    }

    pub(crate) fn remove_incoming_from(&self, source: &str) {
        self.incoming.lock().retain(|b| b.exchange != source);
    }

    pub(crate) fn take_incoming(&self) -> Vec<IncomingBinding> {
        std::mem::take(&mut *self.incoming.lock())
    }
}
