//! Presence storage: friendships as presence reads them, the server-owned
//! `ws_connections` (one row per user: current presence) and `active_sessions` (one
//! row per socket in an entry room), and the feed of friendship changes.
//!
//! `ws_connections` and `active_sessions` mirror in-memory state for the diary app to
//! read; the server never trusts them across a restart: [`PresenceStore::reset_presence`]
//! and [`PresenceStore::clear_sessions`] run at start-up, before any socket is accepted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::ids::{EntryId, UserId};
use crate::presence::status::PresenceStatus;

/// A friend of some user, and when that friend was last seen (`ws_connections.last_seen`;
/// `None` when they never connected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRow {
    pub user: UserId,
    pub last_seen: Option<DateTime<Utc>>,
}

/// A change to `friends` made by anyone (PostgreSQL `diary_friends` notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendChange {
    /// A row `(user_id, friend_id)` was inserted.
    Added(UserId, UserId),
    /// A row `(user_id, friend_id)` was deleted (the reverse row may still exist).
    Removed(UserId, UserId),
    /// The feed (re)connected: changes made while it was down were not seen, so every
    /// cached friend list must be reloaded.
    Resync,
}

/// An endless stream of [`FriendChange`]s that reconnects by itself.
#[async_trait]
pub trait FriendFeed: Send {
    /// The next change. Waits as long as it takes (through reconnections); cancel by
    /// dropping the future.
    async fn next(&mut self) -> FriendChange;
}

#[async_trait]
pub trait PresenceStore {
    /// Everyone who is a friend of `user` (either row direction), with when they were
    /// last seen.
    async fn friends_last_seen(&self, user: UserId) -> StoreResult<Vec<FriendRow>>;

    /// Whether a row `(a, b)` or `(b, a)` exists.
    async fn are_friends(&self, a: UserId, b: UserId) -> StoreResult<bool>;

    /// `ws_connections`: the user is online through `socket_id` with `status` (upsert).
    async fn record_online(
        &self,
        user: UserId,
        socket_id: &str,
        status: PresenceStatus,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// `ws_connections`: an online user chose another status.
    async fn record_status(
        &self,
        user: UserId,
        status: PresenceStatus,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// `ws_connections`: these users are offline, last seen at `last_seen` (upsert;
    /// the socket id is cleared).
    async fn record_offline(&self, users: &[UserId], last_seen: DateTime<Utc>) -> StoreResult<()>;

    /// `ws_connections`: marks every row still online as offline (start-up: rows a
    /// crashed process left behind). Returns how many rows changed.
    async fn reset_presence(&self) -> StoreResult<u64>;

    /// `active_sessions`: the socket `socket_id` of `user` is in the room of `entry`.
    /// Inserts the row, or refreshes its `last_seen` if the socket was already there.
    /// For the entry-room code: call on join (calling again on activity is harmless).
    async fn session_joined(
        &self,
        entry: EntryId,
        user: UserId,
        socket_id: &str,
    ) -> StoreResult<()>;

    /// `active_sessions`: the socket left the room of `entry` (explicit leave).
    async fn session_left(&self, socket_id: &str, entry: EntryId) -> StoreResult<()>;

    /// `active_sessions`: the socket disconnected; removes all its rows. Presence calls
    /// this for every socket that leaves, so entry-room code need not.
    async fn sessions_left_socket(&self, socket_id: &str) -> StoreResult<()>;

    /// `active_sessions`: refreshes `last_seen` of the rows of these live sockets
    /// (presence's sweep does this for every socket of this process before it sweeps).
    async fn touch_sessions(&self, socket_ids: &[String]) -> StoreResult<()>;

    /// `active_sessions`: deletes rows not refreshed since `cutoff` (their socket or
    /// process is gone). Returns how many.
    async fn sweep_sessions(&self, cutoff: DateTime<Utc>) -> StoreResult<u64>;

    /// `active_sessions`: deletes every row (start-up: no socket survives a restart).
    async fn clear_sessions(&self) -> StoreResult<u64>;

    /// Live friendship changes, when the database can announce them (PostgreSQL);
    /// `None` otherwise (SQLite: changes are seen on each user's next connect).
    fn friend_feed(&self) -> Option<Box<dyn FriendFeed>>;
}

/// Parses a `diary_friends` notification payload: `insert|delete:<user_id>:<friend_id>`.
pub(crate) fn parse_friend_change(payload: &str) -> Option<FriendChange> {
    let mut parts = payload.split(':');
    let (op, a, b) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let a = UserId(uuid::Uuid::parse_str(a).ok()?);
    let b = UserId(uuid::Uuid::parse_str(b).ok()?);
    match op {
        "insert" => Some(FriendChange::Added(a, b)),
        "delete" => Some(FriendChange::Removed(a, b)),
        _ => None,
    }
}

/// Exercises a [`PresenceStore`] implementation; shared by both backends' tests.
#[cfg(test)]
pub(crate) async fn exercise(store: &dyn super::Store) {
    use super::NewUser;

    let [a, b, c] = [(); 3].map(|_| UserId::new_random());
    for (id, name) in [(a, "a"), (b, "b"), (c, "c")] {
        let username = format!("{name}-{id}");
        let user = NewUser {
            id,
            username,
            display_name: None,
        };
        store.upsert_user(&user).await.unwrap();
    }
    store.add_friendship(b, a).await.unwrap();
    assert!(store.are_friends(a, b).await.unwrap());
    assert!(!store.are_friends(a, c).await.unwrap());
    assert_eq!(
        store.friends_last_seen(a).await.unwrap(),
        vec![FriendRow {
            user: b,
            last_seen: None
        }]
    );

    let t0 = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05.678Z")
        .unwrap()
        .with_timezone(&Utc);
    store
        .record_online(b, "sid-b", PresenceStatus::Online, t0)
        .await
        .unwrap();
    store
        .record_status(b, PresenceStatus::Away, t0)
        .await
        .unwrap();
    let rows = store.friends_last_seen(a).await.unwrap();
    assert_eq!(rows[0].last_seen, Some(t0));
    // Upsert of known and unknown users alike.
    store.record_offline(&[b, c], t0).await.unwrap();
    store
        .record_online(b, "sid-b2", PresenceStatus::Online, t0)
        .await
        .unwrap();
    assert_eq!(store.reset_presence().await.unwrap(), 1);
    assert_eq!(store.reset_presence().await.unwrap(), 0);

    let entry = crate::ids::EntryId::new_random();
    store.session_joined(entry, a, "s1").await.unwrap();
    store.session_joined(entry, a, "s1").await.unwrap(); // refresh, not a second row
    store.session_joined(entry, b, "s2").await.unwrap();
    store
        .session_joined(crate::ids::EntryId::new_random(), b, "s2")
        .await
        .unwrap();
    store.session_left("s1", entry).await.unwrap();
    store.sessions_left_socket("s2").await.unwrap();
    store.session_joined(entry, a, "s3").await.unwrap();
    store.session_joined(entry, c, "s4").await.unwrap();
    store.touch_sessions(&["s3".to_string()]).await.unwrap();
    let future = Utc::now() + chrono::Duration::hours(1);
    let past = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(store.sweep_sessions(past).await.unwrap(), 0);
    assert_eq!(store.sweep_sessions(future).await.unwrap(), 2);
    store.session_joined(entry, a, "s5").await.unwrap();
    assert_eq!(store.clear_sessions().await.unwrap(), 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friend_notifications_are_parsed() {
        let (a, b) = (UserId::new_random(), UserId::new_random());
        assert_eq!(
            parse_friend_change(&format!("insert:{a}:{b}")),
            Some(FriendChange::Added(a, b))
        );
        assert_eq!(
            parse_friend_change(&format!("delete:{a}:{b}")),
            Some(FriendChange::Removed(a, b))
        );
        assert_eq!(parse_friend_change(&format!("update:{a}:{b}")), None);
        assert_eq!(parse_friend_change(&format!("insert:{a}")), None);
        assert_eq!(parse_friend_change("insert:x:y"), None);
        assert_eq!(parse_friend_change(&format!("insert:{a}:{b}:c")), None);
    }
}
