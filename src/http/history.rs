//! `GET /api/entries/{id}/history?before&limit` and
//! `GET /api/entries/{id}/history/{checkpointId}`: the answers of `entry_history` and
//! `entry_checkpoint` (without `ok`), for anyone who may view the entry. Unknown,
//! malformed or forbidden entry ids answer 404, like the content route; bad paging
//! 400; an unknown checkpoint 404.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, BearerUser};
use crate::error::AppError;
use crate::history::{HistoryError, PageRequest};
use crate::ids::{CheckpointId, EntryId, UserId};
use crate::state::AppState;

pub async fn list(
    State(app): State<AppState>,
    BearerUser(user): BearerUser,
    Path(raw_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let entry = viewable_entry(&app, &raw_id, user.user_id).await?;
    let page = PageRequest::from_query(
        query.get("before").map(String::as_str),
        query.get("limit").map(String::as_str),
    )?;
    let checkpoints = app.history.list(entry, page).await?;
    Ok(Json(
        json!({ "entryId": entry, "checkpoints": checkpoints }),
    ))
}

pub async fn read(
    State(app): State<AppState>,
    BearerUser(user): BearerUser,
    Path((raw_id, raw_checkpoint)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let entry = viewable_entry(&app, &raw_id, user.user_id).await?;
    let id = CheckpointId::parse(&raw_checkpoint)
        .map_err(|_| ApiError::from(HistoryError::UnknownCheckpoint))?;
    let checkpoint = app.history.read(entry, id).await?;
    Ok(Json(json!(checkpoint)))
}

/// The entry, if the user may view it; 404 otherwise, whatever the reason.
async fn viewable_entry(app: &AppState, raw_id: &str, user: UserId) -> Result<EntryId, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, AppError::access_denied());
    let entry = EntryId::parse(raw_id).map_err(|_| not_found())?;
    app.store
        .entry_role(entry, user)
        .await?
        .ok_or_else(not_found)?;
    Ok(entry)
}
