//! Storage of the notification inbox (`notifications`, `notification_preferences`).
//! Every query is scoped to one user except the delivery lookup, which the server runs
//! for rows it has been told about (its own inserts, or Postgres NOTIFY).

use async_trait::async_trait;

use super::StoreResult;
use crate::ids::{NotificationId, UserId};
use crate::notifications::model::{
    Deliverable, NewNotification, Notification, NotificationPage, NotificationQuery,
    NotificationState, NotificationType, Preferences,
};

#[async_trait]
pub trait NotificationStore {
    /// Inserts a row and returns it as stored (id, defaults and `created_at` filled in).
    async fn insert_notification(&self, new: &NewNotification) -> StoreResult<Notification>;

    /// The rows among `ids` that exist, in the order of `ids`, each with whether its
    /// user muted its type.
    async fn notifications_for_delivery(
        &self,
        ids: &[NotificationId],
    ) -> StoreResult<Vec<Deliverable>>;

    /// One page of the user's notifications matching the query, newest first, and the
    /// number of rows matching the filter.
    async fn list_notifications(
        &self,
        user: UserId,
        query: &NotificationQuery,
    ) -> StoreResult<NotificationPage>;

    /// Unread, not archived.
    async fn unread_count(&self, user: UserId) -> StoreResult<i64>;

    /// Marks the user's notification read; `None` when it is not the user's (or does
    /// not exist).
    async fn mark_read(
        &self,
        user: UserId,
        id: NotificationId,
    ) -> StoreResult<Option<NotificationState>>;

    /// Archives the user's notification; `None` as for [`Self::mark_read`].
    async fn archive(
        &self,
        user: UserId,
        id: NotificationId,
    ) -> StoreResult<Option<NotificationState>>;

    /// Marks every unread notification of the user read (archived ones too); returns
    /// the rows that changed.
    async fn mark_all_read(&self, user: UserId) -> StoreResult<Vec<NotificationState>>;

    /// The user's stored switches.
    async fn preferences(&self, user: UserId) -> StoreResult<Preferences>;

    /// Upserts the given switches (others are left as they are), atomically.
    async fn update_preferences(&self, user: UserId, changes: &Preferences) -> StoreResult<()>;

    /// Whether the database announces every insert into `notifications` (PostgreSQL),
    /// so that [`Self::notification_feed`] hears rows other applications write. When
    /// not (SQLite), the server only knows the rows it inserts itself.
    fn announces_inserts(&self) -> bool;

    /// Every row inserted from now on, by anyone, when [`Self::announces_inserts`]:
    /// already listening when this returns. `None` otherwise.
    async fn notification_feed(&self) -> StoreResult<Option<Box<dyn NotificationFeed>>>;
}

/// An endless stream of newly committed notifications that reconnects (and catches
/// up on what it missed meanwhile) by itself.
#[async_trait]
pub trait NotificationFeed: Send {
    /// The next rows, each returned once, in commit order as far as the database
    /// tells it. Waits as long as it takes; cancel by dropping the future.
    async fn next(&mut self) -> Vec<Deliverable>;
}

/// The preferences rows as read back; a type another program stored that the server
/// would refuse from a client (blank, too long) is skipped, not fatal.
pub(crate) fn stored_preferences(rows: Vec<(String, bool)>) -> Preferences {
    rows.into_iter()
        .filter_map(|(kind, enabled)| match NotificationType::parse(kind) {
            Ok(kind) => Some((kind, enabled)),
            Err(_) => {
                tracing::warn!("skipping a notification preference with an unusable type");
                None
            }
        })
        .collect()
}
