//! HTTP routes beside Socket.IO: health, readiness, metrics, the REST API and the demo page.

mod auth;
mod demo;
mod entries;
mod error;
mod health;
mod history;
mod notifications;

use axum::http::{header, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsOrigins;
use crate::state::AppState;

pub use auth::BearerUser;
pub use error::ApiError;

/// The routes, without the Socket.IO layer.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/api/entries/{id}/content", get(entries::content))
        .route("/api/entries/{id}/history", get(history::list))
        .route("/api/entries/{id}/history/{checkpoint}", get(history::read))
        .route("/api/notifications", post(notifications::create))
        .route("/", get(demo::page))
        .route("/demo", get(demo::page))
        .route("/demo/app.js", get(demo::script))
        .route("/demo/app.css", get(demo::stylesheet))
        .with_state(app)
}

/// CORS for both the REST routes and Socket.IO's polling requests.
pub fn cors(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        // Mirroring (rather than `*`) keeps credentialed requests working.
        CorsOrigins::Any => AllowOrigin::mirror_request(),
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}
