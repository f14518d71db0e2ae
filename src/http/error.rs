//! REST failures, in one place: a wire error (its code given by `realtime::errors`)
//! and the HTTP status of that code, with the same `{error:{code, message}}` body as
//! the Socket.IO acks.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::collab::error::EntryError;
use crate::error::{AppError, ErrorCode};
use crate::history::HistoryError;
use crate::ids::IdError;
use crate::notifications::{NotificationError, ParseError};
use crate::store::StoreError;

/// A REST failure: the status and the wire error.
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

/// Lower layers' errors: the wire error they map to, with that code's status.
macro_rules! status_of_wire_code {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                AppError::from(e).into()
            }
        }
    )*};
}

status_of_wire_code!(
    IdError,
    ParseError,
    NotificationError,
    StoreError,
    EntryError
);

/// The same codes as on the socket; an unknown checkpoint is a missing resource here.
impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        let unknown = matches!(e, HistoryError::UnknownCheckpoint);
        let ApiError(status, error) = AppError::from(e).into();
        match unknown {
            true => ApiError(StatusCode::NOT_FOUND, error),
            false => ApiError(status, error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.1.code, "message": self.1.message } });
        (self.0, Json(body)).into_response()
    }
}
