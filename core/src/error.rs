//! The broker's one error type for anything a client did or caused: an AMQP reply code and
//! the text sent with it, so that every layer fails with exactly what the client will see.
//! Whether it closes the channel or the connection follows from the code
//! ([`ReplyCode::closes_connection`]), decided once.

use crate::protocol::ReplyCode;
use std::fmt;

/// An error that ends in a `channel.close` or `connection.close` to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct AmqpError {
    /// The reply code.
    pub code: ReplyCode,
    /// Explanation, without the `NAME - ` prefix the wire form adds.
    pub text: String,
    /// Class and method ids of the method that failed (0, 0 when none applies).
    pub class_method: (u16, u16),
}

impl AmqpError {
    /// An error with any reply code.
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
            class_method: (0, 0),
        }
    }

    /// The same error, attributed to a method (sent back in the close frame).
    pub fn during(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_method = (class_id, method_id);
        self
    }

    /// 403 ACCESS_REFUSED.
    pub fn access_refused(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::AccessRefused, text)
    }

    /// 404 NOT_FOUND.
    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotFound, text)
    }

    /// 405 RESOURCE_LOCKED.
    pub fn resource_locked(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::ResourceLocked, text)
    }

    /// 406 PRECONDITION_FAILED.
    pub fn precondition_failed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::PreconditionFailed, text)
    }

    /// 503 COMMAND_INVALID.
    pub fn command_invalid(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::CommandInvalid, text)
    }

    /// 530 NOT_ALLOWED.
    pub fn not_allowed(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotAllowed, text)
    }

    /// 540 NOT_IMPLEMENTED.
    pub fn not_implemented(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::NotImplemented, text)
    }

    /// 541 INTERNAL_ERROR.
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(ReplyCode::InternalError, text)
    }

    /// True when the error ends the whole connection, not only the channel.
    pub fn closes_connection(&self) -> bool {
        self.code.closes_connection()
    }

    /// The reply text as sent on the wire: `NAME - explanation`, at most 255 bytes.
    pub fn reply_text(&self) -> String {
        self.code.reply_text(&self.text).as_str().to_owned()
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reply_text())
    }
}
