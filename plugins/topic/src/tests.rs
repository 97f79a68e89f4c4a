//! The topic type driven through the SDK trait, as the broker drives it.

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

fn exchange() -> TopicExchange {
    TopicExchange::create("x", &FieldTable::new(&[])).unwrap()
}

const NONE: [u64; 0] = [];

/// (binding pattern, routing key, matches)
const TRUTH_TABLE: &[(&str, &str, bool)] = &[
    // The empty key is zero words.
    ("#", "", true),
    ("*", "", false),
    ("", "", true),
    ("", "a", false),
    ("", ".", false),
    ("a", "", false),
    ("#.#", "", true),
    ("*.#", "", false),
    ("#.*", "", false),
    // `#` at either end also matches zero words there.
    ("a.#", "a", true),
    ("a.#", "a.b.c", true),
    ("a.#", "a.", true),
    ("a.#", "b", false),
    ("a.#", "ab", false),
    ("#.a", "a", true),
    ("#.a", "x.y.a", true),
    ("#.a", "a.x", false),
    // `*` is exactly one word.
    ("*", "a", true),
    ("*", "a.b", false),
    ("a.*.b", "a.b", false),
    ("a.*.b", "a.x.b", true),
    ("a.*.b", "a.x.y.b", false),
    ("*.b.*", "a.b.c", true),
    ("*.*", "a", false),
    ("*.*", "a.b.c", false),
    ("a.*", "a", false),
    // `#` in the middle, and several of them.
    ("a.#.b", "a.b", true),
    ("a.#.b", "a.x.y.b", true),
    ("a.#.b", "a.x.y.c", false),
    ("a.#.#.b", "a.b", true),
    ("#.b.#", "b", true),
    ("#.b.#", "a.b.c", true),
    ("#.b.#", "a.c", false),
    ("#.a.#.a.#", "a.a", true),
    ("#.a.#.a.#", "x.a.y.z.a", true),
    ("#.a.#.a.#", "a", false),
    ("#.#", "a.b.c", true),
    ("#.#.#", "a", true),
    // Wildcard runs in any order: at least as many words as stars.
    ("#.*", "a", true),
    ("#.*.#", "a.b", true),
    ("a.#.*", "a", false),
    ("a.#.*", "a.b", true),
    ("*.#.*", "a", false),
    ("*.#.*", "a.b.c.d", true),
    // Empty words are words.
    ("*.*", "a.", true),
    ("*.*", ".", true),
    ("*", ".", false),
    ("#", ".", true),
    ("#", "a..", true),
    ("a.*", "a.", true),
    ("a..b", "a..b", true),
    ("a..b", "a.b", false),
    ("a.*.b", "a..b", true),
    (".", ".", true),
    (".", "", false),
    // Only a whole word is a wildcard, and matching is by bytes.
    ("a*", "ab", false),
    ("a*", "a*", true),
    ("#a", "a", false),
    ("a.b", "a.b", true),
    ("a.b", "a.B", false),
    ("a.b", "a.b.c", false),
];

#[test]
fn truth_table_matches_rabbitmq() {
    for &(pattern, key, expected) in TRUTH_TABLE {
        let mut x = exchange();
        bind(&mut x, 1, pattern);
        let got = route(&x, &[key]) == [1];
        assert_eq!(got, expected, "pattern {pattern:?} against key {key:?}");
    }
}

#[test]
fn truth_table_holds_with_all_patterns_in_one_trie() {
    let mut x = exchange();
    for (i, &(pattern, _, _)) in TRUTH_TABLE.iter().enumerate() {
        bind(&mut x, i as u64, pattern);
    }
    for (i, &(pattern, key, expected)) in TRUTH_TABLE.iter().enumerate() {
        let routed = route(&x, &[key]);
        // Rows repeat patterns, so check the pattern, not only this row's destination.
        let matched = TRUTH_TABLE
            .iter()
            .enumerate()
            .any(|(j, &(p, _, _))| p == pattern && routed.contains(&(j as u64)));
        assert_eq!(
            matched, expected,
            "row {i}: pattern {pattern:?} against key {key:?}"
        );
    }
}

#[test]
fn every_routing_key_is_routed() {
    let mut x = exchange();
    bind(&mut x, 1, "a.*");
    bind(&mut x, 2, "b.#");
    bind(&mut x, 3, "c");
    assert_eq!(route(&x, &["a.x", "b", "zz"]), [1, 2]);
}

#[test]
fn a_route_survives_until_its_last_binding_is_removed() {
    let mut x = exchange();
    // Same key and destination twice: as two bindings differing in their arguments.
    bind(&mut x, 1, "a.*");
    bind(&mut x, 1, "a.*");
    bind(&mut x, 2, "a.*");
    unbind(&mut x, 1, "a.*");
    assert_eq!(route(&x, &["a.b"]), [1, 2]);
    unbind(&mut x, 1, "a.*");
    assert_eq!(route(&x, &["a.b"]), [2]);
    unbind(&mut x, 2, "a.*");
    assert_eq!(route(&x, &["a.b"]), NONE);
}

#[test]
fn one_destination_under_two_matching_patterns_keeps_the_other() {
    let mut x = exchange();
    bind(&mut x, 1, "a.*");
    bind(&mut x, 1, "#.b");
    unbind(&mut x, 1, "a.*");
    assert_eq!(route(&x, &["a.b"]), [1]);
    assert_eq!(route(&x, &["a.c"]), NONE);
}

#[test]
fn equivalent_spellings_are_separate_bindings() {
    let mut x = exchange();
    bind(&mut x, 1, "#");
    bind(&mut x, 1, "#.#");
    unbind(&mut x, 1, "#.#");
    assert_eq!(route(&x, &["a"]), [1]);
    bind(&mut x, 1, "#.#");
    unbind(&mut x, 1, "#");
    assert_eq!(route(&x, &["a"]), [1]);
    unbind(&mut x, 1, "#.#");
    assert_eq!(route(&x, &["a"]), NONE);
}

#[test]
fn removing_a_binding_never_added_is_ignored() {
    let mut x = exchange();
    bind(&mut x, 1, "a.#");
    unbind(&mut x, 1, "a.#.#"); // an equivalent spelling that was never bound
    unbind(&mut x, 1, "a.*");
    unbind(&mut x, 2, "a.#");
    unbind(&mut x, 1, "zz.top");
    assert_eq!(route(&x, &["a.b"]), [1]);
}

#[test]
fn unbinding_everything_frees_the_trie() {
    let mut x = exchange();
    let keys = ["a.b.c", "a.*.c", "a.#", "#", "#.#", "", "x..y", "#.a.#.b"];
    for (d, key) in keys.iter().enumerate() {
        bind(&mut x, d as u64, key);
        bind(&mut x, d as u64 + 100, key);
    }
    for (d, key) in keys.iter().enumerate() {
        unbind(&mut x, d as u64, key);
        unbind(&mut x, d as u64 + 100, key);
    }
    assert_eq!(x.trie.node_count(), 1);
    assert!(x.bindings.is_empty());
}

/// xorshift64: deterministic, dependency-free randomness for the property test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn key(&mut self, alphabet: &[&str], max_words: usize) -> String {
        let words: Vec<&str> = (0..self.below(max_words + 1))
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect();
        words.join(".")
    }
}

/// The reference: RabbitMQ's rules written as directly as possible.
fn naive_matches(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| naive_matches(rest, &key[skip..])),
        Some((&"*", rest)) => !key.is_empty() && naive_matches(rest, &key[1..]),
        Some((word, rest)) => key.first() == Some(word) && naive_matches(rest, &key[1..]),
    }
}

fn naive_split(key: &str) -> Vec<&str> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').collect()
    }
}

#[test]
fn trie_agrees_with_a_naive_matcher_on_random_patterns() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _round in 0..4 {
        let mut x = exchange();
        // (destination, pattern) of every live binding; destinations repeat across patterns.
        let mut bound: Vec<(u64, String)> = Vec::new();
        for _ in 0..300 {
            let pattern = rng.key(&["a", "b", "", "*", "#"], 5);
            let destination = rng.below(60) as u64;
            bind(&mut x, destination, &pattern);
            bound.push((destination, pattern));
        }
        for phase in 0..3 {
            for _ in 0..1000 {
                let key = rng.key(&["a", "b", "c", ""], 6);
                let words = naive_split(&key);
                let mut expected: Vec<u64> = bound
                    .iter()
                    .filter(|(_, p)| naive_matches(&naive_split(p), &words))
                    .map(|&(d, _)| d)
                    .collect();
                expected.sort_unstable();
                expected.dedup();
                assert_eq!(route(&x, &[&key]), expected, "key {key:?}, phase {phase}");
            }
            // Churn: remove a third of the bindings, and some that were never added.
            for _ in 0..bound.len() / 3 {
                let (destination, pattern) = bound.swap_remove(rng.below(bound.len()));
                unbind(&mut x, destination, &pattern);
                let stray = rng.key(&["a", "*", "#", "z"], 4);
                if !bound.iter().any(|(d, p)| *d == destination && *p == stray) {
                    unbind(&mut x, destination, &stray);
                }
            }
        }
        for (destination, pattern) in bound.drain(..) {
            unbind(&mut x, destination, &pattern);
        }
        assert_eq!(
            x.trie.node_count(),
            1,
            "the trie is pruned back to its root"
        );
    }
}

#[test]
fn header_names_the_topic_type() {
    let header = warren_plugin_header();
    assert_eq!(header.exchange_type_count, 1);
    // SAFETY: the header's vtables and names are static.
    let name = unsafe { (*header.exchange_types).name.as_slice() };
    assert_eq!(name, b"topic");
}
