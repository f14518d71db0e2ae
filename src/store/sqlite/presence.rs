use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::QueryBuilder;

use super::{parse_uuid, SqliteStore};
use crate::ids::{EntryId, UserId};
use crate::presence::status::PresenceStatus;
use crate::store::presence::{FriendFeed, FriendRow};
use crate::store::{PresenceStore, StoreError, StoreResult};

/// The text form of times, as the schema's defaults write them (sorts as it reads).
fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(raw: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("bad time {raw:?}")))
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn friends_last_seen(&self, user: UserId) -> StoreResult<Vec<FriendRow>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT f.id, w.last_seen
               FROM (SELECT friend_id AS id FROM friends WHERE user_id = ?1
                     UNION SELECT user_id FROM friends WHERE friend_id = ?1) f
               LEFT JOIN ws_connections w ON w.user_id = f.id",
        )
        .bind(user.to_string())
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|(id, last_seen)| {
                Ok(FriendRow {
                    user: UserId(parse_uuid(id)?),
                    last_seen: last_seen.as_deref().map(parse_time).transpose()?,
                })
            })
            .collect()
    }

    async fn are_friends(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        let (found,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM friends
                             WHERE (user_id = ?1 AND friend_id = ?2)
                                OR (user_id = ?2 AND friend_id = ?1))",
        )
        .bind(a.to_string())
        .bind(b.to_string())
        .fetch_one(&self.reads)
        .await?;
        Ok(found)
    }

    async fn record_online(
        &self,
        user: UserId,
        socket_id: &str,
        status: PresenceStatus,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO ws_connections (user_id, socket_id, is_online, status, last_seen)
             VALUES (?1, ?2, 1, ?3, ?4)
             ON CONFLICT (user_id) DO UPDATE SET socket_id = excluded.socket_id,
                 is_online = 1, status = excluded.status, last_seen = excluded.last_seen",
        )
        .bind(user.to_string())
        .bind(socket_id)
        .bind(status.as_str())
        .bind(time_text(at))
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn record_status(
        &self,
        user: UserId,
        status: PresenceStatus,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE ws_connections SET status = ?2, last_seen = ?3 WHERE user_id = ?1")
            .bind(user.to_string())
            .bind(status.as_str())
            .bind(time_text(at))
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    async fn record_offline(&self, users: &[UserId], last_seen: DateTime<Utc>) -> StoreResult<()> {
        if users.is_empty() {
            return Ok(());
        }
        let last_seen = time_text(last_seen);
        let mut query = QueryBuilder::new(
            "INSERT INTO ws_connections (user_id, socket_id, is_online, status, last_seen) ",
        );
        query.push_values(users, |mut row, user| {
            row.push_bind(user.to_string())
                .push("NULL, 0, 'offline'")
                .push_bind(last_seen.clone());
        });
        query.push(
            " ON CONFLICT (user_id) DO UPDATE SET socket_id = NULL, is_online = 0,
                 status = 'offline', last_seen = excluded.last_seen",
        );
        query.build().execute(&self.writes).await?;
        Ok(())
    }

    async fn reset_presence(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE ws_connections SET is_online = 0, status = 'offline', socket_id = NULL
              WHERE is_online",
        )
        .execute(&self.writes)
        .await?;
        Ok(done.rows_affected())
    }

    async fn session_joined(
        &self,
        entry: EntryId,
        user: UserId,
        socket_id: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO active_sessions (user_id, entry_id, socket_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (socket_id, entry_id) DO UPDATE
                 SET last_seen = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .bind(user.to_string())
        .bind(entry.to_string())
        .bind(socket_id)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn session_left(&self, socket_id: &str, entry: EntryId) -> StoreResult<()> {
        sqlx::query("DELETE FROM active_sessions WHERE socket_id = ?1 AND entry_id = ?2")
            .bind(socket_id)
            .bind(entry.to_string())
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    async fn sessions_left_socket(&self, socket_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM active_sessions WHERE socket_id = ?1")
            .bind(socket_id)
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    async fn touch_sessions(&self, socket_ids: &[String]) -> StoreResult<()> {
        // Bounded statements: SQLite limits the number of bound parameters.
        for chunk in socket_ids.chunks(500) {
            let mut query = QueryBuilder::new(
                "UPDATE active_sessions SET last_seen = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                  WHERE socket_id IN (",
            );
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.as_str());
            }
            query.push(")");
            query.build().execute(&self.writes).await?;
        }
        Ok(())
    }

    async fn sweep_sessions(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM active_sessions WHERE last_seen < ?1")
            .bind(time_text(cutoff))
            .execute(&self.writes)
            .await?;
        Ok(done.rows_affected())
    }

    async fn clear_sessions(&self) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM active_sessions")
            .execute(&self.writes)
            .await?;
        Ok(done.rows_affected())
    }

    fn friend_feed(&self) -> Option<Box<dyn FriendFeed>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn presence_queries_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        crate::store::presence::exercise(&store).await;
    }
}
