//! The stored form of each entry's collaborative document: an append-only log of Yjs
//! v1 updates plus compacted snapshots, and the plain text the main app reads.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::ids::EntryId;

/// One logged update. `seq` orders the log of an entry; `version` is the entry's
/// version once the update is applied.
#[derive(Debug, Clone)]
pub struct LoggedUpdate {
    pub entry: EntryId,
    pub seq: i64,
    pub version: i64,
    pub payload: Bytes,
}

/// A compacted prefix of the log: the whole doc as one update.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub upto_seq: i64,
    pub version: i64,
    pub state: Bytes,
}

/// Everything needed to rebuild a doc: the newest snapshot and the log after it.
#[derive(Debug, Clone, Default)]
pub struct StoredDoc {
    pub snapshot: Option<Snapshot>,
    pub updates: Vec<LoggedUpdate>,
}

/// A stored row: `(seq or upto_seq, version, bytes)`, as both backends select it.
pub(crate) type DocRow = (i64, i64, Vec<u8>);

impl StoredDoc {
    /// Assembles what both backends read: the newest snapshot and the log after it.
    pub(crate) fn from_rows(entry: EntryId, snapshot: Option<DocRow>, log: Vec<DocRow>) -> Self {
        StoredDoc {
            snapshot: snapshot.map(|(upto_seq, version, state)| Snapshot {
                upto_seq,
                version,
                state: Bytes::from(state),
            }),
            updates: log
                .into_iter()
                .map(|(seq, version, payload)| LoggedUpdate {
                    entry,
                    seq,
                    version,
                    payload: Bytes::from(payload),
                })
                .collect(),
        }
    }
}

/// The plain-text view of an entry kept for the main app.
#[derive(Debug, Clone)]
pub struct EntryText {
    pub content: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

#[async_trait]
pub trait EntryStore {
    async fn load_doc(&self, entry: EntryId) -> StoreResult<StoredDoc>;

    /// Appends updates (of any entries) in one transaction: all or none.
    async fn append_updates(&self, updates: &[LoggedUpdate]) -> StoreResult<()>;

    /// In one transaction: stores `snapshot`, deletes the log rows and older snapshots
    /// it covers, and records `text`. Insert-then-delete, so a crash at any point
    /// leaves a loadable doc.
    async fn compact(&self, entry: EntryId, snapshot: &Snapshot, text: &str) -> StoreResult<()>;

    /// Records the plain text of the entry at `version`.
    async fn save_text(&self, entry: EntryId, text: &str, version: i64) -> StoreResult<()>;

    async fn load_text(&self, entry: EntryId) -> StoreResult<Option<EntryText>>;
}
