//! The `/yjs|{entryId}` namespaces, wire-compatible with the published y-socket.io
//! 1.1.x client: `sync-step-1` (state vector in, missing update as the ack; the server
//! sends its own step 1 too), `sync-update` and `awareness-update`, all binary.
//!
//! Access is checked when the namespace connects. Errors go out as `error` events,
//! never as acks: that client applies any ack payload as a Yjs update.

use std::sync::Arc;

use bytes::Bytes;
use socketioxide::extract::State;
use tracing::Instrument;

use crate::cluster::SocketRef;

use super::entries::{authorize, enter, member_for};
use super::ordered::{run_in_order, EventCtx, EventPayload};
use super::reply::{Outcome, Reply};
use super::room::member_id;
use super::session::SocketSession;
use crate::collab::command::{Edit, Member, MemberForm};
use crate::error::AppError;
use crate::ids::EntryId;
use crate::state::AppState;

/// The dynamic namespace pattern (matchit syntax).
pub const NAMESPACE_PATTERN: &str = "/yjs|{entry}";
const PREFIX: &str = "/yjs|";

/// Which entry a y-socket.io socket edits, and its membership until it is set up.
#[derive(Clone)]
struct YjsEntry {
    entry: EntryId,
    pending_member: Arc<std::sync::Mutex<Option<Member>>>,
}

impl EventPayload for Bytes {}

/// Connect middleware (after [`super::connect::authenticate`]): the entry named by the
/// namespace must exist and be visible to the user.
pub async fn authorize_entry(s: SocketRef, State(app): State<AppState>) -> Result<(), AppError> {
    let result = prepare_member(&s, &app).await;
    if result.is_err() {
        forget_namespace_if_empty(&app, s.ns());
    }
    result
}

async fn prepare_member(s: &SocketRef, app: &AppState) -> Result<(), AppError> {
    let entry = s
        .ns()
        .strip_prefix(PREFIX)
        .and_then(|id| EntryId::parse(id).ok())
        .ok_or_else(AppError::access_denied)?;
    let session = s
        .extensions
        .get::<Arc<SocketSession>>()
        .ok_or_else(|| AppError::auth("not authenticated"))?;
    let user = session.user_id();
    let role = authorize(app, entry, user).await?;
    let member = member_for(app, s, user, role, MemberForm::YSocketIo).await?;
    s.extensions.insert(YjsEntry {
        entry,
        pending_member: Arc::new(std::sync::Mutex::new(Some(member))),
    });
    Ok(())
}

/// Joins the socket's entry as soon as it is set up, first in its event queue, so
/// that its own events find it a member (the actor then sends the server's sync step
/// 1 and the awareness states). A failed join disconnects the socket.
pub(super) fn join(s: &SocketRef) {
    let (Some(yjs), Some(session)) = (
        s.extensions.get::<YjsEntry>(),
        s.extensions.get::<Arc<SocketSession>>(),
    ) else {
        return;
    };
    let member = yjs
        .pending_member
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(member) = member else {
        return;
    };
    let socket = s.clone();
    let queued = session.clone();
    let span = tracing::info_span!("yjs_join", user = %member.user, entry = %yjs.entry);
    let join = async move {
        match enter(&session, &socket, yjs.entry, member).await {
            // y-socket.io gets no join ack: the actor may relay at once.
            Ok(joined) => {
                let _ = joined.acked.send(());
            }
            Err(e) => {
                tracing::warn!(code = %e.code, "y-socket.io join failed");
                let _ = socket.disconnect();
            }
        }
    };
    run_in_order(&queued, join.instrument(span));
}

fn entry_of(ctx: &EventCtx) -> Result<EntryId, AppError> {
    ctx.socket
        .extensions
        .get::<YjsEntry>()
        .map(|y| y.entry)
        .ok_or_else(AppError::access_denied)
}

#[tracing::instrument(
    name = "sync-step-1",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = tracing::field::Empty)
)]
pub(super) async fn sync_step1(ctx: EventCtx, state_vector: Bytes) -> Outcome {
    let entry = entry_of(&ctx)?;
    tracing::Span::current().record("entry", tracing::field::display(entry));
    Reply::entry(
        ctx.session
            .app
            .collab
            .sync_step1(entry, member_id(&ctx.socket), state_vector),
    )
}

#[tracing::instrument(
    name = "sync-update",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = tracing::field::Empty)
)]
pub(super) async fn sync_update(ctx: EventCtx, update: Bytes) -> Outcome {
    let entry = entry_of(&ctx)?;
    tracing::Span::current().record("entry", tracing::field::display(entry));
    Reply::entry(
        ctx.session
            .app
            .collab
            .edit(entry, member_id(&ctx.socket), Edit::Yjs(update)),
    )
}

#[tracing::instrument(
    name = "awareness-update",
    level = "debug",
    skip_all,
    fields(user = %ctx.session.user_id(), entry = tracing::field::Empty)
)]
pub(super) async fn awareness_update(ctx: EventCtx, update: Bytes) -> Outcome {
    let entry = entry_of(&ctx)?;
    tracing::Span::current().record("entry", tracing::field::display(entry));
    Reply::entry(
        ctx.session
            .app
            .collab
            .awareness(entry, member_id(&ctx.socket), update),
    )
}

/// Dynamic namespaces are never removed by socketioxide; drop one once nobody is on it
/// (also after refused connects, so probing random ids costs no memory).
pub fn forget_namespace_if_empty(app: &AppState, ns: &str) {
    if !ns.starts_with(PREFIX) {
        return;
    }
    let io = app.io();
    let empty = io
        .of(ns)
        .is_none_or(|ops| ops.sockets().iter().all(|s| !s.connected()));
    if empty {
        io.delete_ns(ns);
    }
}
