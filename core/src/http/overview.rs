//! (being written)

use axum::Router;

use super::Api;

/// The routes of this resource.
pub fn routes() -> Router<Api> {
    Router::new()
}
