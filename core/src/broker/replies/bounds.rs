//! Texts for the per-connection bounds RabbitMQ does not have (its only bound there is its
//! memory alarm), so these are Warren's words, written to say what was refused and what to
//! do instead. See `server::budget`.

use crate::error::AmqpError;

/// 406: a content header whose declared size would take the connection's unfinished
/// messages past their bound.
pub fn assembly_over_limit(size: u64, held: usize, limit: usize) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "message size {size} cannot be accepted while {held} bytes of other messages are \
         being received on this connection: at most {limit} bytes of unfinished messages per \
         connection; finish a message before starting another this large"
    ))
}

/// 406: a publish that would take the connection's uncommitted transactions past their
/// bytes bound.
pub fn transaction_bytes_over_limit(size: usize, held: usize, limit: usize) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "transaction too large: a message of {size} bytes on top of {held} uncommitted bytes \
         on this connection, at most {limit}; commit more often"
    ))
}

/// 406: a publish or acknowledgement that would take the connection's uncommitted
/// transactions past their count bound.
pub fn transaction_ops_over_limit(limit: usize) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "transaction too large: at most {limit} uncommitted publishes and acknowledgements \
         per connection; commit more often"
    ))
}
