//! Who is calling: HTTP basic auth checked against the node's users, as RabbitMQ's
//! management API does (the loopback rule included), and what the caller's tags let it do.
//!
//! [`Caller`] is an axum extractor: a handler that takes one has a logged-in user with a
//! management tag; anything else was answered 401/403 before the handler ran.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Api;
use super::error::{ApiError, ApiResult};
use crate::auth::{Grants, Operation, ResourceKind, User};
use crate::broker::VHost;

/// The logged-in user of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user: Arc<User>,
}

impl Caller {
    /// The user's name.
    pub fn name(&self) -> &str {
        &self.user.name
    }

    /// 403 unless the user is an administrator.
    pub fn require_administrator(&self) -> ApiResult<()> {
        if self.user.is_administrator() {
            Ok(())
        } else {
            Err(ApiError::forbidden("Not administrator user"))
        }
    }

    /// 403 unless the user may see everything (`administrator` or `monitoring`).
    pub fn require_monitoring(&self) -> ApiResult<()> {
        if self.user.can_monitor() {
            Ok(())
        } else {
            Err(ApiError::forbidden("Not monitor user"))
        }
    }

    /// Whether the user sees vhost `vhost`'s objects in lists: monitors and administrators
    /// see every vhost, other users the vhosts they have permissions in.
    pub fn sees_vhost(&self, api: &Api, vhost: &str) -> bool {
        self.user.can_monitor() || api.broker.auth().permission(vhost, self.name()).is_some()
    }

    /// The vhost `vhost`: 404 if there is none, 403 if the user has no permissions in it
    /// (monitors and administrators see every vhost, as RabbitMQ lets them; AMQP operations
    /// in it still need permissions, see [`Caller::permit`]).
    pub fn require_vhost(&self, api: &Api, vhost: &str) -> ApiResult<Arc<VHost>> {
        let found = api.broker.vhost(vhost).ok_or_else(ApiError::not_found)?;
        if self.sees_vhost(api, vhost) {
            Ok(found)
        } else {
            Err(ApiError::forbidden(
                "User not authorised to access virtual host",
            ))
        }
    }

    /// The vhosts a listing across vhosts covers: those the user sees, by name.
    pub fn visible_vhosts(&self, api: &Api) -> Vec<Arc<VHost>> {
        api.broker
            .vhost_names()
            .into_iter()
            .filter(|name| self.sees_vhost(api, name))
            .filter_map(|name| api.broker.vhost(&name))
            .collect()
    }

    /// 403 unless the user may do `operation` on the `kind` named `name` in `vhost`: an
    /// operation done on its behalf (a declare, a publish, a get) follows the AMQP rules.
    pub fn permit(
        &self,
        api: &Api,
        vhost: &str,
        kind: ResourceKind,
        operation: Operation,
        name: &str,
    ) -> ApiResult<()> {
        Grants::new(api.broker.auth(), vhost, self.name()).check(
            api.broker.auth(),
            kind,
            operation,
            name,
        )?;
        Ok(())
    }
}

/// The user and password of an `Authorization: Basic …` header.
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Caller, ApiError> {
        let Some((name, password)) = basic_credentials(parts) else {
            return Err(ApiError::login_failed());
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let user = api
            .broker
            .auth()
            .login(&name, password.as_bytes(), peer)
            .map_err(|why| {
                tracing::warn!(%peer, "management API login refused: {why}");
                ApiError::login_failed()
            })?;
        if !user.can_manage() {
            tracing::warn!(%peer, user = %name, "management API refused: the user has no management tag");
            return Err(ApiError::forbidden("Not management user"));
        }
        Ok(Caller { user })
    }
}
