//! Bearer-token authentication for the REST routes.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::error::ApiError;
use crate::auth::{bearer_token, AuthError, AuthUser};
use crate::error::AppError;
use crate::state::AppState;

/// The caller of a REST route, from `Authorization: Bearer <jwt>`.
pub struct BearerUser(pub AuthUser);

impl FromRequestParts<AppState> for BearerUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, AppError::auth("missing token")))?;
        app.keys.verify(token).map(BearerUser).map_err(|e| {
            if e == AuthError::BadSignature {
                let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
                app.secret_mismatch.refused(peer.map(|c| c.0.ip()));
            }
            ApiError(StatusCode::UNAUTHORIZED, AppError::auth(e.to_string()))
        })
    }
}
