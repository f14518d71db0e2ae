//! The five wire error codes of PROTOCOL.md section 3 and the one error type every
//! handler returns. Lower layers keep their own `thiserror` enums; they are mapped to
//! this one in `realtime::errors`, the single place where errors get their wire code.

use serde::Serialize;

/// An error code as the clients see it. The set is closed: clients switch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    AuthError,
    ValidationError,
    AccessDenied,
    RateLimitExceeded,
    ServerError,
}

impl ErrorCode {
    /// The code exactly as it appears on the wire (and in `connect_error` messages).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthError => "AUTH_ERROR",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::AccessDenied => "ACCESS_DENIED",
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::ServerError => "SERVER_ERROR",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure that is reported to a client. The message is shown to users, so it never
/// carries internals: server-side causes are logged where they happen and replaced by
/// a generic message (see [`AppError::internal`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Only set for `RATE_LIMIT_EXCEEDED`: how long until the next event is accepted.
    pub retry_after_ms: Option<u64>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AuthError, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }

    /// Used both for "no right" and "does not exist", so that a client can never
    /// probe which ids exist.
    pub fn access_denied() -> Self {
        Self::new(ErrorCode::AccessDenied, "access denied")
    }

    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            code: ErrorCode::RateLimitExceeded,
            message: "rate limit exceeded".into(),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    /// Logs the real cause and returns the generic `SERVER_ERROR` clients see.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::ServerError, "internal server error")
    }
}
