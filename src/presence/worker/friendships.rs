//! Friendship changes, as the worker applies them: a friendship added or removed
//! while both users are online, or every list re-read after the feed reconnected.

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{update, Command, Worker};
use crate::ids::UserId;
use crate::presence::friends::{Changes, FriendViews};
use crate::presence::status::PresenceStatus;
use crate::store::presence::{FriendChange, FriendFeed};

impl Worker {
    #[tracing::instrument(level = "debug", skip(self))]
    pub(super) async fn friends_changed(&mut self, change: FriendChange) {
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
                match self.store.are_friends(a, b).await {
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
                    match self.store.friends_last_seen(user).await {
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

    pub(super) async fn announce(&self, user: UserId, changes: Changes) {
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
}

/// Forwards friendship changes from the database to the worker until shutdown.
pub(in crate::presence) async fn forward_friend_changes(
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
