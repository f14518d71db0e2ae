//! Every row committed into `notifications`, whoever inserted it (`POST
//! /api/notifications` or another application writing SQL), as PostgreSQL announces it.
//!
//! A trigger announces each committed row on channel `diary_notifications` with its id.
//! The feed holds a dedicated LISTEN connection (outside the pool) and loads the
//! announced rows in batches.
//!
//! NOTIFY is fire-and-forget: while the connection is down, announcements are lost. So
//! the feed remembers the database time at which its connection was last known alive
//! (it probes every few seconds) and, after reconnecting (LISTEN first), re-reads every
//! row created since then minus [`CATCH_UP_SLACK`]. Rows it already returned in that
//! window are remembered by `(created_at, id)` and skipped, so nothing is missed and
//! nothing is returned twice. The slack covers a writer whose transaction was open for
//! a while before it committed (`created_at` is the transaction's start time); a row
//! whose transaction was open longer than that, or that was inserted with an explicit
//! `created_at` far in the past, while the feed was disconnected, is not caught up.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgNotification};
use sqlx::Executor;
use tokio::time::{interval, sleep, timeout, Interval, MissedTickBehavior};
use uuid::Uuid;

use super::PgStore;
use crate::ids::NotificationId;
use crate::notifications::model::Deliverable;
use crate::store::notifications::NotificationFeed;
use crate::store::{NotificationStore, StoreError, StoreResult};

/// The channel the migration's trigger notifies on.
const CHANNEL: &str = "diary_notifications";

/// How far before the last known-alive moment a catch-up starts re-reading.
const CATCH_UP_SLACK: Duration = Duration::from_secs(120);
/// How often an idle connection is probed (and the known-alive moment advanced).
const PROBE_EVERY: Duration = Duration::from_secs(10);
/// A connection, LISTEN or probe that takes longer than this counts as lost.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff: doubles from the first to the last value.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Announcements loaded with one query.
const BATCH: usize = 500;
/// Rows read per catch-up query.
const CATCH_UP_PAGE: i64 = 1000;

/// A listening connection and what has been returned through it.
pub(super) struct PgNotificationFeed {
    store: PgStore,
    connection: Option<PgListener>,
    /// Set from a reconnection until every row it may have missed was read.
    catching_up: Option<CatchUp>,
    seen: Delivered,
    probes: Interval,
    retry_delay: Duration,
}

/// A catch-up in progress, read one page per call.
struct CatchUp {
    /// The last row read: the next page starts after it.
    after: (DateTime<Utc>, NotificationId),
    /// When the new connection was known alive; recorded once the catch-up is done.
    alive_at: DateTime<Utc>,
    delivered: usize,
}

impl PgNotificationFeed {
    /// Connects and LISTENs, so that every row committed from now on is returned.
    pub(super) async fn listen(store: PgStore) -> StoreResult<Self> {
        let (connection, alive_at) = connect(store.url()).await?;
        Ok(Self {
            store,
            connection: Some(connection),
            catching_up: None,
            seen: Delivered::new(alive_at),
            probes: probes(),
            retry_delay: RETRY_FIRST,
        })
    }

    /// The next page of a catch-up in progress: rows not returned before (possibly none).
    async fn catch_up_page(&mut self, mut catch_up: CatchUp) -> StoreResult<Vec<Deliverable>> {
        let page = self
            .store
            .notifications_created_after(catch_up.after, CATCH_UP_PAGE)
            .await?;
        let more = page.len() as i64 == CATCH_UP_PAGE;
        if let Some(last) = page.last() {
            catch_up.after = (last.notification.created_at, last.notification.id);
        }
        let fresh = self.seen.keep_first_time(page);
        catch_up.delivered += fresh.len();
        if more {
            self.catching_up = Some(catch_up);
        } else {
            self.seen.alive(catch_up.alive_at);
            self.retry_delay = RETRY_FIRST;
            if catch_up.delivered > 0 {
                metrics::counter!("diary_notifications_caught_up_total")
                    .increment(catch_up.delivered as u64);
            }
            tracing::info!(
                caught_up = catch_up.delivered,
                "notification listener reconnected"
            );
        }
        Ok(fresh)
    }

    /// Connects and LISTENs, then starts catching up; waits out the backoff on failure.
    async fn reconnect(&mut self) {
        match connect(self.store.url()).await {
            Ok((connection, alive_at)) => {
                // LISTEN is in place: anything committed from here on is announced, and
                // everything committed before is visible to the catch-up query.
                self.connection = Some(connection);
                self.probes = probes();
                self.catching_up = Some(CatchUp {
                    after: (self.seen.catch_up_from(), NotificationId(Uuid::nil())),
                    alive_at,
                    delivered: 0,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?self.retry_delay, "notification listener cannot reconnect");
                self.backoff().await;
            }
        }
    }

    async fn backoff(&mut self) {
        sleep(self.retry_delay).await;
        self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
    }

    /// Drops the connection; the next call reconnects and catches up.
    fn lost(&mut self) {
        self.connection = None;
        self.catching_up = None;
        metrics::counter!("diary_notification_listener_reconnects_total").increment(1);
    }
}

#[async_trait]
impl NotificationFeed for PgNotificationFeed {
    async fn next(&mut self) -> Vec<Deliverable> {
        loop {
            if let Some(catch_up) = self.catching_up.take() {
                match self.catch_up_page(catch_up).await {
                    Ok(rows) if rows.is_empty() => continue,
                    Ok(rows) => return rows,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?self.retry_delay, "notification listener cannot catch up");
                        self.connection = None;
                        self.backoff().await;
                        continue;
                    }
                }
            }
            let Some(connection) = self.connection.as_mut() else {
                self.reconnect().await;
                continue;
            };
            // `try_recv` is cancel-safe: a probe tick never loses an announcement.
            let received = tokio::select! {
                biased;
                received = connection.try_recv() => received,
                _ = self.probes.tick() => {
                    match timeout(CONNECT_TIMEOUT, probe(connection)).await {
                        Ok(Ok(at)) => self.seen.alive(at),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "listener probe failed; reconnecting");
                            self.lost();
                        }
                        Err(_) => {
                            tracing::warn!("listener probe timed out; reconnecting");
                            self.lost();
                        }
                    }
                    continue;
                }
            };
            let first = match received {
                Ok(Some(first)) => first,
                Ok(None) => {
                    tracing::warn!("listener connection lost; reconnecting");
                    self.lost();
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listener connection failed; reconnecting");
                    self.lost();
                    continue;
                }
            };
            let mut ids = Vec::with_capacity(16);
            ids.extend(announced_id(&first));
            while ids.len() < BATCH {
                match connection.next_buffered() {
                    Some(next) => ids.extend(announced_id(&next)),
                    None => break,
                }
            }
            match self.store.notifications_for_delivery(&ids).await {
                Ok(rows) => {
                    let fresh = self.seen.keep_first_time(rows);
                    if !fresh.is_empty() {
                        return fresh;
                    }
                }
                Err(e) => {
                    // The rows are committed; reconnecting catches them up.
                    tracing::warn!(error = %e, "cannot load announced notifications; reconnecting");
                    self.lost();
                }
            }
        }
    }
}

fn probes() -> Interval {
    let mut probes = interval(PROBE_EVERY);
    probes.set_missed_tick_behavior(MissedTickBehavior::Delay);
    probes.reset();
    probes
}

/// A fresh dedicated connection (its own one-connection pool) listening on
/// [`CHANNEL`], and the database time at which it was known alive.
async fn connect(url: &str) -> StoreResult<(PgListener, DateTime<Utc>)> {
    let attempt = async {
        let mut connection = PgListener::connect(url).await?;
        // A lost connection is replaced by a new listener (and a catch-up), never
        // silently re-established inside `try_recv`.
        connection.eager_reconnect(false);
        connection.listen(CHANNEL).await?;
        let alive_at = probe(&mut connection).await?;
        Ok::<_, sqlx::Error>((connection, alive_at))
    };
    match timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(connected) => Ok(connected?),
        Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
    }
}

/// Proves the connection alive and returns the database time at which it was. Ends
/// with a (no-op) LISTEN so `pg_stat_activity` keeps showing what the connection is for.
async fn probe(connection: &mut PgListener) -> Result<DateTime<Utc>, sqlx::Error> {
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *connection)
        .await?;
    connection
        .execute(format!(r#"LISTEN "{CHANNEL}""#).as_str())
        .await?;
    Ok(now)
}

fn announced_id(notification: &PgNotification) -> Option<NotificationId> {
    match Uuid::parse_str(notification.payload()) {
        Ok(id) => Some(NotificationId(id)),
        Err(_) => {
            tracing::warn!(
                payload = notification.payload(),
                "ignoring a malformed announcement"
            );
            None
        }
    }
}

/// What the feed has returned, so that a catch-up never returns a row twice.
struct Delivered {
    /// Database time at which the LISTEN connection was last known alive: every row
    /// committed before it has been announced to us.
    alive_at: DateTime<Utc>,
    /// Rows delivered whose `created_at` is within the window a catch-up re-reads.
    recent: BTreeSet<(DateTime<Utc>, NotificationId)>,
}

impl Delivered {
    fn new(alive_at: DateTime<Utc>) -> Self {
        Self {
            alive_at,
            recent: BTreeSet::new(),
        }
    }

    fn slack() -> chrono::Duration {
        chrono::Duration::from_std(CATCH_UP_SLACK).unwrap_or_else(|_| chrono::Duration::zero())
    }

    /// Where a catch-up starts.
    fn catch_up_from(&self) -> DateTime<Utc> {
        self.alive_at - Self::slack()
    }

    /// Records that the connection was alive at `at` and forgets rows no catch-up can
    /// return any more.
    fn alive(&mut self, at: DateTime<Utc>) {
        self.alive_at = self.alive_at.max(at);
        let from = (self.catch_up_from(), NotificationId(Uuid::nil()));
        self.recent = self.recent.split_off(&from);
    }

    /// The rows not delivered before, now recorded as delivered.
    fn keep_first_time(&mut self, rows: Vec<Deliverable>) -> Vec<Deliverable> {
        rows.into_iter()
            .filter(|d| {
                self.recent
                    .insert((d.notification.created_at, d.notification.id))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::notifications::model::{Notification, Priority};

    fn row(created_at: DateTime<Utc>) -> Deliverable {
        Deliverable {
            notification: Notification {
                id: NotificationId::new_random(),
                user_id: UserId::new_random(),
                kind: "t".into(),
                title: "t".into(),
                message: String::new(),
                data: None,
                is_read: false,
                is_archived: false,
                priority: Priority::Normal,
                created_at,
            },
            muted: false,
        }
    }

    #[test]
    fn rows_are_delivered_once_and_forgotten_past_the_window() {
        let t0 = Utc::now();
        let mut seen = Delivered::new(t0);
        let a = row(t0);
        let b = row(t0 + chrono::Duration::seconds(1));
        assert_eq!(seen.keep_first_time(vec![a.clone()]).len(), 1);
        // A catch-up returning `a` again (and new `b`) delivers only `b`.
        let again = seen.keep_first_time(vec![a.clone(), b.clone()]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].notification.id, b.notification.id);
        assert!(seen.catch_up_from() <= a.notification.created_at);
        // Far later, both are out of any catch-up's reach and forgotten.
        seen.alive(t0 + chrono::Duration::hours(1));
        assert!(seen.recent.is_empty());
        assert!(seen.catch_up_from() > b.notification.created_at);
    }
}
