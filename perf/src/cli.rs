//! Command-line options, and their validation into a [`Plan`] the run can trust.
//!
//! Flags follow RabbitMQ PerfTest / `lavinmqperf throughput` where they overlap, so the
//! same load can be described the same way against Warren and RabbitMQ.

use crate::stamp::{DELAYED_LEN, STAMP_LEN};
use clap::{Parser, ValueEnum};
use std::time::Duration;

/// Load generator for AMQP 0-9-1 brokers: publish/consume rates and latency percentiles.
#[derive(Parser, Debug)]
#[command(name = "warren-perf", version)]
pub struct Cli {
    /// Broker to drive.
    #[arg(
        long,
        env = "AMQP_URI",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub uri: String,

    /// What to measure: steady throughput and latency, delayed-message firing accuracy, or
    /// TTL expiry into a dead-letter queue.
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    pub mode: Mode,

    /// The mode as a word (`warren-perf ttl ...`), the same as --mode.
    #[arg(value_enum, conflicts_with = "mode", value_name = "MODE")]
    pub mode_word: Option<Mode>,

    /// Publishing connections, one channel each.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,

    /// Consuming connections, one channel and one consumer each.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,

    /// Message body size in bytes (at least 8, or 16 in delayed mode, to hold the stamp).
    #[arg(long, default_value_t = 16)]
    pub size: usize,

    /// Publish rate limit per producer in messages per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,

    /// Use publisher confirms.
    #[arg(long)]
    pub confirm: bool,

    /// With --confirm: publishes awaiting a confirm, per producer.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_unconfirmed: u64,

    /// Publishes in flight per producer: started, but not yet written to the socket by the
    /// client library (with --confirm: not yet confirmed). 1 awaits each publish before
    /// starting the next, as most programs do [default: 256; with --confirm:
    /// --max-unconfirmed, which also caps it].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub publish_window: Option<u64>,

    /// Publish with delivery_mode 2 (persistent).
    #[arg(long)]
    pub persistent: bool,

    /// Acknowledge each delivery explicitly instead of consuming with no-ack.
    #[arg(long)]
    pub manual_ack: bool,

    /// basic.qos prefetch count per consumer; 0 = unlimited (only matters with --manual-ack).
    #[arg(long, default_value_t = 0)]
    pub prefetch: u16,

    /// Seconds to run [default: 10; delayed mode: --delay-max-ms plus 10 s].
    #[arg(long)]
    pub duration: Option<u64>,

    /// Queue to publish to and consume from; declared durable, purged at start.
    #[arg(long, default_value = "warren-perf")]
    pub queue: String,

    /// Keep the queue (and the delayed mode's exchange) at the end instead of deleting it.
    #[arg(long)]
    pub keep_queue: bool,

    /// Exchange to publish to (declared, queue bound with the queue name as routing key);
    /// default: the default exchange. In delayed mode: the delayed exchange's name
    /// [default there: warren-perf-delayed].
    #[arg(long)]
    pub exchange: Option<String>,

    /// Type to declare --exchange with (ignored in delayed mode).
    #[arg(long, default_value = "direct")]
    pub exchange_type: String,

    /// Each producer publishes this many messages and stops; the run ends once all are
    /// consumed (or --duration passes). Delayed mode default: 10000.
    #[arg(long)]
    pub pmessages: Option<u64>,

    /// Delayed mode: smallest x-delay in milliseconds.
    #[arg(long, default_value_t = 20_000)]
    pub delay_min_ms: u64,

    /// Delayed mode: largest x-delay in milliseconds.
    #[arg(long, default_value_t = 40_000)]
    pub delay_max_ms: u64,

    /// TTL mode: messages published as fast as possible into the TTL queue before the
    /// "keep publishing" phase (split evenly over the producers).
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,

    /// TTL mode: the source queue's x-message-ttl in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub ttl_ms: u64,

    /// TTL mode: keep publishing this many seconds after the first --messages are out
    /// [default: until all of them have been dead-lettered, plus 1 s].
    #[arg(long)]
    pub keep_publishing_secs: Option<u64>,

    /// TTL mode: length of the measurement windows in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..))]
    pub window_ms: u64,

    /// Print the final summary as one JSON line on stdout (per-second lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Publish and consume continuously; report rates and end-to-end latency.
    Throughput,
    /// Publish --pmessages through an x-delayed-message exchange; report firing lateness.
    Delayed,
    /// Publish --messages into a queue with x-message-ttl that dead-letters into a second
    /// queue, and keep publishing; report expiry rate and publisher rate during expiry.
    Ttl,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::Delayed => "delayed",
            Mode::Ttl => "ttl",
        }
    }
}

/// Where messages go: exchange name ("" = default exchange) and routing key.
#[derive(Clone, Debug)]
pub struct Target {
    pub exchange: String,
    pub routing_key: String,
}

/// The exchange to declare in front of the queue, if any.
#[derive(Clone, Debug)]
pub enum ExchangeSetup {
    /// Publish to the default exchange; nothing to declare.
    Default,
    /// A user-named exchange of the given type; left in place at the end, since it may be
    /// shared with other users of the broker.
    Named { name: String, kind: String },
    /// The delayed-message exchange, deleted at the end like the queue.
    Delayed { name: String },
}

/// Validated settings for one run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub uri: String,
    pub mode: Mode,
    pub producers: usize,
    pub consumers: usize,
    pub size: usize,
    pub rate: f64,
    pub max_unconfirmed: Option<usize>,
    /// Publishes each producer keeps in flight (see `--publish-window`).
    pub publish_window: usize,
    pub persistent: bool,
    pub manual_ack: bool,
    pub prefetch: u16,
    pub duration: Duration,
    pub queue: String,
    pub keep_queue: bool,
    pub exchange: ExchangeSetup,
    pub target: Target,
    pub pmessages: Option<u64>,
    /// Delayed mode: inclusive x-delay range in milliseconds.
    pub delay_ms: Option<(u64, u64)>,
    /// TTL mode only.
    pub expiry: Option<ExpiryPlan>,
    pub json: bool,
}

/// What the TTL mode needs beyond the common settings.
#[derive(Clone, Debug)]
pub struct ExpiryPlan {
    /// The first batch, published unpaced; the run is about when these expire.
    pub messages: u64,
    pub ttl: Duration,
    /// Publishing time after the first batch; `None` = until the batch has expired + 1 s.
    pub keep_publishing: Option<Duration>,
    pub window: Duration,
    /// Where expired messages are dead-lettered (the plan's `queue` is the source queue).
    pub dead_letter_queue: String,
}

/// Without confirms, how many publishes may wait for the client library to write them.
const DEFAULT_PUBLISH_WINDOW: usize = 256;
const DEFAULT_DELAYED_EXCHANGE: &str = "warren-perf-delayed";
const DEFAULT_DELAYED_MESSAGES: u64 = 10_000;
/// TTL mode: a whole-run limit, so a broker that never expires anything cannot keep the
/// publishers filling its memory forever (the run also gives up sooner, see `expiry`).
const DEFAULT_TTL_RUN_SECS: u64 = 300;

impl Cli {
    fn max_unconfirmed(&self) -> Option<usize> {
        self.confirm
            .then(|| usize::try_from(self.max_unconfirmed).unwrap_or(usize::MAX))
    }

    /// With confirms a publish stays in flight until confirmed, so the window is also the
    /// unconfirmed limit and the smaller of the two applies.
    fn publish_window(&self) -> usize {
        let asked = self
            .publish_window
            .map(|window| usize::try_from(window).unwrap_or(usize::MAX));
        match (asked, self.max_unconfirmed()) {
            (Some(asked), Some(unconfirmed)) => asked.min(unconfirmed),
            (Some(asked), None) => asked,
            (None, Some(unconfirmed)) => unconfirmed,
            (None, None) => DEFAULT_PUBLISH_WINDOW,
        }
    }

    pub fn into_plan(mut self) -> Result<Plan, String> {
        if let Some(mode) = self.mode_word.take() {
            self.mode = mode;
        }
        if self.mode == Mode::Ttl {
            return self.into_ttl_plan();
        }
        let max_unconfirmed = self.max_unconfirmed();
        let publish_window = self.publish_window();
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(format!("--rate must be 0 or positive, got {}", self.rate));
        }
        if self.producers == 0 && self.consumers == 0 {
            return Err("nothing to do with --producers 0 and --consumers 0".into());
        }
        if self.queue.is_empty() {
            return Err("--queue must not be empty".into());
        }
        let delayed = self.mode == Mode::Delayed;
        if delayed && self.delay_min_ms > self.delay_max_ms {
            return Err(format!(
                "--delay-min-ms ({}) is larger than --delay-max-ms ({})",
                self.delay_min_ms, self.delay_max_ms
            ));
        }
        if self.pmessages == Some(0) {
            return Err("--pmessages must be at least 1".into());
        }

        let min_size = if delayed { DELAYED_LEN } else { STAMP_LEN };
        let exchange = match (&self.mode, self.exchange) {
            (Mode::Ttl, _) => unreachable!("TTL mode is planned by into_ttl_plan"),
            (Mode::Delayed, name) => ExchangeSetup::Delayed {
                name: name.unwrap_or_else(|| DEFAULT_DELAYED_EXCHANGE.into()),
            },
            (Mode::Throughput, None) => ExchangeSetup::Default,
            (Mode::Throughput, Some(name)) if name.is_empty() => ExchangeSetup::Default,
            (Mode::Throughput, Some(name)) => ExchangeSetup::Named {
                name,
                kind: self.exchange_type,
            },
        };
        let target = Target {
            exchange: match &exchange {
                ExchangeSetup::Default => String::new(),
                ExchangeSetup::Named { name, .. } | ExchangeSetup::Delayed { name } => name.clone(),
            },
            routing_key: self.queue.clone(),
        };
        // The delayed run has to outlive the longest delay to see every message fire.
        let default_secs = if delayed {
            self.delay_max_ms.div_ceil(1000) + 10
        } else {
            10
        };

        Ok(Plan {
            uri: self.uri,
            mode: self.mode,
            producers: self.producers,
            consumers: self.consumers,
            size: self.size.max(min_size),
            rate: self.rate,
            max_unconfirmed,
            publish_window,
            persistent: self.persistent,
            manual_ack: self.manual_ack,
            prefetch: self.prefetch,
            duration: Duration::from_secs(self.duration.unwrap_or(default_secs)),
            queue: self.queue,
            keep_queue: self.keep_queue,
            exchange,
            target,
            pmessages: if delayed {
                Some(self.pmessages.unwrap_or(DEFAULT_DELAYED_MESSAGES))
            } else {
                self.pmessages
            },
            delay_ms: delayed.then_some((self.delay_min_ms, self.delay_max_ms)),
            expiry: None,
            json: self.json,
        })
    }

    /// TTL mode has its own topology: two fresh queues named for this run (so a previous
    /// run's leftovers, still expiring, cannot be counted), no consumers on the source
    /// queue, and producers that never stop on a count.
    fn into_ttl_plan(self) -> Result<Plan, String> {
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(format!("--rate must be 0 or positive, got {}", self.rate));
        }
        if self.producers == 0 {
            return Err("ttl mode needs at least one producer".into());
        }
        if self.messages < self.producers as u64 {
            return Err(format!(
                "--messages ({}) must be at least --producers ({})",
                self.messages, self.producers
            ));
        }
        let max_unconfirmed = self.max_unconfirmed();
        let publish_window = self.publish_window();
        let run_id = format!("{}-{}", std::process::id(), crate::stamp::now_nanos());
        let queue = format!("warren-perf-ttl-{run_id}");
        let dead_letter_queue = format!("warren-perf-ttl-dlq-{run_id}");
        Ok(Plan {
            uri: self.uri,
            mode: Mode::Ttl,
            producers: self.producers,
            consumers: 0,
            size: self.size.max(STAMP_LEN),
            rate: self.rate,
            max_unconfirmed,
            publish_window,
            persistent: self.persistent,
            manual_ack: false,
            prefetch: 0,
            duration: Duration::from_secs(self.duration.unwrap_or(DEFAULT_TTL_RUN_SECS)),
            target: Target {
                exchange: String::new(),
                routing_key: queue.clone(),
            },
            queue,
            keep_queue: self.keep_queue,
            exchange: ExchangeSetup::Default,
            pmessages: None,
            delay_ms: None,
            expiry: Some(ExpiryPlan {
                messages: self.messages,
                ttl: Duration::from_millis(self.ttl_ms),
                keep_publishing: self.keep_publishing_secs.map(Duration::from_secs),
                window: Duration::from_millis(self.window_ms),
                dead_letter_queue,
            }),
            json: self.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["warren-perf"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .into_plan()
    }

    #[test]
    fn defaults_publish_to_the_default_exchange_with_the_queue_as_key() {
        let plan = plan(&[]).unwrap();
        assert_eq!(plan.target.exchange, "");
        assert_eq!(plan.target.routing_key, "warren-perf");
        assert_eq!(plan.size, 16);
        assert_eq!(plan.duration, Duration::from_secs(10));
        assert!(plan.max_unconfirmed.is_none());
    }

    #[test]
    fn sizes_below_the_stamp_are_raised_to_fit_it() {
        assert_eq!(plan(&["--size", "1"]).unwrap().size, 8);
        assert_eq!(
            plan(&["--mode", "delayed", "--size", "8"]).unwrap().size,
            16
        );
    }

    #[test]
    fn delayed_mode_outlives_the_longest_delay_and_has_a_message_count() {
        let plan = plan(&[
            "--mode",
            "delayed",
            "--delay-min-ms",
            "1000",
            "--delay-max-ms",
            "1500",
        ])
        .unwrap();
        assert_eq!(plan.duration, Duration::from_secs(12));
        assert_eq!(plan.pmessages, Some(10_000));
        assert_eq!(plan.target.exchange, "warren-perf-delayed");
    }

    #[test]
    fn ttl_mode_as_a_word_uses_fresh_queues_and_no_consumers() {
        let ttl = plan(&["ttl", "--messages", "1000", "--producers", "2"]).unwrap();
        assert_eq!(ttl.mode, Mode::Ttl);
        assert_eq!(ttl.consumers, 0);
        assert!(ttl.pmessages.is_none());
        assert_eq!(ttl.target.exchange, "");
        assert_eq!(ttl.target.routing_key, ttl.queue);
        let expiry = ttl.expiry.unwrap();
        assert_eq!(expiry.messages, 1000);
        assert_eq!(expiry.ttl, Duration::from_secs(1));
        assert_eq!(expiry.window, Duration::from_millis(100));
        assert!(ttl.queue.starts_with("warren-perf-ttl-"));
        assert_ne!(expiry.dead_letter_queue, ttl.queue);
        assert_eq!(
            plan(&["--mode", "ttl"]).unwrap().mode,
            Mode::Ttl,
            "--mode ttl is the same"
        );
    }

    #[test]
    fn publish_window_defaults_to_pipelining_and_is_capped_by_confirms() {
        assert_eq!(plan(&[]).unwrap().publish_window, 256);
        assert_eq!(plan(&["--publish-window", "1"]).unwrap().publish_window, 1);
        assert_eq!(plan(&["--confirm"]).unwrap().publish_window, 1000);
        assert_eq!(
            plan(&["--confirm", "--publish-window", "1"])
                .unwrap()
                .publish_window,
            1
        );
        assert_eq!(
            plan(&[
                "--confirm",
                "--max-unconfirmed",
                "10",
                "--publish-window",
                "64"
            ])
            .unwrap()
            .publish_window,
            10
        );
        let delayed = plan(&["delayed", "--publish-window", "1"]).unwrap();
        assert_eq!(delayed.publish_window, 1);
        assert!(plan(&["--publish-window", "0"]).is_err());
    }

    #[test]
    fn inverted_delay_range_is_rejected() {
        let err = plan(&[
            "--mode",
            "delayed",
            "--delay-min-ms",
            "5",
            "--delay-max-ms",
            "1",
        ])
        .unwrap_err();
        assert!(err.contains("--delay-min-ms"));
    }
}
