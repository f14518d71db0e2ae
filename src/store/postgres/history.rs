use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::PgStore;
use crate::ids::{CheckpointId, EntryId, UserId};
use crate::store::history::{
    CheckpointMeta, HistoryPage, HistoryStore, NewCheckpoint, PageError, Pruned, Pruning,
    StoredCheckpoint, Taken,
};
use crate::store::history_sql as sql;
use crate::store::StoreResult;

/// The advisory lock space of checkpoint taking: the two-key form, whose keys never
/// meet compaction's one-key locks (PostgreSQL keeps the two spaces apart).
const HISTORY_LOCK_CLASS: i32 = 0x4849_5354; // "HIST"

type Row = (Uuid, DateTime<Utc>, i64, i64);
type RowWithContent = (Uuid, DateTime<Utc>, i64, i64, Vec<u8>);

#[async_trait]
impl HistoryStore for PgStore {
    async fn take_checkpoint(&self, new: &NewCheckpoint) -> StoreResult<Taken> {
        let mut tx = self.pool().begin().await?;
        // Waits (rather than skips) so that the second taker sees the first one's
        // checkpoint and stores nothing when the content is the same.
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(HISTORY_LOCK_CLASS)
            .bind(entry_key(new.entry))
            .execute(&mut *tx)
            .await?;
        let newest: Option<RowWithContent> = sqlx::query_as(sql::NEWEST)
            .bind(new.entry.0)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = newest.filter(|row| row.4 == new.content.as_ref()) {
            let mut meta = meta_of(new.entry, (row.0, row.1, row.2, row.3));
            meta.authors = authors(&mut tx, &[meta.id])
                .await?
                .remove(&meta.id)
                .unwrap_or_default();
            tx.commit().await?;
            return Ok(Taken::Unchanged(meta));
        }
        let id = CheckpointId::new_random();
        let at = Utc::now();
        sqlx::query(sql::INSERT)
            .bind(id.0)
            .bind(new.entry.0)
            .bind(at)
            .bind(new.version)
            .bind(new.chars)
            .bind(new.content.as_ref())
            .execute(&mut *tx)
            .await?;
        let claimed: Vec<Uuid> = sqlx::query_scalar(sql::CLAIM_AUTHORS)
            .bind(new.entry.0)
            .fetch_all(&mut *tx)
            .await?;
        let mut authors: Vec<UserId> = claimed.into_iter().map(UserId).collect();
        authors.extend(new.authors.iter().copied());
        authors.sort();
        authors.dedup();
        for author in &authors {
            sqlx::query(sql::INSERT_AUTHOR)
                .bind(id.0)
                .bind(author.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Taken::New(CheckpointMeta {
            id,
            entry: new.entry,
            at,
            version: new.version,
            chars: new.chars,
            authors,
        }))
    }

    async fn list_checkpoints(
        &self,
        entry: EntryId,
        page: HistoryPage,
    ) -> StoreResult<Result<Vec<CheckpointMeta>, PageError>> {
        let mut conn = self.pool().acquire().await?;
        let limit = i64::from(page.limit);
        let rows: Vec<Row> = match page.before {
            None => {
                sqlx::query_as(sql::PAGE)
                    .bind(entry.0)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?
            }
            Some(before) => {
                let at: Option<DateTime<Utc>> = sqlx::query_scalar(sql::POSITION)
                    .bind(before.0)
                    .bind(entry.0)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(at) = at else {
                    return Ok(Err(PageError::UnknownBefore));
                };
                sqlx::query_as(sql::PAGE_BEFORE)
                    .bind(entry.0)
                    .bind(limit)
                    .bind(at)
                    .bind(before.0)
                    .fetch_all(&mut *conn)
                    .await?
            }
        };
        let mut metas: Vec<CheckpointMeta> = rows.into_iter().map(|r| meta_of(entry, r)).collect();
        let ids: Vec<CheckpointId> = metas.iter().map(|m| m.id).collect();
        let mut authors = authors(&mut conn, &ids).await?;
        for meta in &mut metas {
            meta.authors = authors.remove(&meta.id).unwrap_or_default();
        }
        Ok(Ok(metas))
    }

    async fn read_checkpoint(
        &self,
        entry: EntryId,
        id: CheckpointId,
    ) -> StoreResult<Option<StoredCheckpoint>> {
        let mut conn = self.pool().acquire().await?;
        let row: Option<RowWithContent> = sqlx::query_as(sql::READ)
            .bind(id.0)
            .bind(entry.0)
            .fetch_optional(&mut *conn)
            .await?;
        let Some((id, at, version, chars, content)) = row else {
            return Ok(None);
        };
        let mut meta = meta_of(entry, (id, at, version, chars));
        meta.authors = authors(&mut conn, &[meta.id])
            .await?
            .remove(&meta.id)
            .unwrap_or_default();
        Ok(Some(StoredCheckpoint {
            meta,
            content: Bytes::from(content),
        }))
    }

    async fn prune_checkpoints(&self, now: DateTime<Utc>, rules: Pruning) -> StoreResult<Pruned> {
        let thinned = sqlx::query(&sql::thin(
            "date_trunc(CASE WHEN at < $2 THEN 'day' ELSE 'hour' END, at AT TIME ZONE 'UTC')",
        ))
        .bind(now - rules.hourly_after)
        .bind(now - rules.daily_after)
        .execute(self.pool())
        .await?
        .rows_affected();
        let expired = sqlx::query(sql::EXPIRE)
            .bind(now - rules.retention)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(Pruned { thinned, expired })
    }
}

fn meta_of(entry: EntryId, (id, at, version, chars): Row) -> CheckpointMeta {
    CheckpointMeta {
        id: CheckpointId(id),
        entry,
        at,
        version,
        chars,
        authors: Vec::new(),
    }
}

/// The authors of each of `ids`.
async fn authors(
    conn: &mut PgConnection,
    ids: &[CheckpointId],
) -> StoreResult<HashMap<CheckpointId, Vec<UserId>>> {
    let mut by_checkpoint: HashMap<CheckpointId, Vec<UserId>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_checkpoint);
    }
    let text = sql::authors_of(ids.len());
    let mut query = sqlx::query_as::<_, (Uuid, Uuid)>(&text);
    for id in ids {
        query = query.bind(id.0);
    }
    for (checkpoint, user) in query.fetch_all(&mut *conn).await? {
        by_checkpoint
            .entry(CheckpointId(checkpoint))
            .or_default()
            .push(UserId(user));
    }
    Ok(by_checkpoint)
}

/// The entry's key within [`HISTORY_LOCK_CLASS`]: its UUID folded to 32 bits.
fn entry_key(entry: EntryId) -> i32 {
    let (high, low) = entry.0.as_u64_pair();
    let folded = high ^ low;
    i32::from_ne_bytes(((folded >> 32) as u32 ^ folded as u32).to_ne_bytes())
}
