//! The diary app's own data (users, entries, collaborators, friends): the server reads
//! it to authorize and to name people. The writes exist for `seed-demo` and tests.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreResult;
use crate::ids::{EntryId, UserId};

/// What a user may do with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryRole {
    Owner,
    Editor,
    Viewer,
}

impl EntryRole {
    pub fn can_edit(self) -> bool {
        matches!(self, EntryRole::Owner | EntryRole::Editor)
    }

    pub(crate) fn from_collaborator_role(role: &str) -> Option<EntryRole> {
        match role {
            "editor" => Some(EntryRole::Editor),
            "viewer" => Some(EntryRole::Viewer),
            _ => None,
        }
    }
}

/// Who may view an entry beyond its owner and collaborators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Private,
    Friends,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Friends => "friends",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub username: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewEntry {
    pub id: EntryId,
    pub owner: UserId,
    pub title: String,
    pub visibility: Visibility,
}

#[async_trait]
pub trait DirectoryStore {
    /// Answers when the database does (for `/ready`).
    async fn ping(&self) -> StoreResult<()>;

    /// Closes the connections once nothing will write again (at shutdown), so an
    /// embedded database is left as one whole file.
    async fn close(&self) {}

    async fn upsert_user(&self, user: &NewUser) -> StoreResult<()>;
    async fn upsert_entry(&self, entry: &NewEntry) -> StoreResult<()>;
    async fn set_collaborator(
        &self,
        entry: EntryId,
        user: UserId,
        role: EntryRole,
    ) -> StoreResult<()>;
    async fn add_friendship(&self, a: UserId, b: UserId) -> StoreResult<()>;

    /// Display name (falling back to the username) of each known user among `ids`.
    async fn display_names(&self, ids: &[UserId]) -> StoreResult<HashMap<UserId, String>>;

    /// Everyone who is a friend of `user`, whichever way the row was written.
    async fn friends_of(&self, user: UserId) -> StoreResult<Vec<UserId>>;

    /// The user's role on the entry under PROTOCOL.md section 5, or `None` when they
    /// have none or the entry does not exist (callers must not tell these apart).
    async fn entry_role(&self, entry: EntryId, user: UserId) -> StoreResult<Option<EntryRole>>;

    /// The entry's title (`None` for an unknown entry). Ask only once access is known.
    async fn entry_title(&self, entry: EntryId) -> StoreResult<Option<String>>;
}

/// The access rule of PROTOCOL.md section 5, from the three facts both backends query.
pub(crate) fn resolve_role(
    is_owner: bool,
    collaborator_role: Option<&str>,
    friend_of_owner_on_friends_entry: bool,
) -> Option<EntryRole> {
    if is_owner {
        return Some(EntryRole::Owner);
    }
    if let Some(role) = collaborator_role.and_then(EntryRole::from_collaborator_role) {
        return Some(role);
    }
    friend_of_owner_on_friends_entry.then_some(EntryRole::Viewer)
}
