//! The Postgres listener: the one path by which rows in `notifications` reach sockets
//! when the database is Postgres, whoever inserted them (`POST /api/notifications` or
//! another application writing SQL).
//!
//! A trigger announces each committed row on channel `diary_notifications` with its id.
//! One background task holds a dedicated LISTEN connection (outside the pool), loads
//! the announced rows in batches and hands them to the service for fan-out.
//!
//! NOTIFY is fire-and-forget: while the connection is down, announcements are lost. So
//! the task remembers the database time at which its connection was last known alive
//! (it probes every few seconds) and, after reconnecting (LISTEN first), re-reads every
//! row created since then minus [`CATCH_UP_SLACK`]. Rows it already delivered in that
//! window are remembered by `(created_at, id)` and skipped, so nothing is missed and
//! nothing is pushed twice. The slack covers a writer whose transaction was open for a
//! while before it committed (`created_at` is the transaction's start time); a row
//! whose transaction was open longer than that, or that was inserted with an explicit
//! `created_at` far in the past, while the listener was down, is not caught up.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgNotification};
use sqlx::Executor;
use tokio::time::{interval, sleep, timeout, MissedTickBehavior};
use tracing::Instrument;
use uuid::Uuid;

use crate::ids::NotificationId;
use crate::notifications::model::Deliverable;
use crate::state::AppState;
use crate::store::postgres::PgStore;
use crate::store::{NotificationStore, StoreError};

/// The channel the migration's trigger notifies on.
pub const CHANNEL: &str = "diary_notifications";

/// How far before the last known-alive moment a catch-up starts re-reading.
pub const CATCH_UP_SLACK: Duration = Duration::from_secs(120);
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

/// A listening connection and what has been delivered through it.
pub struct NotificationListener {
    store: PgStore,
    connection: Option<PgListener>,
    seen: Delivered,
}

impl NotificationListener {
    /// Connects and LISTENs. Called while the app is built, before it accepts any
    /// request, so that every row committed once the server serves is heard.
    pub async fn start(store: PgStore) -> Result<Self, sqlx::Error> {
        let mut connection = timeout(CONNECT_TIMEOUT, connect(store.url()))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let alive_at = probe(&mut connection).await?;
        Ok(Self {
            store,
            connection: Some(connection),
            seen: Delivered::new(alive_at),
        })
    }

    /// Delivers announced rows until `app.shutdown`, reconnecting (and catching up)
    /// whenever the connection is lost.
    pub async fn run(mut self, app: AppState) {
        async move {
            tracing::info!("notification listener started");
            loop {
                let mut connection = match self.connection.take() {
                    Some(connection) => connection,
                    None => match self.reconnect(&app).await {
                        Some(connection) => connection,
                        None => break,
                    },
                };
                if self.receive(&mut connection, &app).await.is_break() {
                    break;
                }
                metrics::counter!("diary_notification_listener_reconnects_total").increment(1);
            }
            tracing::info!("notification listener stopped");
        }
        .instrument(tracing::info_span!("notification_listener"))
        .await
    }

    /// Delivers announcements until the connection is lost (`Continue`) or the server
    /// shuts down (`Break`).
    async fn receive(&mut self, connection: &mut PgListener, app: &AppState) -> ControlFlow<()> {
        let mut probes = interval(PROBE_EVERY);
        probes.set_missed_tick_behavior(MissedTickBehavior::Delay);
        probes.tick().await;
        loop {
            // `try_recv` is cancel-safe: a probe tick never loses an announcement.
            let step = tokio::select! {
                biased;
                _ = app.shutdown.cancelled() => return ControlFlow::Break(()),
                received = connection.try_recv() => Step::Received(received),
                _ = probes.tick() => Step::Probe,
            };
            match step {
                Step::Probe => match timeout(CONNECT_TIMEOUT, probe(connection)).await {
                    Ok(Ok(at)) => self.seen.alive(at),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "listener probe failed; reconnecting");
                        return ControlFlow::Continue(());
                    }
                    Err(_) => {
                        tracing::warn!("listener probe timed out; reconnecting");
                        return ControlFlow::Continue(());
                    }
                },
                Step::Received(Ok(Some(first))) => {
                    let mut ids = Vec::with_capacity(16);
                    ids.extend(announced_id(&first));
                    while ids.len() < BATCH {
                        match connection.next_buffered() {
                            Some(next) => ids.extend(announced_id(&next)),
                            None => break,
                        }
                    }
                    if let Err(e) = self.deliver_announced(&ids, app).await {
                        // The rows are committed; reconnecting catches them up.
                        tracing::warn!(error = %e, "cannot load announced notifications; reconnecting");
                        return ControlFlow::Continue(());
                    }
                }
                Step::Received(Ok(None)) => {
                    tracing::warn!("listener connection lost; reconnecting");
                    return ControlFlow::Continue(());
                }
                Step::Received(Err(e)) => {
                    tracing::warn!(error = %e, "listener connection failed; reconnecting");
                    return ControlFlow::Continue(());
                }
            }
        }
    }

    async fn deliver_announced(
        &mut self,
        ids: &[NotificationId],
        app: &AppState,
    ) -> Result<(), StoreError> {
        let rows = self.store.notifications_for_delivery(ids).await?;
        let fresh = self.seen.keep_first_time(rows);
        app.notifications.deliver(fresh).await;
        Ok(())
    }

    /// Connects, LISTENs and catches up, retrying with backoff; `None` on shutdown.
    async fn reconnect(&mut self, app: &AppState) -> Option<PgListener> {
        let mut delay = RETRY_FIRST;
        loop {
            let attempt = async {
                let mut connection =
                    timeout(CONNECT_TIMEOUT, connect(self.store.url()))
                        .await
                        .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))??;
                let alive_at = probe(&mut connection).await?;
                // LISTEN is in place: anything committed from here on is announced, and
                // everything committed before is visible to the catch-up query.
                let caught_up = self.catch_up(app).await?;
                Ok::<_, StoreError>((connection, alive_at, caught_up))
            };
            let outcome = tokio::select! {
                _ = app.shutdown.cancelled() => return None,
                outcome = attempt => outcome,
            };
            match outcome {
                Ok((connection, alive_at, caught_up)) => {
                    self.seen.alive(alive_at);
                    tracing::info!(caught_up, "notification listener reconnected");
                    return Some(connection);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "notification listener cannot reconnect");
                }
            }
            tokio::select! {
                _ = app.shutdown.cancelled() => return None,
                _ = sleep(delay) => {}
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    /// Delivers the rows created since the connection was last known alive (minus the
    /// slack) that were not delivered yet; returns how many.
    async fn catch_up(&mut self, app: &AppState) -> Result<usize, StoreError> {
        let mut after = (self.seen.catch_up_from(), NotificationId(Uuid::nil()));
        let mut delivered = 0;
        loop {
            let page = self
                .store
                .notifications_created_after(after, CATCH_UP_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = (last.notification.created_at, last.notification.id);
            let full = page.len() as i64 == CATCH_UP_PAGE;
            let fresh = self.seen.keep_first_time(page);
            delivered += fresh.len();
            app.notifications.deliver(fresh).await;
            if !full {
                break;
            }
        }
        if delivered > 0 {
            metrics::counter!("diary_notifications_caught_up_total").increment(delivered as u64);
        }
        Ok(delivered)
    }
}

enum Step {
    Received(Result<Option<PgNotification>, sqlx::Error>),
    Probe,
}

/// A fresh dedicated connection (its own one-connection pool) listening on [`CHANNEL`].
async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut connection = PgListener::connect(url).await?;
    // A lost connection is replaced by a new listener (and a catch-up), never
    // silently re-established inside `try_recv`.
    connection.eager_reconnect(false);
    connection.listen(CHANNEL).await?;
    Ok(connection)
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

/// What the listener has delivered, so that a catch-up never pushes a row twice.
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
