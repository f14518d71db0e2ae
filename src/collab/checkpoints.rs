//! When an entry's actor takes history checkpoints (PROTOCOL.md 5.5): after each
//! `HISTORY_INTERVAL_SECS` of editing, and when the entry unloads after a change. The
//! store decides the rest: it skips a checkpoint whose content equals the newest one,
//! and adds the editors other processes recorded in the log.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::doc::EntryDoc;
use crate::ids::{EntryId, UserId};
use crate::store::history::NewCheckpoint;

/// Changes since the actor's last checkpoint.
pub(super) struct CheckpointClock {
    interval: Duration,
    /// Set by the first change after a checkpoint.
    due: Option<Instant>,
    /// Who made those changes here (their updates may not be committed yet, so the
    /// log's record of them could come too late for this checkpoint).
    authors: HashSet<UserId>,
}

impl CheckpointClock {
    pub(super) fn new(interval: Duration) -> Self {
        CheckpointClock {
            interval,
            due: None,
            authors: HashSet::new(),
        }
    }

    /// `editor` changed the text.
    pub(super) fn changed_by(&mut self, editor: UserId) {
        self.authors.insert(editor);
        self.due
            .get_or_insert_with(|| Instant::now() + self.interval);
    }

    /// When the next interval checkpoint is due, if anything changed.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The checkpoint to take now, if the text changed since the last one.
    pub(super) fn take(&mut self, entry: EntryId, doc: &EntryDoc) -> Option<NewCheckpoint> {
        self.due.take()?;
        Some(checkpoint_of(entry, doc, self.authors.drain().collect()))
    }
}

/// The doc as it is now, as a checkpoint: its content as Quill delta JSON.
pub(super) fn checkpoint_of(entry: EntryId, doc: &EntryDoc, authors: Vec<UserId>) -> NewCheckpoint {
    let content = serde_json::to_vec(&doc.delta()).unwrap_or_else(|e| {
        // A delta is strings, numbers and maps: serialising it cannot fail.
        tracing::error!(%entry, error = %e, "entry content does not serialise");
        b"{\"ops\":[]}".to_vec()
    });
    NewCheckpoint {
        entry,
        version: i64::try_from(doc.version()).unwrap_or(i64::MAX),
        chars: i64::try_from(doc.text().encode_utf16().count()).unwrap_or(i64::MAX),
        content: Bytes::from(content),
        authors,
    }
}
