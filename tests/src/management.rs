//! A blocking client of the management API for tests: a request as a user, answered with
//! the status and the JSON body (or `Null` when there is none). Calls block: run them on a
//! blocking thread from async tests ([`Http::call`] does).

use serde_json::Value;

use crate::broker::{PATIENCE, TestBroker};

/// The management API of one broker, as one user.
#[derive(Clone, Debug)]
pub struct Http {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Basic-auth user (`None`: no `Authorization` header).
    pub user: Option<(String, String)>,
}

impl Http {
    /// The in-process Warren's API as guest/guest; panics for an external broker.
    pub fn guest(broker: &TestBroker) -> Http {
        Http {
            base: broker
                .admin_url()
                .expect("an in-process Warren has a management API"),
            user: Some(("guest".into(), "guest".into())),
        }
    }

    /// The same API as another user.
    pub fn as_user(&self, user: &str, password: &str) -> Http {
        Http {
            base: self.base.clone(),
            user: Some((user.into(), password.into())),
        }
    }

    /// The same API with no credentials.
    pub fn anonymous(&self) -> Http {
        Http {
            base: self.base.clone(),
            user: None,
        }
    }

    /// `method path` with `body` (JSON) and extra `headers`, blocking: the status and the
    /// JSON answer (`Null` for an empty body, a string for one that is not JSON).
    pub fn call_blocking(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::request(method, &url).timeout(PATIENCE);
        if let Some((user, pass)) = &self.user {
            request = request.set("Authorization", &basic(user, pass));
        }
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let answer = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
            None => request.call(),
        };
        let response = match answer {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// [`call_blocking`](Self::call_blocking) on a blocking thread.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let this = self.clone();
        let (method, path) = (method.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || this.call_blocking(&method, &path, body.as_ref(), &[]))
            .await
            .expect("the request thread")
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    /// `PUT path` with `body`.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(body)).await
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None).await
    }
}

/// An `Authorization: Basic …` value.
pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// Percent-encodes one path segment (a vhost, a queue name) as the API wants it.
pub fn segment(name: &str) -> String {
    warren::http::encode_segment(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        assert_eq!(basic("guest", "guest"), "Basic Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(basic("a", "b"), "Basic YTpi");
        assert_eq!(segment("/"), "%2F");
    }
}
