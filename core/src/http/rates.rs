//! Message statistics in the API: the one place that renders RabbitMQ's `message_stats`
//! shape — `{"publish": n, "publish_details": {"rate": r}, …}` — from an object's
//! [`Stats`], for queues, exchanges, channels, connections, vhosts and the overview.
//!
//! A count is read from the live counters (or a sum the caller computed); its rate is from
//! the samples the sampler took (`broker::sampler`), per second over the last interval.
//! Two keys are sums RabbitMQ reports beside their parts: `deliver_get` (deliveries and gets,
//! with and without ack) and `dead_lettered` (Warren's: dead-lettered for any reason).
//!
//! With `?msg_rates_age=<s>&msg_rates_incr=<s>` (RabbitMQ's parameters, seconds) each
//! `_details` also carries `samples` (newest first, at most one per `incr`, reaching back
//! `age`), `avg_rate` (per second across them) and `avg` (their mean). How far back there is
//! history depends on the object: the node keeps ten minutes, other objects the last two
//! samples.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use crate::stats::{Counter, Series, Snapshot, Stats};

/// One key of `message_stats`: a counter kind, or a sum of kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// One kind.
    Kind(Counter),
    /// `deliver_get`: deliver, deliver_no_ack, get, get_no_ack.
    DeliverGet,
    /// `dead_lettered`: the three dead-lettered kinds.
    DeadLettered,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Kind(kind) => kind.key(),
            Key::DeliverGet => "deliver_get",
            Key::DeadLettered => "dead_lettered",
        }
    }

    fn value(self, counts: &Snapshot) -> u64 {
        let sum = |kinds: &[Counter]| kinds.iter().map(|&k| counts.get(k)).sum();
        match self {
            Key::Kind(kind) => counts.get(kind),
            Key::DeliverGet => sum(&[
                Counter::Deliver,
                Counter::DeliverNoAck,
                Counter::Get,
                Counter::GetNoAck,
            ]),
            Key::DeadLettered => sum(&[
                Counter::DeadLetteredExpired,
                Counter::DeadLetteredMaxlen,
                Counter::DeadLetteredRejected,
            ]),
        }
    }
}

use Counter as C;

/// What a queue reports.
pub const QUEUE_KEYS: &[Key] = &[
    Key::Kind(C::Publish),
    Key::Kind(C::Deliver),
    Key::Kind(C::DeliverNoAck),
    Key::Kind(C::Get),
    Key::Kind(C::GetNoAck),
    Key::DeliverGet,
    Key::Kind(C::Redeliver),
    Key::Kind(C::Ack),
    Key::Kind(C::DiedExpired),
    Key::Kind(C::DiedMaxlen),
    Key::Kind(C::DiedRejected),
    Key::DeadLettered,
    Key::Kind(C::DeadLetteredExpired),
    Key::Kind(C::DeadLetteredMaxlen),
    Key::Kind(C::DeadLetteredRejected),
];

/// What an exchange reports.
pub const EXCHANGE_KEYS: &[Key] = &[Key::Kind(C::PublishIn), Key::Kind(C::PublishOut)];

/// What a delayed exchange reports beside [`EXCHANGE_KEYS`].
pub const DELAYED_KEYS: &[Key] = &[
    Key::Kind(C::Held),
    Key::Kind(C::Fired),
    Key::Kind(C::Cancelled),
];

/// What a channel (and a connection, the sum of its channels) reports.
pub const CHANNEL_KEYS: &[Key] = &[
    Key::Kind(C::Publish),
    Key::Kind(C::PublishConfirm),
    Key::Kind(C::Routed),
    Key::Kind(C::Confirm),
    Key::Kind(C::ReturnUnroutable),
    Key::Kind(C::DropUnroutable),
    Key::Kind(C::Deliver),
    Key::Kind(C::DeliverNoAck),
    Key::Kind(C::Get),
    Key::Kind(C::GetNoAck),
    Key::Kind(C::GetEmpty),
    Key::DeliverGet,
    Key::Kind(C::Redeliver),
    Key::Kind(C::Ack),
];

/// What a vhost and the overview report beyond [`CHANNEL_KEYS`]: what happened in queues
/// and delayed exchanges.
pub const NODE_EXTRA_KEYS: &[Key] = &[
    Key::Kind(C::DiedExpired),
    Key::Kind(C::DiedMaxlen),
    Key::Kind(C::DiedRejected),
    Key::DeadLettered,
    Key::Kind(C::DeadLetteredExpired),
    Key::Kind(C::DeadLetteredMaxlen),
    Key::Kind(C::DeadLetteredRejected),
    Key::Kind(C::Held),
    Key::Kind(C::Fired),
    Key::Kind(C::Cancelled),
];

/// The sample window a request asked for (`msg_rates_age`, `msg_rates_incr`, in ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// `(age, incr)` when both were given.
    pub range: Option<(u64, u64)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Window {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Window, ApiError> {
        Window::parse(parts.uri.query().unwrap_or(""))
    }
}

impl Window {
    /// Reads `msg_rates_age` and `msg_rates_incr` (whole seconds, both or neither; incr
    /// at least 1) from a query string; other parameters are left to their handler.
    pub fn parse(query: &str) -> Result<Window, ApiError> {
        let (mut age, mut incr) = (None, None);
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "msg_rates_age" => &mut age,
                "msg_rates_incr" => &mut incr,
                _ => continue,
            };
            let seconds: u64 = value.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "{name} must be a whole number of seconds, not '{value}'"
                ))
            })?;
            *slot = Some(seconds);
        }
        match (age, incr) {
            (None, None) => Ok(Window::default()),
            (Some(_), Some(0)) => Err(ApiError::bad_request(
                "msg_rates_incr must be at least 1 second",
            )),
            (Some(age), Some(incr)) => Ok(Window {
                range: Some((age.saturating_mul(1000), incr * 1000)),
            }),
            _ => Err(ApiError::bad_request(
                "msg_rates_age and msg_rates_incr must be given together",
            )),
        }
    }
}

/// Inserts `keys` of an object's live counters into `into`, rates from its samples.
pub fn render(into: &mut Map<String, Value>, stats: &Stats, keys: &[Key], window: Window) {
    render_counts(into, &stats.counters.snapshot(), stats, keys, window);
}

/// Inserts `keys` of `counts` (a sum the caller took now) into `into`, rates from the
/// samples of the same sum in `sampled`.
pub fn render_counts(
    into: &mut Map<String, Value>,
    counts: &Snapshot,
    sampled: &Stats,
    keys: &[Key],
    window: Window,
) {
    let points = sampled.samples();
    for &key in keys {
        let values: Vec<(u64, u64)> = points.iter().map(|(at, c)| (*at, key.value(c))).collect();
        into.insert(key.name().to_owned(), json!(key.value(counts)));
        into.insert(format!("{}_details", key.name()), details(&values, window));
    }
}

/// `message_stats` of an object with one [`Stats`].
pub fn message_stats(stats: &Stats, keys: &[Key], window: Window) -> Value {
    let mut m = Map::new();
    render(&mut m, stats, keys, window);
    Value::Object(m)
}

/// Inserts `name` (the latest of value `i` of `series`, or `now` if given) and its
/// `_details` into `into`: gauges and byte counts (`messages`, `recv_oct`).
pub fn render_series<const N: usize>(
    into: &mut Map<String, Value>,
    name: &str,
    now: u64,
    series: &Series<N>,
    i: usize,
    window: Window,
) {
    let values: Vec<(u64, u64)> = series
        .since(0)
        .into_iter()
        .map(|(at, v)| (at, v[i]))
        .collect();
    into.insert(name.to_owned(), json!(now));
    into.insert(format!("{name}_details"), details(&values, window));
}

/// `{"rate": r}` from the last two of `values` (oldest first), plus the samples, average
/// rate and average when a window was asked for.
fn details(values: &[(u64, u64)], window: Window) -> Value {
    let rate = match values {
        [.., (t0, a), (t1, b)] if t1 > t0 => (*b as f64 - *a as f64) * 1000.0 / (t1 - t0) as f64,
        _ => 0.0,
    };
    let Some((age, incr)) = window.range else {
        return json!({ "rate": rate });
    };
    // Newest first, at most one per `incr`, no older than `age` before the newest.
    let mut picked: Vec<(u64, u64)> = Vec::new();
    if let Some(&(newest, _)) = values.last() {
        let oldest = newest.saturating_sub(age);
        for &(at, v) in values.iter().rev() {
            if at < oldest {
                break;
            }
            if picked.last().is_none_or(|&(last, _)| last - at >= incr) {
                picked.push((at, v));
            }
        }
    }
    let samples: Vec<Value> = picked
        .iter()
        .map(|&(at, v)| json!({ "sample": v, "timestamp": at }))
        .collect();
    let avg_rate = match (picked.first(), picked.last()) {
        (Some(&(t1, b)), Some(&(t0, a))) if t1 > t0 => {
            (b as f64 - a as f64) * 1000.0 / (t1 - t0) as f64
        }
        _ => 0.0,
    };
    let avg = if picked.is_empty() {
        0.0
    } else {
        picked.iter().map(|&(_, v)| v as f64).sum::<f64>() / picked.len() as f64
    };
    json!({ "rate": rate, "samples": samples, "avg_rate": avg_rate, "avg": avg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates_render_in_rabbitmqs_shape_with_sums() {
        let stats = Stats::default();
        stats.counters.add(Counter::Deliver, 2);
        stats.sample(1_000);
        stats.counters.add(Counter::Deliver, 10);
        stats.counters.add(Counter::GetNoAck, 5);
        stats.sample(3_000);
        let m = message_stats(&stats, QUEUE_KEYS, Window::default());
        assert_eq!(m["deliver"], json!(12));
        assert_eq!(m["deliver_details"], json!({ "rate": 5.0 }));
        assert_eq!(m["deliver_get"], json!(17));
        assert_eq!(m["deliver_get_details"]["rate"], json!(7.5));
        assert_eq!(m["ack"], json!(0));
    }

    #[test]
    fn a_window_adds_samples_newest_first_one_per_increment() {
        let stats = Stats::with_history(10);
        for (i, at) in [0u64, 1_000, 2_000, 3_000, 4_000].into_iter().enumerate() {
            stats.counters.add(Counter::Publish, i as u64);
            stats.sample(at);
        }
        let window = Window::parse("msg_rates_age=3&msg_rates_incr=2").expect("valid");
        let m = message_stats(&stats, CHANNEL_KEYS, window);
        let d = &m["publish_details"];
        assert_eq!(
            d["samples"],
            json!([
                { "sample": 10, "timestamp": 4_000 },
                { "sample": 3, "timestamp": 2_000 },
            ])
        );
        assert_eq!(d["avg_rate"], json!(3.5));
        assert_eq!(d["avg"], json!(6.5));
    }

    #[test]
    fn a_draining_depth_has_a_negative_rate() {
        let depth: Series<1> = Series::new(3);
        let mut m = Map::new();
        depth.record(0, [10]);
        render_series(&mut m, "messages", 10, &depth, 0, Window::default());
        assert_eq!(
            m["messages_details"],
            json!({ "rate": 0.0 }),
            "one sample is no rate"
        );
        depth.record(2_000, [4]);
        render_series(&mut m, "messages", 4, &depth, 0, Window::default());
        assert_eq!(m["messages"], json!(4));
        assert_eq!(m["messages_details"], json!({ "rate": -3.0 }), "draining");
    }

    #[test]
    fn a_bad_window_is_refused() {
        for bad in [
            "msg_rates_age=60",
            "msg_rates_age=x&msg_rates_incr=5",
            "msg_rates_age=60&msg_rates_incr=0",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Window::parse("columns=name"), Ok(Window::default()));
    }
}
