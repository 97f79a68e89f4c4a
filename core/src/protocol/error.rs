//! Everything that can be wrong with bytes a peer sent, as one typed error that knows the
//! reply code the server must answer with.
//!
//! Every variant here is a connection-level ("hard") error: once the framing or a method's
//! encoding is broken the peer cannot be trusted to be in sync, which is also how RabbitMQ
//! treats them. The connection layer turns a [`ProtocolError`] into `connection.close` with
//! [`ProtocolError::reply_code`], [`ProtocolError::reply_text`] and
//! [`ProtocolError::class_method`] — except for [`ProtocolError::BadProtocolHeader`], which
//! is answered with the server's own protocol header (see
//! [`ProtocolError::replies_with_protocol_header`]).
//!
//! Reply-code choices (RabbitMQ 3.x/4.x behaviour checked against `rabbit_reader`,
//! `rabbit_command_assembler` and the generated `rabbit_framing` decoder):
//! - framing (bad end octet, unknown type, too large, short payload, bad heartbeat): 501
//!   FRAME_ERROR. RabbitMQ answers a heartbeat on a non-zero channel with 505; the spec and
//!   Warren say 501.
//! - a method whose arguments do not decode, or have bytes left over: 501 FRAME_ERROR
//!   (`cannot decode ...`), exactly as RabbitMQ does — not 502.
//! - a shortstr argument that is not UTF-8: 501 FRAME_ERROR (`Malformed UTF-8 in shortstr`,
//!   RabbitMQ's `assert_utf8`).
//! - an unknown class or method id: 540 NOT_IMPLEMENTED (RabbitMQ's reader crashes and drops
//!   the socket; a close with a code is kinder to clients).
//! - malformed content properties: 502 SYNTAX_ERROR (illegal field values; RabbitMQ crashes
//!   the channel and answers 541).
//! - a content header whose class is not `basic`, or with a non-zero weight: 505
//!   UNEXPECTED_FRAME, as RabbitMQ's command assembler answers.

use amq_protocol::types::ShortString;

use super::ReplyCode;
use super::frame::FrameType;

/// A violation of the AMQP 0-9-1 wire format by the peer (or, for
/// [`ProtocolError::Encode`], by the server itself).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The first 8 bytes were not an AMQP 0-9-1 protocol header.
    #[error("bad protocol header {0:?}")]
    BadProtocolHeader([u8; 8]),
    /// A frame did not end with the frame-end octet 0xCE.
    #[error("type {frame_type}, channel {channel}: invalid frame end marker 0x{found:02x}")]
    BadFrameEnd {
        /// The frame's type octet.
        frame_type: u8,
        /// The frame's channel.
        channel: u16,
        /// The octet found where 0xCE belonged.
        found: u8,
    },
    /// A frame type other than method, header, body or heartbeat.
    #[error("type {frame_type}, channel {channel}: unknown frame type")]
    UnknownFrameType {
        /// The frame's type octet.
        frame_type: u8,
        /// The frame's channel.
        channel: u16,
    },
    /// A frame larger than the negotiated `frame_max`.
    #[error(
        "type {frame_type}, channel {channel}: frame too large: {size} byte payload, frame_max {frame_max}"
    )]
    FrameTooLarge {
        /// The frame's type octet.
        frame_type: u8,
        /// The frame's channel.
        channel: u16,
        /// The declared payload size.
        size: u32,
        /// The frame_max in force.
        frame_max: u32,
    },
    /// A heartbeat frame on a channel other than 0.
    #[error("heartbeat frame on channel {channel}")]
    HeartbeatOnChannel {
        /// The channel it arrived on.
        channel: u16,
    },
    /// A heartbeat frame with a payload.
    #[error("heartbeat frame with a {len} byte payload")]
    HeartbeatWithPayload {
        /// The payload length.
        len: u32,
    },
    /// A method or content-header frame too short for its fixed fields.
    #[error("{frame_type} frame on channel {channel}: payload of {len} bytes is too short")]
    ShortPayload {
        /// Which kind of frame.
        frame_type: FrameType,
        /// The frame's channel.
        channel: u16,
        /// The payload length.
        len: u32,
    },
    /// A content header for a class other than `basic` (60), the only class with content.
    #[error("expected content header for class 60, got one for class {class_id} instead")]
    UnexpectedContentClass {
        /// The class id in the header.
        class_id: u16,
    },
    /// A content header with a non-zero weight field (must be 0).
    #[error("content header with non-zero weight {weight}")]
    NonZeroWeight {
        /// The weight found.
        weight: u16,
    },
    /// A class/method id pair AMQP 0-9-1 does not define.
    #[error("unknown method {class_id}/{method_id}")]
    UnknownMethod {
        /// The class id.
        class_id: u16,
        /// The method id.
        method_id: u16,
    },
    /// A known method whose arguments do not decode (truncated, trailing bytes, bad table).
    #[error("cannot decode arguments of {}", super::method::method_name(*class_id, *method_id).unwrap_or("method"))]
    MalformedMethod {
        /// The class id.
        class_id: u16,
        /// The method id.
        method_id: u16,
    },
    /// A shortstr argument of a method that is not UTF-8.
    #[error("Malformed UTF-8 in shortstr of {}", super::method::method_name(*class_id, *method_id).unwrap_or("method"))]
    InvalidUtf8 {
        /// The class id.
        class_id: u16,
        /// The method id.
        method_id: u16,
    },
    /// Content properties that do not decode.
    #[error("malformed content properties: {0}")]
    MalformedProperties(&'static str),
    /// The server tried to encode something the wire format cannot carry (a bug).
    #[error("cannot encode: {0}")]
    Encode(&'static str),
}

impl ProtocolError {
    /// The reply code of the `connection.close` the server answers with.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            ProtocolError::BadProtocolHeader(_)
            | ProtocolError::BadFrameEnd { .. }
            | ProtocolError::UnknownFrameType { .. }
            | ProtocolError::FrameTooLarge { .. }
            | ProtocolError::HeartbeatOnChannel { .. }
            | ProtocolError::HeartbeatWithPayload { .. }
            | ProtocolError::ShortPayload { .. }
            | ProtocolError::MalformedMethod { .. }
            | ProtocolError::InvalidUtf8 { .. } => ReplyCode::FrameError,
            ProtocolError::UnexpectedContentClass { .. } | ProtocolError::NonZeroWeight { .. } => {
                ReplyCode::UnexpectedFrame
            }
            ProtocolError::UnknownMethod { .. } => ReplyCode::NotImplemented,
            ProtocolError::MalformedProperties(_) => ReplyCode::SyntaxError,
            ProtocolError::Encode(_) => ReplyCode::InternalError,
        }
    }

    /// True when the answer is not a `connection.close` but the server's protocol header
    /// followed by closing the socket (the peer does not speak AMQP 0-9-1 framing yet).
    pub fn replies_with_protocol_header(&self) -> bool {
        matches!(self, ProtocolError::BadProtocolHeader(_))
    }

    /// The `(class_id, method_id)` for the close's "failing method" fields; `(0, 0)` when
    /// the error is not tied to a method.
    pub fn class_method(&self) -> (u16, u16) {
        match *self {
            ProtocolError::UnknownMethod {
                class_id,
                method_id,
            }
            | ProtocolError::MalformedMethod {
                class_id,
                method_id,
            }
            | ProtocolError::InvalidUtf8 {
                class_id,
                method_id,
            } => (class_id, method_id),
            // Content only follows basic.publish.
            ProtocolError::MalformedProperties(_)
            | ProtocolError::UnexpectedContentClass { .. }
            | ProtocolError::NonZeroWeight { .. } => (60, 40),
            _ => (0, 0),
        }
    }

    /// The reply text in RabbitMQ's form, `FRAME_ERROR - explanation`, within 255 bytes.
    pub fn reply_text(&self) -> ShortString {
        self.reply_code().reply_text(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_error_closes_the_connection() {
        let errors = [
            ProtocolError::BadProtocolHeader(*b"HTTP/1.1"),
            ProtocolError::BadFrameEnd {
                frame_type: 1,
                channel: 1,
                found: 0,
            },
            ProtocolError::UnknownFrameType {
                frame_type: 9,
                channel: 0,
            },
            ProtocolError::HeartbeatOnChannel { channel: 3 },
            ProtocolError::UnknownMethod {
                class_id: 60,
                method_id: 41,
            },
            ProtocolError::MalformedMethod {
                class_id: 50,
                method_id: 10,
            },
            ProtocolError::MalformedProperties("continuation flag set"),
            ProtocolError::NonZeroWeight { weight: 1 },
        ];
        for e in errors {
            assert!(e.reply_code().closes_connection(), "{e}");
        }
    }

    #[test]
    fn reply_texts_name_the_method() {
        let e = ProtocolError::MalformedMethod {
            class_id: 50,
            method_id: 10,
        };
        assert_eq!(e.reply_code(), ReplyCode::FrameError);
        assert_eq!(
            e.reply_text().as_str(),
            "FRAME_ERROR - cannot decode arguments of queue.declare"
        );
        assert_eq!(e.class_method(), (50, 10));
        assert!(ProtocolError::BadProtocolHeader([0; 8]).replies_with_protocol_header());
    }
}
