//! The management API client: where the server is, who we log in as, and what a failed
//! call means in words a person can act on.
//!
//! Everything is blocking (ureq): a command makes a handful of calls and prints. Paths are
//! built from segments with [`path`], which percent-encodes each one, because the API puts
//! vhost, user and queue names (which may hold `/`, `%`, `#`, spaces, …) straight into the
//! URL path and a `/` vhost must travel as `%2F`.

use std::time::Duration;

use serde_json::Value;

/// Why a call failed, already explained: `Display` is what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Nothing answered at the address (refused, unknown host, timed out, …).
    #[error(
        "cannot reach the management API at {base} (is the broker running? its address is set \
         with --management-listen; here with --management): {detail}"
    )]
    Unreachable {
        /// The base address tried.
        base: String,
        /// What the transport said.
        detail: String,
    },
    /// The server answered with an error status (boxed: it is large, and rare).
    #[error("{0}")]
    Status(Box<StatusError>),
    /// Anything else: a bad address, an unreadable answer, a local file.
    #[error("{0}")]
    Other(String),
    /// A command of several calls failed after earlier calls took effect: what was done,
    /// then why the rest was not.
    #[error("{done}: {cause}")]
    Partial {
        /// What took effect before the failure, and what did not.
        done: String,
        /// The failed call's error.
        cause: Box<ApiError>,
    },
}

impl ApiError {
    /// The HTTP status, when the server gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status(s) => Some(s.status),
            ApiError::Partial { cause, .. } => cause.status(),
            _ => None,
        }
    }
}

/// An error status with what the server said and what we were doing.
#[derive(Debug)]
pub struct StatusError {
    /// HTTP status.
    pub status: u16,
    /// The base address (the server).
    pub base: String,
    /// The full URL of the failed call.
    pub url: String,
    /// The user we logged in as.
    pub user: String,
    /// The server's `error` field (or the raw body when it was not RabbitMQ's JSON shape).
    pub error: String,
    /// The server's `reason` field.
    pub reason: String,
    /// What the call was about, for a 404: `user "bob"`, `queue 'q' in vhost '/'`.
    pub subject: Option<String>,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let said = self.said();
        match self.status {
            // RabbitMQ answers 401, not 403, to a user who logged in but lacks a tag
            // ("Not administrator user", "Not management user").
            401 if said.starts_with("Not ") => write!(
                f,
                "401 Unauthorized from {}: user '{}' is not allowed to do this (it needs the \
                 administrator tag / a management tag); the server says: {said}",
                self.base, self.user
            ),
            401 => {
                write!(
                    f,
                    "401 Unauthorized from {}: user '{}' could not log in (wrong username or \
                     password, or the user may only connect from localhost)",
                    self.base, self.user
                )?;
                if !said.is_empty() && said != "Login failed" {
                    write!(f, "; the server says: {said}")?;
                }
                Ok(())
            }
            403 => {
                write!(
                    f,
                    "403 Forbidden from {}: user '{}' is not allowed to do this (it needs the \
                     administrator tag / a management tag)",
                    self.base, self.user
                )?;
                if !said.is_empty() {
                    write!(f, "; the server says: {said}")?;
                }
                Ok(())
            }
            404 => match &self.subject {
                Some(subject) => write!(
                    f,
                    "{subject} not found (404 from {}{})",
                    self.url,
                    suffix(&said)
                ),
                None => write!(f, "404 Not Found from {}{}", self.url, suffix(&said)),
            },
            400 => write!(
                f,
                "400 Bad Request from {}: {}",
                self.url,
                if said.is_empty() {
                    "no reason given"
                } else {
                    &said
                }
            ),
            status => write!(f, "{status} from {}{}", self.url, suffix(&said)),
        }
    }
}

fn suffix(said: &str) -> String {
    if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    }
}

impl StatusError {
    /// The server's words: the reason, else the error, else nothing.
    fn said(&self) -> String {
        if !self.reason.is_empty() {
            self.reason.clone()
        } else {
            self.error.clone()
        }
    }
}

/// Turns what the user typed for `--management` into a base URL without a trailing `/`:
/// `HOST:PORT` (the server's `--management-listen` form) becomes `http://HOST:PORT`; a full
/// `http://` or `https://` URL (possibly with a path prefix) is kept.
pub fn base_url(management: &str) -> Result<String, ApiError> {
    let trimmed = management.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(ApiError::Other("--management is empty".into()));
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("https://") {
        // ureq is built without TLS here; say so rather than fail with "unknown scheme".
        return Err(ApiError::Other(format!(
            "{trimmed}: this build of warren ctl speaks plain HTTP only; use http://HOST:PORT \
             (or a local TLS-terminating proxy)"
        )));
    }
    if lower.starts_with("http://") {
        return Ok(trimmed.to_owned());
    }
    if trimmed.contains("://") {
        return Err(ApiError::Other(format!(
            "{trimmed}: expected HOST:PORT or an http:// URL"
        )));
    }
    // A listen address of 0.0.0.0 / [::] means "every interface": connect locally.
    let local = if let Some(port) = trimmed.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = trimmed.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        trimmed.to_owned()
    };
    Ok(format!("http://{local}"))
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters, so
/// `/` becomes `%2F` and a name can never be mistaken for more path.
pub fn encode(segment: &str) -> String {
    warren::http::encode_segment(segment)
}

/// `/api/` followed by the encoded segments: `path(&["queues", "/", "q"])` is
/// `/api/queues/%2F/q`.
pub fn path(segments: &[&str]) -> String {
    let mut out = String::from("/api");
    for s in segments {
        out.push('/');
        out.push_str(&encode(s));
    }
    out
}

/// Standard base64 (with padding), for the basic-auth header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = match chunk.len() {
            1 => u32::from(chunk[0]) << 16,
            2 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8),
            _ => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]),
        };
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One management API, one login.
pub struct Client {
    base: String,
    user: String,
    authorization: String,
    agent: ureq::Agent,
}

/// A successful answer: its body (empty for 204).
pub struct Answer {
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> Result<Value, ApiError> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body)
            .map_err(|e| ApiError::Other(format!("the server's answer is not JSON: {e}")))
    }

    /// The body as a typed value.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_str(&self.body)
            .map_err(|e| ApiError::Other(format!("unexpected answer from the server: {e}")))
    }
}

impl Client {
    /// A client of the API at `base` (from [`base_url`]).
    pub fn new(base: String, user: &str, password: &str, timeout: Duration) -> Client {
        Client {
            base,
            user: user.to_owned(),
            authorization: format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(timeout)
                .build(),
        }
    }

    /// A request to `path` (from [`path`], possibly with a query string).
    pub fn request(&self, method: &str, path: &str) -> Request<'_> {
        let url = format!("{}{}", self.base, path);
        Request {
            client: self,
            inner: self
                .agent
                .request(method, &url)
                .set("Authorization", &self.authorization),
            url,
            subject: None,
        }
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.request("GET", path).send()?.json()
    }
}

/// A request being built: what it is about (for a 404), headers, then [`Request::send`].
pub struct Request<'a> {
    client: &'a Client,
    inner: ureq::Request,
    url: String,
    subject: Option<String>,
}

impl Request<'_> {
    /// Names the object the call is about, so a 404 can say which one is missing.
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.inner = self.inner.set(name, value);
        self
    }

    /// Sends without a body.
    pub fn send(self) -> Result<Answer, ApiError> {
        let Request {
            client,
            inner,
            url,
            subject,
        } = self;
        finish(client, &url, subject, inner.call())
    }

    /// Sends `body` as JSON.
    pub fn send_json(self, body: &Value) -> Result<Answer, ApiError> {
        let Request {
            client,
            inner,
            url,
            subject,
        } = self;
        let result = inner
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        finish(client, &url, subject, result)
    }
}

fn finish(
    client: &Client,
    url: &str,
    subject: Option<String>,
    result: Result<ureq::Response, ureq::Error>,
) -> Result<Answer, ApiError> {
    match result {
        Ok(response) => {
            let body = response
                .into_string()
                .map_err(|e| ApiError::Other(format!("cannot read the answer from {url}: {e}")))?;
            Ok(Answer { body })
        }
        Err(ureq::Error::Status(status, response)) => {
            let body = response.into_string().unwrap_or_default();
            let (error, reason) = error_fields(&body);
            Err(ApiError::Status(Box::new(StatusError {
                status,
                base: client.base.clone(),
                url: url.to_owned(),
                user: client.user.clone(),
                error,
                reason,
                subject,
            })))
        }
        Err(ureq::Error::Transport(t)) => match t.kind() {
            ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                Err(ApiError::Other(format!("{url}: {t}")))
            }
            ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io => {
                Err(ApiError::Unreachable {
                    base: client.base.clone(),
                    // The io error ("Connection refused (os error 111)") says the most.
                    detail: std::error::Error::source(&t)
                        .map(|source| source.to_string())
                        .or_else(|| t.message().map(str::to_owned))
                        .unwrap_or_else(|| t.kind().to_string()),
                })
            }
            _ => Err(ApiError::Other(format!("{url}: {t}"))),
        },
    }
}

/// RabbitMQ's error body is `{"error": "...", "reason": "..."}`; anything else is kept whole
/// as the error text.
fn error_fields(body: &str) -> (String, String) {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => {
            let field = |name: &str| match map.get(name) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (field("error"), field("reason"))
        }
        _ => (body.trim().to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reserved_character_is_percent_encoded() {
        assert_eq!(encode("/"), "%2F");
        assert_eq!(encode("a b/c%d#e?f&g+h"), "a%20b%2Fc%25d%23e%3Ff%26g%2Bh");
        assert_eq!(encode("ç"), "%C3%A7");
        assert_eq!(encode("plain-name_1.x~"), "plain-name_1.x~");
        assert_eq!(path(&["queues", "/", "my q"]), "/api/queues/%2F/my%20q");
    }

    #[test]
    fn management_addresses_become_base_urls() {
        assert_eq!(
            base_url("127.0.0.1:15672").unwrap(),
            "http://127.0.0.1:15672"
        );
        assert_eq!(base_url("0.0.0.0:15672").unwrap(), "http://127.0.0.1:15672");
        assert_eq!(base_url("[::]:15672").unwrap(), "http://[::1]:15672");
        assert_eq!(base_url("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(base_url("HTTP://h:1/prefix").unwrap(), "HTTP://h:1/prefix");
        assert!(
            base_url("https://h:1")
                .unwrap_err()
                .to_string()
                .contains("plain HTTP")
        );
        assert!(base_url("ftp://h").is_err());
        assert!(base_url("").is_err());
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"guest:guest"), "Z3Vlc3Q6Z3Vlc3Q=");
    }

    fn status(status: u16, body: &str, subject: Option<&str>) -> String {
        let (error, reason) = error_fields(body);
        StatusError {
            status,
            base: "http://h:1".into(),
            url: "http://h:1/api/users/bob".into(),
            user: "bob".into(),
            error,
            reason,
            subject: subject.map(str::to_owned),
        }
        .to_string()
    }

    #[test]
    fn error_statuses_are_explained() {
        let e = status(
            401,
            r#"{"error":"not_authorized","reason":"Login failed"}"#,
            None,
        );
        assert_eq!(
            e,
            "401 Unauthorized from http://h:1: user 'bob' could not log in (wrong username or \
             password, or the user may only connect from localhost)"
        );
        let e = status(
            401,
            r#"{"error":"not_authorized","reason":"Not management user"}"#,
            None,
        );
        assert_eq!(
            e,
            "401 Unauthorized from http://h:1: user 'bob' is not allowed to do this (it needs \
             the administrator tag / a management tag); the server says: Not management user"
        );
        let e = status(403, "", None);
        assert!(e.starts_with("403 Forbidden from http://h:1: user 'bob' is not allowed"));
        assert!(e.contains("administrator tag"));
        let e = status(
            404,
            r#"{"error":"Object Not Found","reason":"Not Found"}"#,
            Some("user \"bob\""),
        );
        assert_eq!(
            e,
            "user \"bob\" not found (404 from http://h:1/api/users/bob: Not Found)"
        );
        let e = status(
            400,
            r#"{"error":"bad_request","reason":"tags_not_present"}"#,
            None,
        );
        assert_eq!(
            e,
            "400 Bad Request from http://h:1/api/users/bob: tags_not_present"
        );
        let e = status(500, "boom", None);
        assert_eq!(e, "500 from http://h:1/api/users/bob: boom");
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind then drop: the port is very likely closed for the moment of the test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let client = Client::new(
            format!("http://127.0.0.1:{port}"),
            "guest",
            "guest",
            Duration::from_secs(5),
        );
        let e = client.get("/api/overview").err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(
            e.starts_with(&format!(
                "cannot reach the management API at http://127.0.0.1:{port} (is the broker running?"
            )),
            "{e}"
        );
    }
}
