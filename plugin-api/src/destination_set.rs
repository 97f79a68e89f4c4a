//! A reference-counted set of destinations, for a plugin's routing index.
//!
//! The same destination can be bound to one routing point several times (two keys that meet
//! in one place, identical bindings with different arguments), and unbinding one must not
//! remove the route the others still make. Every index needs that count, so the SDK has it
//! once instead of every plugin writing its own.
//!
//! `route` only needs a dense slice of ids to push, so the ids live in a plain `Vec` and their
//! counts in a parallel one. Membership is a linear scan while the set is small, which is the
//! usual case (a handful of queues per key), and a hash index once it grows, so that binding
//! and unbinding 100k queues on one fanout or one key stays O(1) each instead of O(n).

use crate::sdk::DestinationId;
use std::collections::HashMap;

/// Above this many ids a scan costs more than a hash lookup.
const INDEX_ABOVE: usize = 16;

/// Destinations with the number of bindings that put each one there.
#[derive(Debug, Default)]
pub struct DestinationSet {
    ids: Vec<DestinationId>,
    counts: Vec<u32>,
    /// Position of every id in `ids`, kept only while the set is large.
    #[allow(
        clippy::box_collection,
        reason = "a topic trie has a set per node and most have no index: one pointer, not a 48-byte map, per node"
    )]
    index: Option<Box<HashMap<DestinationId, usize>>>,
}

impl DestinationSet {
    /// The distinct destinations, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = DestinationId> + '_ {
        self.ids.iter().copied()
    }

    /// Number of distinct destinations.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no binding is left.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn position(&self, id: DestinationId) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&id).copied(),
            None => self.ids.iter().position(|&d| d == id),
        }
    }

    /// Counts one more binding to `id`; true when `id` was not in the set before.
    pub fn add(&mut self, id: DestinationId) -> bool {
        if let Some(i) = self.position(id) {
            self.counts[i] += 1;
            return false;
        }
        self.ids.push(id);
        self.counts.push(1);
        match &mut self.index {
            Some(index) => {
                index.insert(id, self.ids.len() - 1);
            }
            None if self.ids.len() > INDEX_ABOVE => {
                self.index = Some(Box::new(
                    self.ids.iter().enumerate().map(|(i, &d)| (d, i)).collect(),
                ));
            }
            None => {}
        }
        true
    }

    /// Counts one binding to `id` less; true when it was the last one and `id` left the set.
    /// An id that is not in the set is ignored.
    pub fn remove(&mut self, id: DestinationId) -> bool {
        let Some(i) = self.position(id) else {
            return false;
        };
        if self.counts[i] > 1 {
            self.counts[i] -= 1;
            return false;
        }
        self.ids.swap_remove(i);
        self.counts.swap_remove(i);
        if let Some(index) = &mut self.index {
            index.remove(&id);
            if let Some(&moved) = self.ids.get(i) {
                index.insert(moved, i);
            }
            // Half the threshold, so that a set hovering around it does not rebuild every time.
            if self.ids.len() <= INDEX_ABOVE / 2 {
                self.index = None;
            }
        }
        if self.ids.is_empty() {
            // Give the memory back: a set that emptied under churn may have been huge.
            *self = DestinationSet::default();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(set: &DestinationSet) -> Vec<u64> {
        let mut ids: Vec<u64> = set.iter().map(|d| d.0).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn an_id_stays_until_its_last_binding_is_removed() {
        let mut set = DestinationSet::default();
        assert!(set.add(DestinationId(7)));
        assert!(!set.add(DestinationId(7)));
        assert!(!set.remove(DestinationId(7)));
        assert_eq!(sorted(&set), [7]);
        assert!(set.remove(DestinationId(7)));
        assert!(set.is_empty());
    }

    #[test]
    fn removing_an_absent_id_is_ignored() {
        let mut set = DestinationSet::default();
        set.add(DestinationId(1));
        assert!(!set.remove(DestinationId(2)));
        assert_eq!(sorted(&set), [1]);
    }

    #[test]
    fn large_sets_stay_consistent_through_the_index() {
        let mut set = DestinationSet::default();
        for id in 0..100 {
            set.add(DestinationId(id));
            set.add(DestinationId(id));
        }
        for id in (0..100).step_by(3) {
            assert!(!set.remove(DestinationId(id)));
            assert!(set.remove(DestinationId(id)));
        }
        let expected: Vec<u64> = (0..100).filter(|id| id % 3 != 0).collect();
        assert_eq!(sorted(&set), expected);
        for id in expected {
            set.remove(DestinationId(id));
            assert!(set.remove(DestinationId(id)));
        }
        assert!(set.is_empty());
    }
}
