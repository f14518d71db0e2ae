use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use super::{parse_uuid, SqliteStore};
use crate::ids::{CheckpointId, EntryId, UserId};
use crate::store::history::{
    CheckpointMeta, HistoryPage, HistoryStore, NewCheckpoint, PageError, Pruned, Pruning,
    StoredCheckpoint, Taken,
};
use crate::store::history_sql as sql;
use crate::store::{StoreError, StoreResult};

type Row = (String, String, i64, i64);
type RowWithContent = (String, String, i64, i64, Vec<u8>);

#[async_trait]
impl HistoryStore for SqliteStore {
    /// One process owns the file; `BEGIN IMMEDIATE` makes takers of one entry (and
    /// every other writer) take turns from the start of the transaction.
    async fn take_checkpoint(&self, new: &NewCheckpoint) -> StoreResult<Taken> {
        let entry = new.entry.to_string();
        let mut tx = self.begin_write().await?;
        let newest: Option<RowWithContent> = sqlx::query_as(sql::NEWEST)
            .bind(&entry)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = newest.filter(|row| row.4 == new.content.as_ref()) {
            let mut meta = meta_of(new.entry, (row.0, row.1, row.2, row.3))?;
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
            .bind(id.to_string())
            .bind(&entry)
            .bind(time_text(at))
            .bind(new.version)
            .bind(new.chars)
            .bind(new.content.as_ref())
            .execute(&mut *tx)
            .await?;
        let claimed: Vec<String> = sqlx::query_scalar(sql::CLAIM_AUTHORS)
            .bind(&entry)
            .fetch_all(&mut *tx)
            .await?;
        let mut authors = claimed
            .iter()
            .map(|raw| parse_uuid(raw).map(UserId))
            .collect::<StoreResult<Vec<_>>>()?;
        authors.extend(new.authors.iter().copied());
        authors.sort();
        authors.dedup();
        for author in &authors {
            sqlx::query(sql::INSERT_AUTHOR)
                .bind(id.to_string())
                .bind(author.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Taken::New(CheckpointMeta {
            id,
            entry: new.entry,
            at: parse_time(&time_text(at))?,
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
        let mut conn = self.reads.acquire().await?;
        let limit = i64::from(page.limit);
        let rows: Vec<Row> = match page.before {
            None => {
                sqlx::query_as(sql::PAGE)
                    .bind(entry.to_string())
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?
            }
            Some(before) => {
                let at: Option<String> = sqlx::query_scalar(sql::POSITION)
                    .bind(before.to_string())
                    .bind(entry.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(at) = at else {
                    return Ok(Err(PageError::UnknownBefore));
                };
                sqlx::query_as(sql::PAGE_BEFORE)
                    .bind(entry.to_string())
                    .bind(limit)
                    .bind(at)
                    .bind(before.to_string())
                    .fetch_all(&mut *conn)
                    .await?
            }
        };
        let mut metas = rows
            .into_iter()
            .map(|r| meta_of(entry, r))
            .collect::<StoreResult<Vec<_>>>()?;
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
        let mut conn = self.reads.acquire().await?;
        let row: Option<RowWithContent> = sqlx::query_as(sql::READ)
            .bind(id.to_string())
            .bind(entry.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        let Some((id, at, version, chars, content)) = row else {
            return Ok(None);
        };
        let mut meta = meta_of(entry, (id, at, version, chars))?;
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
            "substr(at, 1, CASE WHEN at < $2 THEN 10 ELSE 13 END)",
        ))
        .bind(time_text(now - rules.hourly_after))
        .bind(time_text(now - rules.daily_after))
        .execute(&self.writes)
        .await?
        .rows_affected();
        let expired = sqlx::query(sql::EXPIRE)
            .bind(time_text(now - rules.retention))
            .execute(&self.writes)
            .await?
            .rows_affected();
        Ok(Pruned { thinned, expired })
    }
}

/// Fixed width, so that text order is time order (and `substr` finds hour and day).
fn time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_time(raw: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("bad time {raw:?}")))
}

fn meta_of(entry: EntryId, (id, at, version, chars): Row) -> StoreResult<CheckpointMeta> {
    Ok(CheckpointMeta {
        id: CheckpointId(parse_uuid(&id)?),
        entry,
        at: parse_time(&at)?,
        version,
        chars,
        authors: Vec::new(),
    })
}

/// The authors of each of `ids`.
async fn authors(
    conn: &mut SqliteConnection,
    ids: &[CheckpointId],
) -> StoreResult<HashMap<CheckpointId, Vec<UserId>>> {
    let mut by_checkpoint: HashMap<CheckpointId, Vec<UserId>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_checkpoint);
    }
    let text = sql::authors_of(ids.len());
    let mut query = sqlx::query_as::<_, (String, String)>(&text);
    for id in ids {
        query = query.bind(id.to_string());
    }
    for (checkpoint, user) in query.fetch_all(&mut *conn).await? {
        by_checkpoint
            .entry(CheckpointId(parse_uuid(&checkpoint)?))
            .or_default()
            .push(UserId(parse_uuid(&user)?));
    }
    Ok(by_checkpoint)
}
