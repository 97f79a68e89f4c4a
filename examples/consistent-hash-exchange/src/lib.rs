//! `x-consistent-hash`: an example exchange-type plugin, built as a loadable library.
//!
//! It follows RabbitMQ's `rabbitmq_consistent_hash_exchange`: a binding's key is a weight, the
//! routing key (or a header named by the `hash-header` exchange argument) is hashed, and every
//! message goes to exactly one destination. The same key always reaches the same destination
//! while the bindings stay put, and adding or removing one destination only moves the keys
//! that destination gains or loses.
//!
//! The mechanism is a hash ring. Each destination owns points on it: point `i` of destination
//! `d` sits at `hash(d, i)`, for `i` below the destination's weight times
//! [`POINTS_PER_WEIGHT`]. A message goes to the owner of the first point at or after its
//! key's hash, wrapping around. Because a destination's points depend only on its id and
//! weight, the ring is the same whatever order the bindings arrive in (recovery replays them
//! in any order), and changing one destination's weight adds or removes only its own points.
//!
//! RabbitMQ's plugin gives a destination exactly `weight` buckets and picks one with jump
//! consistent hashing. A ring with that few points would split traffic very unevenly (with
//! `n` random points a destination's share of the ring is off by about `1/sqrt(n)`), so every
//! unit of weight here is [`POINTS_PER_WEIGHT`] points: the share a destination gets is
//! within about 2% of its weight's share, and 1:2:3 weights give 1:2:3 traffic.
//!
//! Differences from RabbitMQ: the binding key is capped at [`MAX_WEIGHT`], so one binding
//! cannot make the ring allocate without bound; `hash-property` is refused, because the plugin
//! ABI shows a plugin the headers but not the other message properties; and two bindings of
//! one destination with different keys add their weights, where RabbitMQ's removal of either
//! drops both.

use std::collections::HashMap;
use std::io::Write as _;
use warren_plugin_api::{
    Binding, DestinationId, Destinations, ExchangeType, FieldTable, FieldValue, Message,
    PluginError,
};

warren_plugin_api::export_exchange_types! {
    name: "warren-example-consistent-hash",
    version: env!("CARGO_PKG_VERSION"),
    types: [ConsistentHashExchange],
}

/// Ring points per unit of binding weight: enough that a destination's share of the hash
/// space is within about 2% (one standard deviation) of its share of the total weight, at
/// 16 bytes a point.
pub const POINTS_PER_WEIGHT: u32 = 2048;

/// The largest binding key accepted: 2 million points, 32 MiB of ring for one binding.
pub const MAX_WEIGHT: u32 = 1000;

/// The message properties RabbitMQ can hash on; named so that asking for one gets a precise
/// refusal rather than "unsupported".
const RABBITMQ_PROPERTIES: [&[u8]; 3] = [b"correlation_id", b"message_id", b"timestamp"];

/// One `x-consistent-hash` exchange.
#[derive(Debug)]
pub struct ConsistentHashExchange {
    exchange: String,
    hash_on: HashOn,
    /// Every distinct binding, `(destination, key)`, with its weight and how many identical
    /// bindings the broker holds (the points go when the last one does).
    bindings: HashMap<(DestinationId, Box<[u8]>), Bound>,
    /// Each destination's total weight: the sum over its distinct bindings.
    weights: HashMap<DestinationId, u64>,
    /// All points, sorted by position then destination, so ties resolve the same way on
    /// every build of the ring.
    ring: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HashOn {
    RoutingKey,
    Header(Box<[u8]>),
}

#[derive(Clone, Copy, Debug)]
struct Bound {
    weight: u32,
    count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    position: u64,
    destination: DestinationId,
}

impl ExchangeType for ConsistentHashExchange {
    const NAME: &'static str = "x-consistent-hash";
    const DESCRIPTION: &'static str = "Consistent Hashing Exchange";

    fn validate(arguments: &FieldTable<'_>) -> Result<(), PluginError> {
        HashOn::parse(arguments).map(drop)
    }

    fn create(exchange: &str, arguments: &FieldTable<'_>) -> Result<Self, PluginError> {
        Ok(ConsistentHashExchange {
            exchange: exchange.to_owned(),
            hash_on: HashOn::parse(arguments)?,
            bindings: HashMap::new(),
            weights: HashMap::new(),
            ring: Vec::new(),
        })
    }

    fn validate_binding(&self, binding: &Binding) -> Result<(), PluginError> {
        parse_weight(binding.key()).map(drop)
    }

    fn add_binding(&mut self, binding: &Binding) -> Result<(), PluginError> {
        let weight = parse_weight(binding.key())?;
        let destination = binding.destination();
        let bound = self
            .bindings
            .entry((destination, binding.key().into()))
            .or_insert(Bound { weight, count: 0 });
        bound.count += 1;
        if bound.count == 1 {
            let total = *self.weights.entry(destination).or_default() + u64::from(weight);
            self.set_weight(destination, total);
        }
        Ok(())
    }

    fn remove_bindings(&mut self, bindings: &[Binding]) -> Result<(), PluginError> {
        let mut changed = Vec::new();
        for binding in bindings {
            let id = (binding.destination(), Box::<[u8]>::from(binding.key()));
            // A binding we do not know is skipped: removal must not fail halfway through.
            let Some(bound) = self.bindings.get_mut(&id) else {
                continue;
            };
            bound.count -= 1;
            if bound.count > 0 {
                continue;
            }
            let weight = bound.weight;
            self.bindings.remove(&id);
            if let Some(total) = self.weights.get_mut(&id.0) {
                *total -= u64::from(weight);
            }
            changed.push(id.0);
        }
        // One rebuild per destination, however many of its bindings went.
        changed.sort_unstable();
        changed.dedup();
        for destination in changed {
            let total = self.weights.get(&destination).copied().unwrap_or(0);
            self.set_weight(destination, total);
        }
        Ok(())
    }

    fn route(
        &self,
        message: &Message,
        destinations: &mut Destinations<'_>,
    ) -> Result<(), PluginError> {
        let Some(first) = self.ring.first() else {
            return Ok(());
        };
        let position = match &self.hash_on {
            // CC and BCC keys choose nothing: one message, one destination.
            HashOn::RoutingKey => hash(message.routing_key()),
            HashOn::Header(name) => hash_header(message.headers().get(name)),
        };
        let at = self.ring.partition_point(|p| p.position < position);
        destinations.push(self.ring.get(at).unwrap_or(first).destination);
        Ok(())
    }

    fn assert_args_equivalence(&self, arguments: &FieldTable<'_>) -> Result<(), PluginError> {
        let received = HashOn::parse(arguments)?;
        if received == self.hash_on {
            return Ok(());
        }
        let describe = |hash_on: &HashOn| match hash_on {
            HashOn::RoutingKey => "none".to_owned(),
            HashOn::Header(name) => format!(
                "the value '{}' of type 'longstr'",
                String::from_utf8_lossy(name)
            ),
        };
        Err(PluginError::precondition_failed(format!(
            "inequivalent arg 'hash-header' for exchange '{}': received {} but current is {}",
            self.exchange,
            describe(&received),
            describe(&self.hash_on)
        )))
    }
}

impl ConsistentHashExchange {
    /// Gives `destination` exactly the points of `weight`, or none at 0. Its points for a
    /// smaller weight are a prefix of those for a larger one, so a weight change moves only
    /// the keys of the points that come or go.
    fn set_weight(&mut self, destination: DestinationId, weight: u64) {
        self.ring.retain(|p| p.destination != destination);
        if weight == 0 {
            self.weights.remove(&destination);
            return;
        }
        self.weights.insert(destination, weight);
        let count = weight * u64::from(POINTS_PER_WEIGHT);
        let start = self.ring.len();
        self.ring.extend((0..count).map(|i| Point {
            position: point_position(destination, i),
            destination,
        }));
        self.ring[start..].sort_unstable();
        // Two sorted runs: the stable sort finds them and merges in linear time.
        self.ring.sort();
    }

    /// The destination of each point, in ring order (for tests and diagnostics).
    #[cfg(test)]
    fn points(&self) -> impl Iterator<Item = DestinationId> + '_ {
        self.ring.iter().map(|p| p.destination)
    }
}

impl HashOn {
    fn parse(arguments: &FieldTable<'_>) -> Result<HashOn, PluginError> {
        arguments.validate().map_err(|e| {
            PluginError::precondition_failed(format!(
                "exchange arguments are not a valid field table ({e})"
            ))
        })?;
        match (
            arguments.get(b"hash-header"),
            arguments.get(b"hash-property"),
        ) {
            (None, None) => Ok(HashOn::RoutingKey),
            (Some(_), Some(_)) => Err(PluginError::precondition_failed(
                "hash-header and hash-property are mutually exclusive",
            )),
            (Some(FieldValue::LongString(name)), None) => Ok(HashOn::Header(name.into())),
            (Some(other), None) => Err(PluginError::precondition_failed(format!(
                "hash-header must be a string (longstr), not {}",
                other.type_name()
            ))),
            (None, Some(FieldValue::LongString(property)))
                if RABBITMQ_PROPERTIES.contains(&property) =>
            {
                Err(PluginError::precondition_failed(format!(
                    "Unsupported property: {}; exchange-type plugins see only the headers, use hash-header",
                    String::from_utf8_lossy(property)
                )))
            }
            (None, Some(other)) => Err(PluginError::precondition_failed(format!(
                "Unsupported property: {}",
                match other {
                    FieldValue::LongString(text) => String::from_utf8_lossy(text).into_owned(),
                    other => format!("a value of type {}", other.type_name()),
                }
            ))),
        }
    }
}

/// Reads a binding key as a weight, the way RabbitMQ does (`list_to_integer`: an optional
/// sign and decimal digits), refusing with RabbitMQ's texts.
fn parse_weight(key: &[u8]) -> Result<u32, PluginError> {
    let (negative, digits) = match key {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, key),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(PluginError::precondition_failed(format!(
            "The binding key must be an integer: {}",
            erlang_binary(key)
        )));
    }
    let value = digits.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    if negative || value == 0 {
        return Err(PluginError::precondition_failed(
            "The binding key must be greater than 0",
        ));
    }
    match u32::try_from(value) {
        Ok(weight) if weight <= MAX_WEIGHT => Ok(weight),
        _ => Err(PluginError::precondition_failed(format!(
            "The binding key must be at most {MAX_WEIGHT} (it is the destination's weight): {}",
            erlang_binary(key)
        ))),
    }
}

/// Renders bytes as RabbitMQ's error texts print an Erlang binary: `<<"10">>`.
fn erlang_binary(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => {
            format!(
                "<<\"{}\">>",
                text.replace('\\', "\\\\").replace('"', "\\\"")
            )
        }
        _ => format!(
            "<<{}>>",
            bytes
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Hashes a header's value. Strings hash their bytes and integers their decimal text, so
/// `5` sent as any integer width, or as the string `"5"`, lands in the same place. Any other
/// type hashes like a missing header: every such message goes to one destination, as in
/// RabbitMQ.
fn hash_header(value: Option<FieldValue<'_>>) -> u64 {
    let mut digits = [0u8; 24];
    let integer = match value {
        Some(FieldValue::LongString(bytes) | FieldValue::ByteArray(bytes)) => return hash(bytes),
        Some(FieldValue::Timestamp(t)) => i128::from(t),
        Some(v) => match v.as_i64() {
            Some(i) => i128::from(i),
            None => return hash(b""),
        },
        None => return hash(b""),
    };
    let mut cursor = &mut digits[..];
    // An i128 between -2^63 and 2^64 has at most 20 digits and a sign: it fits.
    let _ = write!(cursor, "{integer}");
    let unused = cursor.len();
    hash(&digits[..digits.len() - unused])
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        state ^= u64::from(byte);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// MurmurHash3's 64-bit finaliser. FNV-1a alone leaves the high bits of short, similar keys
/// (`key-1`, `key-2`) correlated, and the ring orders by high bits first; this bijection
/// spreads every input bit over every output bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The position on the ring of a routing key (or header value). Stable across builds,
/// platforms and versions: it is part of which queue a key lands in.
fn hash(bytes: &[u8]) -> u64 {
    fmix64(fnv1a(FNV_OFFSET_BASIS, bytes))
}

/// The position of point `index` of `destination`: the hash of the id's and the index's
/// little-endian bytes.
fn point_position(destination: DestinationId, index: u64) -> u64 {
    fmix64(fnv1a(
        fnv1a(FNV_OFFSET_BASIS, &destination.0.to_le_bytes()),
        &index.to_le_bytes(),
    ))
}

#[cfg(test)]
mod tests;
