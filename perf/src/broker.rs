//! Talking to the broker outside the hot path: opening connections with a clear error when
//! that fails, and declaring / tearing down the queue and exchange a run uses.
//!
//! Setup and teardown use their own short-lived connection so that no producer or consumer
//! connection carries anything but load.

use crate::cli::{ExchangeSetup, Plan};
use crate::error::{Context, Failure};
use lapin::{
    Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions, QueuePurgeOptions,
    },
    types::{AMQPValue, FieldTable},
};
use std::time::Duration;

/// A broker that accepts TCP but never answers the handshake should fail the run, not hang it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens one connection, named so it can be told apart in the broker's management UI.
pub async fn connect(uri: &str, name: &str) -> Result<Connection, Failure> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(uri, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(Failure::new(format!(
            "cannot connect to {}: {error}",
            redact(uri)
        ))),
        Err(_) => Err(Failure::new(format!(
            "cannot connect to {}: no AMQP handshake within {} s",
            redact(uri),
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Closes a connection politely, without letting a dead broker stall the shutdown.
pub async fn close(connection: &Connection) {
    close_within(connection, Duration::from_secs(1)).await;
}

/// Closes a connection and says whether the broker answered the close in time. The broker
/// answers only after it has read everything sent before the close, so `true` also means
/// every publish on this connection reached it.
pub async fn close_within(connection: &Connection, grace: Duration) -> bool {
    matches!(
        tokio::time::timeout(grace, connection.close(200, "OK")).await,
        Ok(Ok(()))
    )
}

/// The URI with its password masked, for error messages.
pub fn redact(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://").map(|i| i + 3) else {
        return uri.to_string();
    };
    let authority_end = uri[scheme_end..]
        .find('/')
        .map_or(uri.len(), |i| scheme_end + i);
    let authority = &uri[scheme_end..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &uri[..scheme_end],
            &authority[..colon],
            &uri[scheme_end + at..]
        ),
        _ => uri.to_string(),
    }
}

/// The queue and exchange one run publishes through.
pub struct Topology {
    queue: String,
    exchange: ExchangeSetup,
    keep: bool,
}

impl Topology {
    pub fn new(plan: &Plan) -> Self {
        Self {
            queue: plan.queue.clone(),
            exchange: plan.exchange.clone(),
            keep: plan.keep_queue,
        }
    }

    /// Declares the queue (durable, so `--persistent` means something), empties it so stale
    /// messages cannot skew the counts, and declares and binds the exchange if there is one.
    pub async fn declare(&self, channel: &Channel) -> Result<(), Failure> {
        channel
            .queue_declare(
                &self.queue,
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .context(format_args!("declaring queue {:?}", self.queue))?;
        channel
            .queue_purge(&self.queue, QueuePurgeOptions::default())
            .await
            .context(format_args!("purging queue {:?}", self.queue))?;

        let (name, kind, arguments) = match &self.exchange {
            ExchangeSetup::Default => return Ok(()),
            ExchangeSetup::Named { name, kind } => {
                (name, exchange_kind(kind), FieldTable::default())
            }
            ExchangeSetup::Delayed { name } => {
                let mut arguments = FieldTable::default();
                arguments.insert(
                    "x-delayed-type".into(),
                    AMQPValue::LongString("direct".into()),
                );
                (
                    name,
                    ExchangeKind::Custom("x-delayed-message".into()),
                    arguments,
                )
            }
        };
        channel
            .exchange_declare(
                name,
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                arguments,
            )
            .await
            .context(format_args!("declaring exchange {name:?}"))?;
        channel
            .queue_bind(
                &self.queue,
                name,
                &self.queue,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .context(format_args!("binding queue {:?} to {name:?}", self.queue))
    }

    /// Deletes what the run created, unless asked to keep it.
    pub async fn teardown(&self, channel: &Channel) -> Result<(), Failure> {
        if self.keep {
            return Ok(());
        }
        channel
            .queue_delete(&self.queue, QueueDeleteOptions::default())
            .await
            .context(format_args!("deleting queue {:?}", self.queue))?;
        if let ExchangeSetup::Delayed { name } = &self.exchange {
            channel
                .exchange_delete(name, ExchangeDeleteOptions::default())
                .await
                .context(format_args!("deleting exchange {name:?}"))?;
        }
        Ok(())
    }
}

fn exchange_kind(kind: &str) -> ExchangeKind {
    match kind {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => ExchangeKind::Custom(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_masks_only_the_password() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
        assert_eq!(redact("amqp://user@host/vh"), "amqp://user@host/vh");
    }
}
