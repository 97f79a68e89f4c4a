//! Server-generated names: `amq.gen-…` queues and `amq.ctag-…` consumer tags.
//!
//! RabbitMQ appends 22 url-safe base64 characters (16 random bytes, unpadded); clients and
//! tools pattern-match on that shape, so Warren produces the same. The randomness comes from
//! the standard library's per-process random hash keys mixed with a counter: names must be
//! unique and unguessable enough not to collide across restarts, not cryptographic.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Prefix of server-named queues.
pub const QUEUE_PREFIX: &str = "amq.gen-";
/// Prefix of server-generated consumer tags.
pub const CONSUMER_TAG_PREFIX: &str = "amq.ctag-";

fn random_u64() -> u64 {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = STATE.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    hasher.write_u64(nanos);
    hasher.finish()
}

/// Url-safe base64 without padding.
fn base64_url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `prefix` followed by 22 random url-safe base64 characters.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    let mut name = String::with_capacity(prefix.len() + 22);
    name.push_str(prefix);
    name.push_str(&base64_url(&bytes));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_queue_names_have_rabbitmqs_shape() {
        let name = generate(QUEUE_PREFIX);
        let suffix = name.strip_prefix("amq.gen-").expect("prefix");
        assert_eq!(suffix.len(), 22);
        assert!(
            suffix
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn generated_names_differ() {
        assert_ne!(generate(QUEUE_PREFIX), generate(QUEUE_PREFIX));
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }
}
