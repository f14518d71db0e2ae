//! Inbox events (PROTOCOL.md section 6), on the main namespaces and `/notifications`.
//! Each handler parses its payload, acts for the socket's own user only, and hands off
//! to [`crate::notifications::NotificationService`]. Named responses are emitted to the
//! asking socket whether or not it asked for an ack; the ack carries the same result.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;

use super::fanout::socket_key;
use super::ordered::{EventCtx, EventPayload};
use super::reply::{Outcome, Reply};
use crate::ids::NotificationId;
use crate::notifications::model::{ListRequest, NotificationQuery, PreferencesUpdate};

const LIST_RESPONSE: &str = "notification:list_response";
const COUNT_RESPONSE: &str = "notification:count_response";
const PREFERENCES: &str = "notification:preferences";

/// A list request may be sent with no payload at all (`null`): all defaults.
impl EventPayload for Option<ListRequest> {}

/// `{notificationId}` of `mark_read` and `archive`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotificationRef {
    notification_id: String,
}

impl EventPayload for NotificationRef {}
impl EventPayload for PreferencesUpdate {}

#[tracing::instrument(
    name = "notification:list_request",
    skip_all,
    fields(user = %ctx.session.user_id())
)]
pub(super) async fn list(ctx: EventCtx, req: Option<ListRequest>) -> Outcome {
    let query = NotificationQuery::parse(req.unwrap_or_default())?;
    let page = ctx
        .session
        .app
        .notifications
        .list(ctx.session.user_id(), &query)
        .await?;
    let _ = ctx.socket.emit(LIST_RESPONSE, &page);
    Reply::json(&page)
}

#[tracing::instrument(
    name = "notification:count_request",
    skip_all,
    fields(user = %ctx.session.user_id())
)]
pub(super) async fn count(ctx: EventCtx, _: IgnoredAny) -> Outcome {
    let count = ctx
        .session
        .app
        .notifications
        .count(ctx.session.user_id())
        .await?;
    let body = json!({ "count": count });
    let _ = ctx.socket.emit(COUNT_RESPONSE, &body);
    Reply::json(body)
}

#[tracing::instrument(
    name = "notification:mark_read",
    skip_all,
    fields(user = %ctx.session.user_id(), notification = tracing::field::Empty)
)]
pub(super) async fn mark_read(ctx: EventCtx, req: NotificationRef) -> Outcome {
    let id = NotificationId::parse(&req.notification_id)?;
    tracing::Span::current().record("notification", tracing::field::display(id));
    let (state, count) = ctx
        .session
        .app
        .notifications
        .mark_read(ctx.session.user_id(), id, &socket_key(&ctx.socket))
        .await?;
    Reply::json(json!({
        "id": state.id, "is_read": state.is_read, "is_archived": state.is_archived, "count": count,
    }))
}

#[tracing::instrument(
    name = "notification:archive",
    skip_all,
    fields(user = %ctx.session.user_id(), notification = tracing::field::Empty)
)]
pub(super) async fn archive(ctx: EventCtx, req: NotificationRef) -> Outcome {
    let id = NotificationId::parse(&req.notification_id)?;
    tracing::Span::current().record("notification", tracing::field::display(id));
    let (state, count) = ctx
        .session
        .app
        .notifications
        .archive(ctx.session.user_id(), id, &socket_key(&ctx.socket))
        .await?;
    Reply::json(json!({
        "id": state.id, "is_read": state.is_read, "is_archived": state.is_archived, "count": count,
    }))
}

#[tracing::instrument(
    name = "notification:mark_all_read",
    skip_all,
    fields(user = %ctx.session.user_id())
)]
pub(super) async fn mark_all_read(ctx: EventCtx, _: IgnoredAny) -> Outcome {
    let (updated, count) = ctx
        .session
        .app
        .notifications
        .mark_all_read(ctx.session.user_id(), &socket_key(&ctx.socket))
        .await?;
    Reply::json(json!({ "updated": updated, "count": count }))
}

#[tracing::instrument(
    name = "notification:preferences_get",
    skip_all,
    fields(user = %ctx.session.user_id())
)]
pub(super) async fn preferences_get(ctx: EventCtx, _: IgnoredAny) -> Outcome {
    let preferences = ctx
        .session
        .app
        .notifications
        .preferences(ctx.session.user_id())
        .await?;
    let body = json!({ "preferences": preferences });
    let _ = ctx.socket.emit(PREFERENCES, &body);
    Reply::json(body)
}

#[tracing::instrument(
    name = "notification:preferences_update",
    skip_all,
    fields(user = %ctx.session.user_id())
)]
pub(super) async fn preferences_update(ctx: EventCtx, req: PreferencesUpdate) -> Outcome {
    let changes = req.parse()?;
    let preferences = ctx
        .session
        .app
        .notifications
        .update_preferences(ctx.session.user_id(), &changes)
        .await?;
    let body = json!({ "preferences": preferences });
    let _ = ctx.socket.emit(PREFERENCES, &body);
    Reply::json(body)
}
