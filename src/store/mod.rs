//! Storage: one [`Store`] trait, with a PostgreSQL and an embedded SQLite
//! implementation. The trait is the union of small per-domain traits so each domain's
//! queries live in their own file; the rest of the server only sees `Arc<dyn Store>`.

mod directory;
mod entries;
pub mod history;
mod history_sql;
mod notification_sql;
mod notifications;
pub mod postgres;
pub mod presence;
pub mod sqlite;

use std::sync::Arc;

pub use directory::{DirectoryStore, EntryRole, NewEntry, NewUser, Visibility};
pub use entries::{
    Compaction, EntryStore, EntryText, Fold, Folded, LoggedUpdate, Snapshot, StoredDoc,
};
pub use history::HistoryStore;
pub use notifications::{NotificationFeed, NotificationStore};
pub use presence::PresenceStore;

use crate::config::{DatabaseTarget, Settings};

/// A storage failure. Never shown to clients (they get `SERVER_ERROR`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the server persists or reads, whatever the database.
pub trait Store:
    DirectoryStore
    + EntryStore
    + HistoryStore
    + NotificationStore
    + PresenceStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: DirectoryStore
        + EntryStore
        + HistoryStore
        + NotificationStore
        + PresenceStore
        + Send
        + Sync
        + 'static
{
}

/// The start-up line that says where data goes: the backend, where its database is
/// (never a password) and what the migrations did.
fn log_opened(backend: &str, database: &str, applied_before: i64, applied_after: i64) {
    tracing::info!(
        backend,
        database,
        migrations_applied = applied_after - applied_before,
        schema_migrations = applied_after,
        "database ready"
    );
}

/// `SELECT count(*) FROM _sqlx_migrations` on either backend: 0 before the first run.
const APPLIED_MIGRATIONS: &str = "SELECT count(*) FROM _sqlx_migrations WHERE success";

/// Opens the configured database and brings its schema up to date.
pub async fn open(settings: &Settings) -> StoreResult<Arc<dyn Store>> {
    match &settings.database {
        DatabaseTarget::Postgres(url) => Ok(Arc::new(postgres::PgStore::connect(url).await?)),
        DatabaseTarget::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
    }
}
