use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use crate::ids::EntryId;
use crate::store::entries::DocRow;
use crate::store::{EntryStore, EntryText, LoggedUpdate, Snapshot, StoreResult, StoredDoc};

#[async_trait]
impl EntryStore for PgStore {
    async fn load_doc(&self, entry: EntryId) -> StoreResult<StoredDoc> {
        // One consistent view, even if another process compacts meanwhile.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        let snapshot: Option<DocRow> = sqlx::query_as(
            "SELECT upto_seq, version, state FROM entry_snapshots
              WHERE entry_id = $1 ORDER BY upto_seq DESC LIMIT 1",
        )
        .bind(entry.0)
        .fetch_optional(&mut *tx)
        .await?;
        let after = snapshot.as_ref().map_or(0, |s| s.0);
        let rows: Vec<DocRow> = sqlx::query_as(
            "SELECT seq, version, payload FROM entry_updates
              WHERE entry_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(entry.0)
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StoredDoc::from_rows(entry, snapshot, rows))
    }

    async fn append_updates(&self, updates: &[LoggedUpdate]) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let entries: Vec<Uuid> = updates.iter().map(|u| u.entry.0).collect();
        let seqs: Vec<i64> = updates.iter().map(|u| u.seq).collect();
        let versions: Vec<i64> = updates.iter().map(|u| u.version).collect();
        let payloads: Vec<&[u8]> = updates.iter().map(|u| u.payload.as_ref()).collect();
        // One statement: atomic, and one round trip for the whole batch.
        sqlx::query(
            "INSERT INTO entry_updates (entry_id, seq, version, payload)
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bytea[])",
        )
        .bind(&entries)
        .bind(&seqs)
        .bind(&versions)
        .bind(&payloads)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn compact(&self, entry: EntryId, snapshot: &Snapshot, text: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO entry_snapshots (entry_id, upto_seq, version, state) VALUES ($1, $2, $3, $4)
             ON CONFLICT (entry_id, upto_seq) DO UPDATE
                 SET version = EXCLUDED.version, state = EXCLUDED.state",
        )
        .bind(entry.0)
        .bind(snapshot.upto_seq)
        .bind(snapshot.version)
        .bind(snapshot.state.as_ref())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM entry_updates WHERE entry_id = $1 AND seq <= $2")
            .bind(entry.0)
            .bind(snapshot.upto_seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM entry_snapshots WHERE entry_id = $1 AND upto_seq < $2")
            .bind(entry.0)
            .bind(snapshot.upto_seq)
            .execute(&mut *tx)
            .await?;
        upsert_text(&mut *tx, entry, text, snapshot.version).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn save_text(&self, entry: EntryId, text: &str, version: i64) -> StoreResult<()> {
        upsert_text(&self.pool, entry, text, version).await
    }

    async fn load_text(&self, entry: EntryId) -> StoreResult<Option<EntryText>> {
        let row: Option<(String, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT content, version, updated_at FROM entry_documents WHERE entry_id = $1",
        )
        .bind(entry.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(content, version, updated_at)| EntryText {
            content,
            version,
            updated_at,
        }))
    }
}

/// Never moves the stored text back to an older version.
async fn upsert_text<'e, E>(
    executor: E,
    entry: EntryId,
    text: &str,
    version: i64,
) -> StoreResult<()>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query(
        "INSERT INTO entry_documents (entry_id, content, version) VALUES ($1, $2, $3)
         ON CONFLICT (entry_id) DO UPDATE
             SET content = EXCLUDED.content, version = EXCLUDED.version, updated_at = now()
             WHERE entry_documents.version <= EXCLUDED.version",
    )
    .bind(entry.0)
    .bind(text)
    .bind(version)
    .execute(executor)
    .await?;
    Ok(())
}
