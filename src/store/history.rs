//! Entry history (PROTOCOL.md 5.5): checkpoints of an entry's whole content, who
//! changed it between two checkpoints, thinning and retention. A checkpoint stores the
//! content itself (the Quill delta), so it is independent of the update log and of
//! compaction.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};

use super::StoreResult;
use crate::ids::{CheckpointId, EntryId, UserId};

/// A stored checkpoint, without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMeta {
    pub id: CheckpointId,
    pub entry: EntryId,
    pub at: DateTime<Utc>,
    pub version: i64,
    /// Length of the text in UTF-16 code units.
    pub chars: i64,
    /// Who changed the text since the previous checkpoint (no particular order).
    pub authors: Vec<UserId>,
}

/// A checkpoint with its content: the Quill delta `{ops}` as JSON bytes.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub meta: CheckpointMeta,
    pub content: Bytes,
}

/// What the entry looks like now, to be kept as a checkpoint.
#[derive(Debug, Clone)]
pub struct NewCheckpoint {
    pub entry: EntryId,
    pub version: i64,
    pub chars: i64,
    /// The whole content as Quill delta JSON.
    pub content: Bytes,
    /// Editors the taker knows of besides those the log recorded (its own updates
    /// still being committed).
    pub authors: Vec<UserId>,
}

/// What [`HistoryStore::take_checkpoint`] did.
#[derive(Debug, Clone)]
pub enum Taken {
    /// A new checkpoint.
    New(CheckpointMeta),
    /// The newest checkpoint already holds exactly this content (taken by this
    /// process earlier or by another one meanwhile): nothing was stored.
    Unchanged(CheckpointMeta),
}

impl Taken {
    pub fn meta(&self) -> &CheckpointMeta {
        match self {
            Taken::New(meta) | Taken::Unchanged(meta) => meta,
        }
    }
}

/// A page of an entry's checkpoints, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPage {
    /// Only checkpoints older than this one (it must be the entry's).
    pub before: Option<CheckpointId>,
    pub limit: u32,
}

/// Why a page could not be listed, besides the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageError {
    /// `before` names no checkpoint of this entry.
    UnknownBefore,
}

/// How old checkpoints are thinned and dropped (PROTOCOL.md 5.5).
#[derive(Debug, Clone, Copy)]
pub struct Pruning {
    /// Older than this: at most one checkpoint per entry and hour.
    pub hourly_after: Duration,
    /// Older than this: at most one per entry and day.
    pub daily_after: Duration,
    /// Older than this: dropped.
    pub retention: Duration,
}

impl Pruning {
    pub fn with_retention(retention: Duration) -> Self {
        Pruning {
            hourly_after: Duration::days(1),
            daily_after: Duration::days(7),
            retention,
        }
    }
}

/// Checkpoints removed by one pruning pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub thinned: u64,
    pub expired: u64,
}

#[async_trait]
pub trait HistoryStore {
    /// Stores `new` as the entry's newest checkpoint (stamped `now` by the database's
    /// clock of record, this process), claiming the authors recorded since the
    /// previous one, unless the newest checkpoint already holds the same content.
    /// One taker per entry at a time, cluster-wide: two processes never store the
    /// same content twice.
    async fn take_checkpoint(&self, new: &NewCheckpoint) -> StoreResult<Taken>;

    /// One page, newest first.
    async fn list_checkpoints(
        &self,
        entry: EntryId,
        page: HistoryPage,
    ) -> StoreResult<Result<Vec<CheckpointMeta>, PageError>>;

    /// The checkpoint with its content, if it is one of `entry`'s.
    async fn read_checkpoint(
        &self,
        entry: EntryId,
        id: CheckpointId,
    ) -> StoreResult<Option<StoredCheckpoint>>;

    /// Thins and expires checkpoints as of `now`: one statement each.
    async fn prune_checkpoints(&self, now: DateTime<Utc>, rules: Pruning) -> StoreResult<Pruned>;
}
