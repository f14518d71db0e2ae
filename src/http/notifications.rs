//! `POST /api/notifications`: how the diary app (holding a service JWT) creates a
//! notification. The body is parsed here so that every malformed one gets the same
//! `400 {error:{code:'VALIDATION_ERROR', message}}`, whatever its content type.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, BearerUser};
use crate::error::{AppError, ErrorCode};
use crate::notifications::model::{CreateRequest, NewNotification, Notification};
use crate::state::AppState;

/// `201` and the stored notification. `401` without a valid token, `403` when the
/// token's `role` is not `service`, `400` for a bad body.
#[tracing::instrument(
    name = "POST /api/notifications",
    skip_all,
    fields(caller = %caller.user_id)
)]
pub async fn create(
    State(app): State<AppState>,
    BearerUser(caller): BearerUser,
    body: Bytes,
) -> Result<(StatusCode, Json<Notification>), ApiError> {
    if !caller.is_service {
        tracing::info!(user = %caller.user_id, "notification creation refused: not a service token");
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            AppError::new(ErrorCode::AccessDenied, "a service token is required"),
        ));
    }
    let request: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| AppError::validation(format!("invalid body: {e}")))?;
    let new = NewNotification::parse(request)?;
    let created = app.notifications.create(new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}
