//! The gate in front of yrs: every Yjs update, state vector and awareness update that
//! comes from outside (a client, another node, a stored row) is decoded and checked by
//! this module before yrs sees it. yrs 0.28 trusts its input: a malformed update can
//! corrupt its memory, overflow its stack or make it allocate without bound (see
//! docs/yrs-upstream.md), and `catch_unwind` catches none of that.
//!
//! The rules are a whitelist of what the diary's editors (Yjs, y-socket.io and
//! Quill bindings editing one `Y.Text`) produce:
//!
//! - **Well formed and bounded.** Every count and length fits in the input still
//!   unread (nothing is allocated on a length's word); integers fit their type
//!   (client ids in 2^53, clocks in 2^32, no wrapping); strings are UTF-8; nothing
//!   follows the delete set.
//! - **Each client id at most once**, in the structs and again in the delete set.
//!   (yrs merges two blocks of one client into one list with clocks that overlap:
//!   the first crasher of issue 13.)
//! - **The diary's schema.** The only root is the `Y.Text` named `content`; an item
//!   without neighbours names it, never a nested type's id, and never a map key.
//!   Content is one of: string, format attribute (key and JSON value), embed (JSON
//!   value), deleted (a length), and GC ranges. Types, sub-docs, binary, `Any`
//!   values (which only arrays and maps hold), move ranges and skips are refused.
//!   Lengths are positive and clocks never overflow.
//! - **JSON nests at most [`json::MAX_JSON_DEPTH`] deep**, counted by a loop, never
//!   by recursion (the second crasher nested 10,000 arrays).
//! - **Nothing left pending.** yrs keeps back what it cannot integrate yet; the
//!   server would then have to store updates it has not applied. Refused instead: a
//!   struct starting past the clock the doc (or the update itself) reaches for its
//!   client, a struct naming a neighbour that neither holds, dependency cycles, and
//!   deletions of clocks the doc will not hold. A client that sends one has missed
//!   something and recovers by syncing.
//!
//! Awareness updates: at most [`awareness::MAX_AWARENESS_CLIENTS`] clients, each once,
//! states of at most [`awareness::MAX_AWARENESS_STATE_BYTES`] that are shallow JSON.
//! State vectors: each client once, integers in range.
//!
//! Passing the gate is shown by a [`CheckedUpdate`], which only this module can make
//! and which is the only thing `EntryDoc` integrates.

mod awareness;
mod json;
mod lib0;
mod state_vector;
mod update;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;

pub use json::MAX_JSON_DEPTH;

/// The name of the diary's only root type.
pub const ROOT_NAME: &str = "content";

/// Why the gate refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("input ends early")]
    Truncated,
    #[error("a number is out of range")]
    NumberTooLarge,
    #[error("a count is larger than the input")]
    CountTooLarge,
    #[error("a string is not UTF-8")]
    InvalidUtf8,
    #[error("bytes follow the end")]
    TrailingBytes,
    #[error("a client id appears twice")]
    DuplicateClient,
    #[error("a client has no structs")]
    EmptyClient,
    #[error("a struct has length zero")]
    EmptyStruct,
    #[error("a clock overflows")]
    ClockOverflow,
    #[error("skip structs are not accepted")]
    Skip,
    #[error("map keys are not part of the document")]
    ParentSub,
    #[error("nested types are not part of the document")]
    NestedParent,
    #[error("the only root type is `content`")]
    UnknownRoot,
    #[error("content kind {0} is not accepted")]
    ContentNotAllowed(u8),
    #[error("bad format attribute name")]
    BadFormatKey,
    #[error("a JSON value nests too deep")]
    TooDeep,
    #[error("a JSON value is malformed")]
    BadJson,
    #[error("an awareness state is too large")]
    TooLarge,
    #[error("the update starts past what the document holds; sync first")]
    Gap,
    #[error("the update depends on items the document lacks; sync first")]
    MissingDependency,
    #[error("the update deletes items the document lacks; sync first")]
    DeletesUnknown,
}

impl GateError {
    /// True when the input is well formed but the doc lacks what it builds on: the
    /// sender (or a stored row written before the gate) is ahead of this doc.
    pub fn is_missing_dependency(&self) -> bool {
        matches!(
            self,
            GateError::Gap | GateError::MissingDependency | GateError::DeletesUnknown
        )
    }
}

/// What the gate needs to know of the doc an update is for: its state vector.
#[derive(Debug, Default, Clone)]
pub struct DocState {
    clocks: HashMap<u64, u32>,
}

impl DocState {
    pub fn new(clocks: impl IntoIterator<Item = (u64, u32)>) -> Self {
        DocState {
            clocks: clocks.into_iter().collect(),
        }
    }

    fn clock(&self, client: u64) -> u32 {
        self.clocks.get(&client).copied().unwrap_or(0)
    }
}

/// A Yjs v1 update that passed every rule against a doc's state.
#[derive(Debug, Clone, Copy)]
pub struct CheckedUpdate<'a> {
    bytes: &'a [u8],
}

impl<'a> CheckedUpdate<'a> {
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Checks an update against the rules above, for the doc whose state is `doc`.
pub fn check_update<'a>(bytes: &'a [u8], doc: &DocState) -> Result<CheckedUpdate<'a>, GateError> {
    update::check(bytes, doc)?;
    Ok(CheckedUpdate { bytes })
}

/// A sync step 1 state vector that passed the gate.
#[derive(Debug, Clone, Copy)]
pub struct CheckedStateVector<'a> {
    bytes: &'a [u8],
}

impl<'a> CheckedStateVector<'a> {
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

pub fn check_state_vector(bytes: &[u8]) -> Result<CheckedStateVector<'_>, GateError> {
    state_vector::check(bytes)?;
    Ok(CheckedStateVector { bytes })
}

/// An awareness update that passed the gate.
#[derive(Debug, Clone, Copy)]
pub struct CheckedAwareness<'a> {
    bytes: &'a [u8],
}

impl<'a> CheckedAwareness<'a> {
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

pub fn check_awareness(bytes: &[u8]) -> Result<CheckedAwareness<'_>, GateError> {
    awareness::check(bytes)?;
    Ok(CheckedAwareness { bytes })
}
