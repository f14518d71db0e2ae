//! Each lower layer's errors become wire errors here, in one place: the code clients
//! switch on (PROTOCOL.md section 3) and the message they may show. Socket.IO acks and
//! `error` events use them as they are; the REST routes add a status to the same code
//! (`crate::http::ApiError`).
//!
//! Server-side causes (`SERVER_ERROR`) are logged by [`AppError::internal`] and never
//! reach the client.

use crate::collab::error::EntryError;
use crate::error::AppError;
use crate::history::HistoryError;
use crate::ids::IdError;
use crate::notifications::{NotificationError, ParseError};
use crate::presence::PresenceError;
use crate::store::StoreError;

impl From<IdError> for AppError {
    fn from(e: IdError) -> Self {
        AppError::validation(e.to_string())
    }
}

impl From<ParseError> for AppError {
    fn from(e: ParseError) -> Self {
        AppError::validation(e.to_string())
    }
}

impl From<NotificationError> for AppError {
    fn from(e: NotificationError) -> Self {
        match e {
            NotificationError::NotFound => AppError::access_denied(),
            NotificationError::Store(e) => AppError::internal(e),
            NotificationError::Encode(e) => AppError::internal(e),
        }
    }
}

impl From<PresenceError> for AppError {
    fn from(e: PresenceError) -> Self {
        AppError::internal(e)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::internal(e)
    }
}

impl From<HistoryError> for AppError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::BadPage(message) => AppError::validation(message),
            HistoryError::UnknownCheckpoint => AppError::validation(e.to_string()),
            HistoryError::Corrupt(_) => AppError::internal(e),
            HistoryError::Store(e) => AppError::internal(e),
        }
    }
}

impl From<EntryError> for AppError {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::NotMember | EntryError::ReadOnly => AppError::access_denied(),
            EntryError::Invalid(message) => AppError::validation(message),
            EntryError::Unavailable(_) => AppError::internal(e),
        }
    }
}
