use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::notification_feed::PgNotificationFeed;
use super::PgStore;
use crate::ids::{NotificationId, UserId};
use crate::notifications::model::{
    Deliverable, NewNotification, Notification, NotificationPage, NotificationQuery,
    NotificationState, NotificationType, Preferences, Priority,
};
use crate::store::notification_sql::{self, COLUMNS};
use crate::store::{NotificationFeed, NotificationStore, StoreError, StoreResult};

/// A `notifications` row as Postgres returns it.
#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    user_id: Uuid,
    #[sqlx(rename = "type")]
    kind: String,
    title: String,
    message: String,
    data: Option<serde_json::Value>,
    is_read: bool,
    is_archived: bool,
    priority: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<Row> for Notification {
    type Error = StoreError;

    fn try_from(row: Row) -> StoreResult<Notification> {
        Ok(Notification {
            id: NotificationId(row.id),
            user_id: UserId(row.user_id),
            kind: row.kind,
            title: row.title,
            message: row.message,
            data: row.data,
            is_read: row.is_read,
            is_archived: row.is_archived,
            priority: Priority::from_column(&row.priority)
                .ok_or_else(|| StoreError::Corrupt(format!("priority {:?}", row.priority)))?,
            created_at: row.created_at,
        })
    }
}

/// A row plus whether its user's preference for its type is on.
#[derive(sqlx::FromRow)]
struct DeliveryRow {
    #[sqlx(flatten)]
    row: Row,
    enabled: bool,
}

impl TryFrom<DeliveryRow> for Deliverable {
    type Error = StoreError;

    fn try_from(r: DeliveryRow) -> StoreResult<Deliverable> {
        Ok(Deliverable {
            notification: r.row.try_into()?,
            muted: !r.enabled,
        })
    }
}

#[derive(sqlx::FromRow)]
struct StateRow {
    id: Uuid,
    is_read: bool,
    is_archived: bool,
}

impl From<StateRow> for NotificationState {
    fn from(r: StateRow) -> Self {
        NotificationState {
            id: NotificationId(r.id),
            is_read: r.is_read,
            is_archived: r.is_archived,
        }
    }
}

fn delivery_select() -> String {
    format!(
        "SELECT {COLUMNS}, COALESCE(p.enabled, true) AS enabled
           FROM notifications n
           LEFT JOIN notification_preferences p
             ON p.user_id = n.user_id AND p.type = n.type"
    )
}

#[async_trait]
impl NotificationStore for PgStore {
    async fn insert_notification(&self, new: &NewNotification) -> StoreResult<Notification> {
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO notifications AS n (user_id, type, title, message, data, priority)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
        ))
        .bind(new.user_id.0)
        .bind(new.kind.as_str())
        .bind(&new.title)
        .bind(&new.message)
        .bind(&new.data)
        .bind(new.priority.as_str())
        .fetch_one(&self.pool)
        .await?;
        row.try_into()
    }

    async fn notifications_for_delivery(
        &self,
        ids: &[NotificationId],
    ) -> StoreResult<Vec<Deliverable>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let rows: Vec<DeliveryRow> =
            sqlx::query_as(&format!("{} WHERE n.id = ANY($1)", delivery_select()))
                .bind(&raw)
                .fetch_all(&self.pool)
                .await?;
        let mut by_id: HashMap<Uuid, DeliveryRow> =
            rows.into_iter().map(|r| (r.row.id, r)).collect();
        ids.iter()
            .filter_map(|id| by_id.remove(&id.0))
            .map(Deliverable::try_from)
            .collect()
    }

    async fn list_notifications(
        &self,
        user: UserId,
        query: &NotificationQuery,
    ) -> StoreResult<NotificationPage> {
        notification_sql::list_notifications::<_, Row>(&self.pool, user.0, query).await
    }

    async fn unread_count(&self, user: UserId) -> StoreResult<i64> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM notifications
              WHERE user_id = $1 AND NOT is_read AND NOT is_archived",
        )
        .bind(user.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    async fn mark_read(
        &self,
        user: UserId,
        id: NotificationId,
    ) -> StoreResult<Option<NotificationState>> {
        let row: Option<StateRow> = sqlx::query_as(
            "UPDATE notifications SET is_read = true WHERE id = $1 AND user_id = $2
             RETURNING id, is_read, is_archived",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn archive(
        &self,
        user: UserId,
        id: NotificationId,
    ) -> StoreResult<Option<NotificationState>> {
        let row: Option<StateRow> = sqlx::query_as(
            "UPDATE notifications SET is_archived = true WHERE id = $1 AND user_id = $2
             RETURNING id, is_read, is_archived",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn mark_all_read(&self, user: UserId) -> StoreResult<Vec<NotificationState>> {
        let rows: Vec<StateRow> = sqlx::query_as(
            "UPDATE notifications SET is_read = true WHERE user_id = $1 AND NOT is_read
             RETURNING id, is_read, is_archived",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn preferences(&self, user: UserId) -> StoreResult<Preferences> {
        let rows: Vec<(String, bool)> =
            sqlx::query_as("SELECT type, enabled FROM notification_preferences WHERE user_id = $1")
                .bind(user.0)
                .fetch_all(&self.pool)
                .await?;
        Ok(crate::store::notifications::stored_preferences(rows))
    }

    async fn update_preferences(&self, user: UserId, changes: &Preferences) -> StoreResult<()> {
        let kinds: Vec<&str> = changes.keys().map(NotificationType::as_str).collect();
        let enabled: Vec<bool> = changes.values().copied().collect();
        sqlx::query(
            "INSERT INTO notification_preferences (user_id, type, enabled)
             SELECT $1, t.type, t.enabled FROM UNNEST($2::text[], $3::bool[]) AS t(type, enabled)
             ON CONFLICT (user_id, type) DO UPDATE SET enabled = EXCLUDED.enabled",
        )
        .bind(user.0)
        .bind(&kinds)
        .bind(&enabled)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn announces_inserts(&self) -> bool {
        true
    }

    async fn notification_feed(&self) -> StoreResult<Option<Box<dyn NotificationFeed>>> {
        let feed = PgNotificationFeed::listen(self.clone()).await?;
        Ok(Some(Box::new(feed)))
    }
}

impl PgStore {
    /// Up to `limit` rows created after `(created_at, id)` in that order, for a
    /// catch-up on rows committed while the feed was not listening (uses
    /// `notifications_created_idx`).
    pub(super) async fn notifications_created_after(
        &self,
        after: (DateTime<Utc>, NotificationId),
        limit: i64,
    ) -> StoreResult<Vec<Deliverable>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "{} WHERE (n.created_at, n.id) > ($1, $2)
              ORDER BY n.created_at, n.id LIMIT $3",
            delivery_select()
        ))
        .bind(after.0)
        .bind(after.1 .0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Deliverable::try_from).collect()
    }
}
