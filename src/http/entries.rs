//! `GET /api/entries/{id}/content`: the entry's current text for the main app.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, BearerUser};
use crate::error::AppError;
use crate::ids::EntryId;
use crate::state::AppState;

/// `{entryId, title, content, delta, version, updatedAt}`; unknown, malformed or forbidden
/// ids all answer 404, so ids cannot be probed.
pub async fn content(
    State(app): State<AppState>,
    BearerUser(user): BearerUser,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, AppError::access_denied());
    let entry = EntryId::parse(&raw_id).map_err(|_| not_found())?;
    app.store
        .entry_role(entry, user.user_id)
        .await?
        .ok_or_else(not_found)?;
    let view = app.collab.content(entry).await?;
    let title = app.store.entry_title(entry).await?.unwrap_or_default();
    let stored = app.store.load_text(entry).await?;
    let updated_at = stored
        .filter(|t| u64::try_from(t.version).ok() == Some(view.version))
        .map(|t| t.updated_at)
        .unwrap_or_else(chrono::Utc::now);
    Ok(Json(json!({
        "entryId": entry,
        "title": title,
        "content": view.content,
        "delta": view.delta,
        "version": view.version,
        "updatedAt": updated_at,
    })))
}
