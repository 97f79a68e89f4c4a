//! AMQP 0-9-1 wire format: frames, methods and content headers.
//!
//! This layer turns bytes into [`Frame`]s and back and knows nothing of connections,
//! channels or queues; the server's state machines are built on it.
//!
//! - [`frame`]: the protocol header and the frame codec ([`FrameCodec`]) — split reads,
//!   `frame_max`, frame-end octet.
//! - [`method`]: method payloads, decoded by amq-protocol ([`RawMethod::decode`]) except for
//!   the hot path: `basic.publish` ([`RawMethod::decode_publish`]) and deliveries
//!   ([`encode_deliver`]) are hand-written.
//! - [`content`]: the content header and the message [`Properties`], kept as raw bytes.
//! - [`reply_code`] and [`ProtocolError`]: what the server answers when the peer gets the
//!   wire format wrong.
//!
//! Architecture invariant (hot path): a published message's body, properties, exchange and
//! routing key are `Bytes` slices of the frames they arrived in — never copied, never decoded
//! into owned structures — until the deliver encoder copies the body once into the socket's
//! output buffer. Holders that keep messages for long may compact them (the slices keep their
//! whole read buffer alive).

pub mod content;
mod error;
pub mod frame;
pub(crate) mod headers;
pub mod method;
pub mod reply_code;
mod shortstr;
mod table;

pub use content::{BASIC_CLASS_ID, ContentHeader, Properties, PropertiesEditor, Property, Props};
pub use error::ProtocolError;
pub use frame::{
    ClientProtocol, CodecError, FRAME_END, FRAME_MIN_SIZE, Frame, FrameCodec, FrameType,
    PROTOCOL_HEADER, parse_protocol_header,
};
pub use method::{
    Deliver, Publish, RawMethod, encode_basic_ack, encode_basic_nack, encode_content,
    encode_deliver, encode_method, method_name,
};
pub use reply_code::ReplyCode;
pub use shortstr::{ShortStr, ShortStrError};
pub(crate) use table::skip_value as skip_table_value;
pub use table::type_name;
pub use table::{MAX_DEPTH as MAX_TABLE_DEPTH, decode_table_body, encode_table_body};

#[cfg(test)]
pub(crate) mod testutil {
    //! Deterministic randomness for the fuzz-style tests (no extra dependency).

    use amq_protocol::protocol::{AMQPClass, basic};

    use super::RawMethod;

    /// xorshift64*: fast, deterministic, good enough to shake a decoder.
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> XorShift {
            XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform-ish in `0..n` (`n > 0`).
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// Applies 1–3 random mutations: flips, interesting bytes, truncation, insertion,
        /// deletion, duplication.
        pub fn mutate(&mut self, bytes: &mut Vec<u8>) {
            for _ in 0..=self.below(3) {
                let len = bytes.len() as u64;
                match self.below(7) {
                    0 | 1 if len > 0 => {
                        let i = self.below(len) as usize;
                        bytes[i] ^= 1 << self.below(8);
                    }
                    2 if len > 0 => {
                        let i = self.below(len) as usize;
                        bytes[i] = [0, 1, 0x7f, 0x80, 0xce, 0xff][self.below(6) as usize];
                    }
                    3 if len > 0 => bytes.truncate(self.below(len) as usize),
                    4 => {
                        let i = self.below(len + 1) as usize;
                        bytes.insert(i, self.next() as u8);
                    }
                    5 if len > 0 => {
                        bytes.remove(self.below(len) as usize);
                    }
                    6 if len > 0 => {
                        let a = self.below(len) as usize;
                        let b = a + self.below(len - a as u64 + 1) as usize;
                        let copy = bytes[a..b].to_vec();
                        let at = self.below(len + 1) as usize;
                        bytes.splice(at..at, copy);
                    }
                    _ => {}
                }
            }
        }

        /// [`mutate`](Self::mutate) half of the time.
        pub fn mutate_sometimes(&mut self, bytes: &mut Vec<u8>) {
            if self.below(2) == 0 {
                self.mutate(bytes);
            }
        }
    }

    /// A `basic.publish` payload encoded by amq-protocol.
    pub fn publish_method(
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        immediate: bool,
    ) -> RawMethod {
        RawMethod::from_class(&AMQPClass::Basic(basic::AMQPMethod::Publish(
            basic::Publish {
                exchange: exchange.into(),
                routing_key: routing_key.into(),
                mandatory,
                immediate,
            },
        )))
        .expect("publish encodes")
    }
}
