//! How a message is laid out in a store's bytes, shared by every disk store so that a
//! message reads back byte for byte whichever store kept it.
//!
//! ```text
//! u8 exchange len | exchange | u8 routing-key len | routing key
//! u32 properties len | properties (flag word first, exactly as published)
//! u32 body len | body
//! ```
//!
//! All integers big-endian. Nothing is interpreted on the way in: the properties are the raw
//! bytes the publisher sent (headers, `x-death` and all), and are validated on the way out
//! only as much as [`Properties::parse`] checks any frame — a record that passed its
//! checksum but does not parse is reported, never trusted.

use bytes::{BufMut, Bytes};

use super::{StoreError, StoreResult};
use crate::broker::message::Message;
use crate::protocol::{Properties, ShortStr};

/// Encoded size of `message` (what [`encode`] appends).
pub fn encoded_len(message: &Message) -> usize {
    let p = message.parts();
    1 + p.exchange.len() + 1 + p.routing_key.len() + 4 + p.properties.len() + 4 + p.body.len()
}

/// Appends `message` to `out`.
pub fn encode(message: &Message, out: &mut Vec<u8>) {
    out.reserve(encoded_len(message));
    let p = message.parts();
    // A shortstr is at most 255 bytes, so its length fits the octet.
    out.put_u8(p.exchange.len() as u8);
    out.put_slice(p.exchange.as_bytes());
    out.put_u8(p.routing_key.len() as u8);
    out.put_slice(p.routing_key.as_bytes());
    out.put_u32(p.properties.len() as u32);
    out.put_slice(p.properties.raw());
    out.put_u32(p.body.len() as u32);
    out.put_slice(p.body);
}

/// Reads a message from the front of `bytes`, returning it and how many bytes it took. The
/// message is packed into its own allocation (see `broker::message`), so a recovered message
/// keeps nothing of the read buffer but a body over 64 KiB (shared as a slice of `bytes`:
/// pass a buffer such a body may own).
pub fn decode(bytes: &Bytes) -> StoreResult<(Message, usize)> {
    let mut at = 0;
    let exchange = short(bytes, &mut at, "exchange")?;
    let routing_key = short(bytes, &mut at, "routing key")?;
    let properties = long(bytes, &mut at, "properties")?;
    let properties = Properties::parse(properties)
        .map_err(|e| StoreError::Corrupt(format!("stored properties do not parse: {e}")))?;
    let body = long(bytes, &mut at, "body")?;
    Ok((
        Message::new(&exchange, &routing_key, &properties, &body),
        at,
    ))
}

fn take(bytes: &Bytes, at: &mut usize, len: usize, what: &str) -> StoreResult<Bytes> {
    let end = at
        .checked_add(len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| StoreError::Corrupt(format!("stored {what} runs past its record")))?;
    let out = bytes.slice(*at..end);
    *at = end;
    Ok(out)
}

fn short(bytes: &Bytes, at: &mut usize, what: &str) -> StoreResult<ShortStr> {
    let len = take(bytes, at, 1, what)?[0] as usize;
    let raw = take(bytes, at, len, what)?;
    ShortStr::from_bytes(raw)
        .map_err(|e| StoreError::Corrupt(format!("stored {what} is not a shortstr: {e}")))
}

fn long(bytes: &Bytes, at: &mut usize, what: &str) -> StoreResult<Bytes> {
    let len = take(bytes, at, 4, what)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    take(bytes, at, len, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message::new(
            &ShortStr::copy_from_str("ex").expect("short"),
            &ShortStr::copy_from_str("a.b").expect("short"),
            &Properties::parse(Bytes::from_static(&[
                0x20, 0x00, 0, 0, 0, 8, 1, b'x', b'S', 0, 0, 0, 1, b'y',
            ]))
            .expect("headers only"),
            &Bytes::from_static(b"hello"),
        )
    }

    #[test]
    fn a_message_reads_back_byte_for_byte_and_says_how_long_it_was() {
        let mut out = vec![9, 9];
        encode(&sample(), &mut out);
        assert_eq!(out.len(), 2 + encoded_len(&sample()));
        out.push(7); // whatever follows is not read
        let (back, used) = decode(&Bytes::from(out[2..].to_vec())).expect("decodes");
        assert_eq!(used, encoded_len(&sample()));
        assert_eq!(back.exchange(), sample().exchange());
        assert_eq!(back.routing_key(), sample().routing_key());
        assert_eq!(back.properties().raw(), sample().properties().raw());
        assert_eq!(back.body(), sample().body());
    }

    #[test]
    fn a_cut_record_is_reported_not_read_past() {
        let mut out = Vec::new();
        encode(&sample(), &mut out);
        for cut in 0..out.len() {
            let err = decode(&Bytes::from(out[..cut].to_vec()))
                .err()
                .unwrap_or_else(|| panic!("a record cut at {cut} decoded"));
            assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        }
    }
}
