//! What lives in a vhost and the connections to it: queues, exchanges, bindings,
//! connections. Column names are rabbitmqctl's info items, which are the management API's
//! JSON field names, except for bindings, whose rabbitmqctl names are mapped from the
//! API's (`source_name` is `source`, `destination_kind` is `destination_type`, …).

use std::io::Write;

use serde_json::Value;

use super::http::{ApiError, path};
use super::{Ctx, columns, info, print_table, say};

fn queue_about(ctx: &Ctx, queue: &str) -> String {
    format!("queue '{queue}' in vhost '{}'", ctx.vhost)
}

fn vhost_rows(ctx: &Ctx, kind: &str) -> Result<Vec<Value>, ApiError> {
    super::rows(
        ctx.client
            .request("GET", &path(&[kind, &ctx.vhost]))
            .about(format!("vhost \"{}\"", ctx.vhost))
            .send()?
            .json()?,
    )
}

/// `list_queues [-p VHOST] [COLUMN…]`.
pub fn list_queues(ctx: &Ctx, typed: &[String], out: &mut dyn Write) -> Result<(), ApiError> {
    let rows = vhost_rows(ctx, "queues")?;
    print_table(
        ctx,
        &format!("Listing queues for vhost {} ...", ctx.vhost),
        &columns(typed, &["name", "messages"]),
        &rows,
        out,
    )
}

/// `list_exchanges [-p VHOST] [COLUMN…]`.
pub fn list_exchanges(ctx: &Ctx, typed: &[String], out: &mut dyn Write) -> Result<(), ApiError> {
    let rows = vhost_rows(ctx, "exchanges")?;
    print_table(
        ctx,
        &format!("Listing exchanges for vhost {} ...", ctx.vhost),
        &columns(typed, &["name", "type"]),
        &rows,
        out,
    )
}

/// A binding from the API with rabbitmqctl's column names added.
fn binding_row(mut binding: Value) -> Value {
    let get = |b: &Value, k: &str| b.get(k).cloned().unwrap_or(Value::Null);
    let source = get(&binding, "source");
    let destination = get(&binding, "destination");
    let kind = get(&binding, "destination_type");
    if let Value::Object(map) = &mut binding {
        map.entry("source_name").or_insert(source);
        // Bindings always have an exchange as their source.
        map.entry("source_kind")
            .or_insert(Value::String("exchange".into()));
        map.entry("destination_name").or_insert(destination);
        map.entry("destination_kind").or_insert(kind);
    }
    binding
}

/// `list_bindings [-p VHOST] [COLUMN…]`.
pub fn list_bindings(ctx: &Ctx, typed: &[String], out: &mut dyn Write) -> Result<(), ApiError> {
    let rows: Vec<Value> = vhost_rows(ctx, "bindings")?
        .into_iter()
        .map(binding_row)
        .collect();
    print_table(
        ctx,
        // rabbitmqctl prints no space before the dots here.
        &format!("Listing bindings for vhost {}...", ctx.vhost),
        &columns(
            typed,
            &[
                "source_name",
                "source_kind",
                "destination_name",
                "destination_kind",
                "routing_key",
                "arguments",
            ],
        ),
        &rows,
        out,
    )
}

/// `list_connections [COLUMN…]` (every vhost, as rabbitmqctl).
pub fn list_connections(ctx: &Ctx, typed: &[String], out: &mut dyn Write) -> Result<(), ApiError> {
    let rows = super::rows(ctx.client.get(&path(&["connections"]))?)?;
    print_table(
        ctx,
        "Listing connections ...",
        &columns(typed, &["user", "peer_host", "peer_port", "state"]),
        &rows,
        out,
    )
}

/// `close_connection NAME EXPLANATION`: the explanation travels as `X-Reason` and reaches
/// the client in its connection.close.
pub fn close_connection(
    ctx: &Ctx,
    name: &str,
    explanation: &str,
    out: &mut dyn Write,
) -> Result<(), ApiError> {
    info(
        ctx,
        out,
        &format!("Closing connection {name}, reason: {explanation}..."),
    )?;
    ctx.client
        .request("DELETE", &path(&["connections", name]))
        .about(format!("connection \"{name}\""))
        .header("X-Reason", explanation)
        .send()
        .map(drop)
}

/// `purge_queue [-p VHOST] QUEUE`.
pub fn purge_queue(ctx: &Ctx, queue: &str, out: &mut dyn Write) -> Result<(), ApiError> {
    info(
        ctx,
        out,
        &format!("Purging queue '{queue}' in vhost '{}' ...", ctx.vhost),
    )?;
    ctx.client
        .request("DELETE", &path(&["queues", &ctx.vhost, queue, "contents"]))
        .about(queue_about(ctx, queue))
        .send()
        .map(drop)
}

/// `delete_queue [-p VHOST] QUEUE [--if-empty] [--if-unused]`. The API does not say how
/// many messages went with the queue, so they are counted just before.
pub fn delete_queue(
    ctx: &Ctx,
    queue: &str,
    if_empty: bool,
    if_unused: bool,
    out: &mut dyn Write,
) -> Result<(), ApiError> {
    info(
        ctx,
        out,
        &format!("Deleting queue '{queue}' on vhost '{}' ...", ctx.vhost),
    )?;
    let queue_path = path(&["queues", &ctx.vhost, queue]);
    let ready = ctx
        .client
        .request("GET", &queue_path)
        .about(queue_about(ctx, queue))
        .send()?
        .json()?
        .get("messages_ready")
        .and_then(Value::as_u64);
    let mut query = Vec::new();
    if if_empty {
        query.push("if-empty=true");
    }
    if if_unused {
        query.push("if-unused=true");
    }
    let full = if query.is_empty() {
        queue_path
    } else {
        format!("{queue_path}?{}", query.join("&"))
    };
    ctx.client
        .request("DELETE", &full)
        .about(queue_about(ctx, queue))
        .send()?;
    if ctx.style.json {
        return say(
            out,
            &serde_json::json!({ "messages_ready": ready }).to_string(),
        );
    }
    match ready {
        Some(n) => say(
            out,
            &format!("Queue was successfully deleted with {n} ready messages"),
        ),
        None => say(out, "Queue was successfully deleted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bindings_get_rabbitmqctl_column_names() {
        let row = binding_row(json!({
            "source": "", "vhost": "/", "destination": "q", "destination_type": "queue",
            "routing_key": "q", "arguments": {}, "properties_key": "q"
        }));
        assert_eq!(row["source_name"], json!(""));
        assert_eq!(row["source_kind"], json!("exchange"));
        assert_eq!(row["destination_name"], json!("q"));
        assert_eq!(row["destination_kind"], json!("queue"));
    }
}
