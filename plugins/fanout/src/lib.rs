//! The `fanout` exchange type: every message goes to every bound destination, whatever its
//! routing keys.
//!
//! Keys do not route, but they still name bindings: a queue bound twice with different keys
//! must stay bound when one of them is removed, and removing a key it was never bound with
//! must not unbind it. So the bindings are counted per (destination, key), and the
//! destination set counts the distinct keys of each destination.

use rustc_hash::FxHashMap;
use warren_plugin_api::DestinationSet;
use warren_plugin_api::{
    Binding, DestinationId, Destinations, ExchangeType, FieldTable, Message, PluginError,
};

/// State of one fanout exchange.
#[derive(Debug, Default)]
pub struct FanoutExchange {
    /// Bindings per (destination, key): several when they differ only in their arguments.
    bindings: FxHashMap<(DestinationId, Box<[u8]>), u32>,
    destinations: DestinationSet,
}

impl ExchangeType for FanoutExchange {
    const NAME: &'static str = "fanout";
    const DESCRIPTION: &'static str = "AMQP fanout exchange, as per the AMQP specification";

    fn create(_exchange: &str, _arguments: &FieldTable<'_>) -> Result<Self, PluginError> {
        Ok(FanoutExchange::default())
    }

    fn add_binding(&mut self, binding: &Binding) -> Result<(), PluginError> {
        let destination = binding.destination();
        let count = self
            .bindings
            .entry((destination, binding.key().into()))
            .or_insert(0);
        *count += 1;
        if *count == 1 {
            self.destinations.add(destination);
        }
        Ok(())
    }

    fn remove_bindings(&mut self, bindings: &[Binding]) -> Result<(), PluginError> {
        for binding in bindings {
            let destination = binding.destination();
            let id = (destination, Box::from(binding.key()));
            let Some(count) = self.bindings.get_mut(&id) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.bindings.remove(&id);
                self.destinations.remove(destination);
            }
        }
        if self.bindings.len() * 4 < self.bindings.capacity() {
            self.bindings.shrink_to_fit();
        }
        Ok(())
    }

    /// Pushes each destination once, not once per routing key.
    fn route(
        &self,
        _message: &Message,
        destinations: &mut Destinations<'_>,
    ) -> Result<(), PluginError> {
        destinations.extend(self.destinations.iter());
        Ok(())
    }
}

warren_plugin_api::export_exchange_types! {
    name: "warren-fanout",
    version: env!("CARGO_PKG_VERSION"),
    types: [FanoutExchange],
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

    fn exchange() -> FanoutExchange {
        FanoutExchange::create("x", &FieldTable::new(&[])).unwrap()
    }

    #[test]
    fn routes_to_every_destination_whatever_the_key() {
        let mut x = exchange();
        bind(&mut x, 1, "");
        bind(&mut x, 2, "a");
        bind(&mut x, 3, "#");
        assert_eq!(route(&x, &["anything"]), [1, 2, 3]);
        assert_eq!(route(&x, &[""]), [1, 2, 3]);
    }

    #[test]
    fn several_routing_keys_do_not_repeat_destinations() {
        let mut x = exchange();
        bind(&mut x, 1, "a");
        bind(&mut x, 2, "b");
        assert_eq!(route(&x, &["a", "b", "c"]), [1, 2]);
    }

    #[test]
    fn a_destination_bound_under_two_keys_stays_until_both_are_removed() {
        let mut x = exchange();
        bind(&mut x, 1, "a");
        bind(&mut x, 1, "b");
        assert_eq!(route(&x, &["k"]), [1]);
        unbind(&mut x, 1, "a");
        assert_eq!(route(&x, &["k"]), [1]);
        unbind(&mut x, 1, "b");
        assert_eq!(route(&x, &["k"]), [] as [u64; 0]);
    }

    #[test]
    fn same_key_bound_twice_needs_two_removals() {
        let mut x = exchange();
        bind(&mut x, 1, "a");
        bind(&mut x, 1, "a");
        unbind(&mut x, 1, "a");
        assert_eq!(route(&x, &["k"]), [1]);
        unbind(&mut x, 1, "a");
        assert_eq!(route(&x, &["k"]), [] as [u64; 0]);
        assert!(x.bindings.is_empty() && x.destinations.is_empty());
    }

    #[test]
    fn removing_a_binding_never_added_is_ignored() {
        let mut x = exchange();
        bind(&mut x, 1, "a");
        unbind(&mut x, 1, "other");
        unbind(&mut x, 2, "a");
        assert_eq!(route(&x, &["k"]), [1]);
    }

    #[test]
    fn many_destinations_bind_and_unbind() {
        let mut x = exchange();
        for d in 0..1000 {
            bind(&mut x, d, "");
        }
        for d in (0..1000).filter(|d| d % 2 == 0) {
            unbind(&mut x, d, "");
        }
        assert_eq!(
            route(&x, &[""]),
            (0..1000).filter(|d| d % 2 == 1).collect::<Vec<_>>()
        );
    }

    #[test]
    fn header_names_the_fanout_type() {
        let header = warren_plugin_header();
        assert_eq!(header.exchange_type_count, 1);
        // SAFETY: the header's vtables and names are static.
        let name = unsafe { (*header.exchange_types).name.as_slice() };
        assert_eq!(name, b"fanout");
    }
}
