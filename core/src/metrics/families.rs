//! Writing metric families: a descriptor (`# HELP`, `# TYPE`) and its samples, in the few
//! shapes the endpoint uses, over `prometheus-client`'s encoder.
//!
//! Counter names are given without `_total`: the encoder appends it to every counter, so
//! `counter("rabbitmq_global_messages_routed", …)` is `rabbitmq_global_messages_routed_total`
//! on the wire.

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// What encoding returns (only a failing writer fails it).
pub type Encoded = Result<(), std::fmt::Error>;

/// Labels of one series: `(name, value)` pairs.
pub type Labels<'a> = Vec<(&'static str, &'a str)>;

/// The families of one scrape.
pub struct Families<'a>(pub DescriptorEncoder<'a>);

impl Families<'_> {
    fn family<'s>(
        &'s mut self,
        name: &'s str,
        help: &str,
        kind: MetricType,
    ) -> Result<MetricEncoder<'s>, std::fmt::Error> {
        self.0.encode_descriptor(name, help, None, kind)
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl EncodeGaugeValue) -> Encoded {
        self.family(name, help, MetricType::Gauge)?
            .encode_gauge(&value)
    }

    /// An untyped 0/1 without labels (RabbitMQ's alarm flags).
    pub fn flag(&mut self, name: &str, help: &str, raised: bool) -> Encoded {
        self.family(name, help, MetricType::Unknown)?
            .encode_gauge(&u64::from(raised))
    }

    /// A counter without labels (`name` without `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> Encoded {
        self.family(name, help, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)
    }

    /// A gauge (or, with `MetricType::Unknown`, an untyped series) per label set.
    pub fn gauges<'l, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        series: impl IntoIterator<Item = (Labels<'l>, V)>,
    ) -> Encoded {
        let mut family = self.family(name, help, kind)?;
        for (labels, value) in series {
            family.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    /// A counter per label set (`name` without `_total`).
    pub fn counters<'l>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'l>, u64)>,
    ) -> Encoded {
        let mut family = self.family(name, help, MetricType::Counter)?;
        for (labels, value) in series {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }

    /// A histogram without labels from cumulative `(upper bound, count)` buckets, the last
    /// `+Inf` (as [`crate::stats::HistogramReading`] has them, bounds already in the unit).
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        cumulative: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) -> Encoded {
        // The encoder sums the buckets itself: hand it each bucket's own count.
        let mut below = 0;
        let own: Vec<(f64, u64)> = cumulative
            .iter()
            .map(|&(bound, at_or_under)| {
                let n = at_or_under.saturating_sub(below);
                below = at_or_under;
                (bound, n)
            })
            .collect();
        self.family(name, help, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(sum, count, &own, None)
    }
}
