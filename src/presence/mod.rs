//! Friend presence (PROTOCOL.md section 7): who of a user's friends is online, with
//! which status, told only to friends.
//!
//! How it fits together:
//! - Every socket on every namespace is reported here when it connects and when it
//!   leaves ([`Presence::socket_connected`], [`Presence::socket_disconnected`], called
//!   by the shared connect handler). The [`ledger`] counts them per user and decides the
//!   transitions: first socket -> online; last socket gone for `PRESENCE_GRACE_MS` ->
//!   offline; back within the grace period (a reload) -> nothing at all.
//! - One task, the presence worker, applies everything in order: transitions, status
//!   changes, friendship changes, grace expiries. It owns the [`friends::FriendViews`]
//!   and writes `ws_connections`; ordering in one place means a user's events reach
//!   friends in the order they happened and the table ends in the latest state.
//! - Events go out through the [`crate::fanout::Fanout`] as [`Topic::Presence`]
//!   traffic: the main namespaces carry it; `/notifications` sockets make their user
//!   online but receive no presence traffic.
//!
//! Choices where the protocol is silent:
//! - Every new main-namespace socket gets `online {userId, status, friends}` (each tab
//!   needs the list); `status` is the user's own current status (an extra field).
//!   `friends` holds every friend: `{userId, status, lastSeen}`, `lastSeen` being now
//!   for online friends and the departure of their last socket (or `null`, never seen)
//!   for offline ones.
//! - A chosen status (`away`, `busy`) lasts while the user is online, reloads included;
//!   a user who went offline comes back `online`. An unchanged status is not relayed.
//! - The client's `presence_update` is answered `{ok:true, status, lastSeen}`.
//! - A friendship added while both are online: each gets `friend_online` and
//!   `presence_update` about the other. Removed: each gets `offline` and
//!   `presence_update {status:'offline'}` about the other, so UIs stop showing them
//!   online, and nothing is relayed between them any more. On PostgreSQL this happens
//!   at once (`LISTEN diary_friends`); on SQLite (no notifications) at the next connect
//!   of either user.
//! - Graceful shutdown writes every user this process held online as offline; users in
//!   their grace period then are offline too (no timer fires after shutdown). A cluster
//!   process instead removes its liveness key as it stops, and the survivors take its
//!   users over (offline now unless they have a socket on a live process).
//!
//! Cluster mode (`REDIS_URL`): the [`ledger::PresenceLedger`] is
//! [`redis_ledger::RedisLedger`], shared by every process (socket counts per process,
//! statuses, grace tickets). Each transition is observed by exactly one process, the
//! one whose ledger call decided it, and that process tells the friends through the
//! adapter (cluster-wide): first socket anywhere -> online; last socket anywhere gone
//! for the grace period -> offline (the grace timer runs where the last socket left;
//! a reload onto another process within it is nothing). A process that dies leaves
//! its counts behind, filed under its node id; once its liveness key expires the
//! survivors sweep them, and users with no socket left go offline (within
//! `STALE_TIMEOUT_SECS`). Friend lists are held per process for the users it serves;
//! friendship changes (every process hears `diary_friends`) are told by each process
//! to its own sockets (`.local()`), so each socket hears them once. Changes a process
//! only finds on re-reading a list (a reconnect after a LISTEN outage) reach that
//! process's sockets only.

pub mod friends;
pub mod ledger;
pub mod redis_ledger;
pub mod status;
mod sweep;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use status::{ChosenStatus, PresenceStatus};

use crate::fanout::{Fanout, SocketKey, Topic};
use crate::ids::UserId;
use crate::store::{Store, StoreResult};
use ledger::PresenceLedger;
use worker::Command;

/// Why a presence request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The worker is gone: the server is shutting down.
    #[error("presence worker stopped")]
    Stopped,
}

/// The presence service as handlers see it: reports go to the worker in order.
pub struct Presence {
    commands: mpsc::UnboundedSender<Command>,
    /// Handed to the worker when it starts.
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    ledger: Arc<dyn PresenceLedger>,
    store: Arc<dyn Store>,
    fanout: Arc<dyn Fanout>,
    /// `PRESENCE_GRACE_MS`: how long a user's last socket may be gone before they
    /// are offline.
    grace: Duration,
}

impl Presence {
    /// `ledger`: [`ledger::LocalLedger`] for a single process,
    /// [`redis_ledger::RedisLedger`] for a cluster node.
    pub fn new(
        ledger: Arc<dyn PresenceLedger>,
        store: Arc<dyn Store>,
        fanout: Arc<dyn Fanout>,
        grace: Duration,
    ) -> Self {
        let (commands, inbox) = mpsc::unbounded_channel();
        Self {
            commands,
            inbox: Mutex::new(Some(inbox)),
            ledger,
            store,
            fanout,
            grace,
        }
    }

    /// A socket of `user` finished connecting (any namespace). Call synchronously from
    /// the connect handler, before the socket's own events can run, so that a status
    /// change it sends is applied after its arrival. Sockets that hear presence are
    /// sent `online`.
    pub fn socket_connected(&self, user: UserId, socket: SocketKey) {
        self.send(Command::Arrived { user, socket });
    }

    /// A socket reported by [`Presence::socket_connected`] has gone. Also removes the
    /// socket's `active_sessions` rows.
    pub fn socket_disconnected(&self, user: UserId, socket: &SocketKey) {
        self.send(Command::Left {
            user,
            at: Utc::now(),
        });
        if socket.hears(Topic::EntryRooms) {
            let store = self.store.clone();
            let sid = socket.sid().to_owned();
            tokio::spawn(async move {
                if let Err(e) = store.sessions_left_socket(&sid).await {
                    tracing::warn!(error = %e, sid, "cannot remove the socket's active sessions");
                }
            });
        }
    }

    /// The user chose a status; relayed to their online friends. Returns the status
    /// and its time.
    pub async fn set_status(
        &self,
        user: UserId,
        status: ChosenStatus,
    ) -> Result<(PresenceStatus, DateTime<Utc>), PresenceError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetStatus {
            user,
            status: status.into(),
            reply,
        });
        answer.await.map_err(|_| PresenceError::Stopped)
    }

    fn send(&self, command: Command) {
        // Fails only once the worker stopped (shutdown): nothing is left to update.
        let _ = self.commands.send(command);
    }

    /// Starts the presence worker, the friendship listener (PostgreSQL), the
    /// `active_sessions` sweep (every half `stale_timeout`) and, on a cluster node,
    /// the sweep of dead nodes' users (every `dead_node_sweep`). They stop on
    /// `shutdown`.
    pub fn start(
        &self,
        shutdown: &CancellationToken,
        stale_timeout: Duration,
        dead_node_sweep: Option<Duration>,
    ) -> PresenceTasks {
        let mut tasks = Vec::new();
        let inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(inbox) = inbox {
            let handles = worker::Handles {
                store: self.store.clone(),
                fanout: self.fanout.clone(),
                ledger: self.ledger.clone(),
                grace: self.grace,
                shutdown: shutdown.clone(),
            };
            let worker = worker::Worker::new(handles, self.commands.clone());
            tasks.push(("presence worker", tokio::spawn(worker.run(inbox))));
        }
        if let Some(feed) = self.store.friend_feed() {
            tasks.push((
                "friendship listener",
                tokio::spawn(worker::forward_friend_changes(
                    feed,
                    self.commands.clone(),
                    shutdown.clone(),
                )),
            ));
        }
        tasks.push((
            "session sweep",
            tokio::spawn(sweep::run(
                self.store.clone(),
                self.fanout.clone(),
                stale_timeout,
                shutdown.clone(),
            )),
        ));
        if let Some(every) = dead_node_sweep {
            tasks.push((
                "dead node sweep",
                tokio::spawn(sweep::run_dead_nodes(
                    self.ledger.clone(),
                    self.commands.clone(),
                    every,
                    shutdown.clone(),
                )),
            ));
        }
        PresenceTasks { tasks }
    }
}

/// Start-up of a single process, before any socket is accepted: nothing in
/// `ws_connections` or `active_sessions` survives a restart (rows a crashed process
/// left behind). A cluster node must not call it (the rows belong to the other nodes
/// too): there, a dead node's users are set offline by the survivors' sweep, and its
/// `active_sessions` rows go stale.
pub async fn reset(store: &dyn Store) -> StoreResult<()> {
    let offline = store.reset_presence().await?;
    let sessions = store.clear_sessions().await?;
    if offline > 0 || sessions > 0 {
        tracing::info!(
            offline,
            sessions,
            "cleared presence rows left by a previous run"
        );
    }
    Ok(())
}

/// The presence background tasks; they stop on the token given to [`Presence::start`].
pub struct PresenceTasks {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl PresenceTasks {
    /// Waits for every task to finish (after shutdown was signalled).
    pub async fn join(self) {
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %e, "presence task failed");
            }
        }
    }
}
