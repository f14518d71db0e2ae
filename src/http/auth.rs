//! Bearer-token authentication and error bodies for the REST routes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::{bearer_token, AuthUser};
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

/// The caller of a REST route, from `Authorization: Bearer <jwt>`.
pub struct BearerUser(pub AuthUser);

impl FromRequestParts<AppState> for BearerUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, AppError::auth("missing token")))?;
        app.keys
            .verify(token)
            .map(BearerUser)
            .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, AppError::auth(e.to_string())))
    }
}

/// A REST failure: the status and the same `{error:{code, message}}` body shape as
/// the Socket.IO acks.
pub struct ApiError(pub StatusCode, pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let status = match e.code {
            ErrorCode::AuthError => StatusCode::UNAUTHORIZED,
            ErrorCode::ValidationError => StatusCode::BAD_REQUEST,
            ErrorCode::AccessDenied => StatusCode::NOT_FOUND,
            ErrorCode::RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.1.code, "message": self.1.message } });
        (self.0, Json(body)).into_response()
    }
}
