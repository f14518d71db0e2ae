//! The presence worker: one task applying every presence change in arrival order,
//! and the task forwarding friendship changes to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::cluster::SocketRef;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::friends::{Changes, FriendViews};
use super::ledger::{Arrival, Departure, GraceTicket, PresenceLedger, StatusChange};
use super::status::PresenceStatus;
use crate::ids::UserId;
use crate::realtime::connect::user_room;
use crate::realtime::MAIN_NAMESPACES;
use crate::state::AppState;
use crate::store::presence::{FriendChange, FriendFeed, FriendRow};

/// What the worker is asked to do.
pub(super) enum Command {
    /// A socket connected; `socket` is set when it should be sent `online`.
    Arrived {
        user: UserId,
        sid: String,
        socket: Option<SocketRef>,
    },
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

pub(super) struct Worker {
    app: AppState,
    ledger: Arc<dyn PresenceLedger>,
    views: FriendViews,
    /// Sockets of each user on this process. In a cluster a user may be online through
    /// other processes only; their friend list is kept here while they have sockets
    /// here (or this process runs their grace timer).
    local: HashMap<UserId, u32>,
    /// For grace timers, which report back through the inbox.
    commands: mpsc::UnboundedSender<Command>,
}

impl Worker {
    pub(super) fn new(
        app: AppState,
        ledger: Arc<dyn PresenceLedger>,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            app,
            ledger,
            views: FriendViews::default(),
            local: HashMap::new(),
            commands,
        }
    }

    /// Applies commands until shutdown, then writes everyone it held online as offline.
    pub(super) async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Command>) {
        let shutdown = self.app.shutdown.clone();
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
        if let Err(e) = self.app.store.record_offline(&users, Utc::now()).await {
            tracing::warn!(error = %e, "cannot mark users offline at shutdown");
        }
        tracing::info!(users = users.len(), "presence stopped");
    }

    async fn apply(&mut self, command: Command) {
        match command {
            Command::Arrived { user, sid, socket } => self.arrived(user, &sid, socket).await,
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

    async fn arrived(&mut self, user: UserId, sid: &str, socket: Option<SocketRef>) {
        let now = Utc::now();
        *self.local.entry(user).or_insert(0) += 1;
        let arrival = self.ledger.arrive(user).await;
        let rows = match self.app.store.friends_last_seen(user).await {
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
        if let Some(socket) = socket {
            let payload = self.online_payload(user, rows, now).await;
            let _ = socket.emit("online", &payload);
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
                let grace = self.app.settings.presence_grace;
                let commands = self.commands.clone();
                let shutdown = self.app.shutdown.clone();
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
    async fn went_offline(&mut self, user: UserId, last_seen: DateTime<Utc>) {
        tracing::debug!(%user, "offline");
        metrics::gauge!("diary_presence_online_users").decrement(1.0);
        let audience = self.audience(user).await;
        self.views.forget(user);
        if let Err(e) = self.app.store.record_offline(&[user], last_seen).await {
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

    async fn set_status(
        &mut self,
        user: UserId,
        status: PresenceStatus,
    ) -> (PresenceStatus, DateTime<Utc>) {
        let now = Utc::now();
        match self.ledger.set_status(user, status).await {
            StatusChange::Changed => {
                if let Err(e) = self.app.store.record_status(user, status, now).await {
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

    async fn friends_changed(&mut self, change: FriendChange) {
        match change {
            FriendChange::Added(a, b) => {
                self.relist(a, b, |views| {
                    views.add(a, b);
                })
                .await;
            }
            FriendChange::Removed(a, b) => {
                if !self.views.is_tracked(a) && !self.views.is_tracked(b) {
                    return;
                }
                // The reverse row may still make them friends.
                match self.app.store.are_friends(a, b).await {
                    Ok(true) => {}
                    Ok(false) => {
                        self.relist(a, b, |views| {
                            views.remove(a, b);
                        })
                        .await;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot check a removed friendship"),
                }
            }
            FriendChange::Resync => {
                for user in self.views.tracked() {
                    match self.app.store.friends_last_seen(user).await {
                        Ok(rows) => {
                            let fresh = rows.iter().map(|r| r.user).collect();
                            let changes = self.views.refresh(user, fresh);
                            self.announce(user, changes).await;
                        }
                        Err(e) => tracing::warn!(%user, error = %e, "cannot reread friends"),
                    }
                }
            }
        }
    }

    /// Applies a friendship change between `a` and `b` to the lists and tells each of
    /// them (their sockets on this process: every process sees the change and tells
    /// its own sockets) whether the other now shows up or disappears.
    async fn relist(&mut self, a: UserId, b: UserId, change: impl FnOnce(&mut FriendViews)) {
        let online = self.ledger.statuses(&[a, b]).await;
        let pairs = [(a, b), (b, a)];
        let before =
            pairs.map(|(to, about)| self.views.sees(to, about, online.contains_key(&about)));
        change(&mut self.views);
        let now = Utc::now();
        for ((to, about), before) in pairs.into_iter().zip(before) {
            let after = self.views.sees(to, about, online.contains_key(&about));
            match (before, after, online.get(&about)) {
                (false, true, Some(status)) => self.tell_gained(to, about, *status, now).await,
                (true, false, _) => self.tell_lost(to, about, now).await,
                _ => {}
            }
        }
    }

    async fn tell_gained(
        &self,
        to: UserId,
        about: UserId,
        status: PresenceStatus,
        now: DateTime<Utc>,
    ) {
        let payload = json!({ "userId": about, "timestamp": now });
        self.tell_here(&[to], "friend_online", payload).await;
        self.tell_here(&[to], "presence_update", update(about, status, now))
            .await;
    }

    async fn tell_lost(&self, to: UserId, about: UserId, now: DateTime<Utc>) {
        let payload = json!({ "userId": about, "lastSeen": now });
        self.tell_here(&[to], "offline", payload).await;
        self.tell_here(
            &[to],
            "presence_update",
            update(about, PresenceStatus::Offline, now),
        )
        .await;
    }

    /// Who sees `user`: their friends who are online (on any process) and, when this
    /// process holds the friend's own list, list `user` too. Uses the list held here,
    /// else reads it.
    async fn audience(&self, user: UserId) -> Vec<UserId> {
        let friends: Vec<UserId> = match self.views.friends_of(user) {
            Some(list) => list.iter().copied().collect(),
            None => match self.app.store.friends_last_seen(user).await {
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

    async fn announce(&self, user: UserId, changes: Changes) {
        for friend in changes.gained {
            self.announce_gained(user, friend).await;
        }
        for friend in changes.lost {
            self.announce_lost(user, friend).await;
        }
    }

    /// `a` and `b` just became visible to each other (both held here): each learns
    /// the other is online.
    async fn announce_gained(&self, a: UserId, b: UserId) {
        let now = Utc::now();
        let statuses = self.ledger.statuses(&[a, b]).await;
        for (to, about) in [(a, b), (b, a)] {
            if let Some(status) = statuses.get(&about) {
                self.tell_gained(to, about, *status, now).await;
            }
        }
    }

    /// `a` and `b` no longer see each other (both held here): each sees the other go
    /// offline.
    async fn announce_lost(&self, a: UserId, b: UserId) {
        let now = Utc::now();
        for (to, about) in [(a, b), (b, a)] {
            self.tell_lost(to, about, now).await;
        }
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
        if let Err(e) = self.app.store.record_online(user, sid, status, at).await {
            tracing::warn!(%user, error = %e, "cannot record online");
        }
    }

    /// Emits to every socket of `users` on the main namespaces, on every process: for
    /// transitions this process alone observed.
    async fn tell(&self, users: &[UserId], event: &'static str, payload: Value) {
        self.emit(users, event, payload, false).await;
    }

    /// Emits to the sockets of `users` on this process only: for friendship changes,
    /// which every process learns and applies to its own sockets.
    async fn tell_here(&self, users: &[UserId], event: &'static str, payload: Value) {
        self.emit(users, event, payload, true).await;
    }

    async fn emit(&self, users: &[UserId], event: &'static str, payload: Value, here: bool) {
        if users.is_empty() {
            return;
        }
        let rooms: Vec<String> = users.iter().copied().map(user_room).collect();
        for ns in MAIN_NAMESPACES {
            if let Some(ns) = self.app.io().of(ns) {
                let target = match here {
                    true => ns.local().to(rooms.clone()),
                    false => ns.to(rooms.clone()),
                };
                if let Err(e) = target.emit(event, &payload).await {
                    tracing::debug!(event, error = %e, "presence emit failed");
                }
            }
        }
    }
}

/// `presence_update {userId, status, lastSeen}`.
fn update(user: UserId, status: PresenceStatus, last_seen: DateTime<Utc>) -> Value {
    json!({ "userId": user, "status": status, "lastSeen": last_seen })
}

/// Forwards friendship changes from the database to the worker until shutdown.
pub(super) async fn forward_friend_changes(
    mut feed: Box<dyn FriendFeed>,
    commands: mpsc::UnboundedSender<Command>,
    shutdown: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => break,
            change = feed.next() => change,
        };
        tracing::debug!(?change, "friendship change");
        if commands.send(Command::Friends(change)).is_err() {
            break;
        }
    }
}
