//! The queue, exchange and delayed-exchange families.
//!
//! Queue figures are read from each queue's mirrored atomics ([`Queue::observed_counts`],
//! [`Queue::observed_unacked`]) and counters, never under its lock, so a scrape does not
//! slow deliveries. The aggregated view sums them without labels, as `rabbitmq_prometheus`
//! does by default; the per-object view labels each queue `{vhost, queue}` and each
//! exchange `{vhost, exchange}`.
//!
//! RabbitMQ's per-object `rabbitmq_queue_messages_published_total` is labelled by the
//! channel and exchange it came through too; Warren counts what each queue received, so its
//! series is per queue only. Exchanges have Warren's own families
//! (`warren_exchange_messages_published_{in,out}_total`), RabbitMQ has none per exchange.
//!
//! The delayed exchanges' families are sent in both views, labelled `{vhost, exchange}`:
//! there are few delayed exchanges and the pending count per exchange is the point.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::View;
use super::families::{Encoded, Families, Labels};
use crate::broker::{Broker, Exchange, Queue};
use crate::stats::Counter;

/// The object families of one view.
#[derive(Debug)]
pub struct Objects {
    /// The broker read.
    pub broker: Arc<Broker>,
    /// Which view.
    pub view: View,
}

/// One queue's figures.
struct QueueRow {
    vhost: String,
    queue: Arc<Queue>,
    ready: usize,
    unacked: usize,
    consumers: usize,
    published: u64,
}

impl QueueRow {
    fn labels(&self) -> Labels<'_> {
        vec![("vhost", self.vhost.as_str()), ("queue", self.queue.name())]
    }
}

impl Collector for Objects {
    fn encode(&self, encoder: DescriptorEncoder) -> Encoded {
        let mut out = Families(encoder);
        let mut queues = Vec::new();
        let mut exchanges: Vec<(String, Arc<Exchange>)> = Vec::new();
        for name in self.broker.vhost_names() {
            let Some(vhost) = self.broker.vhost(&name) else {
                continue;
            };
            for queue in vhost.queues() {
                let (ready, consumers) = queue.observed_counts();
                queues.push(QueueRow {
                    vhost: name.clone(),
                    ready,
                    unacked: queue.observed_unacked(),
                    consumers,
                    published: queue.stats().counters.get(Counter::Publish),
                    queue,
                });
            }
            exchanges.extend(vhost.exchanges().into_iter().map(|x| (name.clone(), x)));
        }
        queues.sort_by(|a, b| (&a.vhost, a.queue.name()).cmp(&(&b.vhost, b.queue.name())));
        exchanges.sort_by(|a, b| (&a.0, a.1.name()).cmp(&(&b.0, b.1.name())));
        match self.view {
            View::Aggregated => aggregated(&mut out, &self.broker, &queues)?,
            View::PerObject => {
                per_queue(&mut out, &queues)?;
                per_exchange(&mut out, &exchanges)?;
            }
        }
        delayed(&mut out, &exchanges)
    }
}

/// The queue families' names and help, in the order both views send them.
const READY: (&str, &str) = (
    "rabbitmq_queue_messages_ready",
    "Messages ready to be delivered to consumers",
);
const UNACKED: (&str, &str) = (
    "rabbitmq_queue_messages_unacked",
    "Messages delivered to consumers and not yet acknowledged",
);
const MESSAGES: (&str, &str) = (
    "rabbitmq_queue_messages",
    "Messages ready plus delivered and not yet acknowledged",
);
const CONSUMERS: (&str, &str) = ("rabbitmq_queue_consumers", "Consumers on the queue");
const PUBLISHED: (&str, &str) = (
    "rabbitmq_queue_messages_published",
    "Messages enqueued into the queue",
);

fn aggregated(out: &mut Families<'_>, broker: &Broker, queues: &[QueueRow]) -> Encoded {
    let sum = |f: fn(&QueueRow) -> usize| queues.iter().map(f).sum::<usize>();
    out.gauge(READY.0, READY.1, sum(|q| q.ready))?;
    out.gauge(UNACKED.0, UNACKED.1, sum(|q| q.unacked))?;
    out.gauge(MESSAGES.0, MESSAGES.1, sum(|q| q.ready + q.unacked))?;
    out.gauge(CONSUMERS.0, CONSUMERS.1, sum(|q| q.consumers))?;
    // A counter must not go down when a queue is deleted: what deleted queues had
    // received stays in the node's retired totals.
    let published = broker.stats().deleted_queues.get(Counter::Publish)
        + queues.iter().map(|q| q.published).sum::<u64>();
    out.counter(PUBLISHED.0, PUBLISHED.1, published)
}

fn per_queue(out: &mut Families<'_>, queues: &[QueueRow]) -> Encoded {
    let gauge = |out: &mut Families<'_>, (name, help): (&str, &str), f: fn(&QueueRow) -> usize| {
        out.gauges(
            name,
            help,
            MetricType::Gauge,
            queues.iter().map(|q| (q.labels(), f(q))),
        )
    };
    gauge(out, READY, |q| q.ready)?;
    gauge(out, UNACKED, |q| q.unacked)?;
    gauge(out, MESSAGES, |q| q.ready + q.unacked)?;
    gauge(out, CONSUMERS, |q| q.consumers)?;
    out.counters(
        PUBLISHED.0,
        PUBLISHED.1,
        queues.iter().map(|q| (q.labels(), q.published)),
    )
}

fn exchange_labels<'a>(vhost: &'a str, exchange: &'a Exchange) -> Labels<'a> {
    vec![("vhost", vhost), ("exchange", exchange.name())]
}

fn per_exchange(out: &mut Families<'_>, exchanges: &[(String, Arc<Exchange>)]) -> Encoded {
    for (name, help, kind) in [
        (
            "warren_exchange_messages_published_in",
            "Messages published into the exchange, by clients or by other exchanges",
            Counter::PublishIn,
        ),
        (
            "warren_exchange_messages_published_out",
            "Messages the exchange routed on, one per destination queue",
            Counter::PublishOut,
        ),
    ] {
        out.counters(
            name,
            help,
            exchanges
                .iter()
                .map(|(vhost, x)| (exchange_labels(vhost, x), x.stats().counters.get(kind))),
        )?;
    }
    Ok(())
}

fn delayed(out: &mut Families<'_>, exchanges: &[(String, Arc<Exchange>)]) -> Encoded {
    let delayed: Vec<_> = exchanges
        .iter()
        .filter_map(|(vhost, x)| x.delayed().map(|d| (exchange_labels(vhost, x), x, d)))
        .collect();
    out.gauges(
        "warren_delayed_messages_pending",
        "Messages a delayed exchange holds until they fall due",
        MetricType::Gauge,
        delayed
            .iter()
            .map(|(labels, _, d)| (labels.clone(), d.len())),
    )?;
    for (name, help, kind) in [
        (
            "warren_delayed_messages_held",
            "Messages the delayed exchange took to hold",
            Counter::Held,
        ),
        (
            "warren_delayed_messages_fired",
            "Held messages that fell due and were routed",
            Counter::Fired,
        ),
        (
            "warren_delayed_messages_cancelled",
            "Held messages cancelled through the management API",
            Counter::Cancelled,
        ),
    ] {
        out.counters(
            name,
            help,
            // Counted on the delayed state, or on the exchange: each kind on one of them.
            delayed.iter().map(|(labels, x, d)| {
                let n = d.stats().counters.get(kind) + x.stats().counters.get(kind);
                (labels.clone(), n)
            }),
        )?;
    }
    Ok(())
}
