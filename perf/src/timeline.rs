//! TTL mode's measurements: counts per fixed window, and what they say about the expiry of
//! the first batch — when it ran, how fast, and what publishers managed meanwhile.
//!
//! Kept apart from the broker I/O so the arithmetic can be tested on made-up windows.
//! Windows are nominally `--window-ms` long but each carries its real length: a window ends
//! when the broker answers the dead-letter count, and a busy broker answers late. A late
//! answer makes the next window short on the client's clock while the broker-side interval
//! was not, which would show as an absurd rate; so for rates a short window is merged into
//! the one before it.

use std::time::Duration;

/// One measurement window.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// When the window ended, since the run's start.
    pub end: Duration,
    pub length: Duration,
    /// Publishes started by all producers in this window.
    pub published: u64,
    /// Messages that arrived in the dead-letter queue in this window.
    pub arrived: u64,
    /// Whether producers were still publishing when it ended.
    pub publishing: bool,
}

impl Window {
    fn start(&self) -> Duration {
        self.end.saturating_sub(self.length)
    }

    fn arrival_rate(&self) -> f64 {
        per_second(self.arrived, self.length)
    }

    fn publish_rate(&self) -> f64 {
        per_second(self.published, self.length)
    }
}

/// The windows of one run, in order.
pub struct Timeline {
    /// Windows shorter than this are merged into the previous one for rates.
    min_length: Duration,
    windows: Vec<Window>,
    published: u64,
    arrived: u64,
}

/// What the windows say about the first batch's expiry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpiryFigures {
    /// When the cumulative publish count reached the batch size.
    pub batch_published_at: Option<Duration>,
    /// Start of the first window in which anything arrived in the dead-letter queue.
    pub expiry_start: Option<Duration>,
    /// End of the window in which the batch had fully arrived.
    pub expiry_end: Option<Duration>,
    /// Arrivals from `expiry_start` to `expiry_end` over that span: a lower bound of the
    /// true rate, as the span is rounded outwards to whole windows.
    pub overall_rate: Option<f64>,
    pub median_rate: Option<f64>,
    pub peak_rate: Option<f64>,
    /// Median publish rate of the windows before anything expired.
    pub publish_before: Option<f64>,
    /// Median and lowest publish rate of the expiry windows in which producers still ran.
    pub publish_during: Option<f64>,
    pub publish_during_min: Option<f64>,
    /// Longest run of consecutive expiry windows without a single publish.
    pub zero_publish: Duration,
}

impl Timeline {
    pub fn new(nominal: Duration) -> Self {
        Self {
            min_length: nominal.mul_f64(0.9),
            windows: Vec::new(),
            published: 0,
            arrived: 0,
        }
    }

    pub fn push(&mut self, window: Window) {
        self.published += window.published;
        self.arrived += window.arrived;
        self.windows.push(window);
    }

    pub fn arrived(&self) -> u64 {
        self.arrived
    }

    /// Reads the windows for a first batch of `batch` messages.
    pub fn figures(&self, batch: u64) -> ExpiryFigures {
        let mut figures = ExpiryFigures {
            batch_published_at: self.first_end_where(batch, |w| w.published),
            ..ExpiryFigures::default()
        };
        let Some(first) = self.windows.iter().position(|w| w.arrived > 0) else {
            return figures;
        };
        figures.publish_before = median(
            merged(&self.windows[..first], self.min_length)
                .iter()
                .map(Window::publish_rate),
        );
        figures.expiry_start = Some(self.windows[first].start());

        // Until the batch is complete, or everything seen so far for an incomplete run.
        let done = self.first_index_where(batch, |w| w.arrived);
        let last = done.unwrap_or(self.windows.len() - 1);
        let arrived: u64 = self.windows[first..=last].iter().map(|w| w.arrived).sum();
        let expiring = &merged(&self.windows[first..=last], self.min_length);
        figures.median_rate = median(expiring.iter().map(Window::arrival_rate));
        figures.peak_rate = expiring.iter().map(Window::arrival_rate).reduce(f64::max);
        if let Some(done) = done {
            let end = self.windows[done].end;
            figures.expiry_end = Some(end);
            figures.overall_rate = Some(per_second(arrived, end - self.windows[first].start()));
        }

        let publishing: Vec<&Window> = expiring.iter().filter(|w| w.publishing).collect();
        figures.publish_during = median(publishing.iter().map(|w| w.publish_rate()));
        figures.publish_during_min = publishing.iter().map(|w| w.publish_rate()).reduce(f64::min);
        let mut run = Duration::ZERO;
        for window in &publishing {
            run = if window.published == 0 {
                run + window.length
            } else {
                Duration::ZERO
            };
            figures.zero_publish = figures.zero_publish.max(run);
        }
        figures
    }

    fn first_index_where(&self, total: u64, count: impl Fn(&Window) -> u64) -> Option<usize> {
        let mut sum = 0;
        self.windows.iter().position(|w| {
            sum += count(w);
            sum >= total
        })
    }

    fn first_end_where(&self, total: u64, count: impl Fn(&Window) -> u64) -> Option<Duration> {
        self.first_index_where(total, count)
            .map(|i| self.windows[i].end)
    }
}

/// Windows shorter than `min_length` joined to the one before: a short window follows a
/// late answer, and the arrivals it shows mostly happened during that late window.
fn merged(windows: &[Window], min_length: Duration) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::with_capacity(windows.len());
    for window in windows {
        match out.last_mut() {
            Some(last) if window.length < min_length => {
                last.end = window.end;
                last.length += window.length;
                last.published += window.published;
                last.arrived += window.arrived;
                last.publishing &= window.publishing;
            }
            _ => out.push(*window),
        }
    }
    out
}

fn per_second(count: u64, over: Duration) -> f64 {
    count as f64 / over.as_secs_f64().max(1e-9)
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(rows: &[(u64, u64, bool)]) -> Timeline {
        let mut timeline = Timeline::new(Duration::from_millis(100));
        for (i, &(published, arrived, publishing)) in rows.iter().enumerate() {
            timeline.push(Window {
                end: Duration::from_millis(100 * (i as u64 + 1)),
                length: Duration::from_millis(100),
                published,
                arrived,
                publishing,
            });
        }
        timeline
    }

    #[test]
    fn expiry_runs_from_the_first_arrival_to_the_window_completing_the_batch() {
        // A batch of 60: published in the first 3 windows, expiring over windows 4–6.
        let t = timeline(&[
            (20, 0, true),
            (20, 0, true),
            (30, 0, true),
            (10, 10, true),
            (0, 30, true),
            (10, 30, true), // batch complete here (70 ≥ 60)
            (10, 10, false),
        ]);
        let f = t.figures(60);
        assert_eq!(f.batch_published_at, Some(Duration::from_millis(300)));
        assert_eq!(f.expiry_start, Some(Duration::from_millis(300)));
        assert_eq!(f.expiry_end, Some(Duration::from_millis(600)));
        assert_eq!(f.overall_rate, Some(70.0 / 0.3));
        assert_eq!(f.peak_rate, Some(300.0));
        assert_eq!(f.median_rate, Some(300.0));
        assert_eq!(f.publish_before, Some(200.0));
        assert_eq!(f.publish_during, Some(100.0));
        assert_eq!(f.publish_during_min, Some(0.0));
        assert_eq!(f.zero_publish, Duration::from_millis(100));
    }

    #[test]
    fn an_incomplete_batch_has_rates_but_no_end() {
        let t = timeline(&[(50, 0, true), (0, 5, true), (0, 5, true)]);
        let f = t.figures(50);
        assert_eq!(f.expiry_end, None);
        assert_eq!(f.overall_rate, None);
        assert_eq!(f.median_rate, Some(50.0));
        assert_eq!(f.zero_publish, Duration::from_millis(200));
    }

    #[test]
    fn a_short_window_after_a_late_one_is_merged_before_taking_rates() {
        let window = |end_ms, length_ms, arrived| Window {
            end: Duration::from_millis(end_ms),
            length: Duration::from_millis(length_ms),
            published: 0,
            arrived,
            publishing: true,
        };
        let mut t = Timeline::new(Duration::from_millis(100));
        t.push(window(100, 100, 10));
        t.push(window(400, 300, 30)); // answered late...
        t.push(window(410, 10, 20)); // ...so the next one looks like 2000/s
        t.push(window(510, 100, 10));
        let f = t.figures(70);
        assert_eq!(f.peak_rate, Some(50.0 / 0.31));
        assert_eq!(f.overall_rate, Some(70.0 / 0.51));
    }

    #[test]
    fn nothing_expired_means_no_expiry_figures() {
        let f = timeline(&[(10, 0, true)]).figures(10);
        assert_eq!(f.batch_published_at, Some(Duration::from_millis(100)));
        assert_eq!(f.expiry_start, None);
        assert_eq!(f.publish_before, None);
    }
}
