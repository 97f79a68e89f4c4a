//! How topic keys split into words, and the canonical form of a binding pattern.
//!
//! RabbitMQ's rules: words are separated by `.` and empty words count (`a..b` is `a`, ``, `b`;
//! `a.` is `a`, ``), except that the empty key is **zero** words, not one empty word. That is
//! why `#` matches the empty routing key and `*` does not. The empty binding key is therefore
//! also zero words, and matches only the empty routing key.
//!
//! [`Words`] walks a key in place, so routing splits nothing into a `Vec`; it is `Copy`, so a
//! matcher can keep a position and try several continuations from it.

/// The words of a key not consumed yet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Words<'a> {
    /// `None` once no word is left; `Some(b"")` is one empty word still to come.
    rest: Option<&'a [u8]>,
}

impl<'a> Words<'a> {
    pub(crate) fn new(key: &'a [u8]) -> Self {
        Words {
            rest: if key.is_empty() { None } else { Some(key) },
        }
    }

    /// Orders positions within one key: a larger value is an earlier position.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.map_or(0, |rest| rest.len() + 1)
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        Some(match rest.iter().position(|&b| b == b'.') {
            Some(dot) => {
                self.rest = Some(&rest[dot + 1..]);
                &rest[..dot]
            }
            None => {
                self.rest = None;
                rest
            }
        })
    }
}

/// One word of a binding pattern. Only a whole word is a wildcard: `a*` is a literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Word<'a> {
    Literal(&'a [u8]),
    /// `*`: exactly one word.
    Star,
    /// `#`: zero or more words.
    Hash,
}

/// The words of a binding key, with every run of wildcards rewritten as its stars followed by
/// at most one `#`.
///
/// A run of `m` stars and at least one `#`, in any order, matches exactly the sequences of at
/// least `m` words, and so does `m` stars then one `#`. The rewrite keeps the matcher from
/// trying the same split of a key once per way of spreading it over adjacent `#`s (`#.#.#`
/// would otherwise be cubic), and it means a `#` node in the trie never has a `*` or `#` child.
pub(crate) fn pattern(key: &[u8]) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut pending_hash = false;
    for word in Words::new(key) {
        match word {
            b"*" => out.push(Word::Star),
            b"#" => pending_hash = true,
            literal => {
                if std::mem::take(&mut pending_hash) {
                    out.push(Word::Hash);
                }
                out.push(Word::Literal(literal));
            }
        }
    }
    if pending_hash {
        out.push(Word::Hash);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Word::{Hash, Literal, Star};

    fn split(key: &str) -> Vec<&[u8]> {
        Words::new(key.as_bytes()).collect()
    }

    #[test]
    fn the_empty_key_is_zero_words_but_empty_words_elsewhere_count() {
        assert!(split("").is_empty());
        assert_eq!(split("a"), [b"a"]);
        assert_eq!(split("."), [b"", b""]);
        assert_eq!(split("a."), [&b"a"[..], b""]);
        assert_eq!(split(".a"), [&b""[..], b"a"]);
        assert_eq!(split("a..b"), [&b"a"[..], b"", b"b"]);
    }

    #[test]
    fn remaining_decreases_word_by_word_and_counts_a_trailing_empty_word() {
        let mut words = Words::new(b"ab.");
        let mut seen = vec![words.remaining()];
        while words.next().is_some() {
            seen.push(words.remaining());
        }
        assert_eq!(seen, [4, 1, 0]);
    }

    #[test]
    fn wildcard_runs_become_stars_then_one_hash() {
        assert_eq!(pattern(b"#.#"), [Hash]);
        assert_eq!(pattern(b"#.*.#.*"), [Star, Star, Hash]);
        assert_eq!(
            pattern(b"a.#.#.b.*"),
            [Literal(b"a"), Hash, Literal(b"b"), Star]
        );
        assert_eq!(pattern(b"*.a.#"), [Star, Literal(b"a"), Hash]);
        assert_eq!(pattern(b"a*.#b"), [Literal(b"a*"), Literal(b"#b")]);
        assert_eq!(pattern(b""), []);
        assert_eq!(pattern(b"#.."), [Hash, Literal(b""), Literal(b"")]);
    }
}
