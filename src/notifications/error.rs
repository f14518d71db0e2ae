//! The inbox's errors. They become wire codes in `realtime` (and REST statuses in
//! `http`), never here.

use crate::ids::IdError;
use crate::store::StoreError;

/// Client input the inbox refuses (a range, a length, a malformed id). The message
/// is for the client: it says which field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<IdError> for ParseError {
    fn from(e: IdError) -> Self {
        Self(e.to_string())
    }
}

/// Why an inbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// The notification is not the user's, or does not exist: the two are not told
    /// apart, so that ids cannot be probed.
    #[error("notification not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode a notification event: {0}")]
    Encode(#[from] serde_json::Error),
}
