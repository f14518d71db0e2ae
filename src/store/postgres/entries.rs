use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use crate::ids::EntryId;
use crate::store::entries::DocRow;
use crate::store::{
    Compaction, EntryStore, EntryText, Fold, LoggedUpdate, StoreError, StoreResult, StoredDoc,
};
use sqlx::PgConnection;

#[async_trait]
impl EntryStore for PgStore {
    async fn load_doc(&self, entry: EntryId) -> StoreResult<StoredDoc> {
        // One consistent view, even if another process compacts meanwhile.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        let stored = read_doc(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn append_updates(&self, updates: &[LoggedUpdate]) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let entries: Vec<Uuid> = updates.iter().map(|u| u.entry.0).collect();
        let versions: Vec<i64> = updates.iter().map(|u| u.version).collect();
        let payloads: Vec<&[u8]> = updates.iter().map(|u| u.payload.as_ref()).collect();
        let authors: Vec<Option<Uuid>> = updates.iter().map(|u| u.author.map(|a| a.0)).collect();
        // One statement: atomic, and one round trip for the whole batch. `seq` comes
        // from the table's sequence: every node writes the same logs. The senders are
        // recorded for the next history checkpoint, in key order so that two nodes'
        // batches never wait on each other's rows crosswise.
        sqlx::query(
            "WITH batch AS (
                 SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bytea[], $4::uuid[])
                     AS b(entry_id, version, payload, author)
             ), logged AS (
                 INSERT INTO entry_updates (entry_id, version, payload, author)
                 SELECT entry_id, version, payload, author FROM batch
             )
             INSERT INTO entry_history_authors (entry_id, user_id)
             SELECT DISTINCT entry_id, author FROM batch WHERE author IS NOT NULL
             ORDER BY entry_id, author
             ON CONFLICT DO NOTHING",
        )
        .bind(&entries)
        .bind(&versions)
        .bind(&payloads)
        .bind(&authors)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn compact(&self, entry: EntryId, fold: Fold<'_>) -> StoreResult<Compaction> {
        let mut tx = self.pool.begin().await?;
        // One compaction per entry at a time, cluster-wide; the loser skips (the winner
        // folds the loser's rows too). Released when the transaction ends.
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(lock_key(entry))
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(Compaction::Busy);
        }
        let stored = read_doc(&mut tx, entry).await?;
        let folded = fold(&stored).map_err(StoreError::Corrupt)?;
        let read: Vec<i64> = stored.updates.iter().map(|u| u.seq).collect();
        let upto_seq = stored.last_seq();
        sqlx::query(
            "INSERT INTO entry_snapshots (entry_id, upto_seq, version, state) VALUES ($1, $2, $3, $4)
             ON CONFLICT (entry_id, upto_seq) DO UPDATE
                 SET version = EXCLUDED.version, state = EXCLUDED.state",
        )
        .bind(entry.0)
        .bind(upto_seq)
        .bind(folded.version)
        .bind(folded.state.as_ref())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM entry_updates WHERE entry_id = $1 AND seq = ANY($2)")
            .bind(entry.0)
            .bind(&read)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM entry_snapshots WHERE entry_id = $1 AND upto_seq < $2")
            .bind(entry.0)
            .bind(upto_seq)
            .execute(&mut *tx)
            .await?;
        upsert_text(&mut *tx, entry, &folded.text, folded.version).await?;
        tx.commit().await?;
        Ok(Compaction::Done)
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

/// The newest snapshot and every log row of `entry`.
async fn read_doc(tx: &mut PgConnection, entry: EntryId) -> StoreResult<StoredDoc> {
    let snapshot: Option<DocRow> = sqlx::query_as(
        "SELECT upto_seq, version, state FROM entry_snapshots
          WHERE entry_id = $1 ORDER BY upto_seq DESC LIMIT 1",
    )
    .bind(entry.0)
    .fetch_optional(&mut *tx)
    .await?;
    // Every row, not only those above the snapshot's `upto_seq`: with several writers
    // a row with a lower `seq` can commit after the compaction that wrote the snapshot.
    let rows: Vec<DocRow> = sqlx::query_as(
        "SELECT seq, version, payload FROM entry_updates WHERE entry_id = $1 ORDER BY seq",
    )
    .bind(entry.0)
    .fetch_all(&mut *tx)
    .await?;
    Ok(StoredDoc::from_rows(entry, snapshot, rows))
}

/// The advisory lock key of an entry's compaction: its UUID folded to 64 bits.
fn lock_key(entry: EntryId) -> i64 {
    let (high, low) = entry.0.as_u64_pair();
    i64::from_ne_bytes((high ^ low).to_ne_bytes())
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
