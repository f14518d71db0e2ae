//! History events on the main namespaces (PROTOCOL.md 5.5): listing and reading an
//! entry's checkpoints. Like every entry event they need the socket to have joined
//! the entry, which is where access was checked (viewers included).

use serde::Deserialize;
use serde_json::Value;

use super::ordered::{EventCtx, EventPayload};
use super::reply::{Outcome, Reply};
use crate::error::AppError;
use crate::history::PageRequest;
use crate::ids::{CheckpointId, EntryId};

/// `{entryId, before?, limit?}`; `before` and `limit` are checked by [`PageRequest`]
/// so that an ill-typed one gets its own message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRequest {
    pub entry_id: EntryId,
    #[serde(default)]
    pub before: Option<Value>,
    #[serde(default)]
    pub limit: Option<Value>,
}

/// `{entryId, id}` of `entry_checkpoint` (and `entry_restore`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRequest {
    pub entry_id: EntryId,
    pub id: Value,
}

impl EventPayload for HistoryRequest {
    fn entry_id(&self) -> Option<EntryId> {
        Some(self.entry_id)
    }
}

impl EventPayload for CheckpointRequest {
    fn entry_id(&self) -> Option<EntryId> {
        Some(self.entry_id)
    }
}

impl CheckpointRequest {
    /// The checkpoint id; an ill-typed one is refused like an unknown one.
    pub fn checkpoint(&self) -> Result<CheckpointId, AppError> {
        self.id
            .as_str()
            .and_then(|raw| CheckpointId::parse(raw).ok())
            .ok_or_else(|| AppError::validation("unknown checkpoint"))
    }
}

#[tracing::instrument(name = "entry_history", skip_all, fields(user = %ctx.session.user_id(), entry = %req.entry_id))]
pub(super) async fn list(ctx: EventCtx, req: HistoryRequest) -> Outcome {
    if !ctx.session.has_joined(req.entry_id) {
        return Err(AppError::access_denied());
    }
    let page = PageRequest::from_json(req.before.as_ref(), req.limit.as_ref())?;
    let checkpoints = ctx.session.app.history.list(req.entry_id, page).await?;
    Reply::json(serde_json::json!({ "entryId": req.entry_id, "checkpoints": checkpoints }))
}

#[tracing::instrument(name = "entry_checkpoint", skip_all, fields(user = %ctx.session.user_id(), entry = %req.entry_id))]
pub(super) async fn read(ctx: EventCtx, req: CheckpointRequest) -> Outcome {
    if !ctx.session.has_joined(req.entry_id) {
        return Err(AppError::access_denied());
    }
    let id = req.checkpoint()?;
    let checkpoint = ctx.session.app.history.read(req.entry_id, id).await?;
    Reply::json(checkpoint)
}
