//! `status`: what `GET /api/overview`, the node (`GET /api/nodes/{node}`: memory used and
//! the high watermark) and the alarms health check say about the node. Whatever a server
//! leaves out is simply not printed, so the same command reads a RabbitMQ node and a Warren
//! one.

use std::io::Write;

use serde_json::{Value, json};

use super::http::{ApiError, path};
use super::table::render;
use super::{Ctx, output_error};

/// The alarms check: `Ok(None)` when clear, `Ok(Some(reason))` when an alarm is in
/// effect, `Err` when the check could not be made.
fn alarms(ctx: &Ctx) -> Result<Option<String>, ApiError> {
    match ctx
        .client
        .request("GET", &path(&["health", "checks", "alarms"]))
        .send()
    {
        Ok(_) => Ok(None),
        Err(ApiError::Status(s)) if s.status == 503 => Ok(Some(if s.reason.is_empty() {
            "alarms in effect".to_owned()
        } else {
            s.reason.clone()
        })),
        Err(e) => Err(e),
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    value.filter(|v| !v.is_null()).map(render)
}

/// `status`.
pub fn show(ctx: &Ctx, out: &mut dyn Write) -> Result<(), ApiError> {
    let overview = ctx.client.get(&path(&["overview"]))?;
    let node = text(overview.get("node"));
    // Memory (and, in RabbitMQ, uptime) are per node.
    let node_doc = node
        .as_deref()
        .and_then(|node| ctx.client.get(&path(&["nodes", node])).ok());
    let node_field = |key: &str| {
        node_doc
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(Value::as_u64)
    };
    let uptime_ms = overview
        .get("uptime")
        .and_then(Value::as_u64)
        .or_else(|| node_field("uptime"));
    let memory = node_field("mem_used").map(|used| (used, node_field("mem_limit")));
    let alarm = alarms(ctx);
    if ctx.style.json {
        let alarms = match &alarm {
            Ok(None) => json!({"status": "ok"}),
            Ok(Some(reason)) => json!({"status": "failed", "reason": reason}),
            Err(e) => json!({"status": "unknown", "reason": e.to_string()}),
        };
        let memory = memory.map(|(used, limit)| json!({"used": used, "limit": limit}));
        let doc = json!({
            "overview": overview,
            "uptime_ms": uptime_ms,
            "memory": memory,
            "alarms": alarms,
        });
        return writeln!(out, "{doc:#}").map_err(output_error);
    }
    let mut lines = Vec::new();
    if !ctx.style.quiet && !ctx.style.silent {
        lines.push(format!(
            "Status of node {} ...",
            node.as_deref().unwrap_or("(unnamed)")
        ));
    }
    let product = [
        text(overview.get("product_name")),
        text(overview.get("product_version")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    if !product.is_empty() {
        lines.push(format!("Product: {product}"));
    }
    for (label, key) in [
        ("RabbitMQ version", "rabbitmq_version"),
        ("Management API version", "management_version"),
        ("Node name", "node"),
        ("Cluster name", "cluster_name"),
        ("Erlang version", "erlang_version"),
    ] {
        if let Some(v) = text(overview.get(key)) {
            lines.push(format!("{label}: {v}"));
        }
    }
    if let Some(ms) = uptime_ms {
        lines.push(format!("Uptime (seconds): {}", ms / 1000));
    }
    if let Some(Value::Array(listeners)) = overview.get("listeners") {
        lines.push(String::new());
        lines.push("Listeners".into());
        lines.push(String::new());
        for l in listeners {
            let protocol = text(l.get("protocol")).unwrap_or_default();
            let ip = text(l.get("ip_address")).unwrap_or_default();
            let port = text(l.get("port")).unwrap_or_default();
            lines.push(format!(
                "Interface: [{ip}], port: {port}, protocol: {protocol}"
            ));
        }
    }
    if let Some(Value::Object(totals)) = overview.get("object_totals") {
        lines.push(String::new());
        lines.push("Totals".into());
        lines.push(String::new());
        for (k, v) in totals {
            lines.push(format!("{k}: {}", render(v)));
        }
    }
    if let Some(Value::Object(totals)) = overview.get("queue_totals") {
        // The *_details entries are rates; the counts are what a status reader wants.
        let counts: Vec<String> = totals
            .iter()
            .filter(|(k, v)| !k.ends_with("_details") && !v.is_object())
            .map(|(k, v)| format!("{k}: {}", render(v)))
            .collect();
        if !counts.is_empty() {
            lines.push(String::new());
            lines.push("Queued messages".into());
            lines.push(String::new());
            lines.extend(counts);
        }
    }
    if let Some((used, limit)) = memory {
        lines.push(String::new());
        lines.push("Memory".into());
        lines.push(String::new());
        lines.push(format!("Total memory used: {}", mebibytes(used)));
        if let Some(limit) = limit {
            lines.push(format!("Memory high watermark: {}", mebibytes(limit)));
        }
    }
    lines.push(String::new());
    lines.push("Alarms".into());
    lines.push(String::new());
    lines.push(match &alarm {
        Ok(None) => "(none)".into(),
        Ok(Some(reason)) => reason.clone(),
        Err(e) => format!("(unknown: {e})"),
    });
    // Which alarms, where the server lists them in its overview (Warren does).
    if let (Ok(Some(_)), Some(Value::Array(raised))) = (&alarm, overview.get("alarms")) {
        for a in raised {
            let resource = text(a.get("resource")).unwrap_or_default();
            let node = text(a.get("node")).unwrap_or_default();
            lines.push(format!("{resource} alarm on node {node}"));
        }
    }
    for line in lines {
        writeln!(out, "{line}").map_err(output_error)?;
    }
    Ok(())
}

/// Bytes as RabbitMQ's status prints memory, in a unit a person reads at a glance.
fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::http::Client;
    use super::super::table::Style;
    use super::super::testing::fake_server;
    use super::*;

    #[test]
    fn status_prints_what_the_server_gives_and_a_failed_alarm_check() {
        let (base, seen) = fake_server(vec![
            (
                200,
                r#"{"product_name": "Warren", "product_version": "0.1.0", "node": "warren@h",
                    "uptime": 61000, "object_totals": {"queues": 2},
                    "listeners": [{"protocol": "amqp", "ip_address": "0.0.0.0", "port": 5672}],
                    "alarms": [{"node": "warren@h", "resource": "memory"}]}"#,
            ),
            (
                200,
                r#"{"name": "warren@h", "mem_used": 314572800, "mem_limit": 268435456,
                    "mem_alarm": true}"#,
            ),
            (
                503,
                r#"{"status": "failed", "reason": "There are alarms in effect in the cluster"}"#,
            ),
        ]);
        let ctx = Ctx {
            client: Client::new(base, "guest", "guest", Duration::from_secs(5)),
            vhost: "/".into(),
            style: Style::default(),
        };
        let mut out = Vec::new();
        show(&ctx, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Status of node warren@h ...\nProduct: Warren 0.1.0\nNode name: warren@h\n\
             Uptime (seconds): 61\n\nListeners\n\nInterface: [0.0.0.0], port: 5672, protocol: \
             amqp\n\nTotals\n\nqueues: 2\n\nMemory\n\nTotal memory used: 300.0 MiB\n\
             Memory high watermark: 256.0 MiB\n\nAlarms\n\nThere are alarms in effect in the \
             cluster\nmemory alarm on node warren@h\n"
        );
        assert_eq!(seen.recv().unwrap().target, "/api/overview");
        assert_eq!(seen.recv().unwrap().target, "/api/nodes/warren%40h");
        assert_eq!(seen.recv().unwrap().target, "/api/health/checks/alarms");
    }
}
