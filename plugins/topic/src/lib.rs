//! The `topic` exchange type: binding keys are patterns of `.`-separated words in which `*`
//! matches exactly one word and `#` zero or more, with RabbitMQ's semantics (see [`words`]
//! for the corner cases).
//!
//! Routing walks a trie of the patterns ([`trie`]). The trie stores patterns in a canonical
//! form (`#.#` is `#`), so two spellings can share a route; the exchange therefore counts
//! bindings per (destination, key as the client spelt it), and only adds to or removes from
//! the trie when the first or last binding of a spelling comes or goes. Removing a binding
//! that was never added, in any spelling, changes nothing.

mod trie;
mod words;

use rustc_hash::FxHashMap;
use trie::Trie;
use warren_plugin_api::{
    Binding, DestinationId, Destinations, ExchangeType, FieldTable, Message, PluginError,
};

/// State of one topic exchange.
#[derive(Debug, Default)]
pub struct TopicExchange {
    trie: Trie,
    /// Bindings per (destination, key as given): several when they differ only in arguments.
    bindings: FxHashMap<(DestinationId, Box<[u8]>), u32>,
}

impl ExchangeType for TopicExchange {
    const NAME: &'static str = "topic";
    const DESCRIPTION: &'static str = "AMQP topic exchange, as per the AMQP specification";

    fn create(_exchange: &str, _arguments: &FieldTable<'_>) -> Result<Self, PluginError> {
        Ok(TopicExchange::default())
    }

    fn add_binding(&mut self, binding: &Binding) -> Result<(), PluginError> {
        let (key, destination) = (binding.key(), binding.destination());
        let count = self.bindings.entry((destination, key.into())).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.trie.insert(key, destination);
        }
        Ok(())
    }

    fn remove_bindings(&mut self, bindings: &[Binding]) -> Result<(), PluginError> {
        for binding in bindings {
            let (key, destination) = (binding.key(), binding.destination());
            let id = (destination, Box::from(key));
            let Some(count) = self.bindings.get_mut(&id) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.bindings.remove(&id);
                self.trie.remove(key, destination);
            }
        }
        if self.bindings.len() * 4 < self.bindings.capacity() {
            self.bindings.shrink_to_fit();
        }
        Ok(())
    }

    fn route(
        &self,
        message: &Message,
        destinations: &mut Destinations<'_>,
    ) -> Result<(), PluginError> {
        for key in message.routing_keys() {
            self.trie.route(key, destinations);
        }
        Ok(())
    }
}

warren_plugin_api::export_exchange_types! {
    name: "warren-topic",
    version: env!("CARGO_PKG_VERSION"),
    types: [TopicExchange],
}

#[cfg(test)]
mod tests;
