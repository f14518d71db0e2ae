use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::SqliteStore;
use crate::ids::{EntryId, UserId};
use crate::store::entries::DocRow;
use crate::store::history_sql;
use crate::store::{
    Compaction, EntryStore, EntryText, Fold, LoggedUpdate, StoreError, StoreResult, StoredDoc,
};
use sqlx::SqliteConnection;

/// SQLite allows at most 32766 bound parameters per statement.
const ROWS_PER_INSERT: usize = 1000;

#[async_trait]
impl EntryStore for SqliteStore {
    async fn load_doc(&self, entry: EntryId) -> StoreResult<StoredDoc> {
        let mut tx = self.reads.begin().await?;
        let stored = read_doc(&mut tx, &entry.to_string(), entry).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn append_updates(&self, updates: &[LoggedUpdate]) -> StoreResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in updates.chunks(ROWS_PER_INSERT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO entry_updates (entry_id, seq, version, payload, author) ",
            );
            query.push_values(chunk, |mut row, u| {
                row.push_bind(u.entry.to_string())
                    .push_bind(u.seq)
                    .push_bind(u.version)
                    .push_bind(u.payload.as_ref())
                    .push_bind(u.author.map(|a| a.to_string()));
            });
            query.build().execute(&mut *tx).await?;
        }
        // Recorded for the entry's next history checkpoint.
        let mut senders: Vec<(EntryId, UserId)> = updates
            .iter()
            .filter_map(|u| Some((u.entry, u.author?)))
            .collect();
        senders.sort();
        senders.dedup();
        for (entry, author) in senders {
            sqlx::query(history_sql::RECORD_AUTHOR)
                .bind(entry.to_string())
                .bind(author.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One process owns a SQLite file, and one actor an entry: no lock needed beyond
    /// the write transaction, which takes the write lock before reading the rows it folds.
    async fn compact(&self, entry: EntryId, fold: Fold<'_>) -> StoreResult<Compaction> {
        let id = entry.to_string();
        let mut tx = self.begin_write().await?;
        let stored = read_doc(&mut tx, &id, entry).await?;
        let folded = fold(&stored).map_err(StoreError::Corrupt)?;
        let upto_seq = stored.last_seq();
        sqlx::query(
            "INSERT INTO entry_snapshots (entry_id, upto_seq, version, state) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (entry_id, upto_seq) DO UPDATE
                 SET version = excluded.version, state = excluded.state",
        )
        .bind(&id)
        .bind(upto_seq)
        .bind(folded.version)
        .bind(folded.state.as_ref())
        .execute(&mut *tx)
        .await?;
        // Every row read has `seq <= upto_seq`, and nothing else writes meanwhile.
        sqlx::query("DELETE FROM entry_updates WHERE entry_id = ?1 AND seq <= ?2")
            .bind(&id)
            .bind(upto_seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM entry_snapshots WHERE entry_id = ?1 AND upto_seq < ?2")
            .bind(&id)
            .bind(upto_seq)
            .execute(&mut *tx)
            .await?;
        upsert_text(&mut *tx, &id, &folded.text, folded.version).await?;
        tx.commit().await?;
        Ok(Compaction::Done)
    }

    async fn save_text(&self, entry: EntryId, text: &str, version: i64) -> StoreResult<()> {
        upsert_text(&self.writes, &entry.to_string(), text, version).await
    }

    async fn load_text(&self, entry: EntryId) -> StoreResult<Option<EntryText>> {
        let row: Option<(String, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT content, version, updated_at FROM entry_documents WHERE entry_id = ?1",
        )
        .bind(entry.to_string())
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.map(|(content, version, updated_at)| EntryText {
            content,
            version,
            updated_at,
        }))
    }
}

/// The newest snapshot and every log row of the entry.
async fn read_doc(tx: &mut SqliteConnection, id: &str, entry: EntryId) -> StoreResult<StoredDoc> {
    let snapshot: Option<DocRow> = sqlx::query_as(
        "SELECT upto_seq, version, state FROM entry_snapshots
          WHERE entry_id = ?1 ORDER BY upto_seq DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let rows: Vec<DocRow> = sqlx::query_as(
        "SELECT seq, version, payload FROM entry_updates WHERE entry_id = ?1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    Ok(StoredDoc::from_rows(entry, snapshot, rows))
}

/// Never moves the stored text back to an older version.
async fn upsert_text<'e, E>(executor: E, entry: &str, text: &str, version: i64) -> StoreResult<()>
where
    E: sqlx::SqliteExecutor<'e>,
{
    sqlx::query(
        "INSERT INTO entry_documents (entry_id, content, version) VALUES (?1, ?2, ?3)
         ON CONFLICT (entry_id) DO UPDATE
             SET content = excluded.content, version = excluded.version,
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE entry_documents.version <= excluded.version",
    )
    .bind(entry)
    .bind(text)
    .bind(version)
    .execute(executor)
    .await?;
    Ok(())
}
