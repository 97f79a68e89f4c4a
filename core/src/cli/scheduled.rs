//! `warren scheduled …`: the client side of the admin API, blocking HTTP (ureq) and
//! plain-text tables. It lives with the binary, not the library: a broker embedded as a
//! library needs no HTTP client. It reads the server's own JSON types
//! ([`warren::http::scheduled::ScheduledCount`], [`warren::broker::PendingInfo`]), so the two cannot
//! drift apart.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use warren::http::scheduled::{Page, ScheduledCount as DelayedCount};
use warren::broker::PendingInfo;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The server's error text.
        message: String,
    },
    /// The server could not be reached or the answer not read.
    #[error("{0}")]
    Transport(String),
}

fn call(request: ureq::Request) -> Result<ureq::Response, ClientError> {
    match request.call() {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(status, response)) => {
            let body = response.into_string().unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(body);
            Err(ClientError::Status { status, message })
        }
        Err(e) => Err(ClientError::Transport(e.to_string())),
    }
}

fn json<T: serde::de::DeserializeOwned>(response: ureq::Response) -> Result<T, ClientError> {
    let body = response
        .into_string()
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    serde_json::from_str(&body).map_err(|e| ClientError::Transport(e.to_string()))
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
}

/// Basic auth as guest/guest unless `WARREN_USER`/`WARREN_PASSWORD` say otherwise.
fn with_auth(request: ureq::Request) -> ureq::Request {
    use base64::Engine as _;
    let user = std::env::var("WARREN_USER").unwrap_or_else(|_| "guest".into());
    let pass = std::env::var("WARREN_PASSWORD").unwrap_or_else(|_| "guest".into());
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    request.set("Authorization", &format!("Basic {token}"))
}

fn exchange_url(base: &str, exchange: &str) -> String {
    format!(
        "{}/api/scheduled/%2f/{}",
        base.trim_end_matches('/'),
        percent_encode(exchange)
    )
}

/// Percent-encodes a path segment (exchange names may hold any byte).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `GET /api/delayed`.
pub fn counts(base: &str) -> Result<Vec<DelayedCount>, ClientError> {
    json(call(with_auth(agent().get(&format!(
        "{}/api/scheduled",
        base.trim_end_matches('/')
    ))))?)
}

/// `GET /api/delayed/%2f/{exchange}`.
pub fn list(base: &str, exchange: &str) -> Result<Vec<PendingInfo>, ClientError> {
    let page: Page = json(call(with_auth(
        agent().get(&format!("{}?page_size=10000", exchange_url(base, exchange))),
    ))?)?;
    Ok(page.items)
}

/// `DELETE /api/delayed/%2f/{exchange}/{id}`.
pub fn cancel(base: &str, exchange: &str, id: u64) -> Result<(), ClientError> {
    call(with_auth(
        agent().delete(&format!("{}/{id}", exchange_url(base, exchange))),
    ))
    .map(|_| ())
}

/// A due time as RFC 3339 (UTC, milliseconds).
pub fn format_due(due_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(due_ms)).to_string()
}

/// The counts as a table.
pub fn counts_table(counts: &[DelayedCount]) -> String {
    let width = counts
        .iter()
        .map(|c| c.exchange.len())
        .max()
        .unwrap_or(0)
        .max("EXCHANGE".len());
    let mut out = format!("{:<width$}  PENDING\n", "EXCHANGE");
    for c in counts {
        let _ = writeln!(out, "{:<width$}  {}", c.exchange, c.pending);
    }
    out
}

/// The pending messages as a table.
pub fn list_table(pending: &[PendingInfo]) -> String {
    let key_width = pending
        .iter()
        .map(|p| p.routing_key.len())
        .max()
        .unwrap_or(0)
        .max("ROUTING KEY".len());
    let mut out = format!(
        "{:<20}  {:<24}  {:<key_width$}  SIZE\n",
        "ID", "DUE", "ROUTING KEY"
    );
    for p in pending {
        let _ = writeln!(
            out,
            "{:<20}  {:<24}  {:<key_width$}  {}",
            p.id,
            format_due(p.due_ms),
            p.routing_key,
            p.body_size
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_names_are_percent_encoded() {
        assert_eq!(
            exchange_url("http://h:1/", "a b/ç"),
            "http://h:1/api/scheduled/%2f/a%20b%2F%C3%A7"
        );
    }

    #[test]
    fn tables_have_a_header_and_one_line_per_row() {
        let t = list_table(&[PendingInfo {
            id: 7,
            due_ms: 1_893_456_000_000,
            routing_key: "k".into(),
            body_size: 3,
        }]);
        assert_eq!(t.lines().count(), 2);
        assert!(t.contains("2030-01-01T00:00:00.000Z"));
    }
}
