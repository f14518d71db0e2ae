use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::PgStore;
use crate::ids::{EntryId, UserId};
use crate::presence::status::PresenceStatus;
use crate::store::presence::{parse_friend_change, FriendChange, FriendFeed, FriendRow};
use crate::store::{PresenceStore, StoreResult};

/// The channel the `friends` trigger notifies (see the migration).
const FRIENDS_CHANNEL: &str = "diary_friends";

#[async_trait]
impl PresenceStore for PgStore {
    async fn friends_last_seen(&self, user: UserId) -> StoreResult<Vec<FriendRow>> {
        let rows: Vec<(Uuid, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT f.id, w.last_seen
               FROM (SELECT friend_id AS id FROM friends WHERE user_id = $1
                     UNION SELECT user_id FROM friends WHERE friend_id = $1) f
               LEFT JOIN ws_connections w ON w.user_id = f.id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, last_seen)| FriendRow {
                user: UserId(id),
                last_seen,
            })
            .collect())
    }

    async fn are_friends(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        let (found,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM friends
                             WHERE (user_id = $1 AND friend_id = $2)
                                OR (user_id = $2 AND friend_id = $1))",
        )
        .bind(a.0)
        .bind(b.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(found)
    }

    async fn record_online(
        &self,
        user: UserId,
        socket_id: &str,
        status: PresenceStatus,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO ws_connections (user_id, socket_id, is_online, status, last_seen)
             VALUES ($1, $2, true, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET socket_id = EXCLUDED.socket_id,
                 is_online = true, status = EXCLUDED.status, last_seen = EXCLUDED.last_seen",
        )
        .bind(user.0)
        .bind(socket_id)
        .bind(status.as_str())
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_status(
        &self,
        user: UserId,
        status: PresenceStatus,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE ws_connections SET status = $2, last_seen = $3 WHERE user_id = $1")
            .bind(user.0)
            .bind(status.as_str())
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_offline(&self, users: &[UserId], last_seen: DateTime<Utc>) -> StoreResult<()> {
        if users.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        sqlx::query(
            "INSERT INTO ws_connections (user_id, socket_id, is_online, status, last_seen)
             SELECT id, NULL, false, 'offline', $2 FROM unnest($1::uuid[]) AS id
             ON CONFLICT (user_id) DO UPDATE SET socket_id = NULL, is_online = false,
                 status = 'offline', last_seen = EXCLUDED.last_seen",
        )
        .bind(&ids)
        .bind(last_seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn reset_presence(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE ws_connections SET is_online = false, status = 'offline', socket_id = NULL
              WHERE is_online",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn session_joined(
        &self,
        entry: EntryId,
        user: UserId,
        socket_id: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO active_sessions (user_id, entry_id, socket_id) VALUES ($1, $2, $3)
             ON CONFLICT (socket_id, entry_id) DO UPDATE SET last_seen = now()",
        )
        .bind(user.0)
        .bind(entry.0)
        .bind(socket_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_left(&self, socket_id: &str, entry: EntryId) -> StoreResult<()> {
        sqlx::query("DELETE FROM active_sessions WHERE socket_id = $1 AND entry_id = $2")
            .bind(socket_id)
            .bind(entry.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sessions_left_socket(&self, socket_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM active_sessions WHERE socket_id = $1")
            .bind(socket_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn touch_sessions(&self, socket_ids: &[String]) -> StoreResult<()> {
        if socket_ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE active_sessions SET last_seen = now() WHERE socket_id = ANY($1)")
            .bind(socket_ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sweep_sessions(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM active_sessions WHERE last_seen < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn clear_sessions(&self) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM active_sessions")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    fn friend_feed(&self) -> Option<Box<dyn FriendFeed>> {
        Some(Box::new(PgFriendFeed {
            url: self.url.clone(),
            listener: None,
            failures: 0,
        }))
    }
}

/// `LISTEN diary_friends` on a dedicated connection (outside the pool), reconnecting
/// with backoff. Every (re)connection yields [`FriendChange::Resync`], since whatever
/// was notified while it was down is lost.
struct PgFriendFeed {
    url: String,
    listener: Option<PgListener>,
    failures: u32,
}

impl PgFriendFeed {
    async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect(&self.url).await?;
        listener.listen(FRIENDS_CHANNEL).await?;
        Ok(listener)
    }

    /// Waits before the next connection attempt: 250 ms, doubling with each failure
    /// since the last notification received, at most 10 s.
    async fn pause(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let exp = (self.failures - 1).min(6);
        let wait = Duration::from_millis(250u64 << exp).min(Duration::from_secs(10));
        tokio::time::sleep(wait).await;
    }
}

#[async_trait]
impl FriendFeed for PgFriendFeed {
    async fn next(&mut self) -> FriendChange {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                match self.connect().await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        return FriendChange::Resync;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for friendship changes");
                        self.pause().await;
                        continue;
                    }
                }
            };
            match listener.try_recv().await {
                Ok(Some(notification)) => match parse_friend_change(notification.payload()) {
                    Some(change) => {
                        self.failures = 0;
                        return change;
                    }
                    None => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring malformed diary_friends notification"
                    ),
                },
                // The connection dropped and was re-established (LISTEN included).
                Ok(None) => {
                    tracing::warn!("friendship listener reconnected");
                    return FriendChange::Resync;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "friendship listener failed; reconnecting");
                    self.listener = None;
                    self.pause().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DirectoryStore;

    /// Runs against a throw-away database on `PG_ADMIN_URL` (default: the local server);
    /// skipped when no PostgreSQL answers.
    #[tokio::test]
    async fn presence_queries_and_the_friend_feed_work() {
        use sqlx::Connection;
        let admin_url = std::env::var("PG_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await else {
            eprintln!("no PostgreSQL at {admin_url}; skipped");
            return;
        };
        let name = format!("diary_unit_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("bad PG_ADMIN_URL"),
        };
        let result = async {
            let store = PgStore::connect(&url).await.unwrap();
            crate::store::presence::exercise(&store).await;

            let mut feed = store.friend_feed().unwrap();
            assert_eq!(feed.next().await, FriendChange::Resync);
            let (a, b) = (UserId::new_random(), UserId::new_random());
            for id in [a, b] {
                sqlx::query("INSERT INTO users (id, username) VALUES ($1, $2)")
                    .bind(id.0)
                    .bind(id.to_string())
                    .execute(store.pool())
                    .await
                    .unwrap();
            }
            store.add_friendship(a, b).await.unwrap();
            assert_eq!(feed.next().await, FriendChange::Added(a, b));
            sqlx::query("DELETE FROM friends WHERE user_id = $1")
                .bind(a.0)
                .execute(store.pool())
                .await
                .unwrap();
            assert_eq!(feed.next().await, FriendChange::Removed(a, b));
            store.pool().close().await;
        };
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            tokio::time::timeout(Duration::from_secs(30), result),
        ))
        .await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .unwrap();
        match outcome {
            Ok(finished) => finished.expect("timed out"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
