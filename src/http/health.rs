use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::state::AppState;

/// `200 {status:'ok', connections, timestamp}` while the process runs.
pub async fn health(State(app): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "connections": app.connections.total(),
        "timestamp": chrono::Utc::now(),
    }))
}

/// `200` when the database answers within two seconds, else `503`; `503
/// {status:'overloaded'}` while the process is past capacity (see [`crate::capacity`]).
pub async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    if app.capacity.overloaded() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "overloaded",
                "lagMs": app.capacity.lag().as_millis() as u64,
            })),
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            unavailable()
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            unavailable()
        }
    }
}

fn unavailable() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "reason": "database not answering" })),
    )
}

/// Prometheus text exposition.
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics_handle().render(),
    )
}
