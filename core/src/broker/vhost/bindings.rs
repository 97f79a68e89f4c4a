//! The vhost's binding table: every binding, exchange to queue and exchange to exchange, as
//! the one record of what is bound.
//!
//! Exchanges keep only what routing needs (their plugin router and the id → destination
//! map); this table answers everything else — is this binding new, what does deleting a
//! queue or an exchange unbind, is an exchange in use, and (for listings and storage) what
//! is bound at all. It is changed only under the vhost's catalogue lock, never on the
//! publish path, so it is plain data indexed both ways.

use amq_protocol::types::FieldTable;
use bytes::Bytes;
use rustc_hash::FxHashMap;

/// What a binding leads to, by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BoundTo {
    /// A queue.
    Queue(String),
    /// An exchange (exchange-to-exchange binding).
    Exchange(String),
}

/// One binding.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The source exchange's name.
    pub source: String,
    /// The destination.
    pub destination: BoundTo,
    /// The destination's id in the source's router.
    pub destination_id: u64,
    /// Binding key.
    pub key: String,
    /// Arguments, decoded (compared with a later unbind's).
    pub arguments: FieldTable,
    /// The same arguments as the plugin sees them.
    pub raw_arguments: Bytes,
    /// Both ends are durable: the binding is stored and survives a restart.
    pub durable: bool,
}

impl Binding {
    fn same_as(&self, destination_id: u64, key: &str, arguments: &FieldTable) -> bool {
        self.destination_id == destination_id && self.key == key && &self.arguments == arguments
    }

    /// The binding as a router removal: `(destination id, key, raw arguments)`.
    pub fn router_key(&self) -> (u64, &[u8], &[u8]) {
        (
            self.destination_id,
            self.key.as_bytes(),
            &self.raw_arguments,
        )
    }
}

/// Every binding of one vhost, by source and by destination.
#[derive(Debug, Default)]
pub struct BindingTable {
    by_source: FxHashMap<String, Vec<Binding>>,
    /// Destination id → the sources with bindings to it (one entry per binding).
    sources_of: FxHashMap<u64, Vec<String>>,
}

impl BindingTable {
    /// Whether an identical binding exists.
    pub fn contains(
        &self,
        source: &str,
        destination_id: u64,
        key: &str,
        arguments: &FieldTable,
    ) -> bool {
        self.by_source.get(source).is_some_and(|all| {
            all.iter()
                .any(|b| b.same_as(destination_id, key, arguments))
        })
    }

    /// Records a binding (the caller checked [`BindingTable::contains`]).
    pub fn insert(&mut self, binding: Binding) {
        self.sources_of
            .entry(binding.destination_id)
            .or_default()
            .push(binding.source.clone());
        self.by_source
            .entry(binding.source.clone())
            .or_default()
            .push(binding);
    }

    /// Removes one binding, if it exists.
    pub fn remove(
        &mut self,
        source: &str,
        destination_id: u64,
        key: &str,
        arguments: &FieldTable,
    ) -> Option<Binding> {
        let all = self.by_source.get_mut(source)?;
        let at = all
            .iter()
            .position(|b| b.same_as(destination_id, key, arguments))?;
        let removed = all.swap_remove(at);
        if all.is_empty() {
            self.by_source.remove(source);
        }
        self.forget_source_of(destination_id, source);
        Some(removed)
    }

    /// Removes every binding whose source is `source` (the exchange is being deleted).
    pub fn remove_from(&mut self, source: &str) -> Vec<Binding> {
        let removed = self.by_source.remove(source).unwrap_or_default();
        for b in &removed {
            self.forget_source_of(b.destination_id, source);
        }
        removed
    }

    /// Removes every binding to the destination `destination_id` (it is being deleted).
    pub fn remove_to(&mut self, destination_id: u64) -> Vec<Binding> {
        let mut sources = self.sources_of.remove(&destination_id).unwrap_or_default();
        sources.sort_unstable();
        sources.dedup();
        let mut removed = Vec::new();
        for source in sources {
            if let Some(all) = self.by_source.get_mut(&source) {
                let (gone, kept) = std::mem::take(all)
                    .into_iter()
                    .partition(|b| b.destination_id == destination_id);
                *all = kept;
                removed.extend::<Vec<Binding>>(gone);
                if all.is_empty() {
                    self.by_source.remove(&source);
                }
            }
        }
        removed
    }

    /// Whether `source` has any binding.
    pub fn has_bindings_from(&self, source: &str) -> bool {
        self.by_source.contains_key(source)
    }

    /// Every binding, source by source (for listings).
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.by_source.values().flatten()
    }

    fn forget_source_of(&mut self, destination_id: u64, source: &str) {
        if let Some(sources) = self.sources_of.get_mut(&destination_id) {
            if let Some(at) = sources.iter().position(|s| s == source) {
                sources.swap_remove(at);
            }
            if sources.is_empty() {
                self.sources_of.remove(&destination_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(source: &str, queue: &str, id: u64, key: &str) -> Binding {
        Binding {
            source: source.into(),
            destination: BoundTo::Queue(queue.into()),
            destination_id: id,
            key: key.into(),
            arguments: FieldTable::default(),
            raw_arguments: Bytes::new(),
            durable: false,
        }
    }

    #[test]
    fn removal_by_source_destination_and_one_by_one() {
        let none = FieldTable::default();
        let mut t = BindingTable::default();
        t.insert(binding("x", "q1", 1, "a"));
        t.insert(binding("x", "q1", 1, "b"));
        t.insert(binding("x", "q2", 2, "a"));
        t.insert(binding("y", "q1", 1, "a"));
        assert!(t.contains("x", 1, "b", &none));
        assert!(!t.contains("y", 1, "b", &none));

        let to_q1 = t.remove_to(1);
        assert_eq!(to_q1.len(), 3);
        assert!(!t.has_bindings_from("y"), "y only had a binding to q1");
        assert!(t.has_bindings_from("x"));

        assert!(t.remove("x", 2, "a", &none).is_some());
        assert!(t.remove("x", 2, "a", &none).is_none());
        assert!(!t.has_bindings_from("x"));
        assert_eq!(t.iter().count(), 0);
    }

    #[test]
    fn deleting_a_source_forgets_it_for_its_destinations() {
        let mut t = BindingTable::default();
        t.insert(binding("x", "q1", 1, "a"));
        t.insert(binding("y", "q1", 1, "a"));
        assert_eq!(t.remove_from("x").len(), 1);
        let rest = t.remove_to(1);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].source, "y");
    }
}
