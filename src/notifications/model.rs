//! The inbox's domain types, and the parsing that turns client input into them.
//!
//! Wire requests (`ListRequest`, `CreateRequest`, `PreferencesUpdate`) are what serde
//! can read; `NotificationQuery`, `NewNotification` and `Preferences` are what the rest
//! of the server works with. Holding one means every range and length was checked, so
//! the store and the service never re-check. Out-of-range values are refused with
//! `VALIDATION_ERROR`, never clamped (PROTOCOL.md section 6).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ParseError;
use crate::ids::{NotificationId, UserId};

/// A notification as clients see it: keys are the seed's column names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: NotificationId,
    pub user_id: UserId,
    /// The `type` column: free text written by whichever application created the row.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    pub data: Option<Value>,
    pub is_read: bool,
    pub is_archived: bool,
    pub priority: Priority,
    /// Serialized as ISO 8601 (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
}

/// How urgent a notification is; the column's CHECK constraint allows exactly these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// Reads the stored column; `None` for anything the CHECK constraint would refuse.
    pub fn from_column(raw: &str) -> Option<Self> {
        match raw {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            "urgent" => Some(Priority::Urgent),
            _ => None,
        }
    }
}

/// A notification type named by a client (filter, preference, REST body): non-blank
/// and at most 50 characters, the width of the `type` column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NotificationType(String);

/// Width of the `type` column (`VARCHAR(50)`).
pub const MAX_TYPE_CHARS: usize = 50;

impl NotificationType {
    pub fn parse(raw: String) -> Result<Self, ParseError> {
        if raw.trim().is_empty() {
            return Err(ParseError::new("type must not be empty"));
        }
        if raw.chars().count() > MAX_TYPE_CHARS {
            return Err(ParseError::new(format!(
                "type must be at most {MAX_TYPE_CHARS} characters"
            )));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The new/changed flags of one notification, as `notification:updated` carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NotificationState {
    pub id: NotificationId,
    pub is_read: bool,
    pub is_archived: bool,
}

/// A stored notification on its way to its user's sockets, with whether the user has
/// muted its type (muted rows are kept and listed, but not pushed).
#[derive(Debug, Clone)]
pub struct Deliverable {
    pub notification: Notification,
    pub muted: bool,
}

// ---- listing ----

/// `notification:list_request` as sent: every field optional; `null` means "default".
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListRequest {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub filter: Option<ListFilterRequest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListFilterRequest {
    pub unread: Option<bool>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub archived: Option<bool>,
    pub priority: Option<Priority>,
}

/// A checked listing request: `limit` in 1..=100, `offset` >= 0.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationQuery {
    pub limit: i64,
    pub offset: i64,
    pub filter: NotificationFilter,
}

/// Which of the user's notifications a listing covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationFilter {
    /// `Some(true)`: only unread; `Some(false)`: only read; `None`: both.
    pub unread: Option<bool>,
    pub kind: Option<NotificationType>,
    /// `false` (the default): the inbox, archived rows excluded; `true`: only archived.
    pub archived: bool,
    pub priority: Option<Priority>,
}

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

impl NotificationQuery {
    pub fn parse(req: ListRequest) -> Result<Self, ParseError> {
        let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ParseError::new(format!(
                "limit must be an integer from 1 to {MAX_LIMIT}"
            )));
        }
        let offset = req.offset.unwrap_or(0);
        if offset < 0 {
            return Err(ParseError::new("offset must be a non-negative integer"));
        }
        let filter = req.filter.unwrap_or_default();
        Ok(Self {
            limit,
            offset,
            filter: NotificationFilter {
                unread: filter.unread,
                kind: filter.kind.map(NotificationType::parse).transpose()?,
                archived: filter.archived.unwrap_or(false),
                priority: filter.priority,
            },
        })
    }
}

/// One page of a listing: `total` counts every row matching the filter.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

// ---- creation ----

/// `POST /api/notifications` body as sent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// A checked notification, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub user_id: UserId,
    pub kind: NotificationType,
    pub title: String,
    pub message: String,
    /// `None` for an absent or `null` `data`.
    pub data: Option<Value>,
    pub priority: Priority,
}

pub const MAX_TITLE_CHARS: usize = 1_000;
pub const MAX_MESSAGE_CHARS: usize = 10_000;
pub const MAX_DATA_BYTES: usize = 64 * 1024;

impl NewNotification {
    pub fn parse(req: CreateRequest) -> Result<Self, ParseError> {
        let user_id = UserId::parse(&req.user_id)?;
        let kind = NotificationType::parse(req.kind)?;
        if req.title.trim().is_empty() {
            return Err(ParseError::new("title must not be empty"));
        }
        if req.title.chars().count() > MAX_TITLE_CHARS {
            return Err(ParseError::new(format!(
                "title must be at most {MAX_TITLE_CHARS} characters"
            )));
        }
        if req.message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ParseError::new(format!(
                "message must be at most {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let data = req.data.filter(|d| !d.is_null());
        if let Some(data) = &data {
            let size = serde_json::to_vec(data)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_DATA_BYTES {
                return Err(ParseError::new(format!(
                    "data must be at most {MAX_DATA_BYTES} bytes of JSON"
                )));
            }
        }
        Ok(Self {
            user_id,
            kind,
            title: req.title,
            message: req.message,
            data,
            priority: req.priority.unwrap_or_default(),
        })
    }
}

// ---- preferences ----

/// Per-type switches: `false` mutes a type (stored, listed, not pushed). Types with no
/// row are on.
pub type Preferences = BTreeMap<NotificationType, bool>;

/// `notification:preferences_update` as sent.
#[derive(Debug, Deserialize)]
pub struct PreferencesUpdate {
    pub preferences: BTreeMap<String, bool>,
}

/// Bound on the types one update may name, so one event stays one small transaction.
pub const MAX_PREFERENCES_PER_UPDATE: usize = 100;

impl PreferencesUpdate {
    pub fn parse(self) -> Result<Preferences, ParseError> {
        if self.preferences.len() > MAX_PREFERENCES_PER_UPDATE {
            return Err(ParseError::new(format!(
                "at most {MAX_PREFERENCES_PER_UPDATE} types per update"
            )));
        }
        self.preferences
            .into_iter()
            .map(|(kind, on)| Ok((NotificationType::parse(kind)?, on)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(v: Value) -> Result<NotificationQuery, String> {
        let req: ListRequest = serde_json::from_value(v).map_err(|e| e.to_string())?;
        NotificationQuery::parse(req).map_err(|e| e.to_string())
    }

    #[test]
    fn list_defaults_and_ranges() {
        let q = query(json!({})).unwrap();
        assert_eq!((q.limit, q.offset), (20, 0));
        assert!(!q.filter.archived);
        let q =
            query(json!({"limit": null, "offset": 7, "filter": {"archived": true, "type": "x"}}))
                .unwrap();
        assert_eq!((q.limit, q.offset, q.filter.archived), (20, 7, true));
        assert!(query(json!({"limit": 100})).is_ok());
        for bad in [
            json!({"limit": 0}),
            json!({"limit": -1}),
            json!({"limit": 101}),
            json!({"limit": 1_000_000_000}),
            json!({"limit": 1e9}),
            json!({"limit": 2.5}),
            json!({"limit": "x"}),
            json!({"offset": -1}),
            json!({"filter": {"priority": "critical"}}),
            json!({"filter": {"unread": "yes"}}),
            json!({"filter": {"type": ""}}),
        ] {
            assert!(query(bad.clone()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn create_body_rules() {
        let ok =
            json!({"userId": uuid::Uuid::new_v4(), "type": "comment", "title": "t", "message": ""});
        let parsed = NewNotification::parse(serde_json::from_value(ok.clone()).unwrap()).unwrap();
        assert_eq!(parsed.priority, Priority::Normal);
        assert_eq!(parsed.data, None);
        let mut bad_id = ok.clone();
        bad_id["userId"] = json!("nope");
        assert!(NewNotification::parse(serde_json::from_value(bad_id).unwrap()).is_err());
        let mut long_type = ok.clone();
        long_type["type"] = json!("x".repeat(51));
        assert!(NewNotification::parse(serde_json::from_value(long_type).unwrap()).is_err());
        let mut blank_title = ok;
        blank_title["title"] = json!("  ");
        assert!(NewNotification::parse(serde_json::from_value(blank_title).unwrap()).is_err());
    }
}
