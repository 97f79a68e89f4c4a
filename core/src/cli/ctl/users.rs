//! Users and their permissions: `/api/users/{user}`, `/api/permissions/{vhost}/{user}`.
//!
//! The API has no "change one field" for a user: a PUT replaces the whole record, and a PUT
//! without a password (or hash) leaves the user without one. So commands that change one
//! thing read the user first and send the rest back as it was.

use std::io::Write;

use serde_json::{Value, json};

use super::http::{ApiError, path};
use super::table::{self, tag_list};
use super::{Ctx, info, print_table};

fn about(user: &str) -> String {
    format!("user \"{user}\"")
}

/// The user's record, or `None` when there is none.
fn fetch(ctx: &Ctx, user: &str) -> Result<Option<Value>, ApiError> {
    match ctx
        .client
        .request("GET", &path(&["users", user]))
        .about(about(user))
        .send()
    {
        Ok(answer) => answer.json().map(Some),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

fn existing(ctx: &Ctx, user: &str) -> Result<Value, ApiError> {
    fetch(ctx, user)?.ok_or_else(|| ApiError::Other(format!("user \"{user}\" does not exist")))
}

fn put(ctx: &Ctx, user: &str, body: &Value) -> Result<(), ApiError> {
    ctx.client
        .request("PUT", &path(&["users", user]))
        .about(about(user))
        .send_json(body)
        .map(drop)
}

/// The record's password hash and algorithm, to send back unchanged.
fn keep_password(record: &Value, body: &mut Value) {
    for key in ["password_hash", "hashing_algorithm"] {
        if let Some(v) = record.get(key).filter(|v| !v.is_null()) {
            body[key] = v.clone();
        }
    }
}

/// `add_user USER PASS`: refuses to replace an existing user (a PUT would).
pub fn add(ctx: &Ctx, user: &str, password: &str, out: &mut dyn Write) -> Result<(), ApiError> {
    info(ctx, out, &format!("Adding user \"{user}\" ..."))?;
    if fetch(ctx, user)?.is_some() {
        return Err(ApiError::Other(format!("user \"{user}\" already exists")));
    }
    put(ctx, user, &json!({"password": password, "tags": ""}))?;
    info(
        ctx,
        out,
        "Done. Don't forget to grant the user permissions to some virtual hosts! See \
         'warren ctl help set_permissions' to learn more.",
    )
}

/// `delete_user USER`.
pub fn delete(ctx: &Ctx, user: &str, out: &mut dyn Write) -> Result<(), ApiError> {
    info(ctx, out, &format!("Deleting user \"{user}\" ..."))?;
    ctx.client
        .request("DELETE", &path(&["users", user]))
        .about(about(user))
        .send()
        .map(drop)
}

/// `change_password USER PASS`: keeps the tags.
pub fn change_password(
    ctx: &Ctx,
    user: &str,
    password: &str,
    out: &mut dyn Write,
) -> Result<(), ApiError> {
    info(
        ctx,
        out,
        &format!("Changing password for user \"{user}\" ..."),
    )?;
    let record = existing(ctx, user)?;
    let tags = tag_list(record.get("tags").unwrap_or(&Value::Null)).join(",");
    put(ctx, user, &json!({"password": password, "tags": tags}))
}

/// `set_user_tags USER [TAG…]`: keeps the password.
pub fn set_tags(
    ctx: &Ctx,
    user: &str,
    tags: &[String],
    out: &mut dyn Write,
) -> Result<(), ApiError> {
    info(
        ctx,
        out,
        &format!(
            "Setting tags for user \"{user}\" to [{}] ...",
            tags.join(", ")
        ),
    )?;
    let record = existing(ctx, user)?;
    let mut body = json!({"tags": tags.join(",")});
    keep_password(&record, &mut body);
    if body.get("password_hash").is_none() {
        // Without the hash the PUT would leave the user unable to log in.
        return Err(ApiError::Other(format!(
            "the server did not show the password hash of user \"{user}\", so its tags \
             cannot be changed without losing its password"
        )));
    }
    put(ctx, user, &body)
}

/// `list_users`.
pub fn list(ctx: &Ctx, out: &mut dyn Write) -> Result<(), ApiError> {
    let users = super::rows(ctx.client.get(&path(&["users"]))?)?;
    let rows: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({
                "user": table::field(u, "name"),
                "tags": tag_list(u.get("tags").unwrap_or(&Value::Null)),
            })
        })
        .collect();
    print_table(
        ctx,
        "Listing users ...",
        &["user".into(), "tags".into()],
        &rows,
        out,
    )
}

fn permission_about(ctx: &Ctx, user: &str) -> String {
    format!("user \"{user}\" or vhost \"{}\"", ctx.vhost)
}

/// `set_permissions [-p VHOST] USER CONF WRITE READ`.
pub fn set_permissions(
    ctx: &Ctx,
    user: &str,
    [configure, write, read]: [&str; 3],
    out: &mut dyn Write,
) -> Result<(), ApiError> {
    info(
        ctx,
        out,
        &format!(
            "Setting permissions for user \"{user}\" in vhost \"{}\" ...",
            ctx.vhost
        ),
    )?;
    ctx.client
        .request("PUT", &path(&["permissions", &ctx.vhost, user]))
        .about(permission_about(ctx, user))
        .send_json(&json!({"configure": configure, "write": write, "read": read}))
        .map(drop)
}

/// `clear_permissions [-p VHOST] USER`.
pub fn clear_permissions(ctx: &Ctx, user: &str, out: &mut dyn Write) -> Result<(), ApiError> {
    info(
        ctx,
        out,
        &format!(
            "Clearing permissions for user \"{user}\" in vhost \"{}\" ...",
            ctx.vhost
        ),
    )?;
    ctx.client
        .request("DELETE", &path(&["permissions", &ctx.vhost, user]))
        .about(format!(
            "permissions of user \"{user}\" in vhost \"{}\"",
            ctx.vhost
        ))
        .send()
        .map(drop)
}

/// `list_permissions [-p VHOST]`.
pub fn list_permissions(ctx: &Ctx, out: &mut dyn Write) -> Result<(), ApiError> {
    let rows = super::rows(
        ctx.client
            .request("GET", &path(&["vhosts", &ctx.vhost, "permissions"]))
            .about(format!("vhost \"{}\"", ctx.vhost))
            .send()?
            .json()?,
    )?;
    print_table(
        ctx,
        &format!("Listing permissions for vhost \"{}\" ...", ctx.vhost),
        &[
            "user".into(),
            "configure".into(),
            "write".into(),
            "read".into(),
        ],
        &rows,
        out,
    )
}

/// `list_user_permissions USER`.
pub fn list_user_permissions(ctx: &Ctx, user: &str, out: &mut dyn Write) -> Result<(), ApiError> {
    let rows = super::rows(
        ctx.client
            .request("GET", &path(&["users", user, "permissions"]))
            .about(about(user))
            .send()?
            .json()?,
    )?;
    print_table(
        ctx,
        &format!("Listing permissions for user \"{user}\" ..."),
        &[
            "vhost".into(),
            "configure".into(),
            "write".into(),
            "read".into(),
        ],
        &rows,
        out,
    )
}
