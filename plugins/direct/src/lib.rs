//! The `direct` exchange type: a message goes to every destination bound with a key byte-equal
//! to one of its routing keys.
//!
//! The index is one hash map from key to [`DestinationSet`], keyed by `Box<[u8]>` so that
//! `route` looks a routing key up as the borrowed `&[u8]` it arrives as, without allocating.
//! Bindings that differ only in their arguments share a route; the set counts them, so
//! removing one leaves the route to the others.

use rustc_hash::FxHashMap;
use warren_plugin_api::DestinationSet;
use warren_plugin_api::{Binding, Destinations, ExchangeType, FieldTable, Message, PluginError};

/// State of one direct exchange.
#[derive(Debug, Default)]
pub struct DirectExchange {
    routes: FxHashMap<Box<[u8]>, DestinationSet>,
}

impl ExchangeType for DirectExchange {
    const NAME: &'static str = "direct";
    const DESCRIPTION: &'static str = "AMQP direct exchange, as per the AMQP specification";

    fn create(_exchange: &str, _arguments: &FieldTable<'_>) -> Result<Self, PluginError> {
        Ok(DirectExchange::default())
    }

    fn add_binding(&mut self, binding: &Binding) -> Result<(), PluginError> {
        let (key, destination) = (binding.key(), binding.destination());
        // Look up before `entry`, which would allocate the boxed key even when it exists.
        match self.routes.get_mut(key) {
            Some(set) => {
                set.add(destination);
            }
            None => {
                self.routes.entry(key.into()).or_default().add(destination);
            }
        }
        Ok(())
    }

    fn remove_bindings(&mut self, bindings: &[Binding]) -> Result<(), PluginError> {
        for binding in bindings {
            let key = binding.key();
            let Some(set) = self.routes.get_mut(key) else {
                continue;
            };
            set.remove(binding.destination());
            if set.is_empty() {
                self.routes.remove(key);
            }
        }
        // hashbrown never shrinks on its own; after mass unbinding, give the memory back.
        if self.routes.len() * 4 < self.routes.capacity() {
            self.routes.shrink_to_fit();
        }
        Ok(())
    }

    fn route(
        &self,
        message: &Message,
        destinations: &mut Destinations<'_>,
    ) -> Result<(), PluginError> {
        for key in message.routing_keys() {
            if let Some(set) = self.routes.get(key) {
                destinations.extend(set.iter());
            }
        }
        Ok(())
    }
}

warren_plugin_api::export_exchange_types! {
    name: "warren-direct",
    version: env!("CARGO_PKG_VERSION"),
    types: [DirectExchange],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vocabulary: text keys, no binding arguments, no headers.
    mod support {
        use warren_plugin_api::{ExchangeType, testing};

        pub fn bind<T: ExchangeType>(x: &mut T, destination: u64, key: &str) {
            testing::add_binding(x, destination, key.as_bytes(), &[]).unwrap();
        }

        pub fn unbind<T: ExchangeType>(x: &mut T, destination: u64, key: &str) {
            testing::remove_binding(x, destination, key.as_bytes(), &[]).unwrap();
        }

        /// Sorted, deduplicated destinations of a message with these routing keys.
        pub fn route<T: ExchangeType>(x: &T, keys: &[&str]) -> Vec<u64> {
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            testing::route(x, &keys, &[]).unwrap()
        }
    }

    use support::{bind, route, unbind};

    fn exchange() -> DirectExchange {
        DirectExchange::create("x", &FieldTable::new(&[])).unwrap()
    }

    #[test]
    fn routes_only_on_exact_byte_equality() {
        let mut x = exchange();
        bind(&mut x, 1, "a.b");
        bind(&mut x, 2, "a.*");
        bind(&mut x, 3, "");
        assert_eq!(route(&x, &["a.b"]), [1]);
        assert_eq!(route(&x, &["a.B"]), [] as [u64; 0]);
        assert_eq!(route(&x, &["a.b."]), [] as [u64; 0]);
        assert_eq!(route(&x, &["a.c"]), [] as [u64; 0]);
        assert_eq!(route(&x, &["a.*"]), [2]);
        assert_eq!(route(&x, &[""]), [3]);
    }

    #[test]
    fn every_routing_key_is_routed() {
        let mut x = exchange();
        bind(&mut x, 1, "a");
        bind(&mut x, 2, "b");
        bind(&mut x, 3, "c");
        assert_eq!(route(&x, &["a", "c", "zz"]), [1, 3]);
    }

    #[test]
    fn one_key_fans_out_to_all_its_destinations() {
        let mut x = exchange();
        for d in 0..100 {
            bind(&mut x, d, "k");
        }
        assert_eq!(route(&x, &["k"]), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_route_survives_until_its_last_binding_is_removed() {
        let mut x = exchange();
        // Same key and destination twice: as two bindings differing in their arguments.
        bind(&mut x, 1, "k");
        bind(&mut x, 1, "k");
        bind(&mut x, 2, "k");
        unbind(&mut x, 1, "k");
        assert_eq!(route(&x, &["k"]), [1, 2]);
        unbind(&mut x, 1, "k");
        assert_eq!(route(&x, &["k"]), [2]);
        unbind(&mut x, 2, "k");
        assert_eq!(route(&x, &["k"]), [] as [u64; 0]);
        assert!(x.routes.is_empty());
    }

    #[test]
    fn removing_a_binding_never_added_is_ignored() {
        let mut x = exchange();
        bind(&mut x, 1, "k");
        unbind(&mut x, 2, "k");
        unbind(&mut x, 1, "other");
        assert_eq!(route(&x, &["k"]), [1]);
    }

    #[test]
    fn header_names_the_direct_type() {
        let header = warren_plugin_header();
        assert_eq!(header.exchange_type_count, 1);
        // SAFETY: the header's vtables and names are static.
        let name = unsafe { (*header.exchange_types).name.as_slice() };
        assert_eq!(name, b"direct");
    }
}
