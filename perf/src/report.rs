//! What the run prints: one line per second while it runs, and a summary at the end (as
//! text, or as one hand-formatted JSON line for scripts comparing brokers).
//!
//! Rates in the per-second lines are over that second; rates in the summary are averages
//! over the whole run. Latencies are kept in microseconds and printed in milliseconds.

use crate::cli::{Mode, Plan};
use crate::stats::{Counts, Stats, new_histogram};
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::time::Duration;

/// Prints the per-second lines and accumulates every sample for the summary.
pub struct Reporter {
    mode: Mode,
    to_stderr: bool,
    last_counts: Counts,
    last_at: Duration,
    total: Histogram<u64>,
}

impl Reporter {
    /// With `--json`, stdout is reserved for the summary, so progress goes to stderr.
    pub fn new(plan: &Plan) -> Self {
        Self {
            mode: plan.mode,
            to_stderr: plan.json,
            last_counts: Counts::default(),
            last_at: Duration::ZERO,
            total: new_histogram(),
        }
    }

    /// Prints the line for the second that just ended.
    pub fn tick(&mut self, stats: &Stats) {
        let now = stats.elapsed();
        let counts = stats.counts();
        let interval = stats.harvest();
        let _ = self.total.add(&interval);
        let seconds = (now - self.last_at).as_secs_f64().max(1e-9);
        let published = (counts.published - self.last_counts.published) as f64 / seconds;
        let consumed = (counts.consumed - self.last_counts.consumed) as f64 / seconds;
        self.last_counts = counts;
        self.last_at = now;

        let line = format!(
            "t={}s published {:.0} msg/s, consumed {:.0} msg/s, {} {}",
            now.as_secs_f64().round(),
            published,
            consumed,
            self.measure_name(),
            percentiles(&interval),
        );
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    fn measure_name(&self) -> &'static str {
        match self.mode {
            Mode::Throughput | Mode::Ttl => "latency",
            Mode::Delayed => "lateness",
        }
    }

    /// Collects the samples not yet reported and returns the whole run's histogram.
    pub fn finish(mut self, stats: &Stats) -> Histogram<u64> {
        let _ = self.total.add(stats.harvest());
        self.total
    }
}

fn percentiles(histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return "p50 - p99 -".into();
    }
    format!(
        "p50 {} ms p99 {} ms",
        millis(histogram.value_at_quantile(0.5)),
        millis(histogram.value_at_quantile(0.99))
    )
}

/// Milliseconds with precision that suits the magnitude: sub-millisecond latencies matter
/// on a local broker, tenths are noise at a second.
fn millis(micros: u64) -> String {
    let ms = micros as f64 / 1000.0;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

/// The end-of-run numbers.
pub struct Summary<'a> {
    pub plan: &'a Plan,
    pub counts: Counts,
    /// Start until the last producer stopped.
    pub publish_elapsed: Duration,
    /// Start until consumers were stopped (after draining).
    pub consume_elapsed: Duration,
    pub histogram: Histogram<u64>,
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl Summary<'_> {
    fn publish_rate(&self) -> f64 {
        rate(self.counts.published, self.publish_elapsed)
    }

    fn consume_rate(&self) -> f64 {
        rate(self.counts.consumed, self.consume_elapsed)
    }

    fn quantiles_ms(&self) -> Option<[f64; 3]> {
        let h = &self.histogram;
        (!h.is_empty()).then(|| {
            [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()]
                .map(|us| us as f64 / 1000.0)
        })
    }

    pub fn text(&self) -> String {
        let plan = self.plan;
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "summary: {} mode, {:.1} s, {} producer(s), {} consumer(s), {} B bodies, \
             publish window {}{}{}{}",
            plan.mode.name(),
            self.consume_elapsed.as_secs_f64(),
            plan.producers,
            plan.consumers,
            plan.size,
            plan.publish_window,
            if plan.max_unconfirmed.is_some() {
                ", confirms"
            } else {
                ""
            },
            if plan.persistent { ", persistent" } else { "" },
            if plan.manual_ack {
                format!(", manual ack (prefetch {})", plan.prefetch)
            } else {
                ", auto-ack".into()
            },
        );
        let _ = write!(
            out,
            "  sent {} in {:.2} s ({:.0} msg/s)",
            c.published,
            self.publish_elapsed.as_secs_f64(),
            self.publish_rate()
        );
        if plan.max_unconfirmed.is_some() {
            let _ = write!(out, ", confirmed {}, nacked {}", c.confirmed, c.nacked);
        }
        let _ = writeln!(
            out,
            "\n  received {} ({:.0} msg/s){}",
            c.consumed,
            self.consume_rate(),
            match plan.mode {
                // Without consumers nothing is expected to arrive (a publish-rate run).
                Mode::Delayed if plan.consumers > 0 => {
                    format!(", missing {}", c.published.saturating_sub(c.consumed))
                }
                Mode::Delayed | Mode::Throughput | Mode::Ttl => String::new(),
            }
        );
        let name = match plan.mode {
            Mode::Throughput | Mode::Ttl => "latency",
            Mode::Delayed => "firing lateness",
        };
        match self.quantiles_ms() {
            Some([p50, p99, max]) => {
                let _ = write!(
                    out,
                    "  {name} p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms"
                );
            }
            None => {
                let _ = write!(out, "  {name}: no samples");
            }
        }
        if plan.mode == Mode::Delayed {
            let _ = write!(out, " ({} delivered early)", c.early);
        }
        if c.stale > 0 {
            let _ = write!(
                out,
                "\n  ignored {} stale messages published before this run",
                c.stale
            );
        }
        out
    }

    pub fn json(&self) -> String {
        let plan = self.plan;
        let c = &self.counts;
        let mut out = String::from("{");
        let _ = write!(
            out,
            "\"mode\":\"{}\",\"producers\":{},\"consumers\":{},\"size\":{},\"confirm\":{},\
             \"publish_window\":{},\"persistent\":{},\"manual_ack\":{},\"prefetch\":{},\"elapsed_s\":{:.3},\
             \"publish_elapsed_s\":{:.3},\"sent\":{},\"confirmed\":{},\"nacked\":{},\
             \"received\":{},\"stale\":{},\"publish_rate\":{:.1},\"consume_rate\":{:.1}",
            plan.mode.name(),
            plan.producers,
            plan.consumers,
            plan.size,
            plan.max_unconfirmed.is_some(),
            plan.publish_window,
            plan.persistent,
            plan.manual_ack,
            plan.prefetch,
            self.consume_elapsed.as_secs_f64(),
            self.publish_elapsed.as_secs_f64(),
            c.published,
            c.confirmed,
            c.nacked,
            c.consumed,
            c.stale,
            self.publish_rate(),
            self.consume_rate(),
        );
        let prefix = match plan.mode {
            Mode::Throughput | Mode::Ttl => "latency",
            Mode::Delayed => "lateness",
        };
        let quantiles = self.quantiles_ms();
        for (i, name) in ["p50", "p99", "max"].iter().enumerate() {
            match quantiles {
                Some(q) => {
                    let _ = write!(out, ",\"{prefix}_{name}_ms\":{:.3}", q[i]);
                }
                None => {
                    let _ = write!(out, ",\"{prefix}_{name}_ms\":null");
                }
            }
        }
        if plan.mode == Mode::Delayed {
            let _ = write!(
                out,
                ",\"early\":{},\"missing\":{}",
                c.early,
                c.published.saturating_sub(c.consumed)
            );
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn json_summary_is_one_line_with_null_percentiles_when_nothing_arrived() {
        let plan = Cli::parse_from(["warren-perf"]).into_plan().unwrap();
        let summary = Summary {
            plan: &plan,
            counts: Counts {
                published: 10,
                ..Counts::default()
            },
            publish_elapsed: Duration::from_secs(2),
            consume_elapsed: Duration::from_secs(2),
            histogram: new_histogram(),
        };
        let json = summary.json();
        assert!(!json.contains('\n'));
        assert!(json.contains("\"sent\":10"));
        assert!(json.contains("\"publish_rate\":5.0"));
        assert!(json.contains("\"latency_p99_ms\":null"));
    }

    #[test]
    fn millis_keeps_sub_millisecond_precision() {
        assert_eq!(millis(245), "0.245");
        assert_eq!(millis(1_234), "1.23");
        assert_eq!(millis(25_000), "25.0");
    }
}
