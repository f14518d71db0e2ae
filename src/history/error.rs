use crate::store::StoreError;

/// Why a history request failed. Mapped to wire codes in `realtime::errors` (and to
/// HTTP statuses in `http::error`).
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `before` or `limit` is ill-typed or out of range, or `before` is unknown.
    #[error("{0}")]
    BadPage(String),
    /// No such checkpoint of this entry.
    #[error("unknown checkpoint")]
    UnknownCheckpoint,
    /// A stored checkpoint's content does not parse.
    #[error("stored checkpoint is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
