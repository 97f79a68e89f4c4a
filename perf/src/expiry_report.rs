//! TTL mode's summary, as text or as one JSON line (same conventions as `report`: rates in
//! messages per second, times in seconds or milliseconds as the key says, `null` for a
//! figure the run could not measure).

use crate::cli::Plan;
use crate::stats::Counts;
use crate::timeline::ExpiryFigures;
use std::fmt::Write as _;
use std::time::Duration;

/// The end-of-run numbers of one TTL run.
pub struct ExpirySummary {
    pub plan: Plan,
    pub figures: ExpiryFigures,
    /// Longest gap between one producer's publishes while the batch expired.
    pub longest_gap: Option<Duration>,
    pub counts: Counts,
    /// Messages that arrived in the dead-letter queue, whole run.
    pub arrived: u64,
    /// Messages still in the source queue at the end (not yet expired).
    pub left_in_source: u64,
    pub interrupted: bool,
}

impl ExpirySummary {
    fn batch(&self) -> u64 {
        self.plan.expiry.as_ref().map_or(0, |e| e.messages)
    }

    /// Publishes the broker took: with confirms, nacked ones never reached the queue.
    fn expected(&self) -> u64 {
        self.counts.published.saturating_sub(self.counts.nacked)
    }

    /// Published and taken, but neither dead-lettered nor still waiting to expire.
    fn lost(&self) -> u64 {
        self.expected()
            .saturating_sub(self.arrived + self.left_in_source)
    }

    /// The longest the publishers went without publishing during expiry: the longer of the
    /// longest single-producer gap and the longest run of windows with no publish at all.
    fn longest_stall(&self) -> Option<Duration> {
        self.figures.expiry_start?;
        Some(
            self.longest_gap
                .unwrap_or_default()
                .max(self.figures.zero_publish),
        )
    }

    /// Why the run's numbers cannot be trusted, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if self.interrupted {
            return Some("interrupted before the run was complete".into());
        }
        if self.figures.expiry_end.is_none() {
            return Some(format!(
                "count check failed: only {} of the batch of {} arrived in the dead-letter queue",
                self.arrived.min(self.batch()),
                self.batch()
            ));
        }
        match self.lost() {
            0 => None,
            lost => Some(format!(
                "count check failed: {lost} published messages are neither in the \
                 dead-letter queue nor still in the source queue"
            )),
        }
    }

    pub fn text(&self) -> String {
        let plan = &self.plan;
        let f = &self.figures;
        let window_ms = plan.expiry.as_ref().map_or(0, |e| e.window.as_millis());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "summary: ttl mode, batch of {}, TTL {} ms, {} producer(s), {} B bodies{}{}{}, \
             {window_ms} ms windows",
            self.batch(),
            plan.expiry.as_ref().map_or(0, |e| e.ttl.as_millis()),
            plan.producers,
            plan.size,
            if plan.max_unconfirmed.is_some() {
                ", confirms"
            } else {
                ""
            },
            if plan.persistent { ", persistent" } else { "" },
            if plan.rate > 0.0 {
                format!(", then {:.0} msg/s per producer", plan.rate)
            } else {
                String::new()
            },
        );
        let _ = writeln!(
            out,
            "  batch published by {}; first dead letters in the window from {}; batch \
             dead-lettered by {}",
            secs(f.batch_published_at),
            secs(f.expiry_start),
            secs(f.expiry_end),
        );
        let _ = writeln!(
            out,
            "  expiry rate: overall {} msg/s, median {} msg/s, peak {} msg/s (per window)",
            rate(f.overall_rate),
            rate(f.median_rate),
            rate(f.peak_rate),
        );
        let _ = writeln!(
            out,
            "  publish rate: before expiry {} msg/s; during expiry median {} msg/s, lowest {} msg/s",
            rate(f.publish_before),
            rate(f.publish_during),
            rate(f.publish_during_min),
        );
        let _ = writeln!(
            out,
            "  longest publisher stall during expiry: {} (windows without any publish: {})",
            millis(self.longest_stall()),
            millis(self.longest_stall().map(|_| f.zero_publish)),
        );
        let c = &self.counts;
        let _ = write!(
            out,
            "  count check: published {}{}, dead-lettered {}, left in source queue {}, lost {} — {}",
            c.published,
            if plan.max_unconfirmed.is_some() {
                format!(" (confirmed {}, nacked {})", c.confirmed, c.nacked)
            } else {
                String::new()
            },
            self.arrived,
            self.left_in_source,
            self.lost(),
            if self.problem().is_none() {
                "ok"
            } else {
                "FAILED"
            },
        );
        out
    }

    pub fn json(&self) -> String {
        let plan = &self.plan;
        let f = &self.figures;
        let (ttl_ms, window_ms) = plan
            .expiry
            .as_ref()
            .map_or((0, 0), |e| (e.ttl.as_millis(), e.window.as_millis()));
        let c = &self.counts;
        let mut out = String::from("{");
        let _ = write!(
            out,
            "\"mode\":\"ttl\",\"messages\":{},\"ttl_ms\":{ttl_ms},\"window_ms\":{window_ms},\
             \"producers\":{},\"size\":{},\"confirm\":{},\"persistent\":{},\"rate\":{:.1}",
            self.batch(),
            plan.producers,
            plan.size,
            plan.max_unconfirmed.is_some(),
            plan.persistent,
            plan.rate,
        );
        let fields = [
            (
                "batch_published_s",
                f.batch_published_at.map(|d| d.as_secs_f64()),
            ),
            ("expiry_start_s", f.expiry_start.map(|d| d.as_secs_f64())),
            ("expiry_end_s", f.expiry_end.map(|d| d.as_secs_f64())),
            ("expiry_rate_overall", f.overall_rate),
            ("expiry_rate_median", f.median_rate),
            ("expiry_rate_peak", f.peak_rate),
            ("publish_rate_before", f.publish_before),
            ("publish_rate_during", f.publish_during),
            ("publish_rate_during_min", f.publish_during_min),
            (
                "longest_stall_ms",
                self.longest_stall().map(|d| d.as_secs_f64() * 1000.0),
            ),
        ];
        for (name, value) in fields {
            match value {
                Some(value) => {
                    let _ = write!(out, ",\"{name}\":{value:.3}");
                }
                None => {
                    let _ = write!(out, ",\"{name}\":null");
                }
            }
        }
        let _ = write!(
            out,
            ",\"published\":{},\"confirmed\":{},\"nacked\":{},\"dead_lettered\":{},\
             \"left_in_source\":{},\"lost\":{},\"ok\":{}}}",
            c.published,
            c.confirmed,
            c.nacked,
            self.arrived,
            self.left_in_source,
            self.lost(),
            self.problem().is_none(),
        );
        out
    }
}

fn secs(at: Option<Duration>) -> String {
    at.map_or_else(|| "-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn millis(value: Option<Duration>) -> String {
    value.map_or_else(|| "-".into(), |d| format!("{} ms", d.as_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn summary(arrived: u64, expiry_end: Option<Duration>) -> ExpirySummary {
        let plan = Cli::parse_from(["warren-perf", "ttl", "--messages", "100"])
            .into_plan()
            .unwrap();
        ExpirySummary {
            plan,
            figures: ExpiryFigures {
                expiry_start: Some(Duration::from_secs(1)),
                expiry_end,
                zero_publish: Duration::from_millis(200),
                ..ExpiryFigures::default()
            },
            longest_gap: Some(Duration::from_millis(50)),
            counts: Counts {
                published: 150,
                ..Counts::default()
            },
            arrived,
            left_in_source: 10,
            interrupted: false,
        }
    }

    #[test]
    fn a_complete_run_passes_the_count_check_in_one_json_line() {
        let summary = summary(140, Some(Duration::from_secs(2)));
        assert!(summary.problem().is_none());
        let json = summary.json();
        assert!(!json.contains('\n'));
        assert!(json.contains("\"lost\":0,"));
        assert!(json.contains("\"longest_stall_ms\":200.000"));
        assert!(json.contains("\"expiry_rate_overall\":null"));
        assert!(json.ends_with("\"ok\":true}"));
    }

    #[test]
    fn missing_messages_fail_the_count_check() {
        let lost = summary(130, Some(Duration::from_secs(2)));
        assert!(lost.problem().unwrap().contains("10 published messages"));
        let incomplete = summary(90, None);
        assert!(
            incomplete
                .problem()
                .unwrap()
                .contains("only 90 of the batch of 100")
        );
    }
}
