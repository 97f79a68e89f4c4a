//! Re-creating a vhost's stored objects at start, from what the stores kept: durable
//! exchanges (replaying each binding into its plugin as a `queue.bind` would), durable
//! queues with their messages, and the held messages of durable delayed exchanges.
//!
//! Nothing here writes to a store: the definitions are already there. Restoring follows the
//! declare paths' rules (argument parsing, the inner type of a delayed exchange) but never
//! refuses what was stored: an exchange whose type is not loaded now is kept as
//! [`Exchange::unavailable`], a binding that its plugin refuses now is logged and kept in the
//! store, so a later start with the plugin back finds everything.

use std::sync::Arc;

use super::{Binding, BoundTo, VHost};
use crate::broker::args::text_arg;
use crate::broker::delayed::{self, DELAYED_TYPE};
use crate::broker::drivers;
use crate::broker::exchange::{Destination, Exchange, ExchangeSpec};
use crate::broker::queue::arguments::DeclareFlags;
use crate::broker::queue::{Queue, QueueArguments, QueueSpec};
use crate::error::AmqpError;
use crate::protocol::decode_table_body;
use crate::store::{
    BindingDefinition, DestinationKind, ExchangeDefinition, HeldRecord, QueueDefinition, Recovered,
};

impl VHost {
    /// Re-creates a stored exchange, with its held messages if it is a delayed one. One
    /// that exists already (the predeclared `amq.*`) is left as it is.
    pub fn restore_exchange(
        &self,
        d: &ExchangeDefinition,
        held: Vec<HeldRecord>,
    ) -> Result<(), AmqpError> {
        let _catalogue = self.catalogue.lock();
        if self.exchange(&d.name).is_some() {
            return Ok(());
        }
        let arguments = decode_table_body(&d.arguments).map_err(|e| {
            AmqpError::internal(format!("stored arguments of exchange '{}': {e}", d.name))
        })?;
        let spec = ExchangeSpec {
            name: d.name.clone(),
            kind: d.kind.clone(),
            durable: true,
            auto_delete: d.auto_delete,
            internal: d.internal,
            alternate: text_arg(&arguments, "alternate-exchange").map(str::to_owned),
            arguments,
        };
        let loaded = if spec.kind == DELAYED_TYPE {
            delayed::inner_type(&spec.arguments, &self.registry).is_ok()
        } else {
            self.registry.get(&spec.kind).is_some()
        };
        if !loaded {
            tracing::warn!(
                vhost = %self.name,
                exchange = %d.name,
                kind = %d.kind,
                held = held.len(),
                "stored exchange's type is not loaded: it stays defined and refuses publishes \
                 until the broker starts with its plugin"
            );
            let exchange = Exchange::unavailable(self.next_id(), spec);
            self.exchanges.write().insert(d.name.clone(), exchange);
            return Ok(());
        }
        self.create_exchange(spec, &d.arguments)?;
        if let Some(delayed) = self.exchange(&d.name).and_then(|x| x.delayed().cloned()) {
            for record in held {
                delayed.restore(record);
            }
        }
        Ok(())
    }

    /// Re-creates a stored queue and puts its stored messages back, in order.
    pub fn restore_queue(
        &self,
        d: &QueueDefinition,
        messages: Vec<Recovered>,
    ) -> Result<Arc<Queue>, AmqpError> {
        let _catalogue = self.catalogue.lock();
        let arguments = decode_table_body(&d.arguments).map_err(|e| {
            AmqpError::internal(format!("stored arguments of queue '{}': {e}", d.name))
        })?;
        let flags = DeclareFlags {
            durable: true,
            exclusive: false,
            auto_delete: d.auto_delete,
        };
        let QueueArguments {
            limits,
            single_active,
        } = QueueArguments::parse(&self.name, &d.name, flags, &arguments)?;
        let spec = QueueSpec {
            name: d.name.clone(),
            durable: true,
            exclusive_owner: None,
            auto_delete: d.auto_delete,
            arguments,
            single_active,
            limits,
        };
        let queue = Queue::new(
            self.next_id(),
            spec,
            self.name.clone(),
            Some(self.stores.messages.clone()),
        );
        queue.restore(messages);
        drivers::expiry::spawn(&queue, self.me.clone());
        self.queues.write().insert(d.name.clone(), queue.clone());
        Ok(queue)
    }

    /// Re-creates a stored binding, replaying it into its source's plugin. A binding whose
    /// source or destination is gone is skipped (it is forgotten from the store); one from
    /// an unavailable exchange is kept in the table only.
    pub fn restore_binding(&self, d: &BindingDefinition) -> Result<(), AmqpError> {
        let mut bindings = self.catalogue.lock();
        let Some(source) = self.exchange(&d.source) else {
            return Err(AmqpError::internal(format!(
                "stored binding from missing exchange '{}'",
                d.source
            )));
        };
        let (destination, bound_to) = match d.destination_kind {
            DestinationKind::Queue => match self.queue(&d.destination) {
                Some(q) => (Destination::Queue(q), BoundTo::Queue(d.destination.clone())),
                None => {
                    return Err(AmqpError::internal(format!(
                        "stored binding to missing queue '{}'",
                        d.destination
                    )));
                }
            },
            DestinationKind::Exchange => match self.exchange(&d.destination) {
                Some(x) => (
                    Destination::Exchange(x),
                    BoundTo::Exchange(d.destination.clone()),
                ),
                None => {
                    return Err(AmqpError::internal(format!(
                        "stored binding to missing exchange '{}'",
                        d.destination
                    )));
                }
            },
        };
        let arguments = decode_table_body(&d.arguments)
            .map_err(|e| AmqpError::internal(format!("stored binding arguments: {e}")))?;
        if bindings.contains(&d.source, destination.id(), &d.key, &arguments) {
            return Ok(());
        }
        let destination_id = destination.id();
        if !source.is_unavailable() {
            source.add_binding(destination, &d.key, &d.arguments)?;
        }
        bindings.insert(Binding {
            source: d.source.clone(),
            destination: bound_to,
            destination_id,
            key: d.key.clone(),
            raw_arguments: d.arguments.clone(),
            arguments,
            durable: true,
        });
        Ok(())
    }
}
