//! One entry's yrs document: a `Y.Text` named `content`, its version counter, and the
//! guarded way to apply untrusted Yjs updates to it: every update and state vector
//! passes [`super::gate`] first, and only a [`CheckedUpdate`] is integrated. Knows
//! nothing about sockets or storage.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use yrs::types::text::YChange;
use yrs::types::Delta;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Assoc, Doc, GetString, IndexedSequence, Observable, OffsetKind, Options, ReadTxn,
    StateVector, StickyIndex, Text, TextRef, Transact, TransactionMut, Update,
};

use super::delta::{self, QuillDelta, QuillOp};
use super::gate::{self, CheckedUpdate, DocState, GateError};
use super::rebase;

/// How many past versions a Quill delta may be based on (PROTOCOL.md 5.2).
pub const VERSION_HISTORY: usize = 1000;

/// Largest encoded doc that may still grow (PROTOCOL.md: 10 MiB).
pub const MAX_DOC_BYTES: usize = 10 << 20;

/// Why an update or state vector was refused. Each leaves the doc untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("malformed Yjs update")]
    MalformedUpdate,
    #[error("malformed state vector")]
    MalformedStateVector,
    /// The gate refused it (see [`super::gate`] for the rules).
    #[error("Yjs input refused: {0}")]
    Refused(GateError),
    #[error("document is over its 10 MiB limit")]
    TooLarge,
    /// yrs panicked while integrating: the in-memory doc can no longer be trusted and
    /// must be rebuilt from what is stored.
    #[error("update could not be applied")]
    Poisoned,
    #[error("delta does not fit the text at its base version: {0}")]
    BadDelta(String),
    #[error("baseVersion {0} is too old or unknown; resync with state_request")]
    StaleBase(u64),
}

/// What applying an update did.
#[derive(Debug)]
pub enum Applied {
    /// The doc changed; `version` was incremented. `update` is what was integrated
    /// (possibly including earlier pending updates it unblocked): the form relayed to
    /// Yjs peers. `delta` is the same change to the text, for Quill-delta clients.
    Changed { update: Vec<u8>, delta: QuillDelta },
    /// yrs integrated nothing yet and keeps the update pending (missing dependencies).
    /// It must be stored like any other update, or the doc reloads without it.
    Pending,
    /// Nothing new (duplicate or empty update).
    Unchanged,
}

/// The doc with its text and version.
pub struct EntryDoc {
    doc: Doc,
    text: TextRef,
    version: u64,
    /// Upper bound on the encoded size; recomputed exactly when it crosses the limit.
    size_estimate: usize,
    /// Text deltas produced by the last transaction (filled by the observer).
    last_delta: Arc<Mutex<Vec<QuillDelta>>>,
    /// Recent versions, oldest first: enough to rebase a delta written against any.
    history: VecDeque<VersionMark>,
}

/// A past version: its text length and the change that made it.
struct VersionMark {
    version: u64,
    len: u32,
    change: QuillDelta,
}

fn doc_options() -> Options {
    Options {
        // JavaScript clients count UTF-16 code units; so must every index here.
        offset_kind: OffsetKind::Utf16,
        // Deleted content is kept, as it always has been here (dropping it would
        // change what is stored, and is a change of its own).
        skip_gc: true,
        ..Options::default()
    }
}

impl EntryDoc {
    pub fn new() -> Self {
        let doc = Doc::with_options(doc_options());
        let text = doc.get_or_insert_text("content");
        let last_delta = Arc::new(Mutex::new(Vec::new()));
        let sink = last_delta.clone();
        text.observe("entry-delta", move |txn, event| {
            let change = delta::from_text_event(event.delta(txn));
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(change);
        });
        EntryDoc {
            doc,
            text,
            version: 0,
            size_estimate: 0,
            last_delta,
            history: VecDeque::new(),
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets the version after loading from storage; history starts here.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
        self.history.clear();
        self.remember(QuillDelta::default());
    }

    fn remember(&mut self, change: QuillDelta) {
        let len = self.text.len(&self.doc.transact());
        self.history.push_back(VersionMark {
            version: self.version,
            len,
            change,
        });
        while self.history.len() > VERSION_HISTORY + 1 {
            self.history.pop_front();
        }
    }

    /// Applies an untrusted Yjs v1 update once the gate has passed it. A refused update
    /// changes nothing.
    pub fn apply_update(&mut self, bytes: &[u8]) -> Result<Applied, DocError> {
        if self.size_estimate.saturating_add(bytes.len()) > MAX_DOC_BYTES {
            self.size_estimate = self.encoded_len();
            if self.size_estimate.saturating_add(bytes.len()) > MAX_DOC_BYTES {
                return Err(DocError::TooLarge);
            }
        }
        let checked = gate::check_update(bytes, &self.gate_state()).map_err(refused)?;
        self.integrate(checked)
    }

    /// What the gate checks an update against: the doc's state vector.
    fn gate_state(&self) -> DocState {
        DocState::new(
            self.doc
                .transact()
                .state_vector()
                .iter()
                .map(|(client, clock)| (client.get(), *clock)),
        )
    }

    /// The one place an update reaches yrs. yrs can still panic on input the gate
    /// admits (a bug either side): the panic is caught and the doc marked poisoned.
    fn integrate(&mut self, checked: CheckedUpdate) -> Result<Applied, DocError> {
        let bytes = checked.bytes();
        let update = catch_unwind(|| Update::decode_v1(bytes))
            .map_err(|_| DocError::MalformedUpdate)?
            .map_err(|_| DocError::MalformedUpdate)?;
        self.clear_delta();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = self.doc.transact_mut();
            txn.apply_update(update).map(|()| {
                let changed = !txn.insert_set().is_empty() || !txn.delete_set().is_empty();
                let effective = changed.then(|| change_of(&txn));
                (effective, txn.has_missing_updates())
            })
        }));
        match outcome {
            Err(_) => Err(DocError::Poisoned),
            Ok(Err(_)) => Err(DocError::MalformedUpdate),
            Ok(Ok((Some(change), _))) => {
                self.size_estimate += bytes.len();
                Ok(self.changed(change))
            }
            Ok(Ok((None, true))) => {
                // The gate refuses what yrs would keep pending; reaching this is a gap
                // in its rules, kept visible rather than silent.
                tracing::error!("an update passed the gate but yrs keeps it pending");
                self.size_estimate += bytes.len();
                Ok(Applied::Pending)
            }
            Ok(Ok((None, false))) => Ok(Applied::Unchanged),
        }
    }

    /// Applies a Quill delta written against `base` (the current version when `None`).
    /// A stale delta is first rebased over every change made since its base, as a
    /// Quill client rebases what it receives over its own pending edit (the change
    /// applied first stays left on ties; see [`super::rebase`]). So the text a delta
    /// client computes and the server's text agree, and concurrent edits keep their
    /// intent instead of landing at stale positions.
    ///
    /// It used to be applied to a copy of the doc rebuilt at `base` and merged through
    /// the CRDT. That converges, but not always where the client's rebase puts it: an
    /// insert next to text deleted concurrently could land on the other side of a
    /// concurrent insert (Yjs places inserts after deleted items), and the delta
    /// client's text silently diverged (a flake in the cluster convergence test).
    pub fn apply_delta(&mut self, ops: &[QuillOp], base: Option<u64>) -> Result<Applied, DocError> {
        let base = base.unwrap_or(self.version);
        if base > self.version {
            return Err(DocError::StaleBase(base));
        }
        let mut ops: Vec<QuillOp> = ops
            .iter()
            .filter(|op| !is_zero_length(op))
            .cloned()
            .collect();
        if base == self.version {
            check_fits(&ops, self.text.len(&self.doc.transact()))?;
        } else {
            let index = self
                .history
                .iter()
                .position(|m| m.version == base)
                .ok_or(DocError::StaleBase(base))?;
            check_fits(&ops, self.history[index].len)?;
            for mark in self.history.iter().skip(index + 1) {
                ops = rebase::over(&mark.change.ops, &ops);
            }
        }
        self.clear_delta();
        let change = {
            let mut txn = self.doc.transact_mut();
            self.text.apply_delta(&mut txn, to_yrs_delta(&ops));
            let changed = !txn.insert_set().is_empty() || !txn.delete_set().is_empty();
            changed.then(|| change_of(&txn))
        };
        Ok(match change {
            Some(change) => self.changed(change),
            None => Applied::Unchanged,
        })
    }

    fn changed(&mut self, change: Change) -> Applied {
        self.version += 1;
        let delta = self.take_delta();
        self.remember(delta.clone());
        Applied::Changed {
            update: change.update,
            delta,
        }
    }

    /// Applies an update from storage (no size limit, no version change). Stored rows
    /// pass the same gate as clients' updates: storage is only as trustworthy as what
    /// was written to it.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), DocError> {
        let checked = gate::check_update(bytes, &self.gate_state()).map_err(DocError::Refused)?;
        let update = catch_unwind(|| Update::decode_v1(checked.bytes()))
            .map_err(|_| DocError::MalformedUpdate)?
            .map_err(|_| DocError::MalformedUpdate)?;
        catch_unwind(AssertUnwindSafe(|| {
            self.doc.transact_mut().apply_update(update)
        }))
        .map_err(|_| DocError::Poisoned)?
        .map_err(|_| DocError::MalformedUpdate)?;
        self.size_estimate += bytes.len();
        self.clear_delta();
        Ok(())
    }

    /// The encoded state vector (sync step 1).
    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// What a peer with `state_vector` lacks (sync step 2).
    pub fn diff_since(&self, state_vector: &[u8]) -> Result<Vec<u8>, DocError> {
        let checked = gate::check_state_vector(state_vector).map_err(refused)?;
        let sv = catch_unwind(|| StateVector::decode_v1(checked.bytes()))
            .map_err(|_| DocError::MalformedStateVector)?
            .map_err(|_| DocError::MalformedStateVector)?;
        Ok(self.doc.transact().encode_state_as_update_v1(&sv))
    }

    /// The whole doc as one update.
    pub fn encode_full(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// True while yrs holds updates whose dependencies never arrived.
    pub fn has_pending(&self) -> bool {
        self.doc.transact().has_missing_updates()
    }

    /// The plain text, as saved for the main app. yrs builds it from the strings it
    /// holds; should those ever be corrupt (the failure class of issue 13), corrupt
    /// text is reported and never saved: invalid sequences become U+FFFD.
    pub fn text(&self) -> String {
        self.checked_text().unwrap_or_else(|bytes| {
            metrics::counter!("diary_corrupt_text_total").increment(1);
            tracing::error!("yrs produced text that is not UTF-8; saving it repaired");
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    /// The plain text if its bytes are UTF-8, else the bytes.
    pub fn checked_text(&self) -> Result<String, Vec<u8>> {
        let text = self.text.get_string(&self.doc.transact());
        match std::str::from_utf8(text.as_bytes()) {
            Ok(_) => Ok(text),
            Err(_) => Err(text.into_bytes()),
        }
    }

    /// A position that moves with the text (clamped to its end).
    pub fn anchor(&self, index: u32) -> Option<StickyIndex> {
        let txn = self.doc.transact();
        let index = index.min(self.text.len(&txn));
        self.text.sticky_index(&txn, index, Assoc::After)
    }

    /// Where an anchored position is now.
    pub fn resolve(&self, anchor: &StickyIndex) -> Option<u32> {
        anchor.get_offset(&self.doc.transact()).map(|o| o.index)
    }

    /// The whole text with its formatting, as a Quill delta.
    pub fn delta(&self) -> QuillDelta {
        delta::from_diff(self.text.diff(&self.doc.transact(), YChange::identity))
    }

    fn encoded_len(&self) -> usize {
        self.encode_full().len()
    }

    fn clear_delta(&self) {
        self.last_delta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn take_delta(&self) -> QuillDelta {
        let parts = std::mem::take(&mut *self.last_delta.lock().unwrap_or_else(|p| p.into_inner()));
        // One transaction produces at most one event on the text.
        parts.into_iter().next().unwrap_or_default()
    }
}

/// Counts and logs a refusal by the gate (hostile or broken clients show up here).
pub(super) fn refused(reason: GateError) -> DocError {
    metrics::counter!("diary_yjs_refused_total").increment(1);
    tracing::warn!(%reason, "Yjs input refused by the gate");
    DocError::Refused(reason)
}

/// What one transaction changed.
struct Change {
    update: Vec<u8>,
}

fn change_of(txn: &TransactionMut) -> Change {
    Change {
        update: txn.encode_update_v1(),
    }
}

/// Refuses a delta that does not fit a text of `len` UTF-16 units: retains or deletes
/// past the end, empty inserts, inserts that are neither text nor an embed object.
/// A zero-length retain or delete is a no-op, as quill-delta treats it: hand-built
/// deltas like `[{retain: i}, {insert: c}]` produce one at `i = 0`.
fn check_fits(ops: &[QuillOp], len: u32) -> Result<(), DocError> {
    let bad = |m: &str| Err(DocError::BadDelta(m.to_string()));
    let mut cursor: u64 = 0;
    for op in ops {
        match op {
            QuillOp::Insert { insert, .. } => match insert {
                serde_json::Value::String(s) if !s.is_empty() => {}
                serde_json::Value::Object(o) if !o.is_empty() => {}
                _ => return bad("insert must be a non-empty string or an embed object"),
            },
            QuillOp::Retain { retain: n, .. } | QuillOp::Delete { delete: n } => {
                cursor += u64::from(*n);
                if cursor > u64::from(len) {
                    return bad("retain or delete goes past the end of the text");
                }
            }
        }
    }
    Ok(())
}

fn to_yrs_delta(ops: &[QuillOp]) -> Vec<Delta<Any>> {
    ops.iter()
        .map(|op| match op {
            QuillOp::Insert { insert, attributes } => Delta::Inserted(
                delta::json_to_any(insert),
                attributes
                    .as_ref()
                    .map(|a| Box::new(delta::json_to_attrs(a))),
            ),
            QuillOp::Delete { delete } => Delta::Deleted(*delete),
            QuillOp::Retain { retain, attributes } => Delta::Retain(
                *retain,
                attributes
                    .as_ref()
                    .map(|a| Box::new(delta::json_to_attrs(a))),
            ),
        })
        .collect()
}

fn is_zero_length(op: &QuillOp) -> bool {
    matches!(
        op,
        QuillOp::Retain { retain: 0, .. } | QuillOp::Delete { delete: 0 }
    )
}

impl Default for EntryDoc {
    fn default() -> Self {
        Self::new()
    }
}

mod restore;
#[cfg(test)]
mod tests;

pub use restore::StoredRow;
