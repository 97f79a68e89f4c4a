//! RabbitMQ's dead-letter cycle rule (`rabbit_dead_letter:detect_cycles/3`, 3.10.8), as a pure
//! function over the `x-death` history.
//!
//! The check runs on the message *after* this death was added to `x-death`, once per queue
//! the dead-letter exchange routed it to:
//! - a `rejected` death is never checked (a client chose to drop it; it cannot loop alone);
//! - otherwise the target queue is a cycle when it appears in the history and every entry
//!   from the front up to and including its first appearance is a table whose `reason` is not
//!   the longstr `rejected` (an item that is not a table also breaks the cycle);
//! - cycling targets are dropped (RabbitMQ logs `Message dropped. Dead-letter queues cycle
//!   detected: [...]` once per cycle per queue process); the other targets still get it.
//!
//! So an expiry that routes straight back to the same queue is dropped, and a two-queue TTL
//! ping-pong (`ca` → `cb` → `ca`) is dropped on its way back into `ca`; with a rejection from
//! `ca` in between, the message does come back to `ca` (captured on 3.10.8). Since 3.10 keeps
//! older `x-death` entries in a shuffled order (see [`super::x_death`]), the rule is applied
//! to that order, exactly as RabbitMQ does.

use super::x_death::Reason;
use crate::protocol::headers as raw;

/// One item of the `x-death` array, as the cycle rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PastDeath<'a> {
    /// A table: its `queue` if that is a longstr, and whether `reason` is the longstr
    /// `rejected`.
    Table {
        /// The `queue` field, when it is a longstr.
        queue: Option<&'a [u8]>,
        /// `reason` is `rejected`.
        rejected: bool,
    },
    /// Anything else found in the array.
    NotTable,
}

/// Whether sending a message with this history (most recent first) to `target` would close
/// a cycle (`is_cycle/2`).
pub fn is_cycle(target: &[u8], history: &[PastDeath<'_>]) -> bool {
    let first = history
        .iter()
        .position(|d| matches!(d, PastDeath::Table { queue: Some(q), .. } if *q == target));
    match first {
        None => false,
        Some(i) => history[..=i].iter().all(|d| {
            matches!(
                d,
                PastDeath::Table {
                    rejected: false,
                    ..
                }
            )
        }),
    }
}

/// Decodes the `x-death` history of a headers table body (`None` when absent or not an
/// array; malformed bytes count as no history).
pub fn history(headers: &[u8]) -> Option<Vec<PastDeath<'_>>> {
    let array = raw::nested(raw::get(headers, b"x-death")?, b'A')?;
    let items = raw::items(array)?;
    Some(
        items
            .into_iter()
            .map(|item| match raw::nested(item, b'F') {
                Some(table) => PastDeath::Table {
                    queue: raw::get(table, b"queue").and_then(|v| raw::nested(v, b'S')),
                    rejected: raw::get(table, b"reason").and_then(|v| raw::nested(v, b'S'))
                        == Some(&b"rejected"[..]),
                },
                None => PastDeath::NotTable,
            })
            .collect(),
    )
}

/// The whole rule for one target: whether a message that died for `reason` and now carries
/// `headers` (its dead-lettered headers, a table body) must not be delivered to `target`.
pub fn drops_as_cycle(reason: Reason, headers: Option<&[u8]>, target: &[u8]) -> bool {
    if reason == Reason::Rejected {
        return false;
    }
    headers
        .and_then(history)
        .is_some_and(|h| is_cycle(target, &h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::dead_letter::x_death::tests::{death, golden, props};
    use crate::broker::dead_letter::{Reason, dead_letter_properties};
    use crate::protocol::Properties;

    fn die(p: &Properties, queue: &str, reason: Reason, key: &str) -> Properties {
        let keys = [key];
        dead_letter_properties(p, &death(queue, reason, "", &keys, 1)).unwrap()
    }

    /// RabbitMQ 3.10.8: `ca` and `cb` with `x-message-ttl` 50, each dead-lettering into the
    /// other through the default exchange. Published to `ca`, the message expires into `cb`,
    /// then is dropped on its way back (both queues end empty; the broker logs `Message
    /// dropped. Dead-letter queues cycle detected: [<<"ca">>,<<"cb">>,<<"ca">>]`).
    #[test]
    fn a_ttl_ping_pong_is_dropped_on_its_way_back() {
        let in_cb = die(&Properties::empty(), "ca", Reason::Expired, "ca");
        assert!(!drops_as_cycle(Reason::Expired, in_cb.headers(), b"cb"));
        let back = die(&in_cb, "cb", Reason::Expired, "cb");
        assert!(drops_as_cycle(Reason::Expired, back.headers(), b"ca"));
        // The same history does not stop it going anywhere else.
        assert!(!drops_as_cycle(
            Reason::Expired,
            back.headers(),
            b"elsewhere"
        ));
    }

    #[test]
    fn expiring_straight_back_into_the_same_queue_is_a_cycle() {
        let p = die(&Properties::empty(), "q", Reason::Expired, "q");
        assert!(drops_as_cycle(Reason::Expired, p.headers(), b"q"));
        let p = die(&Properties::empty(), "q", Reason::Maxlen, "q");
        assert!(drops_as_cycle(Reason::Maxlen, p.headers(), b"q"));
        // A rejection is never checked, even straight back.
        let p = die(&Properties::empty(), "q", Reason::Rejected, "q");
        assert!(!drops_as_cycle(Reason::Rejected, p.headers(), b"q"));
    }

    /// RabbitMQ 3.10.8: `ca` (no TTL) dead-letters into `cb`, `cb` (TTL 50) back into `ca`.
    /// Rejected from `ca`, expired in `cb`: delivered to `ca` again, with these headers.
    #[test]
    fn a_rejection_in_the_loop_lets_the_message_through() {
        let in_cb = die(&Properties::empty(), "ca", Reason::Rejected, "ca");
        assert!(!drops_as_cycle(Reason::Rejected, in_cb.headers(), b"cb"));
        let back = die(&in_cb, "cb", Reason::Expired, "cb");
        let delivered = props(golden::CB_EXPIRED_AFTER_CA_REJECTED);
        fn history_of(p: &Properties) -> Vec<PastDeath<'_>> {
            history(p.headers().unwrap()).unwrap()
        }
        assert_eq!(
            history_of(&delivered),
            vec![
                PastDeath::Table {
                    queue: Some(b"cb"),
                    rejected: false
                },
                PastDeath::Table {
                    queue: Some(b"ca"),
                    rejected: true
                },
            ]
        );
        assert_eq!(history_of(&back), history_of(&delivered));
        assert!(!drops_as_cycle(Reason::Expired, back.headers(), b"ca"));
    }

    #[test]
    fn the_rule_over_a_decoded_history() {
        let t = |q: &'static [u8], rejected| PastDeath::Table {
            queue: Some(q),
            rejected,
        };
        assert!(!is_cycle(b"a", &[]));
        assert!(is_cycle(b"a", &[t(b"b", false), t(b"a", false)]));
        assert!(!is_cycle(b"a", &[t(b"b", true), t(b"a", false)]));
        assert!(!is_cycle(b"a", &[t(b"b", false), t(b"a", true)]));
        // Only up to the first appearance of the target counts.
        assert!(is_cycle(b"a", &[t(b"a", false), t(b"b", true)]));
        // A non-table breaks the cycle when it comes first, and is skipped as a match.
        assert!(!is_cycle(b"a", &[PastDeath::NotTable, t(b"a", false)]));
        let no_queue = PastDeath::Table {
            queue: None,
            rejected: false,
        };
        assert!(is_cycle(b"a", &[no_queue, t(b"a", false)]));
        assert!(!drops_as_cycle(Reason::Expired, None, b"a"));
    }
}
