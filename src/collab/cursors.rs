//! Live cursors of one entry, one per user, anchored to the text with yrs sticky
//! indexes: after other users' edits they still point at the same characters.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use yrs::StickyIndex;

use super::doc::EntryDoc;
use crate::ids::UserId;

/// `position: {index, length}` as clients send it (UTF-16 units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub index: u32,
    #[serde(default)]
    pub length: u32,
}

/// `selection: {start, end}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub start: u32,
    pub end: u32,
}

/// A cursor as reported in `state_response.cursors`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CursorView {
    pub user_id: UserId,
    pub position: Position,
    pub selection: Selection,
}

struct Anchored {
    position_start: Option<StickyIndex>,
    position_end: Option<StickyIndex>,
    selection_start: Option<StickyIndex>,
    selection_end: Option<StickyIndex>,
}

#[derive(Default)]
pub struct Cursors {
    by_user: HashMap<UserId, Anchored>,
}

impl Cursors {
    /// Records where `user`'s cursor is now (indices past the end are clamped).
    pub fn set(&mut self, doc: &EntryDoc, user: UserId, position: Position, selection: Selection) {
        let end = position.index.saturating_add(position.length);
        self.by_user.insert(
            user,
            Anchored {
                position_start: doc.anchor(position.index),
                position_end: doc.anchor(end),
                selection_start: doc.anchor(selection.start),
                selection_end: doc.anchor(selection.end),
            },
        );
    }

    /// Forgets the user's cursor; true when there was one.
    pub fn remove(&mut self, user: UserId) -> bool {
        self.by_user.remove(&user).is_some()
    }

    /// Every cursor where it points now.
    pub fn current(&self, doc: &EntryDoc) -> Vec<CursorView> {
        let at = |anchor: &Option<StickyIndex>| {
            anchor.as_ref().and_then(|a| doc.resolve(a)).unwrap_or(0)
        };
        let mut views: Vec<CursorView> = self
            .by_user
            .iter()
            .map(|(user, a)| {
                let start = at(&a.position_start);
                CursorView {
                    user_id: *user,
                    position: Position {
                        index: start,
                        length: at(&a.position_end).saturating_sub(start),
                    },
                    selection: Selection {
                        start: at(&a.selection_start),
                        end: at(&a.selection_end),
                    },
                }
            })
            .collect();
        views.sort_by_key(|v| v.user_id);
        views
    }
}
