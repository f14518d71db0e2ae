//! "Send this event to these users' sockets": the one way presence and the inbox reach
//! clients. They say which users, which kind of traffic ([`Topic`]) and which processes
//! ([`Reach`]); [`crate::realtime`] implements [`Fanout`] over Socket.IO and alone knows
//! which namespaces carry which traffic and how sockets are found.

use async_trait::async_trait;
use serde_json::Value;

use crate::ids::UserId;

/// The kinds of traffic a socket may carry; its namespace decides which it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Friend presence (`online`, `friend_online`, `offline`, `presence_update`).
    Presence,
    /// The notification inbox (`notification:*`).
    Inbox,
    /// Entry rooms (`active_sessions` rows name the socket while it is in one).
    EntryRooms,
}

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

/// One socket of this process, as the layers below `realtime` name it. `realtime`
/// builds it; the namespace inside is opaque to everyone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketKey {
    namespace: String,
    sid: String,
    topics: &'static [Topic],
}

impl SocketKey {
    pub fn new(
        namespace: impl Into<String>,
        sid: impl Into<String>,
        topics: &'static [Topic],
    ) -> Self {
        Self {
            namespace: namespace.into(),
            sid: sid.into(),
            topics,
        }
    }

    /// The Socket.IO session id, as `ws_connections` and `active_sessions` store it.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether the socket's namespace carries `topic`.
    pub fn hears(&self, topic: Topic) -> bool {
        self.topics.contains(&topic)
    }
}

/// Delivers events to users' sockets, and answers what this process holds.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Emits `event` with `payload` to every socket of each of `users` whose namespace
    /// carries `topic`, except `sender` when given (the socket whose request caused the
    /// change already has its answer), on the processes `reach` names.
    async fn to_users(
        &self,
        users: &[UserId],
        topic: Topic,
        event: &'static str,
        payload: &Value,
        sender: Option<&SocketKey>,
        reach: Reach,
    );

    /// Emits to one socket of this process; nothing when it is gone.
    fn to_socket(&self, socket: &SocketKey, event: &'static str, payload: &Value);

    /// Whether `user` has a socket on this process that hears `topic`. Lets a cluster
    /// process skip the work for users it does not serve.
    fn serves(&self, user: UserId, topic: Topic) -> bool;

    /// The session id of every socket on this process (all namespaces).
    fn local_sids(&self) -> Vec<String>;
}
