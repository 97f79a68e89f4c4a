//! AMQP 0-9-1 reply codes, as sent in `connection.close`, `channel.close` and
//! `basic.return`.
//!
//! The names are RabbitMQ's (`NOT_FOUND`, not the spec's `not-found`) because clients print
//! them and users search for them; reply texts take the form `NAME - explanation`. Whether a
//! code closes the channel (a "soft" error) or the whole connection (a "hard" error) is fixed
//! by the spec and decided here, once, so no caller has to remember it.

use std::fmt;

use amq_protocol::types::ShortString;

/// A reply code. Only the codes of AMQP 0-9-1 (with RabbitMQ's names) can be built, so a
/// close frame can never carry a number a client does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ReplyCode {
    /// 200: the normal outcome of a close.
    ReplySuccess = 200,
    /// 311: a message was too large to deliver (soft).
    ContentTooLarge = 311,
    /// 312: a `mandatory` message could not be routed (used in `basic.return`).
    NoRoute = 312,
    /// 313: an `immediate` message had no consumer (used in `basic.return`).
    NoConsumers = 313,
    /// 320: an operator or the server shutting down closed the connection.
    ConnectionForced = 320,
    /// 402: the virtual host path is invalid.
    InvalidPath = 402,
    /// 403: permission denied, or a reserved name (`amq.*`) used.
    AccessRefused = 403,
    /// 404: an exchange or queue does not exist.
    NotFound = 404,
    /// 405: another connection holds an exclusive queue.
    ResourceLocked = 405,
    /// 406: a precondition (equivalence, delivery tag, argument) failed.
    PreconditionFailed = 406,
    /// 501: the framing was broken; the connection has lost sync.
    FrameError = 501,
    /// 502: a frame carried illegal values for one or more fields.
    SyntaxError = 502,
    /// 503: a command that is invalid in the current state.
    CommandInvalid = 503,
    /// 504: a channel that is not open, or opened twice.
    ChannelError = 504,
    /// 505: a frame of a type not expected at this point (e.g. a body without a header).
    UnexpectedFrame = 505,
    /// 506: the server ran out of a resource.
    ResourceError = 506,
    /// 530: something the client may not do (e.g. `channel_max` exceeded).
    NotAllowed = 530,
    /// 540: functionality the server does not implement.
    NotImplemented = 540,
    /// 541: a bug or failure inside the server.
    InternalError = 541,
}

impl ReplyCode {
    /// Every reply code, in numeric order.
    pub const ALL: [ReplyCode; 19] = [
        ReplyCode::ReplySuccess,
        ReplyCode::ContentTooLarge,
        ReplyCode::NoRoute,
        ReplyCode::NoConsumers,
        ReplyCode::ConnectionForced,
        ReplyCode::InvalidPath,
        ReplyCode::AccessRefused,
        ReplyCode::NotFound,
        ReplyCode::ResourceLocked,
        ReplyCode::PreconditionFailed,
        ReplyCode::FrameError,
        ReplyCode::SyntaxError,
        ReplyCode::CommandInvalid,
        ReplyCode::ChannelError,
        ReplyCode::UnexpectedFrame,
        ReplyCode::ResourceError,
        ReplyCode::NotAllowed,
        ReplyCode::NotImplemented,
        ReplyCode::InternalError,
    ];

    /// The numeric code sent on the wire.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The code for a number, if AMQP 0-9-1 defines one (e.g. a client's `channel.close`).
    pub fn from_code(code: u16) -> Option<ReplyCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// RabbitMQ's name for the code, the prefix of every reply text.
    pub const fn name(self) -> &'static str {
        match self {
            ReplyCode::ReplySuccess => "REPLY_SUCCESS",
            ReplyCode::ContentTooLarge => "CONTENT_TOO_LARGE",
            ReplyCode::NoRoute => "NO_ROUTE",
            ReplyCode::NoConsumers => "NO_CONSUMERS",
            ReplyCode::ConnectionForced => "CONNECTION_FORCED",
            ReplyCode::InvalidPath => "INVALID_PATH",
            ReplyCode::AccessRefused => "ACCESS_REFUSED",
            ReplyCode::NotFound => "NOT_FOUND",
            ReplyCode::ResourceLocked => "RESOURCE_LOCKED",
            ReplyCode::PreconditionFailed => "PRECONDITION_FAILED",
            ReplyCode::FrameError => "FRAME_ERROR",
            ReplyCode::SyntaxError => "SYNTAX_ERROR",
            ReplyCode::CommandInvalid => "COMMAND_INVALID",
            ReplyCode::ChannelError => "CHANNEL_ERROR",
            ReplyCode::UnexpectedFrame => "UNEXPECTED_FRAME",
            ReplyCode::ResourceError => "RESOURCE_ERROR",
            ReplyCode::NotAllowed => "NOT_ALLOWED",
            ReplyCode::NotImplemented => "NOT_IMPLEMENTED",
            ReplyCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// Whether an error with this code closes the whole connection (the spec's "hard
    /// error") rather than just the channel it happened on.
    ///
    /// 200 and the 3xx codes are not errors of a channel: 311/312/313 travel in
    /// `basic.return` or close a channel, 320 is only ever a connection close. 403, 404, 405
    /// and 406 are channel-level; every 5xx and 402 close the connection. (RabbitMQ sends
    /// some soft codes as connection closes, e.g. 503 for an unknown exchange type on 3.x —
    /// 503 is hard anyway — so this table is the spec's.)
    pub const fn closes_connection(self) -> bool {
        match self {
            ReplyCode::ReplySuccess
            | ReplyCode::ContentTooLarge
            | ReplyCode::NoRoute
            | ReplyCode::NoConsumers
            | ReplyCode::AccessRefused
            | ReplyCode::NotFound
            | ReplyCode::ResourceLocked
            | ReplyCode::PreconditionFailed => false,
            ReplyCode::ConnectionForced
            | ReplyCode::InvalidPath
            | ReplyCode::FrameError
            | ReplyCode::SyntaxError
            | ReplyCode::CommandInvalid
            | ReplyCode::ChannelError
            | ReplyCode::UnexpectedFrame
            | ReplyCode::ResourceError
            | ReplyCode::NotAllowed
            | ReplyCode::NotImplemented
            | ReplyCode::InternalError => true,
        }
    }

    /// The reply text RabbitMQ would send: `NAME - explanation`, cut to the 255 bytes a
    /// shortstr can hold (on a character boundary, so the text stays valid UTF-8).
    pub fn reply_text(self, explanation: &str) -> ShortString {
        let mut text = String::with_capacity(self.name().len() + 3 + explanation.len());
        text.push_str(self.name());
        text.push_str(" - ");
        text.push_str(explanation);
        truncate_to_shortstr(&mut text);
        ShortString::from(text)
    }
}

/// Cuts `text` to at most 255 bytes, backing off to the previous character boundary.
pub(crate) fn truncate_to_shortstr(text: &mut String) {
    if text.len() > 255 {
        let mut end = 255;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

impl From<ReplyCode> for u16 {
    fn from(code: ReplyCode) -> u16 {
        code.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_numbers() {
        for code in ReplyCode::ALL {
            assert_eq!(ReplyCode::from_code(code.code()), Some(code));
        }
        assert_eq!(ReplyCode::from_code(0), None);
        assert_eq!(ReplyCode::from_code(599), None);
        assert!(ReplyCode::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
    }

    #[test]
    fn hard_errors_agree_with_amq_protocol() {
        use amq_protocol::protocol::AMQPErrorKind;
        for code in ReplyCode::ALL {
            if let Some(kind) = AMQPErrorKind::from_id(code.code()) {
                let hard = matches!(kind, AMQPErrorKind::Hard(_));
                assert_eq!(hard, code.closes_connection(), "{code}");
            }
        }
    }

    #[test]
    fn names_are_rabbitmq_names() {
        assert_eq!(ReplyCode::NotFound.name(), "NOT_FOUND");
        assert_eq!(
            ReplyCode::PreconditionFailed.to_string(),
            "406 PRECONDITION_FAILED"
        );
        assert!(!ReplyCode::NotFound.closes_connection());
        assert!(ReplyCode::FrameError.closes_connection());
    }

    #[test]
    fn reply_text_is_cut_to_a_shortstr_on_a_char_boundary() {
        let text = ReplyCode::NotFound.reply_text("no queue 'x' in vhost '/'");
        assert_eq!(text.as_str(), "NOT_FOUND - no queue 'x' in vhost '/'");
        let long = "é".repeat(300);
        let text = ReplyCode::NotFound.reply_text(&long);
        assert!(text.as_str().len() <= 255);
        assert!(text.as_str().len() >= 254);
        assert!(text.as_str().starts_with("NOT_FOUND - é"));
    }
}
