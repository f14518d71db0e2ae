//! [`Fanout`] over Socket.IO: a user's sockets are the `user:{id}` room on each fixed
//! namespace whose traffic includes the topic. The adapter is what reaches the sockets:
//! with `REDIS_URL`, the Redis adapter reaches every process ([`Reach::Cluster`]) unless
//! restricted to this one ([`Reach::ThisProcess`], `.local()`).

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::Value;
use socketioxide::socket::Sid;

use super::{MAIN_NAMESPACES, NOTIFICATIONS_NAMESPACE};
use crate::cluster::{SocketIo, SocketRef};
use crate::fanout::{Fanout, Reach, SocketKey, Topic};
use crate::ids::UserId;

/// The namespaces with user rooms, in the order events go out on them.
const FIXED_NAMESPACES: [&str; 3] = [
    MAIN_NAMESPACES[0],
    MAIN_NAMESPACES[1],
    NOTIFICATIONS_NAMESPACE,
];

/// The main namespaces carry the full event surface (PROTOCOL.md section 1),
/// `/notifications` the inbox only, and a y-socket.io namespace its entry's room.
pub fn topics_of(namespace: &str) -> &'static [Topic] {
    if MAIN_NAMESPACES.contains(&namespace) {
        &[Topic::Presence, Topic::Inbox, Topic::EntryRooms]
    } else if namespace == NOTIFICATIONS_NAMESPACE {
        &[Topic::Inbox]
    } else {
        &[Topic::EntryRooms]
    }
}

/// The key under which presence and the inbox know `socket`.
pub fn socket_key(socket: &SocketRef) -> SocketKey {
    SocketKey::new(socket.ns(), socket.id.to_string(), topics_of(socket.ns()))
}

/// The room every socket of a user joins (sockets get no room named after their id).
pub fn user_room(user: UserId) -> String {
    format!("user:{user}")
}

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

    fn socket(&self, key: &SocketKey) -> Option<SocketRef> {
        let sid = Sid::from_str(key.sid()).ok()?;
        self.io.get()?.of(key.namespace())?.get_socket(sid)
    }
}

fn namespaces_hearing(topic: Topic) -> impl Iterator<Item = &'static str> {
    FIXED_NAMESPACES
        .into_iter()
        .filter(move |ns| topics_of(ns).contains(&topic))
}

#[async_trait]
impl Fanout for SocketIoFanout {
    async fn to_users(
        &self,
        users: &[UserId],
        topic: Topic,
        event: &'static str,
        payload: &Value,
        sender: Option<&SocketKey>,
        reach: Reach,
    ) {
        let Some(io) = self.io.get() else {
            return;
        };
        if users.is_empty() {
            return;
        }
        let rooms: Vec<String> = users.iter().copied().map(user_room).collect();
        // On the sender's own namespace, broadcasting from the socket leaves it out.
        let sender = sender.and_then(|key| self.socket(key));
        for ns in namespaces_hearing(topic) {
            let target = match &sender {
                Some(s) if s.ns() == ns => s.to(rooms.clone()),
                _ => match io.of(ns) {
                    Some(operators) => operators.to(rooms.clone()),
                    None => continue,
                },
            };
            let target = match reach {
                Reach::Cluster => target,
                Reach::ThisProcess => target.local(),
            };
            if let Err(e) = target.emit(event, payload).await {
                tracing::debug!(ns, event, error = %e, "fan-out emit failed");
            }
        }
    }

    fn to_socket(&self, key: &SocketKey, event: &'static str, payload: &Value) {
        if let Some(socket) = self.socket(key) {
            let _ = socket.emit(event, payload);
        }
    }

    fn serves(&self, user: UserId, topic: Topic) -> bool {
        let Some(io) = self.io.get() else {
            return false;
        };
        let room = user_room(user);
        namespaces_hearing(topic).any(|ns| {
            io.of(ns)
                .is_some_and(|ns| !ns.local().to(room.clone()).sockets().is_empty())
        })
    }

    fn local_sids(&self) -> Vec<String> {
        let Some(io) = self.io.get() else {
            return Vec::new();
        };
        io.nsps()
            .into_iter()
            .flat_map(|ns| ns.sockets())
            .map(|s| s.id.to_string())
            .collect()
    }
}
