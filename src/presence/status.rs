//! What a user's friends may see of them.

use serde::{Deserialize, Serialize};

/// A user's presence as shown to friends (PROTOCOL.md section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Away,
    Busy,
    Offline,
}

impl PresenceStatus {
    /// The status as stored in `ws_connections.status` and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Online => "online",
            PresenceStatus::Away => "away",
            PresenceStatus::Busy => "busy",
            PresenceStatus::Offline => "offline",
        }
    }
}

/// A status a client may choose for itself. `offline` is not one: a user is offline
/// only when their last socket has been gone for the grace period. Parsing a client's
/// `presence_update` into this type is the whole validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChosenStatus {
    Online,
    Away,
    Busy,
}

impl From<ChosenStatus> for PresenceStatus {
    fn from(status: ChosenStatus) -> Self {
        match status {
            ChosenStatus::Online => PresenceStatus::Online,
            ChosenStatus::Away => PresenceStatus::Away,
            ChosenStatus::Busy => PresenceStatus::Busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_cannot_choose_offline() {
        assert!(serde_json::from_str::<ChosenStatus>("\"away\"").is_ok());
        assert!(serde_json::from_str::<ChosenStatus>("\"offline\"").is_err());
        assert!(serde_json::from_str::<ChosenStatus>("\"AWAY\"").is_err());
        assert_eq!(
            serde_json::to_string(&PresenceStatus::Busy).unwrap(),
            "\"busy\""
        );
    }
}
