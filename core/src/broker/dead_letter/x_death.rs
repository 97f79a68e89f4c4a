//! The one place that builds `x-death`: the properties a message carries after it dies in a
//! queue, byte-compatible with RabbitMQ 3.10 apart from the two 3.13 improvements below.
//!
//! What RabbitMQ 3.10.8 does (`rabbit_dead_letter:make_msg/5`, checked on a live broker; the
//! captured bytes are the golden tests below):
//! - `expiration` is removed; its value becomes the death's `original-expiration` (whichever
//!   TTL actually fired — a queue TTL expiry still records the message's own `expiration`).
//! - No `x-death` header yet: `x-first-death-reason`, `x-first-death-queue`,
//!   `x-first-death-exchange` (longstr) are set, and `x-death` becomes an array holding one
//!   table with fields in this order: `count` (`l` 1), `reason`, `queue` (`S`), `time` (`T`,
//!   seconds), `exchange` (`S`), `routing-keys` (`A` of `S`), `original-expiration` (`S`, only
//!   if the message had one).
//! - `x-death` present: the entry for (queue, reason) — matched on value, so an `S` or `x`
//!   with the same bytes — gets `count + 1` (as `l`) and keeps *all* its other fields (the
//!   `time`, `exchange`, `routing-keys` and `original-expiration` of the first such death); a
//!   new (queue, reason) gets `count` 1 and this death's fields. Either way that entry moves
//!   to the front **with its fields sorted by key** (`count, exchange, original-expiration,
//!   queue, reason, routing-keys, time`). `x-first-death-*` are never touched again, even if
//!   a client removed them.
//! - The other entries are first "grouped" (legacy duplicates of one (queue, reason) fold into
//!   the first, given `count` = number of duplicates when they have none). 3.10 then emits
//!   them in **reverse order** when there are two or more (a quirk of its fold; captured:
//!   deaths in t1, t2, t3 give `[t3, t1, t2]`), so only its head is reliably the latest.
//!   Warren keeps them in order, as the issue asks and RabbitMQ 3.13 does: `[t3, t2, t1]`,
//!   then t4 gives `[t4, t3, t2, t1]`, then t2 again `[t2(count 2), t4, t3, t1]`.
//! - 3.10 writes no `x-last-death-*` (they arrived with 3.13's rewrite). Warren sets
//!   `x-last-death-reason`, `x-last-death-queue`, `x-last-death-exchange` (longstr) on every
//!   death, as 3.13 does; they sort into the headers like the others.
//! - The whole top-level `headers` table comes out **sorted by key** (byte order, stable;
//!   `rabbit_misc:set_table_value` sorts). Nested tables other than the new head entry keep
//!   their order.
//! - With `x-dead-letter-routing-key` set, the `CC` header is deleted afterwards (its routes
//!   are still listed in this death's `routing-keys`). `BCC` never reaches a queue.
//! - An `x-death` that is not an array is replaced by a fresh one-entry array (fields in
//!   insertion order) without setting `x-first-death-*`.
//!
//! Deliberate differences (besides the order and `x-last-death-*` above): RabbitMQ decodes and re-encodes every header (turning `L` into `l`
//! and any non-zero `t` into 1); Warren copies untouched values byte-for-byte. Where RabbitMQ
//! crashes the queue (an `x-death` array holding non-tables, a non-integer `count`), Warren
//! drops the non-table items and restarts the count at 1.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::protocol::{Properties, Property, Props, ProtocolError};

use crate::protocol::headers::{self as raw, Entry, Term};

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `basic.reject` / `basic.nack` with `requeue=false`.
    Rejected,
    /// Its TTL (queue `x-message-ttl` or its own `expiration`) passed.
    Expired,
    /// Dropped by a length limit (`drop-head`, or `reject-publish-dlx`).
    Maxlen,
}

impl Reason {
    /// The name RabbitMQ writes in `reason` and `x-first-death-reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
        }
    }
}

/// One death of a message in a queue.
#[derive(Clone, Copy, Debug)]
pub struct Death<'a> {
    /// The queue it died in.
    pub queue: &'a str,
    /// Why.
    pub reason: Reason,
    /// The exchange the message was published to before this death (for a message that
    /// died before, the dead-letter exchange that brought it here; `""` for the default).
    pub exchange: &'a str,
    /// The message's routing key followed by its `CC` header's keys — never `BCC`.
    /// (RabbitMQ: the first routing key of the message plus the `CC` routes in its headers;
    /// after a death with `x-dead-letter-routing-key` that key is the routing key.)
    pub routing_keys: &'a [&'a str],
    /// Seconds since the Unix epoch.
    pub time_secs: u64,
    /// The queue has `x-dead-letter-routing-key`: RabbitMQ then deletes the `CC` header.
    pub replaces_routing_key: bool,
}

const X_DEATH: &[u8] = b"x-death";

/// The properties of `original` once it has died as `death`: `expiration` removed, `headers`
/// carrying the updated `x-death` history (see the module docs for the exact rules). All
/// other properties are copied verbatim.
///
/// Fails only if the result cannot be encoded (headers over 4 GiB) or `original`'s headers
/// are malformed, which [`Properties::parse`] already excludes.
pub fn dead_letter_properties(
    original: &Props,
    death: &Death<'_>,
) -> Result<Properties, ProtocolError> {
    let reason = death.reason.as_str().as_bytes();
    let queue = death.queue.as_bytes();
    let exchange = death.exchange.as_bytes();
    // This death's fields as one encoded table (count 1, RabbitMQ's field order).
    let mut fresh = Vec::with_capacity(128);
    write_death_table(&mut fresh, original, death);
    let previous = original.headers().and_then(|h| raw::get(h, X_DEATH));
    let x_death = match previous.map(|value| raw::nested(value, b'A')) {
        // The common case, a first death: the array is written without building entries.
        None | Some(None) => {
            let mut out = Vec::with_capacity(fresh.len() + 10);
            let array = raw::begin_long(&mut out, b'A');
            let table = raw::begin_long(&mut out, b'F');
            out.extend_from_slice(&fresh);
            raw::end_long(&mut out, table);
            raw::end_long(&mut out, array);
            out
        }
        Some(Some(array)) => {
            let tables = raw::items(array)
                .ok_or(ProtocolError::Encode("malformed x-death"))?
                .into_iter()
                .filter_map(|item| raw::entries(raw::nested(item, b'F')?))
                .collect();
            let grouped = group_by_queue_and_reason(tables);
            let (matches, others): (Vec<_>, Vec<_>) = grouped
                .into_iter()
                .partition(|t| matches_death(t, queue, reason));
            let mut head = match matches.into_iter().next() {
                Some(previous) => increment_count(previous),
                None => raw::entries(&fresh).ok_or(ProtocolError::Encode("malformed death"))?,
            };
            // rabbit_misc:sort_field_table/1 (lists:keysort, stable).
            head.sort_by(|a, b| a.key.cmp(b.key));
            array_of_tables(std::iter::once(head).chain(others))
        }
    };
    // The `x-first/last-death-*` values, encoded into one buffer the entries borrow from.
    let mut names = Vec::with_capacity(15 + reason.len() + queue.len() + exchange.len());
    for value in [reason, queue, exchange] {
        raw::put_long(&mut names, b'S', value);
    }
    let (reason_value, rest) = names.split_at(5 + reason.len());
    let (queue_value, exchange_value) = rest.split_at(5 + queue.len());

    let mut headers = match original.headers() {
        Some(body) => raw::entries(body).ok_or(ProtocolError::Encode("malformed headers"))?,
        None => Vec::with_capacity(7),
    };
    if previous.is_none() {
        store(&mut headers, b"x-first-death-reason", reason_value);
        store(&mut headers, b"x-first-death-queue", queue_value);
        store(&mut headers, b"x-first-death-exchange", exchange_value);
    }
    store(&mut headers, X_DEATH, &x_death);
    store(&mut headers, b"x-last-death-reason", reason_value);
    store(&mut headers, b"x-last-death-queue", queue_value);
    store(&mut headers, b"x-last-death-exchange", exchange_value);
    headers.sort_by(|a, b| a.key.cmp(b.key));
    if death.replaces_routing_key
        && let Some(i) = headers.iter().position(|e| e.key == b"CC")
    {
        headers.remove(i);
    }

    let size: usize = headers
        .iter()
        .map(|e| 1 + e.key.len() + e.value.len())
        .sum();
    let mut body = Vec::with_capacity(size);
    raw::write_table(&mut body, &headers);
    original
        .edit()
        .remove(Property::Expiration)
        .set_headers(&body)
        .finish()
}

/// Appends this death's `x-death` entry as a table body: `count` 1, then its fields in
/// RabbitMQ's order, `original-expiration` only if the message had an `expiration`.
fn write_death_table(out: &mut Vec<u8>, original: &Props, death: &Death<'_>) {
    raw::put_key(out, b"count");
    raw::put_long_int(out, 1);
    raw::put_key(out, b"reason");
    raw::put_long(out, b'S', death.reason.as_str().as_bytes());
    raw::put_key(out, b"queue");
    raw::put_long(out, b'S', death.queue.as_bytes());
    raw::put_key(out, b"time");
    out.push(b'T');
    out.extend_from_slice(&death.time_secs.to_be_bytes());
    raw::put_key(out, b"exchange");
    raw::put_long(out, b'S', death.exchange.as_bytes());
    raw::put_key(out, b"routing-keys");
    let keys = raw::begin_long(out, b'A');
    for key in death.routing_keys {
        raw::put_long(out, b'S', key.as_bytes());
    }
    raw::end_long(out, keys);
    if let Some(expiration) = original.expiration() {
        raw::put_key(out, b"original-expiration");
        raw::put_long(out, b'S', expiration);
    }
}

fn entry<'a>(key: &'a [u8], value: Vec<u8>) -> Entry<'a> {
    Entry {
        key,
        value: value.into(),
    }
}

/// `[{count, long, n} | info]`.
fn with_count(n: i64, info: Vec<Entry<'_>>) -> Vec<Entry<'_>> {
    let mut out = Vec::with_capacity(info.len() + 1);
    out.push(entry(b"count", raw::long_int(n)));
    out.extend(info);
    out
}

/// `rabbit_misc:set_table_value` without its sort: replace the first `key` in place, or
/// append.
fn store<'a>(headers: &mut Vec<Entry<'a>>, key: &'a [u8], value: &'a [u8]) {
    match headers.iter_mut().find(|e| e.key == key) {
        Some(e) => e.value = Cow::Borrowed(value),
        None => headers.push(Entry {
            key,
            value: Cow::Borrowed(value),
        }),
    }
}

fn array_of_tables<'a>(tables: impl IntoIterator<Item = Vec<Entry<'a>>>) -> Vec<u8> {
    let mut items = Vec::new();
    let mut body = Vec::new();
    for table in tables {
        body.clear();
        raw::write_table(&mut body, &table);
        items.extend_from_slice(&raw::long(b'F', &body));
    }
    raw::long(b'A', &items)
}

/// `x_death_event_key/2`: a field's value, whatever its type.
fn event_key<'e>(table: &'e [Entry<'_>], key: &[u8]) -> Option<Term<'e>> {
    raw::lookup(table, key).map(|e| Term::of(&e.value))
}

fn matches_death(table: &[Entry<'_>], queue: &[u8], reason: &[u8]) -> bool {
    event_key(table, b"queue") == Some(Term::Binary(queue))
        && event_key(table, b"reason") == Some(Term::Binary(reason))
}

/// `increment_xdeath_event_count/1`: `count + 1` in place as a long; a table without a count
/// gets `count` 1 in front (sic). A count RabbitMQ could not add 1 to restarts at 1.
fn increment_count(mut table: Vec<Entry<'_>>) -> Vec<Entry<'_>> {
    match table.iter_mut().find(|e| e.key == b"count") {
        Some(e) => {
            let next = raw::integer(&e.value).map_or(1, |n| (n + 1) as i64);
            e.value = raw::long_int(next).into();
            table
        }
        None => with_count(1, table),
    }
}

/// `group_by_queue_and_reason/1` without 3.10's reversal: one table per (queue, reason), in
/// order of first appearance, so the history stays most recent first.
fn group_by_queue_and_reason(tables: Vec<Vec<Entry<'_>>>) -> Vec<Vec<Entry<'_>>> {
    if tables.len() < 2 {
        return tables;
    }
    let keys: Vec<_> = tables
        .iter()
        .map(|t| (event_key(t, b"queue"), event_key(t, b"reason")))
        .collect();
    let mut seen = HashSet::new();
    let mut grouped = Vec::new();
    for key in &keys {
        if !seen.insert(*key) {
            continue;
        }
        let first = keys.iter().position(|k| k == key).unwrap_or_default();
        let n = keys.iter().filter(|k| *k == key).count();
        let mut table = tables[first].clone();
        if raw::lookup(&table, b"count").is_none() {
            table = with_count(n as i64, table);
        }
        grouped.push(table);
    }
    grouped
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use warren_plugin_api::field_table::{FieldTable, FieldValue};

    /// Raw content-header properties (flag word first) delivered by RabbitMQ 3.10.8, captured
    /// on the wire with pika. Each scenario's script and the times used are in the test that
    /// replays it.
    pub(crate) mod golden {
        pub const PUBLISHED_T1: &str = concat!(
            "a9800a746578742f706c61696e00000030027a7a53000000046c617374024343410000000e530000",
            "00026331530000000263320261614900000001034d6964740103053630303030026d31",
        );

        pub const DEATH1_T1_REJECTED: &str = concat!(
            "a8800a746578742f706c61696e00000132024343410000000e530000000263315300000002633203",
            "4d69647401026161490000000107782d64656174684100000099460000009405636f756e746c0000",
            "00000000000106726561736f6e530000000872656a65637465640571756575655300000002743104",
            "74696d6554000000006b0425ee0865786368616e676553000000037372630c726f7574696e672d6b",
            "657973410000001553000000026b315300000002633153000000026332136f726967696e616c2d65",
            "787069726174696f6e5300000005363030303016782d66697273742d64656174682d65786368616e",
            "6765530000000373726313782d66697273742d64656174682d71756575655300000002743114782d",
            "66697273742d64656174682d726561736f6e530000000872656a6563746564027a7a53000000046c",
            "61737403026d31",
        );

        pub const DEATH2_T2_REJECTED: &str = concat!(
            "2000000001c7024343410000000e5300000002633153000000026332034d69647401026161490000",
            "000107782d6465617468410000012e460000009005636f756e746c00000000000000010865786368",
            "616e67655300000000136f726967696e616c2d65787069726174696f6e5300000004373030300571",
            "756575655300000002743206726561736f6e530000000872656a65637465640c726f7574696e672d",
            "6b65797341000000155300000002743253000000026331530000000263320474696d655400000000",
            "6b0425f0460000009405636f756e746c000000000000000106726561736f6e530000000872656a65",
            "63746564057175657565530000000274310474696d6554000000006b0425ee0865786368616e6765",
            "53000000037372630c726f7574696e672d6b657973410000001553000000026b3153000000026331",
            "53000000026332136f726967696e616c2d65787069726174696f6e5300000005363030303016782d",
            "66697273742d64656174682d65786368616e6765530000000373726313782d66697273742d646561",
            "74682d71756575655300000002743114782d66697273742d64656174682d726561736f6e53000000",
            "0872656a6563746564027a7a53000000046c617374",
        );

        pub const DEATH3_T1_AGAIN: &str = concat!(
            "2000000001c7024343410000000e5300000002633153000000026332034d69647401026161490000",
            "000107782d6465617468410000012e460000009405636f756e746c00000000000000020865786368",
            "616e67655300000003737263136f726967696e616c2d65787069726174696f6e5300000005363030",
            "30300571756575655300000002743106726561736f6e530000000872656a65637465640c726f7574",
            "696e672d6b657973410000001553000000026b3153000000026331530000000263320474696d6554",
            "000000006b0425ee460000009005636f756e746c00000000000000010865786368616e6765530000",
            "0000136f726967696e616c2d65787069726174696f6e530000000437303030057175657565530000",
            "0002743206726561736f6e530000000872656a65637465640c726f7574696e672d6b657973410000",
            "00155300000002743253000000026331530000000263320474696d6554000000006b0425f016782d",
            "66697273742d64656174682d65786368616e6765530000000373726313782d66697273742d646561",
            "74682d71756575655300000002743114782d66697273742d64656174682d726561736f6e53000000",
            "0872656a6563746564027a7a53000000046c617374",
        );

        pub const DEATH4_T2_AGAIN: &str = concat!(
            "2000000001c7024343410000000e5300000002633153000000026332034d69647401026161490000",
            "000107782d6465617468410000012e460000009005636f756e746c00000000000000020865786368",
            "616e67655300000000136f726967696e616c2d65787069726174696f6e5300000004373030300571",
            "756575655300000002743206726561736f6e530000000872656a65637465640c726f7574696e672d",
            "6b65797341000000155300000002743253000000026331530000000263320474696d655400000000",
            "6b0425f0460000009405636f756e746c00000000000000020865786368616e676553000000037372",
            "63136f726967696e616c2d65787069726174696f6e53000000053630303030057175657565530000",
            "0002743106726561736f6e530000000872656a65637465640c726f7574696e672d6b657973410000",
            "001553000000026b3153000000026331530000000263320474696d6554000000006b0425ee16782d",
            "66697273742d64656174682d65786368616e6765530000000373726313782d66697273742d646561",
            "74682d71756575655300000002743114782d66697273742d64656174682d726561736f6e53000000",
            "0872656a6563746564027a7a53000000046c617374",
        );

        pub const EXPIRED_BY_QUEUE_TTL: &str = concat!(
            "2000000001090243434100000008530000000363633107782d64656174684100000092460000008d",
            "05636f756e746c000000000000000106726561736f6e530000000765787069726564057175657565",
            "530000000474746c710474696d6554000000006b0425f30865786368616e676553000000000c726f",
            "7574696e672d6b6579734100000011530000000474746c715300000003636331136f726967696e61",
            "6c2d65787069726174696f6e53000000043530303016782d66697273742d64656174682d65786368",
            "616e6765530000000013782d66697273742d64656174682d7175657565530000000474746c711478",
            "2d66697273742d64656174682d726561736f6e530000000765787069726564",
        );

        pub const EXPIRED_BY_EXPIRATION: &str = concat!(
            "2000000000ef07782d64656174684100000088460000008305636f756e746c000000000000000106",
            "726561736f6e5300000007657870697265640571756575655300000004657870710474696d655400",
            "0000006b0425f40865786368616e676553000000000c726f7574696e672d6b657973410000000953",
            "0000000465787071136f726967696e616c2d65787069726174696f6e5300000002353016782d6669",
            "7273742d64656174682d65786368616e6765530000000013782d66697273742d64656174682d7175",
            "65756553000000046578707114782d66697273742d64656174682d726561736f6e53000000076578",
            "7069726564",
        );

        pub const MAXLEN: &str = concat!(
            "2000000000d207782d6465617468410000006c460000006705636f756e746c000000000000000106",
            "726561736f6e53000000066d61786c656e05717565756553000000046d6178710474696d65540000",
            "00006b0425f40865786368616e676553000000000c726f7574696e672d6b65797341000000095300",
            "0000046d61787116782d66697273742d64656174682d65786368616e6765530000000013782d6669",
            "7273742d64656174682d717565756553000000046d61787114782d66697273742d64656174682d72",
            "6561736f6e53000000066d61786c656e",
        );

        pub const REJECTED_WITH_DLRK: &str = concat!(
            "2000000000db07782d64656174684100000074460000006f05636f756e746c000000000000000106",
            "726561736f6e530000000872656a65637465640571756575655300000003726b710474696d655400",
            "0000006b0425f40865786368616e676553000000000c726f7574696e672d6b657973410000001053",
            "00000003726b71530000000363633116782d66697273742d64656174682d65786368616e67655300",
            "00000013782d66697273742d64656174682d71756575655300000003726b7114782d66697273742d",
            "64656174682d726561736f6e530000000872656a6563746564",
        );

        pub const CB_EXPIRED_AFTER_CA_REJECTED: &str = concat!(
            "20000000013907782d646561746841000000d3460000006405636f756e746c000000000000000108",
            "65786368616e676553000000000571756575655300000002636206726561736f6e53000000076578",
            "70697265640c726f7574696e672d6b6579734100000007530000000263620474696d655400000000",
            "6b0426a8460000006505636f756e746c000000000000000106726561736f6e530000000872656a65",
            "63746564057175657565530000000263610474696d6554000000006b0426a80865786368616e6765",
            "53000000000c726f7574696e672d6b65797341000000075300000002636116782d66697273742d64",
            "656174682d65786368616e6765530000000013782d66697273742d64656174682d71756575655300",
            "000002636114782d66697273742d64656174682d726561736f6e530000000872656a6563746564",
        );
    }

    pub(crate) fn props(hex: &str) -> Properties {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        Properties::parse(Bytes::from(bytes)).unwrap()
    }

    /// What a client republishing the delivered message sends: its headers (and optionally
    /// an expiration), nothing else.
    pub(crate) fn republished(delivered: &Properties, expiration: Option<&[u8]>) -> Properties {
        let empty = Properties::empty();
        let mut edit = empty.edit().set_headers(delivered.headers().unwrap());
        if let Some(e) = expiration {
            edit = edit.set_shortstr(Property::Expiration, e);
        }
        edit.finish().unwrap()
    }

    pub(crate) fn death<'a>(
        queue: &'a str,
        reason: Reason,
        exchange: &'a str,
        routing_keys: &'a [&'a str],
        time_secs: u64,
    ) -> Death<'a> {
        Death {
            queue,
            reason,
            exchange,
            routing_keys,
            time_secs,
            replaces_routing_key: false,
        }
    }

    /// `p` without the `x-last-death-*` headers RabbitMQ 3.10 does not write.
    fn as_rabbit_3_10(p: &Properties) -> Properties {
        let Some(headers) = p.headers() else {
            return p.clone();
        };
        let kept: Vec<_> = raw::entries(headers)
            .unwrap()
            .into_iter()
            .filter(|e| !e.key.starts_with(b"x-last-death-"))
            .collect();
        let mut body = Vec::new();
        raw::write_table(&mut body, &kept);
        p.edit().set_headers(&body).finish().unwrap()
    }

    /// Byte-for-byte what RabbitMQ 3.10.8 delivered, once Warren's `x-last-death-*` are
    /// set aside.
    fn assert_same(ours: &Properties, rabbit_hex: &str) {
        let rabbit = props(rabbit_hex);
        let ours = as_rabbit_3_10(ours);
        assert_eq!(
            ours.raw(),
            rabbit.raw(),
            "\nours:   {ours:?}\nrabbit: {rabbit:?}"
        );
    }

    /// The `queue` and `count` of each `x-death` entry, in order.
    fn history_of(p: &Properties) -> Vec<(String, i64)> {
        let headers = FieldTable::new(p.headers().unwrap());
        let Some(FieldValue::Array(deaths)) = headers.get(b"x-death") else {
            panic!("no x-death")
        };
        deaths
            .iter()
            .map(|d| {
                let Ok(FieldValue::Table(t)) = d else {
                    panic!("not a table")
                };
                let Some(FieldValue::LongString(q)) = t.get(b"queue") else {
                    panic!("no queue")
                };
                let Some(FieldValue::I64(n)) = t.get(b"count") else {
                    panic!("no count")
                };
                (String::from_utf8(q.to_vec()).unwrap(), n)
            })
            .collect()
    }

    /// Publish to direct exchange `src` with key `k1`, headers `zz, CC [c1 c2], BCC [b1], aa,
    /// Mid` and `expiration` 60000; reject from `t1` (DLX `dlx`); republish by the client to
    /// `t2` with `expiration` 7000 and reject; republish to `src`/`k1` and reject from `t1`
    /// again; republish to `t2` and reject again.
    #[test]
    fn reject_republish_and_repeat_reproduce_rabbitmq_bytes() {
        let published = props(golden::PUBLISHED_T1);
        let d1 = dead_letter_properties(
            &published,
            &death(
                "t1",
                Reason::Rejected,
                "src",
                &["k1", "c1", "c2"],
                1795433966,
            ),
        )
        .unwrap();
        // Headers sorted (CC, Mid, aa, x-death, x-first-death-*, zz), entry in insertion
        // order, expiration gone, other properties kept.
        assert_same(&d1, golden::DEATH1_T1_REJECTED);

        let d2 = dead_letter_properties(
            &republished(&d1, Some(b"7000")),
            &death("t2", Reason::Rejected, "", &["t2", "c1", "c2"], 1795433968),
        )
        .unwrap();
        // A new (queue, reason) in front, its fields sorted by key.
        assert_same(&d2, golden::DEATH2_T2_REJECTED);

        let d3 = dead_letter_properties(
            &republished(&d2, None),
            &death(
                "t1",
                Reason::Rejected,
                "src",
                &["k1", "c1", "c2"],
                1795433969,
            ),
        )
        .unwrap();
        // count 2, moved to the front, time/exchange/original-expiration of the first death.
        assert_same(&d3, golden::DEATH3_T1_AGAIN);

        let d4 = dead_letter_properties(
            &republished(&d3, None),
            &death("t2", Reason::Rejected, "", &["t2", "c1", "c2"], 1795433970),
        )
        .unwrap();
        assert_same(&d4, golden::DEATH4_T2_AGAIN);

        // The decoded shape, for the reader: the head entry of d3.
        let headers = FieldTable::new(d3.headers().unwrap());
        let Some(FieldValue::Array(deaths)) = headers.get(b"x-death") else {
            panic!("no x-death")
        };
        let Some(Ok(FieldValue::Table(head))) = deaths.iter().next() else {
            panic!("no head")
        };
        let fields: Vec<_> = head.iter().map(|e| e.unwrap()).collect();
        assert_eq!(
            fields,
            vec![
                (&b"count"[..], FieldValue::I64(2)),
                (b"exchange", FieldValue::LongString(b"src")),
                (b"original-expiration", FieldValue::LongString(b"60000")),
                (b"queue", FieldValue::LongString(b"t1")),
                (b"reason", FieldValue::LongString(b"rejected")),
                (
                    b"routing-keys",
                    head.get(b"routing-keys").unwrap() // checked byte-for-byte above
                ),
                (b"time", FieldValue::Timestamp(1795433966)),
            ]
        );
        assert_eq!(
            headers.get(b"x-last-death-reason"),
            Some(FieldValue::LongString(b"rejected"))
        );
    }

    /// Messages published to the default exchange without headers, rejected from t1, then
    /// republished (headers only) to t2, t3, t4 and t2 again: most recent first throughout
    /// (RabbitMQ 3.10 gave `[t3, t1, t2]`, `[t4, t2, t1, t3]`, `[t2 (2), t3, t1, t4]`).
    #[test]
    fn older_entries_stay_most_recent_first() {
        let time = 1795433971;
        let mut current = Properties::empty();
        let mut step = |queue: &str| {
            let keys = [queue];
            current =
                dead_letter_properties(&current, &death(queue, Reason::Rejected, "", &keys, time))
                    .unwrap();
            history_of(&current)
        };
        let one = |q: &str| (q.to_owned(), 1);
        step("t1");
        step("t2");
        assert_eq!(step("t3"), [one("t3"), one("t2"), one("t1")]);
        assert_eq!(step("t4"), [one("t4"), one("t3"), one("t2"), one("t1")]);
        assert_eq!(
            step("t2"),
            [("t2".to_owned(), 2), one("t4"), one("t3"), one("t1")]
        );
    }

    #[test]
    fn last_death_headers_name_the_latest_death() {
        let keys = ["q"];
        let first = dead_letter_properties(
            &Properties::empty(),
            &death("q1", Reason::Expired, "src", &keys, 1),
        )
        .unwrap();
        let second =
            dead_letter_properties(&first, &death("q2", Reason::Maxlen, "dlx", &keys, 2)).unwrap();
        let headers = FieldTable::new(second.headers().unwrap());
        let text = |key: &[u8]| match headers.get(key) {
            Some(FieldValue::LongString(v)) => String::from_utf8(v.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(text(b"x-last-death-reason"), "maxlen");
        assert_eq!(text(b"x-last-death-queue"), "q2");
        assert_eq!(text(b"x-last-death-exchange"), "dlx");
        assert_eq!(text(b"x-first-death-reason"), "expired");
        assert_eq!(text(b"x-first-death-queue"), "q1");
        assert_eq!(text(b"x-first-death-exchange"), "src");
    }

    #[test]
    fn expiry_and_maxlen_reproduce_rabbitmq_bytes() {
        let with = |headers: Option<&[u8]>, expiration: Option<&[u8]>| {
            let empty = Properties::empty();
            let mut edit = empty.edit();
            if let Some(h) = headers {
                edit = edit.set_headers(h);
            }
            if let Some(e) = expiration {
                edit = edit.set_shortstr(Property::Expiration, e);
            }
            edit.finish().unwrap()
        };
        // CC [cc1] as the header table body RabbitMQ keeps (BCC stripped at publish).
        let cc = b"\x02CCA\x00\x00\x00\x08S\x00\x00\x00\x03cc1";

        // Queue TTL 100 fired first; the message's own expiration (5000) is still recorded.
        let ours = dead_letter_properties(
            &with(Some(cc), Some(b"5000")),
            &death("ttlq", Reason::Expired, "", &["ttlq", "cc1"], 1795433971),
        )
        .unwrap();
        assert_same(&ours, golden::EXPIRED_BY_QUEUE_TTL);

        let ours = dead_letter_properties(
            &with(None, Some(b"50")),
            &death("expq", Reason::Expired, "", &["expq"], 1795433972),
        )
        .unwrap();
        assert_same(&ours, golden::EXPIRED_BY_EXPIRATION);

        // x-max-length 1, drop-head; published with an empty headers table.
        let ours = dead_letter_properties(
            &with(Some(b""), None),
            &death("maxq", Reason::Maxlen, "", &["maxq"], 1795433972),
        )
        .unwrap();
        assert_same(&ours, golden::MAXLEN);

        // x-dead-letter-routing-key newrk: CC deleted, yet listed in routing-keys.
        let mut d = death("rkq", Reason::Rejected, "", &["rkq", "cc1"], 1795433972);
        d.replaces_routing_key = true;
        let ours = dead_letter_properties(&with(Some(cc), None), &d).unwrap();
        assert_same(&ours, golden::REJECTED_WITH_DLRK);
    }

    fn table(fields: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in fields {
            body.push(k.len() as u8);
            body.extend_from_slice(k.as_bytes());
            body.extend_from_slice(v);
        }
        raw::long(b'F', &body)
    }

    fn x_death_headers(items: &[Vec<u8>]) -> Properties {
        let mut body = vec![7];
        body.extend_from_slice(b"x-death");
        body.extend_from_slice(&raw::long(b'A', &items.concat()));
        Properties::empty()
            .edit()
            .set_headers(&body)
            .finish()
            .unwrap()
    }

    /// `group_by_queue_and_reason/1` on legacy histories: duplicates fold into the first and
    /// get their number as `count`; matching is by value, so an `x` queue name matches.
    #[test]
    fn legacy_duplicates_fold_and_non_tables_are_dropped() {
        let q = |name: &[u8]| raw::long(b'S', name);
        let legacy = x_death_headers(&[
            table(&[("queue", &q(b"a")), ("reason", &q(b"expired"))]),
            table(&[("queue", &q(b"b")), ("reason", &q(b"expired"))]),
            table(&[("queue", &q(b"a")), ("reason", &q(b"expired"))]),
            q(b"not a table"),
            table(&[
                ("queue", &raw::long(b'x', b"c")),
                ("reason", &q(b"rejected")),
                ("count", &[b'I', 0, 0, 0, 4]),
            ]),
        ]);
        let out =
            dead_letter_properties(&legacy, &death("c", Reason::Rejected, "", &["c"], 5)).unwrap();
        let heads: Vec<_> = crate::broker::dead_letter::cycle::history(out.headers().unwrap())
            .unwrap()
            .into_iter()
            .map(|d| match d {
                crate::broker::dead_letter::PastDeath::Table { queue, .. } => queue,
                crate::broker::dead_letter::PastDeath::NotTable => None,
            })
            .collect();
        // c (binary queue, so not a longstr for the cycle view) first, then a, b in order.
        assert_eq!(heads, vec![None, Some(&b"a"[..]), Some(&b"b"[..])]);
        let headers = FieldTable::new(out.headers().unwrap());
        let Some(FieldValue::Array(deaths)) = headers.get(b"x-death") else {
            panic!()
        };
        let counts: Vec<_> = deaths
            .iter()
            .map(|t| match t.unwrap() {
                FieldValue::Table(t) => t.get(b"count"),
                _ => None,
            })
            .collect();
        assert_eq!(
            counts,
            vec![
                Some(FieldValue::I64(5)),
                Some(FieldValue::I64(2)),
                Some(FieldValue::I64(1))
            ]
        );
        // No x-first-death-* once x-death exists.
        assert_eq!(headers.get(b"x-first-death-queue"), None);
    }

    #[test]
    fn a_non_array_x_death_is_replaced_without_first_death_headers() {
        let mut body = vec![7];
        body.extend_from_slice(b"x-death");
        body.extend_from_slice(&raw::long(b'S', b"junk"));
        let p = Properties::empty()
            .edit()
            .set_headers(&body)
            .finish()
            .unwrap();
        let out = dead_letter_properties(&p, &death("q", Reason::Expired, "e", &["k"], 9)).unwrap();
        let headers = FieldTable::new(out.headers().unwrap());
        assert_eq!(headers.get(b"x-first-death-reason"), None);
        let Some(FieldValue::Array(deaths)) = headers.get(b"x-death") else {
            panic!()
        };
        let Some(Ok(FieldValue::Table(t))) = deaths.iter().next() else {
            panic!()
        };
        let keys: Vec<_> = t.iter().map(|e| e.unwrap().0).collect();
        assert_eq!(
            keys,
            vec![
                &b"count"[..],
                b"reason",
                b"queue",
                b"time",
                b"exchange",
                b"routing-keys"
            ]
        );
    }

    #[test]
    fn other_properties_are_kept_verbatim() {
        let published = props(golden::PUBLISHED_T1);
        let out = dead_letter_properties(
            &published,
            &death("t1", Reason::Rejected, "src", &["k1"], 1),
        )
        .unwrap();
        for p in Property::ALL {
            if p != Property::Headers && p != Property::Expiration {
                assert_eq!(out.shortstr(p), published.shortstr(p), "{p:?}");
            }
        }
        assert_eq!(out.priority(), published.priority());
        assert_eq!(out.expiration(), None);
    }
}
