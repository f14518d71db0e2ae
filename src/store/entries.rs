//! The stored form of each entry's collaborative document: an append-only log of Yjs
//! v1 updates plus compacted snapshots, and the plain text the main app reads.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::ids::{EntryId, UserId};

/// One logged update. `seq` names the row: on PostgreSQL the database assigns it at
/// insert from one sequence (several nodes write one entry's log), and the value given
/// to [`EntryStore::append_updates`] is ignored; SQLite (one node) stores the writer's
/// own. Order in the log does not matter for loading (the CRDT merges in any order).
/// `version` is the writer's version of the entry once the update is applied.
/// `author` is the user who sent it (`None` when read back from the log, or for rows
/// logged before the log recorded senders); appending records the author for the
/// entry's next history checkpoint too.
#[derive(Debug, Clone)]
pub struct LoggedUpdate {
    pub entry: EntryId,
    pub seq: i64,
    pub version: i64,
    pub payload: Bytes,
    pub author: Option<UserId>,
}

/// A compacted part of the log: the whole doc as one update. `upto_seq` is the highest
/// `seq` folded into it, which orders snapshots; rows with a lower `seq` may still be in
/// the log (committed after the compaction read it) and are loaded too.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub upto_seq: i64,
    pub version: i64,
    pub state: Bytes,
}

/// Everything needed to rebuild a doc: the newest snapshot and every log row.
#[derive(Debug, Clone, Default)]
pub struct StoredDoc {
    pub snapshot: Option<Snapshot>,
    pub updates: Vec<LoggedUpdate>,
}

/// A stored row: `(seq or upto_seq, version, bytes)`, as both backends select it.
pub(crate) type DocRow = (i64, i64, Vec<u8>);

impl StoredDoc {
    /// The highest `seq` this doc holds, in the snapshot or the log (0 for none).
    pub fn last_seq(&self) -> i64 {
        self.updates
            .iter()
            .map(|u| u.seq)
            .chain(self.snapshot.as_ref().map(|s| s.upto_seq))
            .max()
            .unwrap_or(0)
    }

    /// Assembles what both backends read: the newest snapshot and the log rows.
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
                    author: None,
                })
                .collect(),
        }
    }
}

/// What a compaction writes, computed from what it read: the doc with every row read
/// folded in.
#[derive(Debug, Clone)]
pub struct Folded {
    pub state: Bytes,
    pub version: i64,
    pub text: String,
}

/// Folds the stored doc (newest snapshot and every log row, read inside the
/// compaction's transaction) into one state. An error aborts the compaction.
pub type Fold<'a> = &'a (dyn Fn(&StoredDoc) -> Result<Folded, String> + Send + Sync);

/// Whether a compaction ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compaction {
    Done,
    /// Another process is compacting this entry right now.
    Busy,
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

    /// In one transaction, skipped (`Busy`) while another process compacts the entry:
    /// reads the newest snapshot and every log row, stores what `fold` makes of them
    /// as the new snapshot, deletes exactly the rows read and the older snapshots, and
    /// records the text. Rows another writer commits meanwhile are not read and so
    /// survive. Insert-then-delete, so a crash at any point leaves a loadable doc.
    async fn compact(&self, entry: EntryId, fold: Fold<'_>) -> StoreResult<Compaction>;

    /// Records the plain text of the entry at `version`.
    async fn save_text(&self, entry: EntryId, text: &str, version: i64) -> StoreResult<()>;

    async fn load_text(&self, entry: EntryId) -> StoreResult<Option<EntryText>>;
}
