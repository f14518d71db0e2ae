//! Folding the entry's update log into a snapshot: every `COMPACT_AFTER_ROWS` stored
//! rows on a task of its own, and once more when the entry unloads.

use bytes::Bytes;

use super::{rebuild, DocActor, COMPACT_AFTER_ROWS};
use crate::collab::command::DocCommand;
use crate::ids::EntryId;
use crate::store::{Compaction, Folded, StoreResult, StoredDoc};

impl DocActor {
    /// Folds the stored log into a snapshot on a separate task. The snapshot also takes
    /// this replica's state, which may hold updates still in flight: harmless, since
    /// applying an update twice is a no-op, and it only makes the snapshot more complete.
    pub(super) fn compact(&mut self) {
        if self.compacting || self.doc.has_pending() {
            return;
        }
        self.compacting = true;
        self.rows_since_snapshot = 0;
        self.text_dirty = false;
        let own = self.doc.encode_full();
        let version = self.doc.version();
        let (store, entry, mailbox) = (self.store.clone(), self.entry, self.mailbox.clone());
        tokio::spawn(async move {
            let outcome = match store
                .compact(entry, &move |stored| fold(entry, &own, version, stored))
                .await
            {
                Ok(outcome) => Some(outcome),
                Err(e) => {
                    tracing::warn!(%entry, error = %e, "compaction failed");
                    None
                }
            };
            let _ = mailbox.send(DocCommand::CompactionDone { outcome });
        });
    }

    /// Compacts at once, in the actor (it is unloading).
    pub(super) async fn compact_now(&self, version: u64) -> StoreResult<Compaction> {
        let own = self.doc.encode_full();
        let entry = self.entry;
        self.store
            .compact(entry, &move |stored| fold(entry, &own, version, stored))
            .await
    }

    /// `None`: the compaction failed.
    pub(super) fn compaction_done(&mut self, outcome: Option<Compaction>) {
        self.compacting = false;
        match outcome {
            // Retry later; the log just stays longer meanwhile.
            None => self.rows_since_snapshot = COMPACT_AFTER_ROWS / 2,
            // Edits kept coming while it ran.
            Some(Compaction::Done) if self.rows_since_snapshot >= COMPACT_AFTER_ROWS => {
                self.compact()
            }
            Some(Compaction::Busy) => {
                tracing::debug!(entry = %self.entry, "another process is compacting; it folds our rows too");
            }
            Some(Compaction::Done) => {}
        }
    }
}

/// What a compaction stores: the stored doc with this replica's state (`own`, at
/// `version`) merged in, so nothing either holds is lost.
fn fold(entry: EntryId, own: &[u8], version: u64, stored: &StoredDoc) -> Result<Folded, String> {
    // Decoding and encoding a whole doc is CPU work: keep other tasks on this worker
    // running meanwhile (where the runtime allows it).
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| fold_now(entry, own, version, stored))
    } else {
        fold_now(entry, own, version, stored)
    }
}

fn fold_now(
    entry: EntryId,
    own: &[u8],
    version: u64,
    stored: &StoredDoc,
) -> Result<Folded, String> {
    let mut doc = rebuild(entry, stored, &[])?;
    doc.restore(own).map_err(|e| e.to_string())?;
    if doc.has_pending() {
        // The snapshot would drop what is pending: keep the log as it is.
        return Err("the log has updates with missing dependencies".into());
    }
    Ok(Folded {
        state: Bytes::from(doc.encode_full()),
        version: i64::try_from(doc.version().max(version)).unwrap_or(i64::MAX),
        text: doc.text(),
    })
}
