//! The node's resource limits: how many connections (in all, per vhost, per user), queues
//! per vhost and consumers per channel a client may make use of.
//!
//! They are RabbitMQ's: `connection_max`, the vhost limits `max-connections` and
//! `max-queues` and the user limit `max-connections` (which Warren takes as node-wide
//! defaults from its configuration rather than per object), and 3.12's
//! `consumer_max_per_channel`. Zero means unlimited, as an absent limit does in RabbitMQ.
//! The texts a refused client hears are RabbitMQ's (see [`crate::broker::replies`]).
//!
//! Counting happens where the thing counted is created, under the lock that serialises its
//! creation, so two clients racing for the last slot cannot both get it: connections in
//! [`Connections::admit`](super::connections::Connections::admit), queues under the vhost's
//! catalogue lock, consumers on their channel.

/// The limits of one node (copied into each connection's context and each vhost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Open connections on the node (RabbitMQ's `connection_max`); 0: unlimited.
    pub max_connections: usize,
    /// Open connections to one vhost (the vhost limit `max-connections`); 0: unlimited.
    pub max_connections_per_vhost: usize,
    /// Open connections of one user (the user limit `max-connections`); 0: unlimited.
    pub max_connections_per_user: usize,
    /// Queues in one vhost (the vhost limit `max-queues`); 0: unlimited.
    pub max_queues_per_vhost: usize,
    /// Consumers on one channel (RabbitMQ 3.12's `consumer_max_per_channel`); 0: unlimited.
    pub max_consumers_per_channel: usize,
}

/// Whether `count` things already there leave room for one more under `limit`.
pub fn reached(count: usize, limit: usize) -> bool {
    limit != 0 && count >= limit
}

/// Which connection limit refused a `connection.open`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionLimit {
    /// The node's total.
    Node(usize),
    /// The vhost's.
    Vhost(usize),
    /// The user's.
    User(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unlimited_and_a_limit_counts_what_is_already_there() {
        assert!(!reached(1_000_000, 0));
        assert!(!reached(1, 2));
        assert!(reached(2, 2));
        assert!(reached(3, 2));
    }
}
