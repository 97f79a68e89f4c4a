//! The management API's errors, in RabbitMQ's JSON shape: `{"error": …, "reason": …}`.
//!
//! Statuses: 400 for a request Warren cannot act on (bad JSON, a bad argument, with the
//! reason an AMQP client would get), 401 when the credentials do not log in (with
//! `WWW-Authenticate`, so browsers and `curl --anyauth` ask), 403 when the user is known but
//! may not do this (no management tag, not an administrator, no access to the vhost, a
//! permission refused), 404 for what does not exist. RabbitMQ 3.10 answers 401 in the 403
//! cases too; see `docs/COMPATIBILITY.md`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::AmqpError;
use crate::protocol::ReplyCode;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// RabbitMQ's `error` word (`bad_request`, `not_authorised`, `Object Not Found`, …).
    pub error: &'static str,
    /// What went wrong, for a person.
    pub reason: String,
}

impl ApiError {
    /// 400 with `reason`.
    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "bad_request",
            reason: reason.into(),
        }
    }

    /// 401: the credentials are missing or do not log in.
    pub fn login_failed() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            error: "not_authorized",
            reason: "Login failed".into(),
        }
    }

    /// 403 with RabbitMQ's reason (`Not management user`, `Not administrator user`, …).
    pub fn forbidden(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            error: "not_authorised",
            reason: reason.into(),
        }
    }

    /// 404, RabbitMQ's words.
    pub fn not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: "Object Not Found",
            reason: "Not Found".into(),
        }
    }

    /// 404 saying what is missing.
    pub fn not_found_because(reason: impl Into<String>) -> ApiError {
        ApiError {
            reason: reason.into(),
            ..ApiError::not_found()
        }
    }

    /// 500: the broker could not do it (a store write failed, …).
    pub fn internal(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "internal_error",
            reason: reason.into(),
        }
    }
}

impl From<AmqpError> for ApiError {
    /// What an AMQP client would have been told, as HTTP: the reply text is the reason.
    fn from(e: AmqpError) -> ApiError {
        let reason = e.text.clone();
        match e.code {
            ReplyCode::NotFound => ApiError::not_found_because(reason),
            ReplyCode::AccessRefused | ReplyCode::NotAllowed => ApiError::forbidden(reason),
            ReplyCode::InternalError => ApiError::internal(reason),
            _ => ApiError::bad_request(reason),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.error, "reason": self.reason }));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Warren Management\""),
            );
        }
        response
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;
