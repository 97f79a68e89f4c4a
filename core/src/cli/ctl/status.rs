//! `status`: the node at a glance — product, uptime, memory against its high watermark,
//! alarms, listeners, object and queue totals, and message rates.
//!
//! The facts come from three calls every management API has: `GET /api/overview`
//! (listeners, totals, `message_stats.*_details.rate`), the node (`GET /api/nodes/{node}`:
//! memory, uptime, alarm flags) and the alarms health check. They are gathered once into
//! [`Status`], which prints either as text a person reads without colour or, with
//! `--formatter json`, as one JSON object with the same facts. Whatever a server leaves out
//! is not printed (rates are the exception: a missing rate is 0.0, as the API's readers
//! treat a missing key), so the same command reads a RabbitMQ node and a Warren one.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::http::{ApiError, path};
use super::table::render;
use super::{Ctx, output_error};

/// The `message_stats` keys whose rates `status` shows, in the order it shows them.
pub const RATE_KEYS: [&str; 6] = [
    "publish",
    "deliver_get",
    "ack",
    "confirm",
    "redeliver",
    "return_unroutable",
];

/// What the alarms health check said.
#[derive(Debug)]
enum AlarmCheck {
    /// No alarm anywhere in the cluster.
    Clear,
    /// Alarms in effect, with the server's reason.
    Raised(String),
    /// The check could not be made.
    Unknown(String),
}

/// One raised alarm: which resource, on which node.
#[derive(Debug)]
struct Alarm {
    resource: String,
    node: String,
}

/// One listener of the node.
#[derive(Debug)]
struct Listener {
    protocol: String,
    ip_address: String,
    /// As the server gave it (a number in both RabbitMQ and Warren).
    port: Value,
}

/// Memory in use and the high watermark (`None`: no watermark is set).
#[derive(Debug)]
struct Memory {
    used: u64,
    limit: Option<u64>,
}

impl Memory {
    /// Used as a share of the watermark, in percent.
    fn percent(&self) -> Option<f64> {
        self.limit
            .map(|limit| 100.0 * self.used as f64 / limit as f64)
    }
}

/// Everything `status` reports, gathered before anything is printed.
#[derive(Debug)]
struct Status {
    node: Option<String>,
    product: Option<String>,
    /// (label, value) lines: versions, node and cluster name.
    about: Vec<(&'static str, String)>,
    uptime_ms: Option<u64>,
    memory: Option<Memory>,
    check: AlarmCheck,
    alarms: Vec<Alarm>,
    listeners: Vec<Listener>,
    object_totals: Map<String, Value>,
    /// Counts only: the `*_details` rate objects beside them are left out.
    queue_totals: Map<String, Value>,
    /// Per second, for each of [`RATE_KEYS`].
    rates: Vec<(&'static str, f64)>,
}

fn text(value: Option<&Value>) -> Option<String> {
    value.filter(|v| !v.is_null()).map(render)
}

/// The alarms check: 200 is clear, 503 carries the reason.
fn alarm_check(ctx: &Ctx) -> AlarmCheck {
    match ctx
        .client
        .request("GET", &path(&["health", "checks", "alarms"]))
        .send()
    {
        Ok(_) => AlarmCheck::Clear,
        Err(ApiError::Status(s)) if s.status == 503 => AlarmCheck::Raised(if s.reason.is_empty() {
            "alarms in effect".to_owned()
        } else {
            s.reason.clone()
        }),
        Err(e) => AlarmCheck::Unknown(e.to_string()),
    }
}

/// The raised alarms: Warren lists them in its overview; RabbitMQ has them only as the
/// node's `mem_alarm` / `disk_free_alarm` flags.
fn raised_alarms(overview: &Value, node_doc: Option<&Value>, node: Option<&str>) -> Vec<Alarm> {
    if let Some(Value::Array(listed)) = overview.get("alarms") {
        return listed
            .iter()
            .map(|a| Alarm {
                resource: text(a.get("resource")).unwrap_or_default(),
                node: text(a.get("node")).unwrap_or_default(),
            })
            .collect();
    }
    let Some(doc) = node_doc else {
        return Vec::new();
    };
    [("mem_alarm", "memory"), ("disk_free_alarm", "disk")]
        .into_iter()
        .filter(|(flag, _)| doc.get(*flag).and_then(Value::as_bool) == Some(true))
        .map(|(_, resource)| Alarm {
            resource: resource.to_owned(),
            node: node.unwrap_or_default().to_owned(),
        })
        .collect()
}

/// The rate of `key` in a `message_stats` object; a missing key is 0.0.
fn rate(stats: Option<&Value>, key: &str) -> f64 {
    stats
        .and_then(|s| s.get(format!("{key}_details")))
        .and_then(|d| d.get("rate"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

impl Status {
    fn gather(ctx: &Ctx) -> Result<Status, ApiError> {
        let overview = ctx.client.get(&path(&["overview"]))?;
        let node = text(overview.get("node"));
        // Memory, uptime and (in RabbitMQ) the alarm flags are per node.
        let node_doc = node
            .as_deref()
            .and_then(|node| ctx.client.get(&path(&["nodes", node])).ok());
        let node_field = |key: &str| {
            node_doc
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(Value::as_u64)
        };
        let product = [
            text(overview.get("product_name")),
            text(overview.get("product_version")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let about = [
            ("RabbitMQ version", "rabbitmq_version"),
            ("Management API version", "management_version"),
            ("Node name", "node"),
            ("Cluster name", "cluster_name"),
            ("Erlang version", "erlang_version"),
        ]
        .into_iter()
        .filter_map(|(label, key)| text(overview.get(key)).map(|v| (label, v)))
        .collect();
        let listeners = match overview.get("listeners") {
            Some(Value::Array(listeners)) => listeners
                .iter()
                .map(|l| Listener {
                    protocol: text(l.get("protocol")).unwrap_or_default(),
                    ip_address: text(l.get("ip_address")).unwrap_or_default(),
                    port: l.get("port").cloned().unwrap_or(Value::Null),
                })
                .collect(),
            _ => Vec::new(),
        };
        let object_totals = match overview.get("object_totals") {
            Some(Value::Object(totals)) => totals.clone(),
            _ => Map::new(),
        };
        let queue_totals = match overview.get("queue_totals") {
            Some(Value::Object(totals)) => totals
                .iter()
                .filter(|(k, v)| !k.ends_with("_details") && !v.is_object())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => Map::new(),
        };
        let stats = overview.get("message_stats");
        Ok(Status {
            alarms: raised_alarms(&overview, node_doc.as_ref(), node.as_deref()),
            check: alarm_check(ctx),
            uptime_ms: overview
                .get("uptime")
                .and_then(Value::as_u64)
                .or_else(|| node_field("uptime")),
            // RabbitMQ and Warren both say 0 for "no watermark".
            memory: node_field("mem_used").map(|used| Memory {
                used,
                limit: node_field("mem_limit").filter(|l| *l > 0),
            }),
            rates: RATE_KEYS.iter().map(|k| (*k, rate(stats, k))).collect(),
            product: (!product.is_empty()).then_some(product),
            node,
            about,
            listeners,
            object_totals,
            queue_totals,
        })
    }

    fn json(&self) -> Value {
        let alarms = match &self.check {
            AlarmCheck::Clear => json!({"status": "ok"}),
            AlarmCheck::Raised(reason) => json!({"status": "failed", "reason": reason}),
            AlarmCheck::Unknown(reason) => json!({"status": "unknown", "reason": reason}),
        };
        let mut alarms = alarms;
        alarms["raised"] = self
            .alarms
            .iter()
            .map(|a| json!({"resource": a.resource, "node": a.node}))
            .collect();
        let about: Map<String, Value> = self
            .about
            .iter()
            .map(|(label, v)| (label.to_lowercase().replace(' ', "_"), json!(v)))
            .collect();
        json!({
            "node": self.node,
            "product": self.product,
            "versions": about,
            "uptime_ms": self.uptime_ms,
            "uptime": self.uptime_ms.map(uptime),
            "memory": self.memory.as_ref().map(|m| json!({
                "used": m.used,
                "limit": m.limit,
                "percent": m.percent(),
            })),
            "alarms": alarms,
            "listeners": self.listeners.iter().map(|l| json!({
                "protocol": l.protocol,
                "ip_address": l.ip_address,
                "port": l.port,
            })).collect::<Vec<_>>(),
            "object_totals": self.object_totals,
            "queue_totals": self.queue_totals,
            "message_rates": self.rates.iter()
                .map(|(k, r)| ((*k).to_owned(), json!(r)))
                .collect::<Map<_, _>>(),
        })
    }

    fn lines(&self, header: bool) -> Vec<String> {
        let mut lines = Vec::new();
        if header {
            lines.push(format!(
                "Status of node {} ...",
                self.node.as_deref().unwrap_or("(unnamed)")
            ));
        }
        if let Some(product) = &self.product {
            lines.push(format!("Product: {product}"));
        }
        for (label, v) in &self.about {
            lines.push(format!("{label}: {v}"));
        }
        if let Some(ms) = self.uptime_ms {
            lines.push(format!("Uptime: {} ({} seconds)", uptime(ms), ms / 1000));
        }
        let mut section = |title: &str, body: Vec<String>| {
            lines.push(String::new());
            lines.push(title.to_owned());
            lines.push(String::new());
            lines.extend(body);
        };
        if let Some(m) = &self.memory {
            section(
                "Memory",
                vec![match (m.limit, m.percent()) {
                    (Some(limit), Some(percent)) => format!(
                        "Used: {} of {} high watermark ({percent:.1}%)",
                        bytes(m.used),
                        bytes(limit)
                    ),
                    _ => format!("Used: {} (no high watermark)", bytes(m.used)),
                }],
            );
        }
        let mut alarms: Vec<String> = self
            .alarms
            .iter()
            .map(|a| format!("{} alarm on node {}", a.resource, a.node))
            .collect();
        match &self.check {
            AlarmCheck::Clear if alarms.is_empty() => alarms.push("(none)".into()),
            // The node lists none of its own: the reason says where they are.
            AlarmCheck::Raised(reason) if alarms.is_empty() => alarms.push(reason.clone()),
            AlarmCheck::Unknown(e) => alarms.push(format!("(alarms check failed: {e})")),
            _ => {}
        }
        section("Alarms", alarms);
        if !self.listeners.is_empty() {
            section(
                "Listeners",
                self.listeners
                    .iter()
                    .map(|l| {
                        format!(
                            "Interface: [{}], port: {}, protocol: {}",
                            l.ip_address,
                            render(&l.port),
                            l.protocol
                        )
                    })
                    .collect(),
            );
        }
        if !self.object_totals.is_empty() {
            section(
                "Totals",
                self.object_totals
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", render(v)))
                    .collect(),
            );
        }
        if !self.queue_totals.is_empty() {
            section(
                "Queued messages",
                self.queue_totals
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", render(v)))
                    .collect(),
            );
        }
        section(
            "Message rates (per second)",
            self.rates
                .iter()
                .map(|(k, r)| format!("{k}: {r:.1}"))
                .collect(),
        );
        lines
    }
}

/// `status`.
pub fn show(ctx: &Ctx, out: &mut dyn Write) -> Result<(), ApiError> {
    let status = Status::gather(ctx)?;
    if ctx.style.json {
        return writeln!(out, "{:#}", status.json()).map_err(output_error);
    }
    for line in status.lines(!ctx.style.quiet && !ctx.style.silent) {
        writeln!(out, "{line}").map_err(output_error)?;
    }
    Ok(())
}

/// An uptime as a person says it: the two largest units (`2h 14m`, `3d 4h`, `5m 3s`).
fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Bytes in the largest binary unit that keeps the number at or above 1.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::http::Client;
    use super::super::table::Style;
    use super::super::testing::fake_server;
    use super::*;

    fn ctx(base: String, style: Style) -> Ctx {
        Ctx {
            client: Client::new(base, "guest", "guest", Duration::from_secs(5)),
            vhost: "/".into(),
            style,
        }
    }

    const WARREN_OVERVIEW: &str = r#"{"product_name": "Warren", "product_version": "0.1.0",
        "node": "warren@h", "object_totals": {"queues": 2},
        "queue_totals": {"messages": 5, "messages_details": {"rate": 1.5}},
        "message_stats": {"publish": 10, "publish_details": {"rate": 2.4},
                          "ack": 3, "ack_details": {"rate": 0.5}},
        "listeners": [{"protocol": "amqp", "ip_address": "0.0.0.0", "port": 5672}],
        "alarms": [{"node": "warren@h", "resource": "memory"}]}"#;
    const WARREN_NODE: &str = r#"{"name": "warren@h", "uptime": 8040000,
        "mem_used": 314572800, "mem_limit": 268435456, "mem_alarm": true}"#;
    const ALARMS_FAILED: &str =
        r#"{"status": "failed", "reason": "There are alarms in effect in the cluster"}"#;

    #[test]
    fn status_prints_memory_alarms_listeners_uptime_and_rates() {
        let (base, seen) = fake_server(vec![
            (200, WARREN_OVERVIEW),
            (200, WARREN_NODE),
            (503, ALARMS_FAILED),
        ]);
        let mut out = Vec::new();
        show(&ctx(base, Style::default()), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Status of node warren@h ...\nProduct: Warren 0.1.0\nNode name: warren@h\n\
             Uptime: 2h 14m (8040 seconds)\n\
             \nMemory\n\nUsed: 300.0 MiB of 256.0 MiB high watermark (117.2%)\n\
             \nAlarms\n\nmemory alarm on node warren@h\n\
             \nListeners\n\nInterface: [0.0.0.0], port: 5672, protocol: amqp\n\
             \nTotals\n\nqueues: 2\n\
             \nQueued messages\n\nmessages: 5\n\
             \nMessage rates (per second)\n\npublish: 2.4\ndeliver_get: 0.0\nack: 0.5\n\
             confirm: 0.0\nredeliver: 0.0\nreturn_unroutable: 0.0\n"
        );
        assert_eq!(seen.recv().unwrap().target, "/api/overview");
        assert_eq!(seen.recv().unwrap().target, "/api/nodes/warren%40h");
        assert_eq!(seen.recv().unwrap().target, "/api/health/checks/alarms");
    }

    #[test]
    fn status_as_json_holds_the_same_facts() {
        let (base, _seen) = fake_server(vec![
            (200, WARREN_OVERVIEW),
            (200, WARREN_NODE),
            (503, ALARMS_FAILED),
        ]);
        let style = Style {
            json: true,
            ..Style::default()
        };
        let mut out = Vec::new();
        show(&ctx(base, style), &mut out).unwrap();
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["node"], "warren@h");
        assert_eq!(doc["product"], "Warren 0.1.0");
        assert_eq!(doc["uptime_ms"], 8_040_000);
        assert_eq!(doc["uptime"], "2h 14m");
        assert_eq!(doc["memory"]["used"], 314_572_800);
        assert_eq!(doc["memory"]["limit"], 268_435_456);
        assert_eq!(doc["memory"]["percent"], 117.1875);
        assert_eq!(doc["alarms"]["status"], "failed");
        assert_eq!(doc["alarms"]["raised"][0]["resource"], "memory");
        assert_eq!(doc["listeners"][0]["port"], 5672);
        assert_eq!(doc["object_totals"]["queues"], 2);
        assert_eq!(doc["queue_totals"], json!({"messages": 5}));
        assert_eq!(doc["message_rates"]["publish"], 2.4);
        assert_eq!(doc["message_rates"]["confirm"], 0.0);
        assert_eq!(
            doc["message_rates"].as_object().unwrap().len(),
            RATE_KEYS.len()
        );
    }

    #[test]
    fn a_rabbitmq_node_gives_its_alarms_as_flags_and_no_watermark_is_said() {
        // RabbitMQ's overview has no `alarms`; its node has the flags. Memory without a
        // watermark (0) is shown without a percentage.
        let (base, _seen) = fake_server(vec![
            (
                200,
                r#"{"product_name": "RabbitMQ", "product_version": "3.10.8",
                    "node": "rabbit@h", "message_stats": {}}"#,
            ),
            (
                200,
                r#"{"name": "rabbit@h", "uptime": 59999, "mem_used": 2048, "mem_limit": 0,
                    "mem_alarm": false, "disk_free_alarm": true}"#,
            ),
            (503, ALARMS_FAILED),
        ]);
        let mut out = Vec::new();
        let quiet = Style {
            quiet: true,
            ..Style::default()
        };
        show(&ctx(base, quiet), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("Product: RabbitMQ 3.10.8\n"), "{text}");
        assert!(text.contains("Uptime: 59s (59 seconds)\n"), "{text}");
        assert!(
            text.contains("\nUsed: 2.0 KiB (no high watermark)\n"),
            "{text}"
        );
        assert!(
            text.contains("\nAlarms\n\ndisk alarm on node rabbit@h\n\n"),
            "{text}"
        );
        assert!(text.contains("\npublish: 0.0\n"), "{text}");
    }

    #[test]
    fn uptimes_and_sizes_read_at_a_glance() {
        assert_eq!(uptime(999), "0s");
        assert_eq!(uptime(61_000), "1m 1s");
        assert_eq!(uptime(3_600_000), "1h 0m");
        assert_eq!(uptime((2 * 86_400 + 5 * 3600 + 7) * 1000), "2d 5h");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10_110_389_452), "9.4 GiB");
    }
}
