//! A published message as the queues hold it.
//!
//! One `Arc<Message>` per publish, shared by every queue it was routed to: enqueueing to N
//! queues clones the `Arc`, never the body. The exchange, routing key and properties are
//! slices of the frames they arrived in (see `protocol`'s hot-path invariant); a body that
//! came in several frames is joined once, when the last frame arrives.

use bytes::Bytes;

use crate::protocol::{Properties, ShortStr};

/// A message routed to one or more queues. Cloning shares the bytes (reference counts).
#[derive(Clone, Debug)]
pub struct Message {
    /// The exchange it was published to (delivered back in `basic.deliver`).
    pub exchange: ShortStr,
    /// The routing key it was published with.
    pub routing_key: ShortStr,
    /// The properties, byte-for-byte as published (BCC removed).
    pub properties: Properties,
    /// The whole body.
    pub body: Bytes,
}

impl Message {
    /// Body size in bytes.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }
}
