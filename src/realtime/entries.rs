//! Entry events on the main namespaces (PROTOCOL.md sections 5.1 and 5.3): parse,
//! check membership or access, hand off to the entry's actor.

use crate::cluster::SocketRef;
use bytes::Bytes;
use serde::Deserialize;

use super::ordered::{EventCtx, EventPayload};
use super::reply::{AfterAck, Outcome, Reply};
use super::room::{self, member_id};
use super::session::SocketSession;
use crate::collab::command::{ContentView, Edit, JoinInfo, Joined, Member, MemberForm, Viewer};
use crate::collab::cursors::{CursorView, Position, Selection};
use crate::collab::delta::QuillDelta;
use crate::error::AppError;
use crate::ids::{EntryId, UserId};
use crate::state::AppState;
use crate::store::EntryRole;

macro_rules! entry_payload {
    ($($ty:ty),*) => {$(
        impl EventPayload for $ty {
            fn entry_id(&self) -> Option<EntryId> {
                Some(self.entry_id)
            }
        }
    )*};
}

entry_payload!(
    EntryRequest,
    SyncStep1Request,
    UpdateRequest,
    EditRequest,
    CursorRequest,
    TypingRequest,
    DesyncReport
);

/// `{entryId, delta:{ops}, baseVersion?}` (extra fields such as `timestamp` are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EditRequest {
    pub entry_id: EntryId,
    pub delta: QuillDelta,
    #[serde(default)]
    pub base_version: Option<u64>,
}

/// `{entryId, position:{index,length}, selection:{start,end}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CursorRequest {
    pub entry_id: EntryId,
    pub position: Position,
    pub selection: Selection,
}

/// `{entryId, isTyping}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TypingRequest {
    pub entry_id: EntryId,
    pub is_typing: bool,
}

/// `{entryId, version?}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DesyncReport {
    pub entry_id: EntryId,
    #[serde(default)]
    pub version: Option<serde_json::Value>,
}

/// `{entryId}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EntryRequest {
    pub entry_id: EntryId,
}

/// `{entryId, stateVector}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SyncStep1Request {
    pub entry_id: EntryId,
    pub state_vector: Bytes,
}

/// `{entryId, update}` (Yjs doc or awareness update).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateRequest {
    pub entry_id: EntryId,
    pub update: Bytes,
}

/// The user's role on the entry, or `ACCESS_DENIED` whether it is missing or not theirs.
pub async fn authorize(
    app: &AppState,
    entry: EntryId,
    user: UserId,
) -> Result<EntryRole, AppError> {
    app.store
        .entry_role(entry, user)
        .await?
        .ok_or_else(AppError::access_denied)
}

/// A new member for `socket`, named as the diary app names the user.
pub async fn member_for(
    app: &AppState,
    socket: &SocketRef,
    user: UserId,
    role: EntryRole,
    form: MemberForm,
) -> Result<Member, AppError> {
    let display_name = app
        .store
        .display_names(&[user])
        .await?
        .remove(&user)
        .unwrap_or_else(|| user.to_string());
    Ok(room::member(socket, user, display_name, role, form))
}

/// The join ack's fields.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinAck<'a> {
    entry_id: EntryId,
    role: EntryRole,
    version: u64,
    content: &'a str,
    viewers: &'a [Viewer],
    title: &'a str,
}

impl<'a> JoinAck<'a> {
    fn new(info: &'a JoinInfo, title: &'a str) -> Self {
        JoinAck {
            entry_id: info.entry_id,
            role: info.role,
            version: info.version,
            content: &info.content,
            viewers: &info.viewers,
            title,
        }
    }
}

#[tracing::instrument(
    name = "join_entry_room",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn join(ctx: EventCtx, req: EntryRequest) -> Outcome {
    let app = &ctx.session.app;
    let user = ctx.session.user_id();
    let role = authorize(app, req.entry_id, user).await?;
    let member = member_for(app, &ctx.socket, user, role, MemberForm::Delta).await?;
    let Joined { info, acked } = enter(&ctx.session, &ctx.socket, req.entry_id, member).await?;
    tracing::info!(?role, "joined entry room");
    // The title rides along (additively) so a page can name the entry.
    let title = app
        .store
        .entry_title(req.entry_id)
        .await?
        .unwrap_or_default();
    let ack = Reply::json(JoinAck::new(&info, &title))?;
    Ok(Reply::Then(Box::new(ack), AfterAck::Joined(acked)))
}

/// Joining an entry, the one flow of both namespaces: the `active_sessions` row is
/// recorded first (once the actor answers, it holds its relays until the answer is
/// on its way, see [`Joined`]), then the member is added and the socket marked as
/// joined. A socket that closed meanwhile leaves again at once, since its disconnect
/// cleanup did not know of the entry yet.
pub(super) async fn enter(
    session: &SocketSession,
    socket: &SocketRef,
    entry: EntryId,
    member: Member,
) -> Result<Joined, AppError> {
    let app = &session.app;
    record_session(app, entry, member.user, socket).await;
    let id = member.id.clone();
    let joined = match app.collab.join(entry, member).await {
        Ok(joined) => joined,
        Err(e) => {
            forget_session(app, entry, socket).await;
            return Err(e.into());
        }
    };
    session.mark_joined(entry);
    if session.closed.is_cancelled() && session.mark_left(entry) {
        app.collab.leave(entry, id);
        forget_session(app, entry, socket).await;
    }
    Ok(joined)
}

#[tracing::instrument(
    name = "leave_entry_room",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn leave(ctx: EventCtx, req: EntryRequest) -> Outcome {
    if !ctx.session.mark_left(req.entry_id) {
        return Err(AppError::access_denied());
    }
    let app = &ctx.session.app;
    app.collab.leave(req.entry_id, member_id(&ctx.socket));
    forget_session(app, req.entry_id, &ctx.socket).await;
    tracing::info!("left entry room");
    Reply::ok()
}

/// Keeps `active_sessions` current for the main app; a failure is logged, not fatal
/// (the room works without the row, and the sweep tidies up).
async fn record_session(app: &AppState, entry: EntryId, user: UserId, socket: &SocketRef) {
    if let Err(e) = app
        .store
        .session_joined(entry, user, &socket.id.to_string())
        .await
    {
        tracing::warn!(error = %e, "could not record active_sessions row");
    }
}

async fn forget_session(app: &AppState, entry: EntryId, socket: &SocketRef) {
    if let Err(e) = app.store.session_left(&socket.id.to_string(), entry).await {
        tracing::warn!(error = %e, "could not remove active_sessions row");
    }
}

fn joined(ctx: &EventCtx, entry: EntryId) -> Result<(), AppError> {
    if ctx.session.has_joined(entry) {
        Ok(())
    } else {
        Err(AppError::access_denied())
    }
}

#[tracing::instrument(
    name = "entry_sync_step1",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn sync_step1(ctx: EventCtx, req: SyncStep1Request) -> Outcome {
    joined(&ctx, req.entry_id)?;
    let member = member_id(&ctx.socket);
    Reply::entry(
        ctx.session
            .app
            .collab
            .sync_step1(req.entry_id, member, req.state_vector),
    )
}

#[tracing::instrument(
    name = "entry_update",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn update(ctx: EventCtx, req: UpdateRequest) -> Outcome {
    joined(&ctx, req.entry_id)?;
    let member = member_id(&ctx.socket);
    Reply::entry(
        ctx.session
            .app
            .collab
            .edit(req.entry_id, member, Edit::Yjs(req.update)),
    )
}

#[tracing::instrument(
    name = "entry_awareness",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn awareness(ctx: EventCtx, req: UpdateRequest) -> Outcome {
    joined(&ctx, req.entry_id)?;
    let member = member_id(&ctx.socket);
    Reply::entry(
        ctx.session
            .app
            .collab
            .awareness(req.entry_id, member, req.update),
    )
}

#[tracing::instrument(
    name = "entry_edit",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn edit(ctx: EventCtx, req: EditRequest) -> Outcome {
    joined(&ctx, req.entry_id)?;
    let edit = Edit::Delta {
        ops: req.delta.ops,
        base: req.base_version,
    };
    Reply::entry(
        ctx.session
            .app
            .collab
            .edit(req.entry_id, member_id(&ctx.socket), edit),
    )
}

#[tracing::instrument(
    name = "entry_cursor_move",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn cursor_move(ctx: EventCtx, req: CursorRequest) -> Outcome {
    joined(&ctx, req.entry_id)?;
    Reply::entry(ctx.session.app.collab.cursor(
        req.entry_id,
        member_id(&ctx.socket),
        req.position,
        req.selection,
    ))
}

#[tracing::instrument(
    name = "typing",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn typing(ctx: EventCtx, req: TypingRequest) -> Outcome {
    joined(&ctx, req.entry_id)?;
    Reply::entry(
        ctx.session
            .app
            .collab
            .typing(req.entry_id, member_id(&ctx.socket), req.is_typing),
    )
}

#[tracing::instrument(
    name = "state_request",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn state_request(ctx: EventCtx, req: EntryRequest) -> Outcome {
    joined(&ctx, req.entry_id)?;
    send_state(&ctx, req.entry_id).await
}

/// Logged and counted, then answered like `state_request`.
#[tracing::instrument(
    name = "desync_detected",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = %req.entry_id)
)]
pub(super) async fn desync_detected(ctx: EventCtx, req: DesyncReport) -> Outcome {
    joined(&ctx, req.entry_id)?;
    metrics::counter!("diary_desync_reports_total").increment(1);
    tracing::warn!(user = %ctx.session.user_id(), entry = %req.entry_id, client_version = ?req.version, "client reported desync");
    send_state(&ctx, req.entry_id).await
}

/// Emits `state_response` (with the whole doc as a binary Yjs update) and acks the
/// same fields except the binary `update`.
async fn send_state(ctx: &EventCtx, entry: EntryId) -> Outcome {
    let view: ContentView = ctx.session.app.collab.content(entry).await?;
    #[derive(serde::Serialize)]
    struct StateResponse<'a> {
        #[serde(rename = "entryId")]
        entry_id: EntryId,
        content: &'a str,
        delta: &'a QuillDelta,
        version: u64,
        update: Bytes,
        cursors: &'a [CursorView],
        viewers: &'a [Viewer],
    }
    let response = StateResponse {
        entry_id: entry,
        content: &view.content,
        delta: &view.delta,
        version: view.version,
        update: Bytes::from(view.update),
        cursors: &view.cursors,
        viewers: &view.viewers,
    };
    let _ = ctx.socket.emit("state_response", &response);
    Reply::json(serde_json::json!({
        "entryId": entry,
        "content": view.content,
        "delta": view.delta,
        "version": view.version,
        "cursors": view.cursors,
        "viewers": view.viewers,
    }))
}
