//! Scraping a Prometheus endpoint in tests: the text format read into families (their
//! `# TYPE`) and samples (name, labels, value), so a test asks for one series by name and
//! labels instead of matching lines.
//!
//! The endpoint is the in-process Warren's, or, for an external broker, the one named by
//! `WARREN_TEST_PROMETHEUS` (e.g. RabbitMQ's `http://127.0.0.1:15692`).

use std::collections::HashMap;
use std::time::Instant;

use crate::broker::{PATIENCE, TestBroker};

/// Environment variable naming an external broker's Prometheus endpoint.
pub const PROMETHEUS_ENV: &str = "WARREN_TEST_PROMETHEUS";

/// The endpoint's base URL, if the broker has one a test can reach.
pub fn prometheus_url(broker: &TestBroker) -> Option<String> {
    broker
        .prometheus_url()
        .or_else(|| std::env::var(PROMETHEUS_ENV).ok().filter(|u| !u.is_empty()))
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (`…_total`, `…_bucket` as written).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// One scrape, parsed.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// The `Content-Type` answered.
    pub content_type: String,
    /// Family name → its `# TYPE`.
    pub types: HashMap<String, String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses Prometheus text; panics on a line that is not the format (a test failure).
    pub fn parse(content_type: String, text: &str) -> Scrape {
        let mut scrape = Scrape {
            content_type,
            ..Scrape::default()
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                scrape.types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') {
                scrape.samples.push(parse_sample(line));
            }
        }
        scrape
    }

    /// The `# TYPE` of family `name`.
    pub fn type_of(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    /// The samples of series `name` whose labels include every one of `labels`.
    pub fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .collect()
    }

    /// The value of the one sample of `name` with `labels` (others allowed); panics if
    /// there is none or more than one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.matching(name, labels).as_slice() {
            [one] => one.value,
            [] => panic!("no sample {name}{labels:?} in the scrape"),
            many => panic!("{} samples {name}{labels:?}: {many:?}", many.len()),
        }
    }
}

fn not_a_sample(line: &str) -> ! {
    panic!("not a sample line: {line:?}")
}

fn parse_sample(line: &str) -> Sample {
    let at = line.find(['{', ' ']).unwrap_or_else(|| not_a_sample(line));
    let (name, mut rest) = line.split_at(at);
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inner
                .split_once("=\"")
                .unwrap_or_else(|| not_a_sample(line));
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => not_a_sample(line),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => not_a_sample(line),
                }
            };
            labels.push((key.to_owned(), value));
            inner = &after[end + 1..];
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .unwrap_or_else(|| not_a_sample(line));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| not_a_sample(line)),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// `GET {base}{path}` (on a blocking thread), parsed; panics unless it answers 200.
pub async fn scrape(base: &str, path: &str) -> Scrape {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    tokio::task::spawn_blocking(move || {
        let answer = ureq::get(&url)
            .timeout(PATIENCE)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(answer.status(), 200, "GET {url}");
        let content_type = answer.header("Content-Type").unwrap_or_default().to_owned();
        let text = answer.into_string().expect("a text body");
        Scrape::parse(content_type, &text)
    })
    .await
    .expect("the scrape thread")
}

/// Scrapes `path` until `ready` holds of it, and returns that scrape; panics with the last
/// one after [`PATIENCE`]. For figures that follow an event a moment later (a delivery
/// counted when the consumer's channel has sent it).
pub async fn scrape_until(base: &str, path: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let scrape = scrape(base, path).await;
        if ready(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never showed what was expected; last scrape: {:#?}",
            scrape.samples
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_escaped_labels_parse() {
        let text =
            "# TYPE a_total counter\na_total{q=\"x\\\"y\",v=\"/\"} 3\nb 1.5\nc{le=\"+Inf\"} 2\n";
        let s = Scrape::parse(String::new(), text);
        assert_eq!(s.type_of("a_total"), Some("counter"));
        assert_eq!(s.value("a_total", &[("q", "x\"y"), ("v", "/")]), 3.0);
        assert_eq!(s.value("b", &[]), 1.5);
        assert_eq!(s.value("c", &[("le", "+Inf")]), 2.0);
    }
}
