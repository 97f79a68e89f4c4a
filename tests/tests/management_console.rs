//! The web console over the wire: `/` on the management listener is its HTML page, its
//! scripts and styles come from `/console/…` with their content types and ETags, an unknown
//! file is a 404, and the API beside it still answers JSON — with no `WWW-Authenticate` on a
//! 401 to the console's own calls, so a wrong password never opens the browser's dialog.
//! (The console itself is driven in a real browser by `tests/interop/test_console.py`.)

use warren_tests::broker::{PATIENCE, TestBroker};

/// `GET base+path` with `headers`: (status, content type, ETag, WWW-Authenticate, body).
fn fetch(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Option<String>, Option<String>, String) {
    let mut request = ureq::get(&format!("{base}{path}")).timeout(PATIENCE);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let etag = response.header("etag").map(str::to_owned);
    let challenge = response.header("www-authenticate").map(str::to_owned);
    (
        status,
        content_type,
        etag,
        challenge,
        response.into_string().unwrap_or_default(),
    )
}

const GUEST: (&str, &str) = ("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_beside_the_api() {
    let broker = TestBroker::start().await;
    let base = broker.admin_url().expect("an in-process Warren has an API");
    tokio::task::spawn_blocking(move || {
        let (status, kind, _, _, page) = fetch(&base, "/", &[]);
        assert_eq!(status, 200);
        assert!(kind.starts_with("text/html"), "{kind}");
        assert!(page.contains("src=\"/console/app.js\""), "{page}");

        for (file, want) in [
            ("app.js", "text/javascript"),
            ("scheduled.js", "text/javascript"),
            ("app.css", "text/css"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let (status, kind, etag, _, body) = fetch(&base, &format!("/console/{file}"), &[]);
            assert_eq!(status, 200, "{file}");
            assert!(kind.starts_with(want), "{file}: {kind}");
            assert!(!body.is_empty(), "{file}");
            let etag = etag.unwrap_or_else(|| panic!("{file} has no ETag"));
            let (again, _, _, _, empty) = fetch(
                &base,
                &format!("/console/{file}"),
                &[("If-None-Match", &etag)],
            );
            assert_eq!(again, 304, "{file} revalidated");
            assert!(empty.is_empty());
        }

        let (status, kind, _, _, body) = fetch(&base, "/console/missing.js", &[]);
        assert_eq!(status, 404);
        assert!(kind.starts_with("application/json"), "{kind}");
        assert!(body.contains("\"reason\""), "{body}");

        let (status, kind, _, _, body) = fetch(&base, "/api/overview", &[GUEST]);
        assert_eq!(status, 200);
        assert!(kind.starts_with("application/json"), "{kind}");
        let overview: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert!(overview["object_totals"].is_object(), "{overview}");
    })
    .await
    .expect("the checks ran");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_console_call_carries_no_login_challenge_but_other_clients_get_one() {
    let broker = TestBroker::start().await;
    let base = broker.admin_url().expect("an in-process Warren has an API");
    tokio::task::spawn_blocking(move || {
        let wrong = ("Authorization", "Basic Z3Vlc3Q6d3Jvbmc="); // guest:wrong
        let (status, _, _, challenge, body) = fetch(&base, "/api/whoami", &[wrong]);
        assert_eq!(status, 401, "{body}");
        assert!(challenge.is_some_and(|c| c.starts_with("Basic")));

        let console = ("X-Requested-With", "XMLHttpRequest");
        let (status, kind, _, challenge, body) = fetch(&base, "/api/whoami", &[wrong, console]);
        assert_eq!(status, 401, "{body}");
        assert!(kind.starts_with("application/json"), "{kind}");
        assert_eq!(challenge, None);

        let (status, _, _, _, body) = fetch(&base, "/api/whoami", &[GUEST, console]);
        assert_eq!(status, 200);
        assert!(body.contains("\"guest\""), "{body}");
    })
    .await
    .expect("the checks ran");
    broker.stop().await;
}
