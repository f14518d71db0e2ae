use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::QueryBuilder;

use super::{parse_uuid, SqliteStore};
use crate::ids::{EntryId, UserId};
use crate::store::{DirectoryStore, EntryRole, NewEntry, NewUser, StoreResult};

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reads).await?;
        Ok(())
    }

    /// The writer closes last: the last connection to close folds the write-ahead log
    /// back into the database file (a `query_only` reader may not).
    async fn close(&self) {
        self.reads.close().await;
        self.writes.close().await;
    }

    async fn upsert_user(&self, user: &NewUser) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, username, display_name) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET username = excluded.username,
                 display_name = excluded.display_name",
        )
        .bind(user.id.to_string())
        .bind(&user.username)
        .bind(&user.display_name)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn upsert_entry(&self, entry: &NewEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO entries (id, owner_id, title, visibility) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title,
                 visibility = excluded.visibility,
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .bind(entry.id.to_string())
        .bind(entry.owner.to_string())
        .bind(&entry.title)
        .bind(entry.visibility.as_str())
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn set_collaborator(
        &self,
        entry: EntryId,
        user: UserId,
        role: EntryRole,
    ) -> StoreResult<()> {
        let role = match role {
            EntryRole::Viewer => "viewer",
            EntryRole::Editor | EntryRole::Owner => "editor",
        };
        sqlx::query(
            "INSERT INTO entry_collaborators (entry_id, user_id, role) VALUES (?1, ?2, ?3)
             ON CONFLICT (entry_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(entry.to_string())
        .bind(user.to_string())
        .bind(role)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    async fn add_friendship(&self, a: UserId, b: UserId) -> StoreResult<()> {
        sqlx::query("INSERT OR IGNORE INTO friends (user_id, friend_id) VALUES (?1, ?2)")
            .bind(a.to_string())
            .bind(b.to_string())
            .execute(&self.writes)
            .await?;
        Ok(())
    }

    async fn display_names(&self, ids: &[UserId]) -> StoreResult<HashMap<UserId, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut query = QueryBuilder::new(
            "SELECT id, COALESCE(NULLIF(display_name, ''), username) FROM users WHERE id IN (",
        );
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(id.to_string());
        }
        query.push(")");
        let rows: Vec<(String, String)> = query.build_query_as().fetch_all(&self.reads).await?;
        rows.into_iter()
            .map(|(id, name)| Ok((UserId(parse_uuid(&id)?), name)))
            .collect()
    }

    async fn friends_of(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT friend_id FROM friends WHERE user_id = ?1
             UNION SELECT user_id FROM friends WHERE friend_id = ?1",
        )
        .bind(user.to_string())
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|(id,)| Ok(UserId(parse_uuid(id)?)))
            .collect()
    }

    async fn entry_role(&self, entry: EntryId, user: UserId) -> StoreResult<Option<EntryRole>> {
        let row: Option<(bool, Option<String>, bool)> = sqlx::query_as(
            "SELECT e.owner_id = ?2,
                    (SELECT c.role FROM entry_collaborators c
                      WHERE c.entry_id = e.id AND c.user_id = ?2),
                    e.visibility = 'friends' AND EXISTS (
                      SELECT 1 FROM friends f
                       WHERE (f.user_id = e.owner_id AND f.friend_id = ?2)
                          OR (f.user_id = ?2 AND f.friend_id = e.owner_id))
               FROM entries e WHERE e.id = ?1",
        )
        .bind(entry.to_string())
        .bind(user.to_string())
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.and_then(|(is_owner, collaborator, friend)| {
            crate::store::directory::resolve_role(is_owner, collaborator.as_deref(), friend)
        }))
    }

    async fn entry_title(&self, entry: EntryId) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT title FROM entries WHERE id = ?1")
                .bind(entry.to_string())
                .fetch_optional(&self.reads)
                .await?,
        )
    }
}
