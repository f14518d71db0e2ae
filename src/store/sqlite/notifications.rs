use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite};

use super::{parse_uuid, SqliteStore};
use crate::ids::{NotificationId, UserId};
use crate::notifications::model::{
    Deliverable, NewNotification, Notification, NotificationPage, NotificationQuery,
    NotificationState, Preferences, Priority,
};
use crate::store::notification_sql::{self, COLUMNS};
use crate::store::{NotificationFeed, NotificationStore, StoreError, StoreResult};

/// SQLite's `RETURNING` takes no table qualifiers.
const RETURNING: &str =
    "id, user_id, type, title, message, data, is_read, is_archived, priority, created_at";

/// A `notifications` row as SQLite stores it (UUIDs, JSON and times as text).
#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    user_id: String,
    #[sqlx(rename = "type")]
    kind: String,
    title: String,
    message: String,
    data: Option<String>,
    is_read: bool,
    is_archived: bool,
    priority: String,
    created_at: String,
}

impl TryFrom<Row> for Notification {
    type Error = StoreError;

    fn try_from(row: Row) -> StoreResult<Notification> {
        let data = row
            .data
            .map(|raw| {
                serde_json::from_str(&raw)
                    .map_err(|_| StoreError::Corrupt("notification data is not JSON".into()))
            })
            .transpose()?;
        Ok(Notification {
            id: NotificationId(parse_uuid(&row.id)?),
            user_id: UserId(parse_uuid(&row.user_id)?),
            kind: row.kind,
            title: row.title,
            message: row.message,
            data,
            is_read: row.is_read,
            is_archived: row.is_archived,
            priority: Priority::from_column(&row.priority)
                .ok_or_else(|| StoreError::Corrupt(format!("priority {:?}", row.priority)))?,
            created_at: DateTime::parse_from_rfc3339(&row.created_at)
                .map_err(|_| StoreError::Corrupt(format!("created_at {:?}", row.created_at)))?
                .with_timezone(&Utc),
        })
    }
}

#[derive(sqlx::FromRow)]
struct StateRow {
    id: String,
    is_read: bool,
    is_archived: bool,
}

impl TryFrom<StateRow> for NotificationState {
    type Error = StoreError;

    fn try_from(r: StateRow) -> StoreResult<Self> {
        Ok(NotificationState {
            id: NotificationId(parse_uuid(&r.id)?),
            is_read: r.is_read,
            is_archived: r.is_archived,
        })
    }
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn insert_notification(&self, new: &NewNotification) -> StoreResult<Notification> {
        let data = new.data.as_ref().map(|d| d.to_string());
        // Microseconds (the migration's default keeps milliseconds) so that rows created
        // within one millisecond still list newest first.
        let created_at = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO notifications
                 (id, user_id, type, title, message, data, priority, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING {RETURNING}"
        ))
        .bind(NotificationId::new_random().to_string())
        .bind(new.user_id.to_string())
        .bind(new.kind.as_str())
        .bind(&new.title)
        .bind(&new.message)
        .bind(data)
        .bind(new.priority.as_str())
        .bind(created_at)
        .fetch_one(&self.writes)
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
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {COLUMNS}, COALESCE(p.enabled, 1) AS enabled
               FROM notifications n
               LEFT JOIN notification_preferences p
                 ON p.user_id = n.user_id AND p.type = n.type
              WHERE n.id IN ("
        ));
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(id.to_string());
        }
        qb.push(")");
        #[derive(sqlx::FromRow)]
        struct DeliveryRow {
            #[sqlx(flatten)]
            row: Row,
            enabled: bool,
        }
        let rows: Vec<DeliveryRow> = qb.build_query_as().fetch_all(&self.reads).await?;
        let mut by_id: HashMap<String, DeliveryRow> =
            rows.into_iter().map(|r| (r.row.id.clone(), r)).collect();
        ids.iter()
            .filter_map(|id| by_id.remove(&id.to_string()))
            .map(|r| {
                Ok(Deliverable {
                    notification: r.row.try_into()?,
                    muted: !r.enabled,
                })
            })
            .collect()
    }

    async fn list_notifications(
        &self,
        user: UserId,
        query: &NotificationQuery,
    ) -> StoreResult<NotificationPage> {
        notification_sql::list_notifications::<_, Row>(&self.reads, user.to_string(), query).await
    }

    async fn unread_count(&self, user: UserId) -> StoreResult<i64> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM notifications
              WHERE user_id = ?1 AND is_read = 0 AND is_archived = 0",
        )
        .bind(user.to_string())
        .fetch_one(&self.reads)
        .await?;
        Ok(count)
    }

    async fn mark_read(
        &self,
        user: UserId,
        id: NotificationId,
    ) -> StoreResult<Option<NotificationState>> {
        let row: Option<StateRow> = sqlx::query_as(
            "UPDATE notifications SET is_read = 1 WHERE id = ?1 AND user_id = ?2
             RETURNING id, is_read, is_archived",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.writes)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn archive(
        &self,
        user: UserId,
        id: NotificationId,
    ) -> StoreResult<Option<NotificationState>> {
        let row: Option<StateRow> = sqlx::query_as(
            "UPDATE notifications SET is_archived = 1 WHERE id = ?1 AND user_id = ?2
             RETURNING id, is_read, is_archived",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.writes)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn mark_all_read(&self, user: UserId) -> StoreResult<Vec<NotificationState>> {
        let rows: Vec<StateRow> = sqlx::query_as(
            "UPDATE notifications SET is_read = 1 WHERE user_id = ?1 AND is_read = 0
             RETURNING id, is_read, is_archived",
        )
        .bind(user.to_string())
        .fetch_all(&self.writes)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn preferences(&self, user: UserId) -> StoreResult<Preferences> {
        let rows: Vec<(String, bool)> =
            sqlx::query_as("SELECT type, enabled FROM notification_preferences WHERE user_id = ?1")
                .bind(user.to_string())
                .fetch_all(&self.reads)
                .await?;
        Ok(crate::store::notifications::stored_preferences(rows))
    }

    async fn update_preferences(&self, user: UserId, changes: &Preferences) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for (kind, enabled) in changes {
            sqlx::query(
                "INSERT INTO notification_preferences (user_id, type, enabled) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, type) DO UPDATE SET enabled = excluded.enabled",
            )
            .bind(user.to_string())
            .bind(kind.as_str())
            .bind(*enabled)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn announces_inserts(&self) -> bool {
        false
    }

    async fn notification_feed(&self) -> StoreResult<Option<Box<dyn NotificationFeed>>> {
        Ok(None)
    }
}
