//! The inbox's operations: create, list, count, mark, archive, preferences, and the
//! delivery of new rows. Each change is followed by the pushes that keep every open
//! tab of the user in step (PROTOCOL.md section 6).

use std::sync::Arc;

use serde_json::{json, Value};

use super::error::NotificationError;
use super::model::{
    Deliverable, NewNotification, Notification, NotificationPage, NotificationQuery,
    NotificationState, Preferences,
};
use crate::fanout::{Fanout, Reach, SocketKey, Topic};
use crate::ids::{NotificationId, UserId};
use crate::store::Store;

pub const CREATED: &str = "notification:created";
pub const UPDATED: &str = "notification:updated";
pub const COUNT: &str = "notification:count_response";

/// The notification inbox of every user.
pub struct NotificationService {
    store: Arc<dyn Store>,
    fanout: Arc<dyn Fanout>,
    /// True on Postgres: the database announces every insert and the listener delivers
    /// it, so rows created here are not pushed here as well (one delivery path).
    announced_by_database: bool,
    count_locks: CountLocks,
}

/// Serializes "read the unread count, push it" per user (striped: a user always maps
/// to the same lock). Without it, two changes at once could push their counts in the
/// opposite order to the one they were read in, leaving tabs on a stale count.
struct CountLocks([tokio::sync::Mutex<()>; 64]);

impl CountLocks {
    fn new() -> Self {
        Self(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }

    fn of(&self, user: UserId) -> &tokio::sync::Mutex<()> {
        let stripe = (user.0.as_u128() % self.0.len() as u128) as usize;
        &self.0[stripe]
    }
}

impl NotificationService {
    pub fn new(store: Arc<dyn Store>, fanout: Arc<dyn Fanout>) -> Self {
        Self {
            announced_by_database: store.announces_inserts(),
            store,
            fanout,
            count_locks: CountLocks::new(),
        }
    }

    /// Stores a notification (`POST /api/notifications`). On SQLite it is pushed here;
    /// on Postgres the listener pushes it when the insert's announcement arrives.
    pub async fn create(&self, new: NewNotification) -> Result<Notification, NotificationError> {
        let created = self.store.insert_notification(&new).await?;
        metrics::counter!("diary_notifications_created_total").increment(1);
        tracing::info!(user = %created.user_id, id = %created.id, kind = %created.kind, "notification created");
        if !self.announced_by_database {
            match self.store.notifications_for_delivery(&[created.id]).await {
                Ok(rows) => self.deliver(rows).await,
                // The row is stored and will be listed; only the live push is lost.
                Err(e) => {
                    tracing::error!(error = %e, id = %created.id, "cannot push a new notification")
                }
            }
        }
        Ok(created)
    }

    /// Pushes newly committed rows: `notification:created` to every socket of each
    /// row's user unless the user muted its type, then one fresh unread count per user
    /// (muted rows count too: they are in the inbox, only the alert is suppressed).
    ///
    /// To this process's sockets only: in a cluster every process's listener hears each
    /// insert (however it was made) and delivers it to its own sockets, so each socket
    /// gets it once, and a process that missed announcements catches up for its own.
    pub async fn deliver(&self, rows: Vec<Deliverable>) {
        let mut users: Vec<UserId> = Vec::new();
        for row in rows {
            let notification = row.notification;
            // No socket of the user here: nothing to push, no count to read.
            if !self.fanout.serves(notification.user_id, Topic::Inbox) {
                continue;
            }
            if !users.contains(&notification.user_id) {
                users.push(notification.user_id);
            }
            if row.muted {
                metrics::counter!("diary_notifications_muted_total").increment(1);
                continue;
            }
            match serde_json::to_value(&notification) {
                Ok(payload) => {
                    self.fanout
                        .to_users(
                            &[notification.user_id],
                            Topic::Inbox,
                            CREATED,
                            &payload,
                            None,
                            Reach::ThisProcess,
                        )
                        .await;
                    metrics::counter!("diary_notifications_pushed_total").increment(1);
                }
                Err(e) => tracing::error!(error = %e, "cannot serialize a notification"),
            }
        }
        for user in users {
            if let Err(e) = self.push_count(user, Reach::ThisProcess).await {
                tracing::warn!(%user, error = %e, "cannot push the unread count");
            }
        }
    }

    pub async fn list(
        &self,
        user: UserId,
        query: &NotificationQuery,
    ) -> Result<NotificationPage, NotificationError> {
        Ok(self.store.list_notifications(user, query).await?)
    }

    /// Unread, not archived.
    pub async fn count(&self, user: UserId) -> Result<i64, NotificationError> {
        Ok(self.store.unread_count(user).await?)
    }

    /// Marks one of the user's notifications read. Another user's id and an unknown id
    /// get the same `ACCESS_DENIED`.
    pub async fn mark_read(
        &self,
        user: UserId,
        id: NotificationId,
        sender: &SocketKey,
    ) -> Result<(NotificationState, i64), NotificationError> {
        let state = self
            .store
            .mark_read(user, id)
            .await?
            .ok_or(NotificationError::NotFound)?;
        self.announce_changes(user, &[state], sender)
            .await
            .map(|count| (state, count))
    }

    /// Archives one of the user's notifications; refusals as for [`Self::mark_read`].
    pub async fn archive(
        &self,
        user: UserId,
        id: NotificationId,
        sender: &SocketKey,
    ) -> Result<(NotificationState, i64), NotificationError> {
        let state = self
            .store
            .archive(user, id)
            .await?
            .ok_or(NotificationError::NotFound)?;
        self.announce_changes(user, &[state], sender)
            .await
            .map(|count| (state, count))
    }

    /// Marks all of the user's unread notifications read; returns how many changed and
    /// the new unread count.
    pub async fn mark_all_read(
        &self,
        user: UserId,
        sender: &SocketKey,
    ) -> Result<(usize, i64), NotificationError> {
        let changed = self.store.mark_all_read(user).await?;
        self.announce_changes(user, &changed, sender)
            .await
            .map(|count| (changed.len(), count))
    }

    pub async fn preferences(&self, user: UserId) -> Result<Preferences, NotificationError> {
        Ok(self.store.preferences(user).await?)
    }

    /// Stores the given switches and returns all of the user's preferences.
    pub async fn update_preferences(
        &self,
        user: UserId,
        changes: &Preferences,
    ) -> Result<Preferences, NotificationError> {
        if !changes.is_empty() {
            self.store.update_preferences(user, changes).await?;
            tracing::info!(%user, changed = changes.len(), "notification preferences updated");
        }
        self.preferences(user).await
    }

    /// `notification:updated` per changed row to the user's other sockets, then the
    /// new unread count to all of them (the sender included), so open tabs agree. On
    /// every process: only this one saw the request.
    async fn announce_changes(
        &self,
        user: UserId,
        changed: &[NotificationState],
        sender: &SocketKey,
    ) -> Result<i64, NotificationError> {
        for state in changed {
            let payload = serde_json::to_value(state)?;
            self.fanout
                .to_users(
                    &[user],
                    Topic::Inbox,
                    UPDATED,
                    &payload,
                    Some(sender),
                    Reach::Cluster,
                )
                .await;
        }
        self.push_count(user, Reach::Cluster).await
    }

    /// Sends the user's unread count to all of their sockets `reach` covers; returns it.
    async fn push_count(&self, user: UserId, reach: Reach) -> Result<i64, NotificationError> {
        let _in_order = self.count_locks.of(user).lock().await;
        let count = self.count(user).await?;
        let payload: Value = json!({ "count": count });
        self.fanout
            .to_users(&[user], Topic::Inbox, COUNT, &payload, None, reach)
            .await;
        Ok(count)
    }
}
