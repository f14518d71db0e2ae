//! `auth:refresh {token}` (PROTOCOL.md section 2), on the main namespaces and
//! `/notifications`: a valid token for the socket's own user replaces its token, and
//! the expiry disconnect follows the new `exp` (the socket's queue task reads the
//! expiry afresh after every event). Anything else is `AUTH_ERROR` and changes nothing.

use serde::Deserialize;
use serde_json::json;

use super::ordered::{EventCtx, EventPayload};
use super::reply::{Outcome, Reply};
use crate::error::AppError;

/// `{token}`.
#[derive(Debug, Deserialize)]
pub struct RefreshRequest {
    token: String,
}

impl EventPayload for RefreshRequest {}

#[tracing::instrument(name = "auth:refresh", skip_all, fields(user = %ctx.session.user_id()))]
pub(super) async fn refresh(ctx: EventCtx, req: RefreshRequest) -> Outcome {
    let user = ctx.session.app.keys.verify(&req.token).map_err(|e| {
        tracing::info!(reason = %e, "token refresh refused");
        AppError::auth(e.to_string())
    })?;
    if user.user_id != ctx.session.user_id() {
        tracing::info!(other = %user.user_id, "token refresh refused: another user's token");
        return Err(AppError::auth("token is for another user"));
    }
    let exp = user
        .expires_at
        .and_then(|secs| i64::try_from(secs).ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0));
    ctx.session.replace_token(user);
    Reply::json(json!({ "userId": ctx.session.user_id(), "exp": exp }))
}
