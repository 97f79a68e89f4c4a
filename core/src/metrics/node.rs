//! The node's families, the same in both views: the process (memory, file descriptors,
//! disk, start time), the alarms, object counts and churn, the global message counters,
//! build and identity, and the delayed exchanges' firing lateness.
//!
//! The global counters are [`Broker::message_totals`](crate::broker::Broker::message_totals)
//! under `rabbitmq_prometheus`'s names, with its labels: `protocol="amqp091"` on each, and
//! `queue_type="rabbit_classic_queue"` on the delivery-side ones (Warren's queues all
//! behave as classic queues, so RabbitMQ's quorum and stream series are not sent). The
//! dead-lettering counters are split as RabbitMQ splits them: `dead_letter_strategy=
//! "at_most_once"` counts messages republished to a dead-letter exchange, `"disabled"` the
//! ones that died (expired, dropped by a length limit, rejected) with none configured.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::Metrics;
use super::families::{Encoded, Families, Labels};
use crate::stats::{Counter, Snapshot};

/// The RabbitMQ release whose metric names and labels these are.
const RABBITMQ_VERSION: &str = crate::http::overview::COMPATIBLE_RABBITMQ;

/// The protocol label of the global counters.
const AMQP091: (&str, &str) = ("protocol", "amqp091");

/// The queue type label: every Warren queue is a classic queue as RabbitMQ names them.
const CLASSIC: (&str, &str) = ("queue_type", "rabbit_classic_queue");

/// The node's families (see the module doc).
#[derive(Debug)]
pub struct Node(pub Metrics);

impl Collector for Node {
    fn encode(&self, encoder: DescriptorEncoder) -> Encoded {
        let mut out = Families(encoder);
        process(&mut out, &self.0)?;
        objects(&mut out, &self.0)?;
        global(&mut out, &self.0.broker.message_totals())?;
        identity(&mut out, &self.0)?;
        lateness(&mut out, &self.0)
    }
}

fn process(out: &mut Families<'_>, m: &Metrics) -> Encoded {
    out.gauge(
        "process_start_time_seconds",
        "When the broker process started, in seconds since the Unix epoch",
        m.node.started_at / 1000,
    )?;
    let alarms = m.broker.alarms();
    let raised = alarms.raised();
    out.flag(
        "rabbitmq_alarms_free_disk_space_watermark",
        "1 while the free disk space alarm is raised (publishers blocked), else 0",
        raised.disk,
    )?;
    out.flag(
        "rabbitmq_alarms_memory_used_watermark",
        "1 while the memory high watermark alarm is raised (publishers blocked), else 0",
        raised.memory,
    )?;
    let (fds_open, fds_max) = crate::http::nodes::file_descriptors();
    out.gauge(
        "rabbitmq_process_open_fds",
        "File descriptors the broker has open",
        fds_open,
    )?;
    out.gauge(
        "rabbitmq_process_max_fds",
        "The most file descriptors the broker may open (its soft limit)",
        fds_max,
    )?;
    out.gauge(
        "rabbitmq_process_open_tcp_sockets",
        "Client connections open (each one socket)",
        m.broker.connections().list().len(),
    )?;
    out.gauge(
        "rabbitmq_process_max_tcp_sockets",
        "The most sockets the broker may open (bounded by its file descriptor limit)",
        fds_max,
    )?;
    let resident = crate::alarm::memory::resident_bytes()
        .or(alarms.memory().map(|use_| use_.used))
        .unwrap_or(0);
    out.gauge(
        "rabbitmq_process_resident_memory_bytes",
        "Memory the broker process holds resident, in bytes",
        resident,
    )?;
    out.gauge(
        "rabbitmq_resident_memory_limit_bytes",
        "Resident memory above which publishers are blocked (the high watermark), in bytes; \
         0 when the memory alarm is off",
        alarms.memory().map_or(0, |use_| use_.limit),
    )?;
    // Free space is left out, not reported as 0, when the data directory cannot be read:
    // a 0 would look like a full disk.
    if let Ok(free) = crate::alarm::free_bytes(&m.node.data_dir) {
        out.gauge(
            "rabbitmq_disk_space_available_bytes",
            "Free disk space under the data directory, in bytes",
            free,
        )?;
    }
    out.gauge(
        "rabbitmq_disk_space_available_limit_bytes",
        "Free disk space below which publishers are blocked, in bytes (0: never)",
        m.node.disk_free_limit,
    )
}

fn objects(out: &mut Families<'_>, m: &Metrics) -> Encoded {
    let broker = &m.broker;
    let connections = broker.connections().list();
    let channels: Vec<_> = connections.iter().flat_map(|c| c.channels()).collect();
    let (mut queues, mut consumers) = (0, 0);
    for name in broker.vhost_names() {
        if let Some(vhost) = broker.vhost(&name) {
            let totals = vhost.totals();
            queues += totals.queues;
            consumers += totals.consumers;
        }
    }
    // RabbitMQ's publishers are channels that have published and are still open.
    let publishers = channels
        .iter()
        .filter(|ch| ch.stats().counters.get(Counter::Publish) > 0)
        .count();
    out.gauge(
        "rabbitmq_connections",
        "Client connections open",
        connections.len(),
    )?;
    out.gauge("rabbitmq_channels", "Channels open", channels.len())?;
    out.gauge("rabbitmq_consumers", "Consumers on queues", consumers)?;
    out.gauge("rabbitmq_queues", "Queues declared", queues)?;
    out.gauges(
        "rabbitmq_global_consumers",
        "Consumers on queues, by protocol",
        MetricType::Gauge,
        [(vec![AMQP091], consumers)],
    )?;
    out.gauges(
        "rabbitmq_global_publishers",
        "Open channels that have published at least one message, by protocol",
        MetricType::Gauge,
        [(vec![AMQP091], publishers)],
    )?;
    let churn = &broker.stats().churn;
    let read = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    for (name, help, count) in [
        (
            "rabbitmq_connections_opened",
            "Client connections accepted since the broker started",
            &churn.connections_opened,
        ),
        (
            "rabbitmq_connections_closed",
            "Client connections ended since the broker started",
            &churn.connections_closed,
        ),
        (
            "rabbitmq_channels_opened",
            "Channels opened since the broker started",
            &churn.channels_opened,
        ),
        (
            "rabbitmq_channels_closed",
            "Channels closed since the broker started",
            &churn.channels_closed,
        ),
        (
            "rabbitmq_queues_declared",
            "Queue declarations answered since the broker started, new queue or not",
            &churn.queues_declared,
        ),
        (
            "rabbitmq_queues_created",
            "Queues created since the broker started",
            &churn.queues_created,
        ),
        (
            "rabbitmq_queues_deleted",
            "Queues deleted since the broker started, however they went",
            &churn.queues_deleted,
        ),
    ] {
        out.counter(name, help, read(count))?;
    }
    Ok(())
}

/// The global counters: `(name without _total, help, labelled by queue type, value)`.
fn global_counters(t: &Snapshot) -> [(&'static str, &'static str, bool, u64); 14] {
    let delivered = t.get(Counter::Deliver)
        + t.get(Counter::DeliverNoAck)
        + t.get(Counter::Get)
        + t.get(Counter::GetNoAck);
    [
        (
            "rabbitmq_global_messages_received",
            "Messages clients published",
            false,
            t.get(Counter::Publish),
        ),
        (
            "rabbitmq_global_messages_received_confirm",
            "Messages clients published on channels in confirm mode",
            false,
            t.get(Counter::PublishConfirm),
        ),
        (
            "rabbitmq_global_messages_routed",
            "Published messages that reached at least one queue",
            false,
            t.get(Counter::Routed),
        ),
        (
            "rabbitmq_global_messages_unroutable_dropped",
            "Published messages that reached no queue and were dropped",
            false,
            t.get(Counter::DropUnroutable),
        ),
        (
            "rabbitmq_global_messages_unroutable_returned",
            "Mandatory messages that reached no queue and were returned to the publisher",
            false,
            t.get(Counter::ReturnUnroutable),
        ),
        (
            "rabbitmq_global_messages_confirmed",
            "Publisher confirms sent",
            false,
            t.get(Counter::Confirm),
        ),
        (
            "rabbitmq_global_messages_delivered",
            "Messages handed to clients, by consumers or basic.get",
            true,
            delivered,
        ),
        (
            "rabbitmq_global_messages_delivered_consume_manual_ack",
            "Messages delivered to consumers that acknowledge them",
            true,
            t.get(Counter::Deliver),
        ),
        (
            "rabbitmq_global_messages_delivered_consume_auto_ack",
            "Messages delivered to consumers without acknowledgement (no_ack)",
            true,
            t.get(Counter::DeliverNoAck),
        ),
        (
            "rabbitmq_global_messages_delivered_get_manual_ack",
            "Messages fetched with basic.get, to be acknowledged",
            true,
            t.get(Counter::Get),
        ),
        (
            "rabbitmq_global_messages_delivered_get_auto_ack",
            "Messages fetched with basic.get without acknowledgement (no_ack)",
            true,
            t.get(Counter::GetNoAck),
        ),
        (
            "rabbitmq_global_messages_get_empty",
            "basic.get answered with get-empty",
            true,
            t.get(Counter::GetEmpty),
        ),
        (
            "rabbitmq_global_messages_redelivered",
            "Messages handed to clients again, flagged redelivered",
            true,
            t.get(Counter::Redeliver),
        ),
        (
            "rabbitmq_global_messages_acknowledged",
            "Messages clients acknowledged",
            true,
            t.get(Counter::Ack),
        ),
    ]
}

fn global(out: &mut Families<'_>, totals: &Snapshot) -> Encoded {
    for (name, help, by_queue_type, value) in global_counters(totals) {
        let labels: Labels<'_> = if by_queue_type {
            vec![AMQP091, CLASSIC]
        } else {
            vec![AMQP091]
        };
        out.counters(name, help, [(labels, value)])?;
    }
    for (name, help, died, dead_lettered) in [
        (
            "rabbitmq_global_messages_dead_lettered_expired",
            "Messages that expired (message or queue TTL), by what became of them",
            Counter::DiedExpired,
            Counter::DeadLetteredExpired,
        ),
        (
            "rabbitmq_global_messages_dead_lettered_maxlen",
            "Messages a queue length limit dropped or refused, by what became of them",
            Counter::DiedMaxlen,
            Counter::DeadLetteredMaxlen,
        ),
        (
            "rabbitmq_global_messages_dead_lettered_rejected",
            "Messages rejected or nacked without requeue, by what became of them",
            Counter::DiedRejected,
            Counter::DeadLetteredRejected,
        ),
    ] {
        let republished = totals.get(dead_lettered);
        let dropped = totals.get(died).saturating_sub(republished);
        out.counters(
            name,
            help,
            [
                (
                    vec![CLASSIC, ("dead_letter_strategy", "at_most_once")],
                    republished,
                ),
                (vec![CLASSIC, ("dead_letter_strategy", "disabled")], dropped),
            ],
        )?;
    }
    Ok(())
}

fn identity(out: &mut Families<'_>, m: &Metrics) -> Encoded {
    let name = m.node.name.as_str();
    out.gauges(
        "rabbitmq_build_info",
        "The release this broker is and the RabbitMQ release it behaves as (always 1)",
        MetricType::Unknown,
        [(
            vec![
                ("rabbitmq_version", RABBITMQ_VERSION),
                ("prometheus_plugin_version", RABBITMQ_VERSION),
                ("product_name", "Warren"),
                ("product_version", env!("CARGO_PKG_VERSION")),
            ],
            1,
        )],
    )?;
    out.gauges(
        "rabbitmq_identity_info",
        "The node's name and the name of its cluster of one (always 1)",
        MetricType::Unknown,
        [(vec![("rabbitmq_node", name), ("rabbitmq_cluster", name)], 1)],
    )
}

fn lateness(out: &mut Families<'_>, m: &Metrics) -> Encoded {
    let reading = m.broker.stats().lateness.read();
    let buckets: Vec<(f64, u64)> = reading
        .buckets
        .iter()
        .map(|&(bound_ms, n)| {
            let bound = if bound_ms == u64::MAX {
                f64::INFINITY
            } else {
                bound_ms as f64 / 1000.0
            };
            (bound, n)
        })
        .collect();
    out.histogram(
        "warren_delayed_firing_lateness_seconds",
        "How long after its due time each delayed message was routed, in seconds",
        &buckets,
        reading.sum_ms as f64 / 1000.0,
        reading.count,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_is_every_kind_of_delivery() {
        let mut t = Snapshot::default();
        for (kind, n) in [
            (Counter::Deliver, 1),
            (Counter::DeliverNoAck, 2),
            (Counter::Get, 4),
            (Counter::GetNoAck, 8),
            (Counter::GetEmpty, 16),
        ] {
            t.0[kind as usize] = n;
        }
        let delivered = global_counters(&t)
            .into_iter()
            .find(|c| c.0 == "rabbitmq_global_messages_delivered")
            .map(|c| c.3);
        assert_eq!(delivered, Some(15));
    }
}
