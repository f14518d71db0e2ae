use std::collections::HashMap;

use async_trait::async_trait;
use uuid::Uuid;

use super::PgStore;
use crate::ids::{EntryId, UserId};
use crate::store::{DirectoryStore, EntryRole, NewEntry, NewUser, StoreResult};

#[async_trait]
impl DirectoryStore for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn upsert_user(&self, user: &NewUser) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, username, display_name) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username,
                 display_name = EXCLUDED.display_name",
        )
        .bind(user.id.0)
        .bind(&user.username)
        .bind(&user.display_name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upsert_entry(&self, entry: &NewEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO entries (id, owner_id, title, visibility) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title,
                 visibility = EXCLUDED.visibility, updated_at = now()",
        )
        .bind(entry.id.0)
        .bind(entry.owner.0)
        .bind(&entry.title)
        .bind(entry.visibility.as_str())
        .execute(&self.pool)
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
            "INSERT INTO entry_collaborators (entry_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (entry_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(entry.0)
        .bind(user.0)
        .bind(role)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn add_friendship(&self, a: UserId, b: UserId) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO friends (user_id, friend_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(a.0)
        .bind(b.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn display_names(&self, ids: &[UserId]) -> StoreResult<HashMap<UserId, String>> {
        let ids: Vec<Uuid> = ids.iter().map(|u| u.0).collect();
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, COALESCE(NULLIF(display_name, ''), username) FROM users WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| (UserId(id), name))
            .collect())
    }

    async fn friends_of(&self, user: UserId) -> StoreResult<Vec<UserId>> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT friend_id FROM friends WHERE user_id = $1
             UNION SELECT user_id FROM friends WHERE friend_id = $1",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| UserId(id)).collect())
    }

    async fn entry_role(&self, entry: EntryId, user: UserId) -> StoreResult<Option<EntryRole>> {
        let row: Option<(bool, Option<String>, bool)> = sqlx::query_as(
            "SELECT e.owner_id = $2,
                    (SELECT c.role FROM entry_collaborators c
                      WHERE c.entry_id = e.id AND c.user_id = $2),
                    e.visibility = 'friends' AND EXISTS (
                      SELECT 1 FROM friends f
                       WHERE (f.user_id = e.owner_id AND f.friend_id = $2)
                          OR (f.user_id = $2 AND f.friend_id = e.owner_id))
               FROM entries e WHERE e.id = $1",
        )
        .bind(entry.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(is_owner, collaborator, friend)| {
            crate::store::directory::resolve_role(is_owner, collaborator.as_deref(), friend)
        }))
    }

    async fn entry_title(&self, entry: EntryId) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT title FROM entries WHERE id = $1")
                .bind(entry.0)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
