//! Namespace connection: authentication (middleware), then a synchronous setup that
//! registers every event handler before the client can send anything.
//!
//! socketioxide sends the CONNECT packet just before it calls the connect handler; an
//! `async` handler runs later on its own task, so a quick client's first events could
//! find no handler and be lost. [`SocketSetup`] implements `ConnectHandler::call`
//! directly (it is synchronous) so registration happens before that call returns.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use serde_json::json;
use socketioxide::extract::{State, TryData};
use socketioxide::handler::{ConnectHandler, FromConnectParts};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide_core::Value;

use crate::cluster::{Adapter, SocketRef};

use super::fanout::{socket_key, user_room};
use super::ordered::run_queue;
use super::session::SocketSession;
use crate::auth::{token_from_handshake, AuthError};
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

/// Connect middleware of every namespace: verifies the JWT, applies the per-user
/// connection cap and attaches the [`SocketSession`]. A refusal reaches the client as
/// `connect_error` whose message starts with the code (`AUTH_ERROR: token expired`).
pub async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<serde_json::Value>,
    State(app): State<AppState>,
) -> Result<(), AppError> {
    let auth = auth.ok();
    let token = token_from_handshake(auth.as_ref(), s.req_parts())
        .ok_or_else(|| AppError::auth("missing token"))?;
    let user = app.keys.verify(&token).map_err(|e| {
        tracing::info!(ns = s.ns(), reason = %e, "connection refused");
        if e == AuthError::BadSignature {
            let peer = s.req_parts().extensions.get::<ConnectInfo<SocketAddr>>();
            app.secret_mismatch.refused(peer.map(|c| c.0.ip()));
        }
        AppError::auth(e.to_string())
    })?;
    let permit = app.connections.try_acquire(user.user_id).await.map_err(|_| {
        tracing::info!(ns = s.ns(), user = %user.user_id, "connection refused: too many connections");
        AppError::new(ErrorCode::RateLimitExceeded, "too many connections")
    })?;
    let session = SocketSession::new(user, app.clone(), permit);
    s.extensions.insert(session);
    Ok(())
}

/// Registers a namespace's events on a new socket.
pub type RegisterEvents = fn(&SocketRef);

/// The synchronous connect handler shared by every namespace; `register` adds the
/// namespace's own events.
#[derive(Clone)]
pub struct SocketSetup {
    pub register: RegisterEvents,
}

/// Marker type for socketioxide's handler registry.
pub struct SetupMarker;

impl ConnectHandler<Adapter, SetupMarker> for SocketSetup {
    fn call(&self, s: Arc<Socket<Adapter>>, auth: Option<Value>) {
        let Ok(socket) = SocketRef::from_connect_parts(&s, &auth);
        let Some(session) = socket.extensions.get::<Arc<SocketSession>>() else {
            let _ = socket.disconnect();
            return;
        };
        (self.register)(&socket);
        socket.on_disconnect(on_disconnect);
        let Some(queue) = session.take_queue() else {
            return;
        };

        let user = session.user_id();
        socket.join(user_room(user));
        session.touch();
        metrics::gauge!("diary_connections").increment(1.0);
        tracing::info!(%user, ns = socket.ns(), sid = %socket.id, transport = ?socket.transport_type(), "connected");
        let _ = socket.emit(
            "authenticated",
            &json!({ "userId": user, "timestamp": chrono::Utc::now() }),
        );
        // Before the queue starts: the socket's own events come after its arrival.
        session
            .app
            .presence
            .socket_connected(user, socket_key(&socket));
        tokio::spawn(run_queue(socket, session, queue));
    }
}

/// Every per-socket cleanup lives here: socketioxide calls it when a socket goes, and
/// [`super::end_all_sessions`] calls it at shutdown. It runs once per socket.
pub(super) async fn on_disconnect(s: SocketRef, reason: DisconnectReason) {
    let Some(session) = s.extensions.get::<Arc<SocketSession>>() else {
        return;
    };
    if session.closed.is_cancelled() {
        return;
    }
    let last_socket = session.close();
    let member = super::room::member_id(&s);
    for entry in session.take_joined() {
        session.app.collab.leave(entry, member.clone());
    }
    super::yjs::forget_namespace_if_empty(&session.app, s.ns());
    session
        .app
        .presence
        .socket_disconnected(session.user_id(), &socket_key(&s));
    metrics::gauge!("diary_connections").decrement(1.0);
    tracing::info!(user = %session.user_id(), ns = s.ns(), sid = %s.id, ?reason, last_socket, "disconnected");
}
