//! `presence_update` from clients (PROTOCOL.md section 7): a user chooses a status,
//! which their online friends see. Main namespaces only.

use serde::Deserialize;
use serde_json::json;

use super::ordered::{EventCtx, EventPayload};
use super::reply::{Outcome, Reply};
use crate::presence::ChosenStatus;

/// `{status: 'online'|'away'|'busy'}`; anything else is a `VALIDATION_ERROR`.
#[derive(Debug, Deserialize)]
pub(super) struct PresenceUpdate {
    status: ChosenStatus,
}

impl EventPayload for PresenceUpdate {}

/// Answers `{ok:true, status, lastSeen}`.
#[tracing::instrument(
    name = "presence_update",
    skip_all,
    fields(user = %ctx.session.user_id(), status = ?request.status)
)]
pub(super) async fn presence_update(ctx: EventCtx, request: PresenceUpdate) -> Outcome {
    let app = &ctx.session.app;
    let (status, last_seen) = app
        .presence
        .set_status(ctx.session.user_id(), request.status)
        .await?;
    Reply::json(json!({ "status": status, "lastSeen": last_seen }))
}
