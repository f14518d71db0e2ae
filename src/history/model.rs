//! What clients send and get: paging parsed once from either transport, and the
//! checkpoint as PROTOCOL.md 5.5 shows it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::HistoryError;
use crate::collab::delta::{QuillDelta, QuillOp};
use crate::ids::{CheckpointId, EntryId, UserId};
use crate::store::history::HistoryPage;

/// Checkpoints per page unless the client asks otherwise.
pub const DEFAULT_LIMIT: u32 = 20;
/// Most checkpoints per page.
pub const MAX_LIMIT: u32 = 100;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest(pub HistoryPage);

impl PageRequest {
    /// From an `entry_history` payload's `before` and `limit` (absent or `null`:
    /// the defaults).
    pub fn from_json(before: Option<&Value>, limit: Option<&Value>) -> Result<Self, HistoryError> {
        let before = match before {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => Some(raw.as_str()),
            Some(_) => return Err(bad_before()),
        };
        let limit = match limit {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.as_u64().ok_or_else(bad_limit)?),
        };
        Self::parse(before, limit)
    }

    /// From the REST query string (`?before=&limit=`).
    pub fn from_query(before: Option<&str>, limit: Option<&str>) -> Result<Self, HistoryError> {
        let limit = match limit {
            None => None,
            Some(raw) => Some(raw.trim().parse::<u64>().map_err(|_| bad_limit())?),
        };
        Self::parse(before, limit)
    }

    fn parse(before: Option<&str>, limit: Option<u64>) -> Result<Self, HistoryError> {
        let before = before
            .map(|raw| CheckpointId::parse(raw.trim()).map_err(|_| bad_before()))
            .transpose()?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(bad_limit)?,
        };
        Ok(PageRequest(HistoryPage { before, limit }))
    }
}

fn bad_before() -> HistoryError {
    HistoryError::BadPage("before must be the id of one of the entry's checkpoints".into())
}

fn bad_limit() -> HistoryError {
    HistoryError::BadPage(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
}

/// `{userId, displayName}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorView {
    pub user_id: UserId,
    pub display_name: String,
}

/// `{id, at, version, authors, chars}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointView {
    pub id: CheckpointId,
    pub at: DateTime<Utc>,
    pub version: i64,
    pub authors: Vec<AuthorView>,
    pub chars: i64,
}

/// `entry_checkpoint`'s answer: `{entryId, checkpoint, content, delta}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointContent {
    pub entry_id: EntryId,
    pub checkpoint: CheckpointView,
    pub content: String,
    pub delta: QuillDelta,
}

/// The plain text of a whole-document delta (embeds carry no text).
pub fn text_of(delta: &QuillDelta) -> String {
    delta
        .ops
        .iter()
        .filter_map(|op| match op {
            QuillOp::Insert {
                insert: Value::String(text),
                ..
            } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paging_is_parsed_strictly() {
        let id = CheckpointId::new_random();
        let ok = PageRequest::from_json(Some(&json!(id.to_string())), Some(&json!(5))).unwrap();
        assert_eq!(ok.0.before, Some(id));
        assert_eq!(ok.0.limit, 5);
        let defaults = PageRequest::from_json(None, Some(&Value::Null)).unwrap();
        assert_eq!(defaults.0.limit, DEFAULT_LIMIT);
        assert_eq!(defaults.0.before, None);
        for (before, limit) in [
            (json!(1), json!(5)),
            (json!("not-an-id"), json!(5)),
            (Value::Null, json!(0)),
            (Value::Null, json!(101)),
            (Value::Null, json!(2.5)),
            (Value::Null, json!("5")),
            (Value::Null, json!(-1)),
        ] {
            assert!(
                PageRequest::from_json(Some(&before), Some(&limit)).is_err(),
                "{before} {limit}"
            );
        }
        assert!(PageRequest::from_query(None, Some("x")).is_err());
        assert!(PageRequest::from_query(None, Some("0")).is_err());
        assert_eq!(
            PageRequest::from_query(None, Some("100")).unwrap().0.limit,
            100
        );
    }
}
