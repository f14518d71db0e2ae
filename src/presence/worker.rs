//! The presence worker: one task applying every presence change in arrival order
//! (arrivals, departures, grace periods, statuses here; friendship changes in
//! [`friendships`], with the task that forwards them from the database).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::friends::FriendViews;
use super::ledger::{Arrival, Departure, GraceTicket, PresenceLedger, StatusChange};
use super::status::PresenceStatus;
use crate::fanout::{Fanout, Reach, SocketKey, Topic};
use crate::ids::UserId;
use crate::store::presence::{FriendChange, FriendRow};
use crate::store::Store;

mod friendships;

pub(super) use friendships::forward_friend_changes;

/// What the worker is asked to do.
pub(super) enum Command {
    /// A socket connected; it is sent `online` when it hears presence.
    Arrived { user: UserId, socket: SocketKey },
    /// A socket left at `at`.
    Left { user: UserId, at: DateTime<Utc> },
    /// A grace period ran out.
    GraceOver { user: UserId, ticket: GraceTicket },
    /// The user's last sockets were on a process that died (cluster sweep).
    WentOffline {
        user: UserId,
        last_seen: DateTime<Utc>,
    },
    /// A client chose a status; answered with the status and its time.
    SetStatus {
        user: UserId,
        status: PresenceStatus,
        reply: oneshot::Sender<(PresenceStatus, DateTime<Utc>)>,
    },
    /// Someone changed `friends`.
    Friends(FriendChange),
}

/// What the worker works with.
pub(super) struct Handles {
    pub store: Arc<dyn Store>,
    pub fanout: Arc<dyn Fanout>,
    pub ledger: Arc<dyn PresenceLedger>,
    /// How long a user's last socket may be gone before they are offline.
    pub grace: Duration,
    pub shutdown: CancellationToken,
}

pub(super) struct Worker {
    store: Arc<dyn Store>,
    fanout: Arc<dyn Fanout>,
    ledger: Arc<dyn PresenceLedger>,
    grace: Duration,
    shutdown: CancellationToken,
    views: FriendViews,
    /// Sockets of each user on this process. In a cluster a user may be online through
    /// other processes only; their friend list is kept here while they have sockets
    /// here (or this process runs their grace timer).
    local: HashMap<UserId, u32>,
    /// For grace timers, which report back through the inbox.
    commands: mpsc::UnboundedSender<Command>,
}

impl Worker {
    pub(super) fn new(handles: Handles, commands: mpsc::UnboundedSender<Command>) -> Self {
        let Handles {
            store,
            fanout,
            ledger,
            grace,
            shutdown,
        } = handles;
        Self {
            store,
            fanout,
            ledger,
            grace,
            shutdown,
            views: FriendViews::default(),
            local: HashMap::new(),
            commands,
        }
    }

    /// Applies commands until shutdown, then writes everyone it held online as offline.
    pub(super) async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Command>) {
        let shutdown = self.shutdown.clone();
        loop {
            let command = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                command = inbox.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
            };
            self.apply(command).await;
        }
        let users = self.ledger.drain().await;
        metrics::gauge!("diary_presence_online_users").set(0.0);
        if let Err(e) = self.store.record_offline(&users, Utc::now()).await {
            tracing::warn!(error = %e, "cannot mark users offline at shutdown");
        }
        tracing::info!(users = users.len(), "presence stopped");
    }

    async fn apply(&mut self, command: Command) {
        match command {
            Command::Arrived { user, socket } => self.arrived(user, socket).await,
            Command::Left { user, at } => self.left(user, at).await,
            Command::GraceOver { user, ticket } => self.grace_over(user, ticket).await,
            Command::WentOffline { user, last_seen } => self.went_offline(user, last_seen).await,
            Command::SetStatus {
                user,
                status,
                reply,
            } => {
                let answer = self.set_status(user, status).await;
                let _ = reply.send(answer);
            }
            Command::Friends(change) => self.friends_changed(change).await,
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(%user, sid = socket.sid()))]
    async fn arrived(&mut self, user: UserId, socket: SocketKey) {
        let sid = socket.sid();
        let now = Utc::now();
        *self.local.entry(user).or_insert(0) += 1;
        let arrival = self.ledger.arrive(user).await;
        let rows = match self.store.friends_last_seen(user).await {
            Ok(rows) => Some(rows),
            Err(e) => {
                tracing::warn!(%user, error = %e, "cannot read friends");
                None
            }
        };
        let fresh = rows
            .as_ref()
            .map(|rows| rows.iter().map(|r| r.user).collect::<HashSet<_>>());
        match arrival {
            Arrival::CameOnline => {
                tracing::debug!(%user, "online");
                metrics::gauge!("diary_presence_online_users").increment(1.0);
                self.views.install(user, fresh.unwrap_or_default());
                self.record_online(user, sid, PresenceStatus::Online, now)
                    .await;
                let audience = self.audience(user).await;
                self.tell(
                    &audience,
                    "friend_online",
                    json!({ "userId": user, "timestamp": now }),
                )
                .await;
                self.tell(
                    &audience,
                    "presence_update",
                    update(user, PresenceStatus::Online, now),
                )
                .await;
            }
            Arrival::Resumed | Arrival::AnotherSocket => {
                if !self.views.is_tracked(user) {
                    // Online through another process until now (cluster).
                    self.views.install(user, fresh.unwrap_or_default());
                } else if let Some(fresh) = fresh {
                    let changes = self.views.refresh(user, fresh);
                    self.announce(user, changes).await;
                }
                if arrival == Arrival::Resumed {
                    // Friends never saw the user leave; the row names the live socket.
                    let status = self.status_of(user).await;
                    self.record_online(user, sid, status, now).await;
                }
            }
        }
        if socket.hears(Topic::Presence) {
            let payload = self.online_payload(user, rows, now).await;
            self.fanout.to_socket(&socket, "online", &payload);
        }
    }

    /// `online {userId, status, friends:[{userId, status, lastSeen}]}` for a new socket.
    async fn online_payload(
        &self,
        user: UserId,
        rows: Option<Vec<FriendRow>>,
        now: DateTime<Utc>,
    ) -> Value {
        let rows = rows.unwrap_or_else(|| {
            // The database did not answer: the last list read, without last-seen times.
            self.views
                .friends_of(user)
                .into_iter()
                .flatten()
                .map(|f| FriendRow {
                    user: *f,
                    last_seen: None,
                })
                .collect()
        });
        let ids: Vec<UserId> = rows.iter().map(|r| r.user).collect();
        let statuses = self.ledger.statuses(&ids).await;
        let friends: Vec<Value> = rows
            .iter()
            .filter(|r| r.user != user)
            .map(|r| match statuses.get(&r.user) {
                Some(status) if self.views.sees(user, r.user, true) => {
                    json!({ "userId": r.user, "status": status, "lastSeen": now })
                }
                _ => json!({
                    "userId": r.user,
                    "status": PresenceStatus::Offline,
                    "lastSeen": r.last_seen,
                }),
            })
            .collect();
        let status = self.status_of(user).await;
        json!({ "userId": user, "status": status, "friends": friends })
    }

    /// Counts one socket of `user` gone from this process; true when none is left here.
    fn count_local_departure(&mut self, user: UserId) -> bool {
        match self.local.get_mut(&user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                self.local.remove(&user);
                true
            }
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(%user))]
    async fn left(&mut self, user: UserId, at: DateTime<Utc>) {
        let none_here = self.count_local_departure(user);
        match self.ledger.depart(user, at).await {
            Departure::StillConnected => {
                if none_here {
                    // Still online through other processes, which keep their own list.
                    self.views.forget(user);
                }
            }
            Departure::Unknown => tracing::warn!(%user, "departure of an unknown socket"),
            Departure::LastSocket(ticket) => {
                let grace = self.grace;
                let commands = self.commands.clone();
                let shutdown = self.shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        // After shutdown the worker is gone; the user is written offline
                        // by its final step instead.
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(grace) => {
                            let _ = commands.send(Command::GraceOver { user, ticket });
                        }
                    }
                });
            }
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(%user))]
    async fn grace_over(&mut self, user: UserId, ticket: GraceTicket) {
        let Some(last_seen) = self.ledger.expire(user, ticket).await else {
            // Came back meanwhile (maybe through another process only).
            if !self.local.contains_key(&user) {
                self.views.forget(user);
            }
            return;
        };
        self.went_offline(user, last_seen).await;
    }

    /// The ledger made `user` offline here: record it and tell their friends (on every
    /// process: this process is the one that observed it).
    #[tracing::instrument(level = "debug", skip_all, fields(%user))]
    async fn went_offline(&mut self, user: UserId, last_seen: DateTime<Utc>) {
        tracing::debug!(%user, "offline");
        metrics::gauge!("diary_presence_online_users").decrement(1.0);
        let audience = self.audience(user).await;
        self.views.forget(user);
        if let Err(e) = self.store.record_offline(&[user], last_seen).await {
            tracing::warn!(%user, error = %e, "cannot record offline");
        }
        self.tell(
            &audience,
            "offline",
            json!({ "userId": user, "lastSeen": last_seen }),
        )
        .await;
        self.tell(
            &audience,
            "presence_update",
            update(user, PresenceStatus::Offline, last_seen),
        )
        .await;
    }

    #[tracing::instrument(level = "debug", skip_all, fields(%user, ?status))]
    async fn set_status(
        &mut self,
        user: UserId,
        status: PresenceStatus,
    ) -> (PresenceStatus, DateTime<Utc>) {
        let now = Utc::now();
        match self.ledger.set_status(user, status).await {
            StatusChange::Changed => {
                if let Err(e) = self.store.record_status(user, status, now).await {
                    tracing::warn!(%user, error = %e, "cannot record status");
                }
                let audience = self.audience(user).await;
                self.tell(&audience, "presence_update", update(user, status, now))
                    .await;
            }
            StatusChange::Unchanged => {}
            StatusChange::NotOnline => {
                tracing::warn!(%user, "status change from a user who is not online");
            }
        }
        (status, now)
    }

    /// Who sees `user`: their friends who are online (on any process) and, when this
    /// process holds the friend's own list, list `user` too. Uses the list held here,
    /// else reads it.
    async fn audience(&self, user: UserId) -> Vec<UserId> {
        let friends: Vec<UserId> = match self.views.friends_of(user) {
            Some(list) => list.iter().copied().collect(),
            None => match self.store.friends_last_seen(user).await {
                Ok(rows) => rows.into_iter().map(|r| r.user).collect(),
                Err(e) => {
                    tracing::warn!(%user, error = %e, "cannot read friends");
                    Vec::new()
                }
            },
        };
        let online = self.ledger.statuses(&friends).await;
        friends
            .into_iter()
            .filter(|f| {
                *f != user
                    && online.contains_key(f)
                    && self.views.friends_of(*f).is_none_or(|l| l.contains(&user))
            })
            .collect()
    }

    async fn status_of(&self, user: UserId) -> PresenceStatus {
        self.ledger
            .statuses(&[user])
            .await
            .remove(&user)
            .unwrap_or(PresenceStatus::Offline)
    }

    async fn record_online(
        &self,
        user: UserId,
        sid: &str,
        status: PresenceStatus,
        at: DateTime<Utc>,
    ) {
        if let Err(e) = self.store.record_online(user, sid, status, at).await {
            tracing::warn!(%user, error = %e, "cannot record online");
        }
    }

    /// Emits to every socket of `users` that hears presence, on every process: for
    /// transitions this process alone observed.
    async fn tell(&self, users: &[UserId], event: &'static str, payload: Value) {
        self.emit(users, event, payload, Reach::Cluster).await;
    }

    /// Emits to the sockets of `users` on this process only: for friendship changes,
    /// which every process learns and applies to its own sockets.
    async fn tell_here(&self, users: &[UserId], event: &'static str, payload: Value) {
        self.emit(users, event, payload, Reach::ThisProcess).await;
    }

    async fn emit(&self, users: &[UserId], event: &'static str, payload: Value, reach: Reach) {
        self.fanout
            .to_users(users, Topic::Presence, event, &payload, None, reach)
            .await;
    }
}

/// `presence_update {userId, status, lastSeen}`.
fn update(user: UserId, status: PresenceStatus, last_seen: DateTime<Utc>) -> Value {
    json!({ "userId": user, "status": status, "lastSeen": last_seen })
}
