//! Getting an inbox event to every socket of one user, whatever namespace it is on.
//!
//! The service only says "send this to user U (but not to that socket), on every
//! process or on this one"; [`Fanout`] decides how. [`SocketIoFanout`] broadcasts
//! through socketioxide to the `user:{id}` room on `/`, `/realtime/ws` and
//! `/notifications`; its adapter is what reaches the sockets: with `REDIS_URL`, the
//! Redis adapter reaches every process ([`Reach::Cluster`]) unless restricted to this
//! one ([`Reach::ThisProcess`], `.local()`).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::Value;

use crate::cluster::{SocketIo, SocketRef};

use crate::ids::UserId;
use crate::realtime::connect::user_room;
use crate::realtime::{MAIN_NAMESPACES, NOTIFICATIONS_NAMESPACE};

/// Which processes' sockets an event is for. Every change is pushed exactly once per
/// socket: either the one process that observed it pushes cluster-wide, or every
/// process observes it and pushes to its own sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every process: this process alone observed the change (a client's request).
    Cluster,
    /// This process only: every process observes the change (a database announcement).
    ThisProcess,
}

/// Delivers an event to all of a user's sockets.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Emits `event` with `payload` to every socket of `user` on every namespace that
    /// carries the inbox, except `sender` when given (the socket whose request caused
    /// the change already has its answer), on the processes `reach` names.
    async fn to_user(
        &self,
        user: UserId,
        event: &'static str,
        payload: &Value,
        sender: Option<&SocketRef>,
        reach: Reach,
    );

    /// Whether `user` has a socket on this process that inbox events reach. Lets a
    /// cluster process skip the work for rows whose user it does not serve.
    fn serves(&self, user: UserId) -> bool;
}

/// The namespaces whose sockets hear inbox events.
pub const INBOX_NAMESPACES: [&str; 3] = [
    MAIN_NAMESPACES[0],
    MAIN_NAMESPACES[1],
    NOTIFICATIONS_NAMESPACE,
];

/// Fan-out through this process's Socket.IO server (and its adapter).
pub struct SocketIoFanout {
    /// Filled once the Socket.IO layer is built, before any socket can exist; shared
    /// with [`crate::state::AppState`].
    io: Arc<OnceLock<SocketIo>>,
}

impl SocketIoFanout {
    pub fn new(io: Arc<OnceLock<SocketIo>>) -> Self {
        Self { io }
    }
}

#[async_trait]
impl Fanout for SocketIoFanout {
    async fn to_user(
        &self,
        user: UserId,
        event: &'static str,
        payload: &Value,
        sender: Option<&SocketRef>,
        reach: Reach,
    ) {
        let Some(io) = self.io.get() else {
            return;
        };
        let room = user_room(user);
        for ns in INBOX_NAMESPACES {
            // On the sender's own namespace, broadcasting from the socket leaves it out.
            let target = match sender {
                Some(s) if s.ns() == ns => s.to(room.clone()),
                _ => match io.of(ns) {
                    Some(operators) => operators.to(room.clone()),
                    None => continue,
                },
            };
            let target = match reach {
                Reach::Cluster => target,
                Reach::ThisProcess => target.local(),
            };
            if let Err(e) = target.emit(event, payload).await {
                tracing::debug!(%user, ns, event, error = %e, "fan-out emit failed");
            }
        }
    }

    fn serves(&self, user: UserId) -> bool {
        let Some(io) = self.io.get() else {
            return false;
        };
        let room = user_room(user);
        INBOX_NAMESPACES.iter().any(|ns| {
            io.of(*ns)
                .is_some_and(|ns| !ns.local().to(room.clone()).sockets().is_empty())
        })
    }
}
