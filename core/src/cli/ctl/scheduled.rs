//! `warren ctl scheduled …`: messages held by x-delayed-message exchanges until their due
//! time, through Warren's `/api/scheduled` endpoints (not part of RabbitMQ's API):
//!
//! - `GET /api/scheduled` → `[{"vhost", "exchange", "pending", …}]`
//! - `GET /api/scheduled/{vhost}/{exchange}?page_size&after&from_ms&to_ms` →
//!   `{"items": [{"id", "due_ms", "routing_key", "body_size"}], "next": cursor | null}`
//! - `GET /api/scheduled/{vhost}/{exchange}/due` → `{"now_ms", "pending", "exact",
//!   "buckets": [{"label", "from_ms", "to_ms", "count"}]}`
//! - `DELETE /api/scheduled/{vhost}/{exchange}/{id}` → 204, 404 when not pending
//! - `POST /api/scheduled/{vhost}/{exchange}/cancel` with `{"routing_key"?, "from_ms"?,
//!   "to_ms"?, "limit"?}` → `{"cancelled": n, "more": bool}`
//!
//! The JSON shapes are small client-side structs: the client depends on the contract, not
//! on the server's types. `cancel-matching` cancels in batches of [`CANCEL_BATCH`] (each
//! answered once durable) so that it can say on stderr how far it has got.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{ApiError, encode, path};
use super::progress::Progress;
use super::table::Table;
use super::{Ctx, info, output_error, say};

/// The largest page asked for at once.
const PAGE_SIZE: usize = 500;
/// Messages cancelled per request by `cancel-matching`.
pub const CANCEL_BATCH: u64 = 20_000;
/// Width of the longest bar `due` draws.
const BAR_WIDTH: u64 = 40;

/// `scheduled` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScheduledAction {
    /// Pending messages per delayed exchange, in every vhost.
    Counts,
    /// Pending messages of one exchange: id, due time, routing key, body size.
    List {
        /// The delayed exchange.
        #[arg(long)]
        exchange: String,
        /// Only messages due at or after TIME (RFC 3339, or a duration from now: `10m`,
        /// `-1h`).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Only messages due before TIME.
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// At most this many messages (0: all).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// How many pending messages fall due in the next minute, hour, day and later, as a
    /// bar chart (from the scheduler's slot counts, not a scan of the messages).
    Due {
        /// The delayed exchange.
        #[arg(long)]
        exchange: String,
    },
    /// Cancels one pending message by id (it is never delivered).
    Cancel {
        /// The delayed exchange.
        #[arg(long)]
        exchange: String,
        /// The id shown by `list`.
        id: u64,
    },
    /// Cancels every pending message matching the filters.
    CancelMatching {
        /// The delayed exchange.
        #[arg(long)]
        exchange: String,
        /// Only messages with this routing key.
        #[arg(long)]
        routing_key: Option<String>,
        /// Only messages due at or after TIME.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Only messages due before TIME.
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Cancel every pending message of the exchange (needed when no filter is given).
        #[arg(long)]
        all: bool,
        /// No progress lines on stderr (-q and -s imply it).
        #[arg(long)]
        no_progress: bool,
        /// Messages cancelled per request (each answered once durable), one progress line
        /// each.
        #[arg(long, value_name = "MESSAGES", default_value_t = CANCEL_BATCH,
              value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
    },
}

/// One row of `GET /api/scheduled`.
#[derive(Debug, Deserialize)]
pub struct Count {
    /// The exchange's vhost.
    pub vhost: String,
    /// The exchange.
    pub exchange: String,
    /// Messages waiting.
    pub pending: u64,
}

/// One pending message.
#[derive(Debug, Deserialize)]
pub struct Pending {
    /// Id to cancel it by.
    pub id: u64,
    /// When it is due, milliseconds since the epoch.
    pub due_ms: u64,
    /// Its routing key.
    pub routing_key: String,
    /// Its body size in bytes.
    pub body_size: u64,
}

/// One page of pending messages.
#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<Pending>,
    #[serde(default)]
    next: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Cancelled {
    cancelled: u64,
    /// Absent from a server that does not know `limit` (it cancelled every match at once).
    #[serde(default)]
    more: bool,
}

/// The answer of `GET …/due`.
#[derive(Debug, Deserialize)]
pub struct Due {
    /// Messages pending.
    pub pending: u64,
    /// Whether the counts are exact (else some were split between buckets by time).
    pub exact: bool,
    /// Next minute, hour, day, later.
    pub buckets: Vec<DueBucket>,
}

/// One bucket of [`Due`].
#[derive(Debug, Deserialize)]
pub struct DueBucket {
    /// Its name ("next minute", …).
    pub label: String,
    /// Messages due in it.
    pub count: u64,
}

/// A due-time filter: `from_ms`/`to_ms`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Due at or after.
    pub from_ms: Option<u64>,
    /// Due before.
    pub to_ms: Option<u64>,
}

impl Window {
    fn parse(from: Option<&str>, to: Option<&str>) -> Result<Window, ApiError> {
        let now = SystemTime::now();
        let at = |flag: &str, text: Option<&str>| {
            text.map(|t| {
                parse_time(t, now).map_err(|e| ApiError::Other(format!("{flag} {t}: {e}")))
            })
            .transpose()
        };
        Ok(Window {
            from_ms: at("--from", from)?,
            to_ms: at("--to", to)?,
        })
    }
}

/// A time as typed: RFC 3339 (`2030-01-01T00:00:00Z`), a duration from now (`10m`, `+1h`,
/// `-30s` for the past), `now`, or milliseconds since the epoch.
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, String> {
    let text = text.trim();
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .map_err(|_| "before 1970".to_owned())
    };
    if text.eq_ignore_ascii_case("now") {
        return ms(now);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map_err(|e| format!("not a time in milliseconds: {e}"));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return ms(t);
    }
    let (past, duration) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let d = humantime::parse_duration(duration.trim()).map_err(|_| {
        "expected RFC 3339 (2030-01-01T00:00:00Z), a duration from now (10m, -1h) or \
         milliseconds since the epoch"
            .to_owned()
    })?;
    let t = if past {
        now.checked_sub(d)
    } else {
        now.checked_add(d)
    }
    .ok_or_else(|| "out of range".to_owned())?;
    ms(t)
}

/// A due time as RFC 3339 (UTC, milliseconds).
pub fn format_due(due_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(due_ms)).to_string()
}

fn exchange_path(vhost: &str, exchange: &str) -> String {
    path(&["scheduled", vhost, exchange])
}

fn exchange_about(vhost: &str, exchange: &str) -> String {
    format!("delayed exchange '{exchange}' in vhost '{vhost}'")
}

/// `GET /api/scheduled`.
pub fn counts(ctx: &Ctx) -> Result<Vec<Count>, ApiError> {
    ctx.client
        .request("GET", &path(&["scheduled"]))
        .about("the scheduled-messages API (is this a Warren broker?)")
        .send()?
        .parse()
}

/// Pending messages of one exchange, following pages until `limit` (0: no limit). Also
/// says whether more were left behind.
pub fn list(
    ctx: &Ctx,
    exchange: &str,
    window: Window,
    limit: usize,
) -> Result<(Vec<Pending>, bool), ApiError> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let want = if limit == 0 {
            PAGE_SIZE
        } else {
            (limit - items.len()).min(PAGE_SIZE)
        };
        let mut query = vec![format!("page_size={want}")];
        if let Some(cursor) = &after {
            query.push(format!("after={}", encode(cursor)));
        }
        if let Some(ms) = window.from_ms {
            query.push(format!("from_ms={ms}"));
        }
        if let Some(ms) = window.to_ms {
            query.push(format!("to_ms={ms}"));
        }
        let page: Page = ctx
            .client
            .request(
                "GET",
                &format!(
                    "{}?{}",
                    exchange_path(&ctx.vhost, exchange),
                    query.join("&")
                ),
            )
            .about(exchange_about(&ctx.vhost, exchange))
            .send()?
            .parse()?;
        let got = page.items.len();
        items.extend(page.items);
        // A server may send more than asked for.
        let overfull = limit != 0 && items.len() > limit;
        if overfull {
            items.truncate(limit);
        }
        let next = match page.next {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        };
        match next {
            // An empty page with a cursor would loop forever.
            Some(cursor) if got > 0 => {
                if limit != 0 && items.len() >= limit {
                    return Ok((items, true));
                }
                after = Some(cursor);
            }
            _ => return Ok((items, overfull)),
        }
    }
}

/// `GET /api/scheduled/{vhost}/{exchange}/due`, as it came (for `--formatter json`).
pub fn due_json(ctx: &Ctx, exchange: &str) -> Result<Value, ApiError> {
    ctx.client
        .request(
            "GET",
            &format!("{}/due", exchange_path(&ctx.vhost, exchange)),
        )
        .about(exchange_about(&ctx.vhost, exchange))
        .send()?
        .parse()
}

/// The histogram as a text bar chart: one row per bucket, the bar drawn with `#` in
/// proportion to the fullest bucket, so it reads the same without colour.
pub fn due_chart(due: &Due) -> String {
    let widest = due.buckets.iter().map(|b| b.label.len()).max().unwrap_or(0);
    let fullest = due.buckets.iter().map(|b| b.count).max().unwrap_or(0);
    let digits = fullest.to_string().len();
    let mut chart = String::new();
    for bucket in &due.buckets {
        // A bucket with anything in it gets at least one mark.
        let bar = if bucket.count == 0 {
            0
        } else {
            (u128::from(bucket.count) * u128::from(BAR_WIDTH)).div_ceil(u128::from(fullest))
                as usize
        };
        let row = format!(
            "{:<widest$}  {:>digits$}  {}",
            bucket.label,
            bucket.count,
            "#".repeat(bar)
        );
        chart.push_str(row.trim_end());
        chart.push('\n');
    }
    let precision = if due.exact {
        "exact"
    } else {
        "estimated: a bucket edge cut a crowded scheduler slot"
    };
    chart.push_str(&format!("{} pending ({precision})\n", due.pending));
    chart
}

/// `DELETE /api/scheduled/{vhost}/{exchange}/{id}`.
pub fn cancel(ctx: &Ctx, exchange: &str, id: u64) -> Result<(), ApiError> {
    ctx.client
        .request(
            "DELETE",
            &format!("{}/{id}", exchange_path(&ctx.vhost, exchange)),
        )
        .about(format!(
            "pending message {id} of {}",
            exchange_about(&ctx.vhost, exchange)
        ))
        .send()
        .map(drop)
}

/// Cancels every match in batches of `batch` (`POST …/cancel` with `limit` until `more`
/// is false), calling `progress(cancelled so far, at most how many)` after each batch; the
/// number cancelled. The "at most" is the exchange's pending count when it started.
pub fn cancel_matching(
    ctx: &Ctx,
    exchange: &str,
    routing_key: Option<&str>,
    window: Window,
    batch: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, ApiError> {
    let due: Due = serde_json::from_value(due_json(ctx, exchange)?)
        .map_err(|e| ApiError::Other(format!("unexpected answer from …/due: {e}")))?;
    let at_most = due.pending;
    let mut cancelled = 0;
    loop {
        let answer = cancel_batch(ctx, exchange, routing_key, window, batch)?;
        cancelled += answer.cancelled;
        progress(cancelled, at_most.max(cancelled));
        // No progress at all would loop forever (messages racing in as fast as they go).
        if !answer.more || answer.cancelled == 0 {
            return Ok(cancelled);
        }
    }
}

/// One `POST /api/scheduled/{vhost}/{exchange}/cancel` of at most `limit`.
fn cancel_batch(
    ctx: &Ctx,
    exchange: &str,
    routing_key: Option<&str>,
    window: Window,
    limit: u64,
) -> Result<Cancelled, ApiError> {
    let mut body = Map::new();
    body.insert("limit".into(), json!(limit));
    if let Some(k) = routing_key {
        body.insert("routing_key".into(), Value::String(k.to_owned()));
    }
    if let Some(ms) = window.from_ms {
        body.insert("from_ms".into(), json!(ms));
    }
    if let Some(ms) = window.to_ms {
        body.insert("to_ms".into(), json!(ms));
    }
    let answer: Cancelled = ctx
        .client
        .request(
            "POST",
            &format!("{}/cancel", exchange_path(&ctx.vhost, exchange)),
        )
        .about(exchange_about(&ctx.vhost, exchange))
        .send_json(&Value::Object(body))?
        .parse()?;
    Ok(answer)
}

/// The progress line of a cancel-by-filter.
fn cancelled_line(done: u64, at_most: u64) -> String {
    format!("cancelled {done} of at most {at_most} scheduled messages")
}

/// The counts as a table.
pub fn counts_table(counts: &[Count]) -> Table {
    Table {
        present: vec![true; 3],
        columns: vec!["vhost".into(), "exchange".into(), "pending".into()],
        rows: counts
            .iter()
            .map(|c| vec![json!(c.vhost), json!(c.exchange), json!(c.pending)])
            .collect(),
    }
}

/// The pending messages as a table.
pub fn list_table(pending: &[Pending]) -> Table {
    Table {
        present: vec![true; 4],
        columns: vec![
            "id".into(),
            "due".into(),
            "routing_key".into(),
            "body_size".into(),
        ],
        rows: pending
            .iter()
            .map(|p| {
                vec![
                    json!(p.id),
                    json!(format_due(p.due_ms)),
                    json!(p.routing_key),
                    json!(p.body_size),
                ]
            })
            .collect(),
    }
}

/// Runs one `scheduled` subcommand.
pub fn execute(ctx: &Ctx, action: ScheduledAction, out: &mut dyn Write) -> Result<(), ApiError> {
    match action {
        ScheduledAction::Counts => {
            let counts = counts(ctx)?;
            info(
                ctx,
                out,
                "Listing delayed exchanges with scheduled messages ...",
            )?;
            counts_table(&counts)
                .print(out, ctx.style)
                .map_err(output_error)
        }
        ScheduledAction::List {
            exchange,
            from,
            to,
            limit,
        } => {
            let window = Window::parse(from.as_deref(), to.as_deref())?;
            let (pending, more) = list(ctx, &exchange, window, limit)?;
            info(
                ctx,
                out,
                &format!(
                    "Listing scheduled messages of exchange '{exchange}' in vhost '{}' ...",
                    ctx.vhost
                ),
            )?;
            list_table(&pending)
                .print(out, ctx.style)
                .map_err(output_error)?;
            if more {
                eprintln!(
                    "warren ctl: more scheduled messages follow the first {limit}; raise --limit \
                     (0 for all) or narrow --from/--to"
                );
            }
            Ok(())
        }
        ScheduledAction::Due { exchange } => {
            let answer = due_json(ctx, &exchange)?;
            if ctx.style.json {
                return say(out, &answer.to_string());
            }
            let due: Due = serde_json::from_value(answer)
                .map_err(|e| ApiError::Other(format!("unexpected answer from …/due: {e}")))?;
            info(
                ctx,
                out,
                &format!(
                    "Scheduled messages of exchange '{exchange}' in vhost '{}' by due time ...",
                    ctx.vhost
                ),
            )?;
            out.write_all(due_chart(&due).as_bytes())
                .map_err(output_error)
        }
        ScheduledAction::Cancel { exchange, id } => {
            info(
                ctx,
                out,
                &format!(
                    "Cancelling scheduled message {id} of exchange '{exchange}' in vhost '{}' ...",
                    ctx.vhost
                ),
            )?;
            cancel(ctx, &exchange, id)
        }
        ScheduledAction::CancelMatching {
            exchange,
            routing_key,
            from,
            to,
            all,
            no_progress,
            batch,
        } => {
            if routing_key.is_none() && from.is_none() && to.is_none() && !all {
                return Err(ApiError::Other(
                    "cancel-matching without --routing-key, --from or --to would cancel every \
                     pending message of the exchange; add --all if that is meant"
                        .into(),
                ));
            }
            let window = Window::parse(from.as_deref(), to.as_deref())?;
            info(
                ctx,
                out,
                &format!(
                    "Cancelling matching scheduled messages of exchange '{exchange}' in vhost \
                     '{}' ...",
                    ctx.vhost
                ),
            )?;
            let quiet = no_progress || ctx.style.quiet || ctx.style.silent;
            let mut reporter = Progress::stderr(!quiet);
            let mut progress = |done, at_most| reporter.update(&cancelled_line(done, at_most));
            let n = cancel_matching(
                ctx,
                &exchange,
                routing_key.as_deref(),
                window,
                batch,
                &mut progress,
            );
            reporter.finish();
            let n = n?;
            if ctx.style.json {
                return say(out, &json!({ "cancelled": n }).to_string());
            }
            say(out, &format!("Cancelled {n} scheduled messages"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::Client;
    use super::super::table::Style;
    use super::super::testing::fake_server;
    use super::*;

    fn ctx(base: String, vhost: &str) -> Ctx {
        Ctx {
            client: Client::new(base, "guest", "guest", Duration::from_secs(5)),
            vhost: vhost.into(),
            style: Style::default(),
        }
    }

    #[test]
    fn list_follows_pages_and_passes_the_cursor_back() {
        let (base, seen) = fake_server(vec![
            (
                200,
                r#"{"items": [{"id": 1, "due_ms": 1893456000000, "routing_key": "a", "body_size": 3}], "next": "c/1"}"#,
            ),
            (
                200,
                r#"{"items": [{"id": 2, "due_ms": 1893456000001, "routing_key": "b", "body_size": 4}], "next": null}"#,
            ),
        ]);
        let ctx = ctx(base, "/");
        let window = Window {
            from_ms: Some(5),
            to_ms: None,
        };
        let (items, more) = list(&ctx, "del x", window, 0).unwrap();
        assert_eq!(items.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2]);
        assert!(!more);
        let first = seen.recv().unwrap();
        assert_eq!(first.method, "GET");
        assert_eq!(
            first.target,
            "/api/scheduled/%2F/del%20x?page_size=500&from_ms=5"
        );
        assert_eq!(first.authorization, "Basic Z3Vlc3Q6Z3Vlc3Q=");
        let second = seen.recv().unwrap();
        assert_eq!(
            second.target,
            "/api/scheduled/%2F/del%20x?page_size=500&after=c%2F1&from_ms=5"
        );
        let mut out = Vec::new();
        list_table(&items)
            .print(&mut out, Style::default())
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id\tdue\trouting_key\tbody_size\n1\t2030-01-01T00:00:00.000Z\ta\t3\n\
             2\t2030-01-01T00:00:00.001Z\tb\t4\n"
        );
    }

    #[test]
    fn list_stops_at_the_limit_and_says_more_follow() {
        let (base, seen) = fake_server(vec![(
            200,
            r#"{"items": [{"id": 1, "due_ms": 0, "routing_key": "", "body_size": 0}, {"id": 2, "due_ms": 0, "routing_key": "", "body_size": 0}], "next": "c"}"#,
        )]);
        let (items, more) = list(&ctx(base, "v"), "x", Window::default(), 2).unwrap();
        assert_eq!(items.len(), 2);
        assert!(more);
        assert_eq!(
            seen.recv().unwrap().target,
            "/api/scheduled/v/x?page_size=2"
        );
    }

    #[test]
    fn counts_parse_and_print() {
        let (base, _seen) = fake_server(vec![(
            200,
            r#"[{"vhost": "/", "exchange": "x", "pending": 3}]"#,
        )]);
        let ctx = ctx(base, "/");
        let mut out = Vec::new();
        execute(&ctx, ScheduledAction::Counts, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Listing delayed exchanges with scheduled messages ...\nvhost\texchange\tpending\n/\tx\t3\n"
        );
    }

    #[test]
    fn cancel_deletes_by_id_and_names_a_missing_message() {
        let (base, seen) = fake_server(vec![
            (204, ""),
            (
                404,
                r#"{"error": "Object Not Found", "reason": "Not Found"}"#,
            ),
        ]);
        let ctx = ctx(base.clone(), "/");
        cancel(&ctx, "x", 7).unwrap();
        let s = seen.recv().unwrap();
        assert_eq!(
            (s.method.as_str(), s.target.as_str()),
            ("DELETE", "/api/scheduled/%2F/x/7")
        );
        let e = cancel(&ctx, "x", 8).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "pending message 8 of delayed exchange 'x' in vhost '/' not found (404 from \
                 {base}/api/scheduled/%2F/x/8: Not Found)"
            )
        );
    }

    const DUE_ANSWER: &str = r#"{"now_ms": 1000, "pending": 45000, "exact": true, "buckets": [
        {"label": "next minute", "from_ms": 1000, "to_ms": 61000, "count": 45000}]}"#;

    #[test]
    fn cancel_matching_posts_only_the_given_filters() {
        // A server that predates `limit`: no `more`, everything cancelled in one answer.
        let (base, seen) = fake_server(vec![(200, DUE_ANSWER), (200, r#"{"cancelled": 4}"#)]);
        let ctx = ctx(base, "/");
        let window = Window {
            from_ms: None,
            to_ms: Some(9),
        };
        let mut reports = Vec::new();
        let n = cancel_matching(&ctx, "x", Some("k"), window, 7, &mut |d, m| {
            reports.push((d, m))
        });
        assert_eq!(n.unwrap(), 4);
        assert_eq!(reports, [(4, 45_000)]);
        assert_eq!(seen.recv().unwrap().target, "/api/scheduled/%2F/x/due");
        let s = seen.recv().unwrap();
        assert_eq!(
            (s.method.as_str(), s.target.as_str()),
            ("POST", "/api/scheduled/%2F/x/cancel")
        );
        let body: Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(body, json!({"limit": 7, "routing_key": "k", "to_ms": 9}));
    }

    #[test]
    fn cancel_matching_goes_in_batches_and_reports_each() {
        let (base, seen) = fake_server(vec![
            (200, DUE_ANSWER),
            (200, r#"{"cancelled": 20000, "more": true}"#),
            (200, r#"{"cancelled": 20000, "more": true}"#),
            (200, r#"{"cancelled": 5000, "more": false}"#),
        ]);
        let ctx = ctx(base, "/");
        let mut reports = Vec::new();
        let n = cancel_matching(
            &ctx,
            "x",
            None,
            Window::default(),
            CANCEL_BATCH,
            &mut |d, m| reports.push((d, m)),
        );
        assert_eq!(n.unwrap(), 45_000);
        assert_eq!(
            reports,
            [(20_000, 45_000), (40_000, 45_000), (45_000, 45_000)]
        );
        seen.recv().unwrap();
        for _ in 0..3 {
            let body: Value = serde_json::from_str(&seen.recv().unwrap().body).unwrap();
            assert_eq!(body, json!({"limit": CANCEL_BATCH}));
        }
    }

    #[test]
    fn progress_is_a_line_per_batch() {
        let mut log = Progress::new(Some(Vec::new()), false);
        log.update(&cancelled_line(20_000, 1_000_000));
        log.update(&cancelled_line(40_000, 1_000_000));
        assert_eq!(
            String::from_utf8(log.into_inner().unwrap()).unwrap(),
            "cancelled 20000 of at most 1000000 scheduled messages\n\
             cancelled 40000 of at most 1000000 scheduled messages\n"
        );
    }

    #[test]
    fn due_prints_a_bar_chart_readable_without_colour() {
        let (base, _seen) = fake_server(vec![(
            200,
            r#"{"now_ms": 0, "pending": 141, "exact": false, "buckets": [
                {"label": "next minute", "from_ms": 0, "to_ms": 60000, "count": 100},
                {"label": "next hour", "from_ms": 60000, "to_ms": 3600000, "count": 0},
                {"label": "next day", "from_ms": 3600000, "to_ms": 86400000, "count": 1},
                {"label": "later", "from_ms": 86400000, "to_ms": null, "count": 40}]}"#,
        )]);
        let mut out = Vec::new();
        let action = ScheduledAction::Due {
            exchange: "x".into(),
        };
        execute(&ctx(base, "/"), action, &mut out).unwrap();
        let bar = |n: usize| "#".repeat(n);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "Scheduled messages of exchange 'x' in vhost '/' by due time ...\n\
                 next minute  100  {}\n\
                 next hour      0\n\
                 next day       1  {}\n\
                 later         40  {}\n\
                 141 pending (estimated: a bucket edge cut a crowded scheduler slot)\n",
                bar(40),
                bar(1),
                bar(16)
            )
        );
    }

    #[test]
    fn cancel_matching_without_filters_needs_all() {
        let ctx = ctx("http://127.0.0.1:9".into(), "/");
        let e = execute(
            &ctx,
            ScheduledAction::CancelMatching {
                exchange: "x".into(),
                routing_key: None,
                from: None,
                to: None,
                all: false,
                no_progress: true,
                batch: CANCEL_BATCH,
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--all"), "{e}");
    }

    #[test]
    fn times_are_rfc3339_durations_from_now_or_epoch_millis() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_time("2030-01-01T00:00:00Z", now),
            Ok(1_893_456_000_000)
        );
        assert_eq!(
            parse_time("2030-01-01T00:00:00.250Z", now),
            Ok(1_893_456_000_250)
        );
        assert_eq!(parse_time("10m", now), Ok(1_000_600_000));
        assert_eq!(parse_time("+1h 30s", now), Ok(1_003_630_000));
        assert_eq!(parse_time("-1s", now), Ok(999_999_000));
        assert_eq!(parse_time("now", now), Ok(1_000_000_000));
        assert_eq!(parse_time("1700000000000", now), Ok(1_700_000_000_000));
        assert!(parse_time("tomorrow", now).is_err());
        assert!(parse_time("", now).is_err());
    }
}
