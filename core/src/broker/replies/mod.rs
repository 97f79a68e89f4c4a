//! Every reply text the broker sends, in RabbitMQ's words.
//!
//! Clients print these texts and some match on them, so they are RabbitMQ 3.10's, checked
//! against a running broker (the tests in `tests/` assert them over the wire). Keeping them in
//! one place means one spelling of each and the vhost's name always taken from the vhost:
//! every function that names an object takes the vhost it lives in. [`term`] prints the Erlang
//! terms some of RabbitMQ's texts embed.

mod bounds;
pub(crate) mod term;

pub use bounds::*;

use crate::error::AmqpError;
use crate::protocol::ReplyCode;
use term::Term;

/// 404: no such queue.
pub fn no_queue(vhost: &str, name: &str) -> AmqpError {
    AmqpError::not_found(format!("no queue '{name}' in vhost '{vhost}'"))
}

/// 404: no such exchange.
pub fn no_exchange(vhost: &str, name: &str) -> AmqpError {
    AmqpError::not_found(format!("no exchange '{name}' in vhost '{vhost}'"))
}

/// 404: an empty queue name on a channel that has declared none.
pub fn no_previous_queue() -> AmqpError {
    AmqpError::not_found("no previously declared queue")
}

/// 403: any change to the default exchange.
pub fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

/// 403: declaring an `amq.*` name.
pub fn reserved_name(what: &str, name: &str) -> AmqpError {
    AmqpError::access_refused(format!(
        "{what} name '{name}' contains reserved prefix 'amq.*'"
    ))
}

/// 403: deleting an `amq.*` exchange.
pub fn system_exchange_deletion(vhost: &str, name: &str) -> AmqpError {
    AmqpError::access_refused(format!(
        "deletion of system exchange '{name}' in vhost '{vhost}' not allowed"
    ))
}

/// 403: publishing to an internal exchange.
pub fn internal_exchange(vhost: &str, name: &str) -> AmqpError {
    AmqpError::access_refused(format!(
        "cannot publish to internal exchange '{name}' in vhost '{vhost}'"
    ))
}

/// 405: an exclusive queue used from another connection, or an `exclusive` flag that differs.
pub fn queue_locked(vhost: &str, name: &str) -> AmqpError {
    AmqpError::resource_locked(format!(
        "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It could be \
         originally declared on another connection or the exclusive property value does not \
         match that of the original declaration."
    ))
}

/// 403: a consumer where an exclusive consumer is (or an exclusive one where any is).
pub fn queue_in_exclusive_use(vhost: &str, name: &str) -> AmqpError {
    AmqpError::access_refused(format!(
        "queue '{name}' in vhost '{vhost}' in exclusive use"
    ))
}

/// 406: `if-unused` delete of a queue or exchange that is in use.
pub fn in_use(what: &str, vhost: &str, name: &str) -> AmqpError {
    AmqpError::precondition_failed(format!("{what} '{name}' in vhost '{vhost}' in use"))
}

/// 406: `if-empty` delete of a queue that is not.
pub fn queue_not_empty(vhost: &str, name: &str) -> AmqpError {
    AmqpError::precondition_failed(format!("queue '{name}' in vhost '{vhost}' not empty"))
}

/// 503: an exchange type nobody registered.
pub fn unknown_exchange_type(kind: &str) -> AmqpError {
    AmqpError::command_invalid(format!("unknown exchange type '{kind}'"))
}

/// 406: the management API asked for delayed messages of an exchange of another type.
pub fn not_delayed(vhost: &str, name: &str, delayed_type: &str) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "exchange '{name}' in vhost '{vhost}' is not of type '{delayed_type}'"
    ))
}

/// 406: a redeclare whose flag (`durable`, `auto_delete`, …) differs.
pub fn inequivalent_flag(
    what: &str,
    vhost: &str,
    name: &str,
    flag: &str,
    received: impl std::fmt::Display,
    current: impl std::fmt::Display,
) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "inequivalent arg '{flag}' for {what} '{name}' in vhost '{vhost}': received \
         '{received}' but current is '{current}'"
    ))
}

/// 406: a redeclare whose argument differs; `received` and `current` are already worded.
pub fn inequivalent_arg(
    what: &str,
    vhost: &str,
    name: &str,
    key: &str,
    received: &str,
    current: &str,
) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "inequivalent arg '{key}' for {what} '{name}' in vhost '{vhost}': received {received} \
         but current is {current}"
    ))
}

/// 406: a queue argument that is invalid, for the reason `why` (an Erlang term printed as
/// `io_lib:format("~p")` would, line breaks included, which depend on the text before it).
pub(crate) fn invalid_queue_arg(vhost: &str, queue: &str, key: &str, why: &Term) -> AmqpError {
    let mut text =
        format!("invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': ").into_bytes();
    why.pretty(&mut text, 255);
    AmqpError::precondition_failed(String::from_utf8_lossy(&text).into_owned())
}

/// 406: a queue argument of the wrong type, checked before the others.
pub fn invalid_queue_arg_type(vhost: &str, queue: &str, key: &str, type_name: &str) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "invalid type '{type_name}' for arg '{key}' in queue '{queue}' in vhost '{vhost}'"
    ))
}

/// 406: a queue property a quorum queue cannot have.
pub fn invalid_queue_property(vhost: &str, queue: &str, property: &str) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "invalid property '{property}' for queue '{queue}' in vhost '{vhost}'"
    ))
}

/// 406: an ack, nack or reject naming no unacknowledged delivery.
pub fn unknown_delivery_tag(tag: u64) -> AmqpError {
    AmqpError::precondition_failed(format!("unknown delivery tag {tag}"))
}

/// 406: a published message's `user_id` is not the publisher's login.
pub fn user_id_mismatch(claimed: &str, user: &str) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "user_id property set to '{claimed}' but authenticated user was '{user}'"
    ))
}

/// 530: the user has no permissions in the vhost it opens.
pub fn vhost_access_refused(vhost: &str, user: &str) -> AmqpError {
    AmqpError::not_allowed(format!(
        "access to vhost '{vhost}' refused for user '{user}'"
    ))
}

/// 530 at `connection.open`: no vhost of that name.
pub fn no_vhost(name: &str) -> AmqpError {
    AmqpError::not_allowed(format!("vhost {name} not found"))
}

/// 406 at `basic.publish`: a message larger than the broker takes.
pub fn message_too_large(size: u64, max: usize) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "message size {size} is larger than configured max size {max}"
    ))
}

/// 406: a queue argument of a type it cannot have (`x-queue-type`, single-active-consumer).
pub fn unacceptable_queue_arg(vhost: &str, queue: &str, key: &str, type_name: &str) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': \
         {{unacceptable_type,{type_name}}}"
    ))
}

/// 406: an `x-queue-type` no queue has.
pub fn unsupported_queue_type(vhost: &str, queue: &str, kind: &str) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "invalid arg 'x-queue-type' for queue '{queue}' in vhost '{vhost}': \
         \"unsupported queue type '{kind}'\""
    ))
}

/// 406: a consumer tag that is not a short string.
pub fn bad_consumer_tag() -> AmqpError {
    AmqpError::precondition_failed("bad consumer tag")
}

/// 530: `basic.consume` with a tag the channel already has.
pub fn consumer_tag_reused(tag: &str) -> AmqpError {
    AmqpError::not_allowed(format!("attempt to reuse consumer tag '{tag}'"))
}

/// 406: `tx.commit` or `tx.rollback` without `tx.select`.
pub fn not_transactional() -> AmqpError {
    AmqpError::precondition_failed("channel is not transactional")
}

/// 406: `confirm.select` on a transactional channel, or the reverse.
pub fn mode_switch(from: &str, to: &str) -> AmqpError {
    AmqpError::precondition_failed(format!("cannot switch from {from} to {to} mode"))
}

/// 504: `channel.open` on an open channel.
pub fn second_channel_open() -> AmqpError {
    AmqpError::new(ReplyCode::ChannelError, "second 'channel.open' seen")
}

/// 503: a method a channel does not take (`what` names the class, or the ids).
pub fn unexpected_method(what: &str) -> AmqpError {
    AmqpError::command_invalid(format!("unexpected {what}"))
}

/// 503: `channel.close-ok` on an open channel.
pub fn unimplemented_method() -> AmqpError {
    AmqpError::command_invalid("unimplemented method")
}

/// 540: something RabbitMQ does not implement either (`prefetch_size`, `immediate`, …).
pub fn not_implemented(what: &str) -> AmqpError {
    AmqpError::not_implemented(what.to_owned())
}

/// 320 to every connection when the broker stops.
pub fn shutting_down() -> AmqpError {
    AmqpError::new(
        ReplyCode::ConnectionForced,
        "broker forced connection closure with reason 'shutdown'",
    )
}

/// 505: a frame of the wrong kind (`what` says which and where).
pub fn unexpected_frame(what: &str) -> AmqpError {
    AmqpError::new(ReplyCode::UnexpectedFrame, what.to_owned())
}

/// 504: a frame on a channel that was never opened.
pub fn channel_not_open() -> AmqpError {
    AmqpError::new(ReplyCode::ChannelError, "expected 'channel.open'")
}

/// 504: a connection-class method that has no place once the connection runs.
pub fn unexpected_in_running() -> AmqpError {
    AmqpError::new(
        ReplyCode::ChannelError,
        "unexpected method in connection state running",
    )
}

/// 530 at `connection.tune-ok`: the client's limits are outside the server's (`what` is
/// RabbitMQ's wording, e.g. `frame_max=4096 < 8192 min size`).
pub fn tune_refused(what: String) -> AmqpError {
    AmqpError::not_allowed(what)
}

/// 530 at `channel.open`: as many channels open as the negotiated channel_max (RabbitMQ
/// counts open channels, whatever their numbers).
pub fn channel_limit(open: usize, channel_max: u16) -> AmqpError {
    AmqpError::not_allowed(format!(
        "number of channels opened ({open}) has reached the negotiated channel_max \
         ({channel_max})"
    ))
}

/// 503: a SASL mechanism the broker does not offer.
pub fn unknown_mechanism(mechanism: &str) -> AmqpError {
    AmqpError::command_invalid(format!("unknown authentication mechanism '{mechanism}'"))
}

/// 403: a login refused, for whatever reason (the reason goes to the log only).
pub fn login_refused(mechanism: &str) -> AmqpError {
    AmqpError::access_refused(format!(
        "Login was refused using authentication mechanism {mechanism}. For details see the \
         broker logfile."
    ))
}

/// 530 at `connection.open`: the vhost has as many connections as its limit.
pub fn vhost_connection_limit(vhost: &str, user: &str, limit: usize) -> AmqpError {
    AmqpError::not_allowed(format!(
        "access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is \
         reached"
    ))
}

/// 530 at `connection.open`: the user has as many connections as its limit.
pub fn user_connection_limit(user: &str, limit: usize) -> AmqpError {
    AmqpError::not_allowed(format!(
        "connection refused for user '{user}': user connection limit ({limit}) is reached"
    ))
}

/// 530 at `connection.open`: the node has as many connections as `--max-connections`
/// (Warren's text: RabbitMQ's listener stops accepting instead).
pub fn node_connection_limit(vhost: &str, user: &str, limit: usize) -> AmqpError {
    AmqpError::not_allowed(format!(
        "access to vhost '{vhost}' refused for user '{user}': node connection limit ({limit}) \
         is reached"
    ))
}

/// 406 at `queue.declare`: the vhost holds as many queues as its limit.
pub fn queue_limit(vhost: &str, queue: &str, limit: usize) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "cannot declare queue '{queue}': queue limit in vhost '{vhost}' ({limit}) is reached"
    ))
}

/// 530 at `basic.consume`: the channel has as many consumers as
/// `--max-consumers-per-channel` (RabbitMQ 3.12's text).
pub fn consumer_limit(limit: usize) -> AmqpError {
    AmqpError::not_allowed(format!(
        "reached maximum ({limit}) of consumers per channel"
    ))
}

/// 502 at `connection.start-ok`: a PLAIN response that is not `\0user\0password` (RabbitMQ
/// refuses it as a syntax error too, but only logs it; Warren also tells the client).
pub fn malformed_plain() -> AmqpError {
    AmqpError::new(
        ReplyCode::SyntaxError,
        "PLAIN response invalid: expected NUL, user name, NUL, password (no authorisation \
         identity, no further fields)",
    )
}

/// 502 at `connection.start-ok`: an AMQPLAIN response without long-string `LOGIN` and
/// `PASSWORD` fields (RabbitMQ's text, without the table it echoes).
pub fn malformed_amqplain() -> AmqpError {
    AmqpError::new(
        ReplyCode::SyntaxError,
        "AMQPLAIN auth info is missing LOGIN or PASSWORD field",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_vhost_they_are_given() {
        assert_eq!(
            no_queue("/dev", "q").reply_text(),
            "NOT_FOUND - no queue 'q' in vhost '/dev'"
        );
        assert_eq!(
            inequivalent_flag("queue", "/", "q", "durable", true, false).reply_text(),
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': \
             received 'true' but current is 'false'"
        );
    }
}
