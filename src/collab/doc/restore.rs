//! Loading a doc from its stored rows. Rows pass the same gate as clients' updates;
//! one that fails is skipped (reported to the caller) and the rest still load, so one
//! bad row never makes an entry unusable.

use super::{DocError, EntryDoc};

/// Which stored row an update came from, for reporting one that was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredRow {
    Snapshot { upto_seq: i64 },
    Log { seq: i64 },
}

impl EntryDoc {
    /// Restores stored updates in order; returns the rows skipped and why.
    ///
    /// Rows stored before the gate existed may build on a later row (yrs kept them
    /// pending then): such a row waits and is retried after each later row applies.
    /// Only a panic inside yrs fails the whole load, since the doc is then not to be
    /// trusted.
    pub fn restore_all<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (StoredRow, &'a [u8])>,
    ) -> Result<Vec<(StoredRow, DocError)>, DocError> {
        let mut waiting: Vec<(StoredRow, &[u8])> = Vec::new();
        let mut skipped = Vec::new();
        for (row, bytes) in rows {
            match self.restore(bytes) {
                Ok(()) => self.retry_waiting(&mut waiting)?,
                Err(DocError::Refused(e)) if e.is_missing_dependency() => {
                    waiting.push((row, bytes))
                }
                Err(DocError::Poisoned) => return Err(DocError::Poisoned),
                Err(e) => skipped.push((row, e)),
            }
        }
        for (row, bytes) in waiting {
            if let Err(e) = self.restore(bytes) {
                skipped.push((row, e));
            }
        }
        Ok(skipped)
    }

    /// Applies every waiting row that now can be, until none can.
    fn retry_waiting(&mut self, waiting: &mut Vec<(StoredRow, &[u8])>) -> Result<(), DocError> {
        loop {
            let mut progress = false;
            let mut still = Vec::with_capacity(waiting.len());
            for (row, bytes) in waiting.drain(..) {
                match self.restore(bytes) {
                    Ok(()) => progress = true,
                    Err(DocError::Poisoned) => return Err(DocError::Poisoned),
                    Err(_) => still.push((row, bytes)),
                }
            }
            *waiting = still;
            if !progress || waiting.is_empty() {
                return Ok(());
            }
        }
    }
}
