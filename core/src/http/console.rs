//! The web console: a single page of hand-written HTML, CSS and JavaScript (ES modules)
//! served at `/` on the management listener, driving the same management API as every other
//! client. The files in `console/` are compiled into the binary (`include_bytes!`), so a
//! console works on a closed network and can never be out of step with the broker serving
//! it: nothing is fetched at run time, there is no framework and no build step.
//!
//! - `GET /` → `index.html`;
//! - `GET /console/{file}` → one asset, with its content type; an unknown name is a 404.
//!
//! Every response carries an ETag (a hash of the bytes) and `Cache-Control: no-cache`, so a
//! browser revalidates with `If-None-Match` and gets a bodiless 304 until the binary changes.
//!
//! The console logs in with HTTP basic auth on each API call, as RabbitMQ's does. So that a
//! wrong password shows the console's own message rather than the browser's login dialog, a
//! 401 answered to a request marked `X-Requested-With: XMLHttpRequest` (the console marks
//! all of its calls) loses its `WWW-Authenticate` header ([`no_browser_dialog`]).

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Api, ApiError};

/// One compiled-in file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console is made of.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("overview.js", JS),
    asset!("queues.js", JS),
    asset!("exchanges.js", JS),
    asset!("connections.js", JS),
    asset!("admin.js", JS),
    asset!("bindings.js", JS),
    asset!("scheduled.js", JS),
];

/// Each asset's ETag: the CRC-32C of its bytes (the checksum the message log already
/// uses), computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            HeaderValue::from_str(&format!("\"{:08x}\"", crc32c::crc32c(a.bytes)))
                .expect("hex is a valid header")
        })
        .collect()
});

/// The asset named `name`, answered as a 200 or, when the browser holds it already, a 304.
fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return ApiError::not_found_because(format!("no console file {name}")).into_response();
    };
    let asset = &ASSETS[index];
    let etag = ETAGS[index].clone();
    let cached = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let headers = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    )];
    (headers, content_type, asset.bytes).into_response()
}

async fn index(request: HeaderMap) -> Response {
    serve("index.html", &request)
}

async fn file(Path(name): Path<String>, request: HeaderMap) -> Response {
    serve(&name, &request)
}

/// Drops `WWW-Authenticate` from a 401 answered to the console's own calls (see the module
/// doc): other clients (`curl --anyauth`, a browser opening an API URL) still get it.
pub async fn no_browser_dialog(request: Request, next: Next) -> Response {
    let from_console = request
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    let mut response = next.run(request).await;
    if from_console && response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    response
}

/// The routes of the console.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_with_its_type_and_unknown_names_are_not() {
        for asset in ASSETS {
            let response = serve(asset.name, &HeaderMap::new());
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                asset.content_type,
                "{}",
                asset.name
            );
        }
        let missing = serve("../Cargo.toml", &HeaderMap::new());
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_matching_etag_is_answered_not_modified() {
        let first = serve("app.js", &HeaderMap::new());
        let etag = first.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("app.js", &again).status(), StatusCode::NOT_MODIFIED);
        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0\""));
        assert_eq!(serve("app.js", &stale).status(), StatusCode::OK);
    }

    #[test]
    fn the_page_loads_only_compiled_in_files() {
        // Nothing from another origin: every src/href in the page and every import in the
        // scripts names a file this module serves.
        let served: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        for asset in ASSETS {
            // The SVG namespace is a name, not a fetch.
            let text = std::str::from_utf8(asset.bytes)
                .expect("assets are text")
                .replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "{} names another origin",
                asset.name
            );
            for marker in ["from \"./", "src=\"/console/", "href=\"/console/"] {
                for piece in text.split(marker).skip(1) {
                    let file = piece.split('"').next().unwrap_or_default();
                    assert!(
                        served.contains(&file),
                        "{} refers to {file}, which is not served",
                        asset.name
                    );
                }
            }
        }
    }
}
