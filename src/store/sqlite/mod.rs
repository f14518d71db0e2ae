//! Embedded SQLite storage: the zero-setup default (`./data/diary-realtime.db`).
//! Ids are stored as hyphenated UUID text so the file stays readable with `sqlite3`.

mod directory;
mod entries;
mod history;
mod notifications;
mod presence;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::{log_opened, StoreError, StoreResult, APPLIED_MIGRATIONS};

/// A SQLite file whose schema is up to date, with one writer and several readers.
///
/// SQLite lets one connection write at a time. With several writing connections, a
/// transaction that began by reading (a deferred `BEGIN`) and then writes must upgrade
/// its lock; if another connection wrote meanwhile, that upgrade fails at once with
/// "database is locked" (`SQLITE_BUSY`, or `SQLITE_BUSY_SNAPSHOT` 517 in WAL mode),
/// which no busy timeout can wait out. So every write goes through `writes`, a pool of
/// one connection, and multi-statement writes take the write lock up front
/// (`begin_write`, `BEGIN IMMEDIATE`). Readers use `reads`; in WAL mode they never
/// block the writer, and `query_only` makes any write through them an error.
#[derive(Clone)]
pub struct SqliteStore {
    reads: SqlitePool,
    writes: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(sqlx::Error::Configuration(
                    format!("cannot create {}: {e}", dir.display()).into(),
                ))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged edit survives power loss, not only a killed process.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // Writes queue for the one connection; the timeout bounds that wait.
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        let applied = || sqlx::query_scalar::<_, i64>(APPLIED_MIGRATIONS).fetch_one(&writes);
        let before = applied().await.unwrap_or(0);
        sqlx::migrate!("./migrations/sqlite").run(&writes).await?;
        let location = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        log_opened(
            "sqlite",
            &location.display().to_string(),
            before,
            applied().await?,
        );
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.pragma("query_only", "ON"))
            .await?;
        Ok(Self { reads, writes })
    }

    /// A write transaction holding SQLite's write lock from its first statement.
    pub(crate) async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writes.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Reads a UUID column stored as text.
pub(crate) fn parse_uuid(raw: &str) -> StoreResult<uuid::Uuid> {
    uuid::Uuid::parse_str(raw).map_err(|_| StoreError::Corrupt(format!("bad uuid {raw:?}")))
}
