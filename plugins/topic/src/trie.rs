//! The topic trie: binding patterns stored word by word, so that routing a key walks only the
//! branches that can still match it instead of testing every binding.
//!
//! Each node has its literal children in a hash map (looked up with the routing key's word as
//! a borrowed `&[u8]`), and a `*` and a `#` child in their own slots. Patterns are stored in the
//! canonical form of [`pattern`](crate::words::pattern), so a `#` node has literal children
//! only.
//!
//! Nodes are boxes owned by their parent rather than slots in an arena: pruning an emptied
//! branch is dropping it, and there is no free list or stale id to keep consistent. Boxing
//! also keeps a node's child table small (a word pointer and a node pointer per entry), which
//! matters more than the pointer it costs: with 100k bindings routing is bound by cache
//! misses, and storing nodes or short words inline in the table measured slower, not faster,
//! because a wide root (thousands of first words) then no longer fits in cache.
//!
//! # Routing cost
//! A `#` tries the rest of the pattern after every word boundary of the rest of the key. Two
//! `#`s on one path (`#.a.#`) can reach the second one at several positions, and each would
//! try again every position after it: polynomial in the key length, and each reaching the
//! same bindings again. But from the earliest of those positions the `#` already tries all the
//! others, so routing remembers, per key, the earliest position at which each such `#` was
//! entered and skips later entries. That keeps the walk linear in the key for each node, and
//! pushes a node's destinations at most once per routing key. The memory for it is a small
//! array on the stack; if a key enters more distinct nested `#`s than it holds, the rest are
//! walked without the shortcut (still correct, just slower).

use crate::words::{Word, Words, pattern};
use rustc_hash::FxHashMap;
use std::ptr;
use warren_plugin_api::DestinationSet;
use warren_plugin_api::{DestinationId, Destinations};

#[derive(Debug, Default)]
pub(crate) struct Trie {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    words: FxHashMap<Box<[u8]>, Box<Node>>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    /// Destinations of the patterns that end here.
    destinations: DestinationSet,
    /// A `#` is on the path from the root to here (this node's own edge included), so a `#`
    /// child of this node can be reached at several positions of one key.
    below_hash: bool,
}

impl Node {
    fn child(below_hash: bool) -> Box<Node> {
        Box::new(Node {
            below_hash,
            ..Node::default()
        })
    }

    fn is_empty(&self) -> bool {
        self.destinations.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        1 + self.words.values().map(|n| n.count()).sum::<usize>()
            + self.star.as_ref().map_or(0, |n| n.count())
            + self.hash.as_ref().map_or(0, |n| n.count())
    }
}

impl Trie {
    /// Counts one more binding of `destination` with `key`; true when it is a new route.
    pub(crate) fn insert(&mut self, key: &[u8], destination: DestinationId) -> bool {
        let mut node = &mut self.root;
        for word in pattern(key) {
            let below_hash = node.below_hash;
            node = match word {
                Word::Literal(w) => node
                    .words
                    .entry(w.into())
                    .or_insert_with(|| Node::child(below_hash)),
                Word::Star => node.star.get_or_insert_with(|| Node::child(below_hash)),
                Word::Hash => node.hash.get_or_insert_with(|| Node::child(true)),
            };
        }
        node.destinations.add(destination)
    }

    /// Counts one binding less; true when it was the last and the route is gone. Nodes left
    /// with neither destinations nor children are pruned. An unknown key is ignored.
    pub(crate) fn remove(&mut self, key: &[u8], destination: DestinationId) -> bool {
        remove_below(&mut self.root, &pattern(key), destination)
    }

    /// Pushes the destinations of every pattern matching `key`.
    pub(crate) fn route(&self, key: &[u8], out: &mut Destinations<'_>) {
        Walk {
            out,
            entered: [(ptr::null(), 0); ENTERED_CAPACITY],
            entered_len: 0,
        }
        .visit(&self.root, Words::new(key));
    }

    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.root.count()
    }
}

fn remove_below(node: &mut Node, pattern: &[Word<'_>], destination: DestinationId) -> bool {
    let Some((first, rest)) = pattern.split_first() else {
        return node.destinations.remove(destination);
    };
    match *first {
        Word::Literal(w) => {
            let Some(child) = node.words.get_mut(w) else {
                return false;
            };
            let removed = remove_below(child, rest, destination);
            if child.is_empty() {
                node.words.remove(w);
                if node.words.len() * 4 < node.words.capacity() {
                    node.words.shrink_to_fit();
                }
            }
            removed
        }
        Word::Star => remove_in_slot(&mut node.star, rest, destination),
        Word::Hash => remove_in_slot(&mut node.hash, rest, destination),
    }
}

fn remove_in_slot(
    slot: &mut Option<Box<Node>>,
    pattern: &[Word<'_>],
    destination: DestinationId,
) -> bool {
    let Some(child) = slot else { return false };
    let removed = remove_below(child, pattern, destination);
    if child.is_empty() {
        *slot = None;
    }
    removed
}

/// Nested `#` nodes one routing key can enter with the shortcut described in the module docs.
const ENTERED_CAPACITY: usize = 16;

/// The state of routing one key.
struct Walk<'w, 'o> {
    out: &'w mut Destinations<'o>,
    /// `#` nodes below another `#`, with the earliest position (as [`Words::remaining`]) at
    /// which each was entered.
    entered: [(*const Node, usize); ENTERED_CAPACITY],
    entered_len: usize,
}

impl Walk<'_, '_> {
    /// Matches the rest of the key, `words`, against the patterns below `node`.
    fn visit(&mut self, node: &Node, words: Words<'_>) {
        let mut rest = words;
        match rest.next() {
            None => {
                self.out.extend(node.destinations.iter());
                // A `#` also matches zero words.
                if let Some(hash) = &node.hash {
                    self.visit_hash(hash, rest, node.below_hash);
                }
            }
            Some(word) => {
                // An empty table answers without hashing the word (hashbrown checks first).
                if let Some(child) = node.words.get(word) {
                    self.visit(child, rest);
                }
                if let Some(star) = &node.star {
                    self.visit(star, rest);
                }
                if let Some(hash) = &node.hash {
                    self.visit_hash(hash, words, node.below_hash);
                }
            }
        }
    }

    /// Lets `#` (the edge into `node`) swallow zero, one, … all of `words`, matching what
    /// follows it against each remainder.
    fn visit_hash(&mut self, node: &Node, words: Words<'_>, reentrant: bool) {
        debug_assert!(
            node.star.is_none() && node.hash.is_none(),
            "patterns are canonical"
        );
        if reentrant && self.entered_before(node, words.remaining()) {
            return;
        }
        if node.words.is_empty() {
            // A trailing `#` matches whatever is left: no need to walk it.
            self.out.extend(node.destinations.iter());
            return;
        }
        let mut rest = words;
        loop {
            self.visit(node, rest);
            if rest.next().is_none() {
                break;
            }
        }
    }

    /// True when `node` was already entered at `remaining` or earlier in the key, which
    /// covered every match an entry at `remaining` could find. Otherwise records this entry.
    fn entered_before(&mut self, node: &Node, remaining: usize) -> bool {
        let node: *const Node = node;
        let entered = &mut self.entered[..self.entered_len];
        if let Some((_, earliest)) = entered.iter_mut().find(|(n, _)| ptr::eq(*n, node)) {
            if *earliest >= remaining {
                return true;
            }
            *earliest = remaining;
        } else if self.entered_len < ENTERED_CAPACITY {
            self.entered[self.entered_len] = (node, remaining);
            self.entered_len += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_plugin_api::abi::DestinationsOut;

    /// Raw pushes, duplicates kept, in the order the walk made them.
    fn pushes(trie: &Trie, key: &str) -> Vec<u64> {
        let mut buf = vec![0u64; 256];
        let mut out = DestinationsOut {
            ids: buf.as_mut_ptr(),
            capacity: buf.len(),
            len: 0,
        };
        // SAFETY: `buf` holds `capacity` ids and outlives `out`.
        let mut dest = unsafe { Destinations::from_raw(&mut out) };
        trie.route(key.as_bytes(), &mut dest);
        assert!(!dest.overflowed());
        let len = dest.len();
        buf.truncate(len);
        buf
    }

    #[test]
    fn removing_every_pattern_prunes_back_to_the_root() {
        let mut trie = Trie::default();
        let keys = [
            "a.b.c",
            "a.*.c",
            "a.#",
            "#.c",
            "#.a.#.b.#",
            "*.*",
            "",
            "a..b",
        ];
        for (i, key) in keys.iter().enumerate() {
            trie.insert(key.as_bytes(), DestinationId(i as u64));
        }
        assert!(trie.node_count() > 10);
        for (i, key) in keys.iter().enumerate().rev() {
            assert!(trie.remove(key.as_bytes(), DestinationId(i as u64)));
        }
        assert_eq!(trie.node_count(), 1);
        assert!(trie.root.is_empty());
    }

    #[test]
    fn removing_one_pattern_keeps_its_siblings_nodes() {
        let mut trie = Trie::default();
        trie.insert(b"a.b", DestinationId(1));
        trie.insert(b"a.b.c", DestinationId(2));
        trie.remove(b"a.b", DestinationId(1));
        assert_eq!(trie.node_count(), 4);
        assert_eq!(pushes(&trie, "a.b.c"), [2]);
        assert!(!trie.remove(b"a.x", DestinationId(2)));
        assert!(!trie.remove(b"a.b", DestinationId(2)));
        assert_eq!(trie.node_count(), 4);
    }

    #[test]
    fn nested_hashes_push_each_node_once_per_key() {
        let mut trie = Trie::default();
        trie.insert(b"#.a.#", DestinationId(1));
        trie.insert(b"#.a.#.a.#", DestinationId(2));
        trie.insert(b"#.a.*.#", DestinationId(3));
        let mut got = pushes(&trie, "a.a.a.a.a.a.a.a");
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3]);
    }

    #[test]
    fn nested_hashes_stay_fast_on_long_keys() {
        let mut trie = Trie::default();
        trie.insert(b"#.a.#.a.#.a.#.a.#.a.#.b", DestinationId(1));
        let key = vec!["a"; 200].join(".");
        // Without the shortcut this is C(200, 5) walks: it would not finish.
        assert!(pushes(&trie, &key).is_empty());
        assert_eq!(pushes(&trie, &format!("{key}.b")), [1]);
    }
}
