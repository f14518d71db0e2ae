//! The actor's side of replication: what another node's replica of the entry tells
//! this one (see [`crate::collab::replication`]), applied here and relayed to this
//! node's members in each one's form, and the liveness of those other nodes.

use bytes::Bytes;

use super::{rebuild, DocActor, COMPACT_AFTER_ROWS};
use crate::cluster::node::NodeId;
use crate::collab::awareness::Owner;
use crate::collab::command::Viewer;
use crate::collab::doc::{Applied, DocError};
use crate::collab::replication::Message;
use crate::ids::UserId;

impl DocActor {
    pub(super) async fn replica(&mut self, origin: NodeId, message: Message) {
        match message {
            Message::Update { user, update } => self.remote_update(user, &update).await,
            Message::Cursor {
                user,
                position,
                selection,
            } => self.move_cursor(None, user, position, selection),
            Message::Typing { user, is_typing } => self.typing_changed(None, user, is_typing),
            Message::Awareness { update } => {
                match self.awareness.apply(&Owner::Node(origin), &update) {
                    Ok(true) => {
                        self.outbound
                            .awareness(&mut self.members.values(), self.entry, &update);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(entry = %self.entry, %origin, error = %e, "bad awareness from a replica")
                    }
                }
            }
            Message::Viewers { viewers } => self.remote_viewers_changed(origin, viewers),
        }
    }

    /// An update another replica committed: applied and relayed, not committed again.
    /// Like a local change it moves the version on by one, so the versions a delta
    /// client sees stay consecutive (it counts its own edits in the gaps).
    async fn remote_update(&mut self, user: UserId, update: &[u8]) {
        // Every such update is a row in the log, whoever wrote it.
        self.rows_since_snapshot += 1;
        match self.doc.apply_update(update) {
            Ok(Applied::Changed {
                update: effective,
                delta,
            }) => {
                self.relay_change(None, Some(user), &Bytes::from(effective), &delta);
                self.text_dirty = true;
            }
            Ok(Applied::Pending | Applied::Unchanged) => {}
            Err(DocError::Poisoned) => {
                tracing::error!(entry = %self.entry, "yrs panicked applying a replica's update; rebuilding the doc");
                self.recover().await;
            }
            Err(DocError::Refused(e)) if e.is_missing_dependency() => {
                // This replica missed an earlier update (it is in the database, since
                // replicas publish only what they committed): fetch what it lacks.
                tracing::info!(entry = %self.entry, "a replica's update builds on one missed here; catching up");
                self.catch_up().await;
            }
            Err(e) => {
                tracing::warn!(entry = %self.entry, error = %e, "a replica's update was refused")
            }
        }
        if self.rows_since_snapshot >= COMPACT_AFTER_ROWS {
            self.compact();
        }
    }

    /// After messages from other replicas may have been lost (the Redis connection
    /// was replaced): applies and relays whatever the database holds that this replica
    /// lacks, and re-announces this node's viewers.
    pub(super) async fn catch_up(&mut self) {
        let stored = match self.store.load_doc(self.entry).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(entry = %self.entry, error = %e, "catching up from storage failed");
                return;
            }
        };
        let missing = rebuild(self.entry, &stored, &[]).and_then(|doc| {
            doc.diff_since(&self.doc.state_vector())
                .map_err(|e| e.to_string())
        });
        match missing.map(|update| self.doc.apply_update(&update)) {
            Ok(Ok(Applied::Changed {
                update: effective,
                delta,
            })) => {
                self.relay_change(None, None, &Bytes::from(effective), &delta);
                self.text_dirty = true;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(entry = %self.entry, error = %e, "catching up failed"),
            Err(error) => tracing::warn!(entry = %self.entry, %error, "catching up failed"),
        }
        if !self.members.is_empty() {
            self.publish_viewers();
        }
    }

    fn remote_viewers_changed(&mut self, origin: NodeId, viewers: Vec<Viewer>) {
        let before = self.viewers();
        let known = self.remote_viewers.contains_key(&origin);
        let had: Vec<UserId> = self.node_users(origin);
        let greet = !known && !viewers.is_empty();
        if viewers.is_empty() {
            self.remote_viewers.remove(&origin);
        } else {
            self.remote_viewers
                .insert(origin, (viewers, tokio::time::Instant::now()));
        }
        self.forget_absent(had);
        if self.viewers() != before {
            self.announce_viewers();
        }
        // A replica new to us has not heard our viewers yet.
        if greet && !self.members.is_empty() {
            self.publish_viewers();
        }
    }

    /// Runs every `announce_every` on a cluster node: re-announces this node's viewers
    /// and forgets nodes that went quiet (dead), with their viewers and awareness.
    pub(super) fn heartbeat(&mut self) {
        if !self.members.is_empty() {
            self.publish_viewers();
        }
        let stale_after = self.replication.liveness().stale_after;
        let now = tokio::time::Instant::now();
        let dead: Vec<NodeId> = self
            .remote_viewers
            .iter()
            .filter(|(_, (_, heard))| *heard + stale_after <= now)
            .map(|(node, _)| *node)
            .collect();
        if dead.is_empty() {
            return;
        }
        for node in dead {
            tracing::info!(entry = %self.entry, %node, "a replica went quiet; dropping its viewers");
            let had = self.node_users(node);
            self.remote_viewers.remove(&node);
            self.forget_absent(had);
            if let Some(removal) = self.awareness.remove(&Owner::Node(node)) {
                let removal = Bytes::from(removal);
                self.outbound
                    .awareness(&mut self.members.values(), self.entry, &removal);
            }
        }
        self.announce_viewers();
    }

    fn node_users(&self, node: NodeId) -> Vec<UserId> {
        self.remote_viewers
            .get(&node)
            .map(|(viewers, _)| viewers.iter().map(|v| v.user_id).collect())
            .unwrap_or_default()
    }
}
