//! Why the entry core refuses a request. The wire codes are given in one place on
//! each side of the network (`realtime::errors`, `http::error`).

use crate::ids::EntryId;

#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The request names an entry the member has not joined.
    #[error("not a member of the entry")]
    NotMember,
    /// The member may view the entry but not change it.
    #[error("the member may not edit the entry")]
    ReadOnly,
    /// An update, delta, state vector or awareness update the core cannot use. The
    /// message is for the client.
    #[error("{0}")]
    Invalid(String),
    /// The entry's actor could not load it, or is gone.
    #[error("entry {0} is unavailable")]
    Unavailable(EntryId),
}

impl EntryError {
    pub(super) fn invalid(cause: impl std::fmt::Display) -> Self {
        EntryError::Invalid(cause.to_string())
    }
}
