//! Identifier types parsed once at the edge. Holding a `UserId` or `EntryId` means the
//! value was a well-formed UUID; nothing downstream re-checks it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A client-supplied id that is not a UUID. The message names the field
/// (`entryId must be a UUID`) and is meant for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be a UUID")]
pub struct IdError {
    pub field: &'static str,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Parses a client-supplied id.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                Uuid::parse_str(raw)
                    .map($name)
                    .map_err(|_| IdError { field: $label })
            }

            pub fn new_random() -> Self {
                $name(Uuid::new_v4())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A user of the diary app (`users.id`).
    UserId,
    "userId"
);
uuid_id!(
    /// A diary entry (`entries.id`); one collaborative document each.
    EntryId,
    "entryId"
);
uuid_id!(
    /// A row of `notifications`.
    NotificationId,
    "notificationId"
);
uuid_id!(
    /// A checkpoint of an entry's history (`entry_checkpoints.id`).
    CheckpointId,
    "id"
);
