//! Virtual hosts: `/api/vhosts/{vhost}`.

use std::io::Write;

use serde_json::{Map, Value};

use super::http::{ApiError, path};
use super::{Ctx, columns, info, print_table};

/// What `add_vhost` may set besides the name.
pub struct Metadata {
    /// `--description`.
    pub description: Option<String>,
    /// `--tags`, comma-separated.
    pub tags: Option<String>,
    /// `--default-queue-type`.
    pub default_queue_type: Option<String>,
}

fn about(vhost: &str) -> String {
    format!("vhost \"{vhost}\"")
}

/// `add_vhost VHOST`: like rabbitmqctl, an existing vhost is left alone (a PUT would reset
/// its description and tags).
pub fn add(ctx: &Ctx, vhost: &str, meta: Metadata, out: &mut dyn Write) -> Result<(), ApiError> {
    info(ctx, out, &format!("Adding vhost \"{vhost}\" ..."))?;
    match ctx
        .client
        .request("GET", &path(&["vhosts", vhost]))
        .about(about(vhost))
        .send()
    {
        Ok(_) => return Ok(()),
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(e),
    }
    let mut body = Map::new();
    if let Some(d) = meta.description {
        body.insert("description".into(), Value::String(d));
    }
    if let Some(t) = meta.tags {
        body.insert("tags".into(), Value::String(t));
    }
    if let Some(q) = meta.default_queue_type {
        body.insert("default_queue_type".into(), Value::String(q));
    }
    ctx.client
        .request("PUT", &path(&["vhosts", vhost]))
        .about(about(vhost))
        .send_json(&Value::Object(body))
        .map(drop)
}

/// `delete_vhost VHOST`.
pub fn delete(ctx: &Ctx, vhost: &str, out: &mut dyn Write) -> Result<(), ApiError> {
    info(ctx, out, &format!("Deleting vhost \"{vhost}\" ..."))?;
    ctx.client
        .request("DELETE", &path(&["vhosts", vhost]))
        .about(about(vhost))
        .send()
        .map(drop)
}

/// `list_vhosts [COLUMN…]`.
pub fn list(ctx: &Ctx, typed: &[String], out: &mut dyn Write) -> Result<(), ApiError> {
    let rows = super::rows(ctx.client.get(&path(&["vhosts"]))?)?;
    print_table(
        ctx,
        "Listing vhosts ...",
        &columns(typed, &["name"]),
        &rows,
        out,
    )
}
