//! The presence ledger: how many sockets each user holds, their chosen status, and
//! which users are in their grace period. It decides every online/offline transition,
//! and is the one piece of presence state a cluster of processes must share.
//!
//! Callers report every socket (`arrive` / `depart`, in any order between sockets);
//! the ledger counts them itself, so a reload whose new socket is counted before or
//! after the old one leaves gives the same answer. (The connection registry's
//! first/last flags are decided under another lock, and a cluster counts across
//! processes, so they cannot be this input.)
//!
//! [`LocalLedger`] is the in-process implementation; the cluster's is
//! [`super::redis_ledger::RedisLedger`] (per-node socket counts in Redis, one script
//! per call). Both keep the same contract: each call is atomic, exactly one caller
//! observes each transition, and a ticket goes stale as soon as the user arrives again.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::status::PresenceStatus;
use crate::ids::UserId;

/// What a socket's arrival means for the user's friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The user was offline: friends must learn that they came online.
    CameOnline,
    /// The user's last socket had left but the grace period had not run out (a
    /// reload): friends are told nothing.
    Resumed,
    /// The user already had a socket.
    AnotherSocket,
}

/// What a socket's departure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Other sockets of the user remain.
    StillConnected,
    /// That was the user's last socket: the grace period starts. Call
    /// [`PresenceLedger::expire`] with the ticket once it has run out.
    LastSocket(GraceTicket),
    /// The ledger holds no socket of this user (an unpaired departure); ignored.
    Unknown,
}

/// Names one grace period; stale as soon as the user arrives again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraceTicket(u64);

impl GraceTicket {
    /// A ticket as a shared ledger stores it.
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    pub fn raw(self) -> u64 {
        self.0
    }
}

/// The answer to a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Changed,
    Unchanged,
    /// The user holds no presence (cannot happen for a connected socket's request).
    NotOnline,
}

/// Presence state shared by everything that serves sockets. Every method is atomic.
#[async_trait]
pub trait PresenceLedger: Send + Sync + 'static {
    /// Counts a new socket of `user`.
    async fn arrive(&self, user: UserId) -> Arrival;

    /// Uncounts a socket of `user` that left at `at`.
    async fn depart(&self, user: UserId, at: DateTime<Utc>) -> Departure;

    /// The grace period named by `ticket` ran out. Returns when the user's last socket
    /// left if they are now offline (the ledger forgets them), or `None` when they came
    /// back meanwhile.
    async fn expire(&self, user: UserId, ticket: GraceTicket) -> Option<DateTime<Utc>>;

    /// Sets the status a user chose for themselves.
    async fn set_status(&self, user: UserId, status: PresenceStatus) -> StatusChange;

    /// The status of each of `users` who is online (including those in their grace
    /// period, whom friends still see online); offline users are absent.
    async fn statuses(&self, users: &[UserId]) -> HashMap<UserId, PresenceStatus>;

    /// Forgets everyone (shutdown) and returns who was online.
    async fn drain(&self) -> Vec<UserId>;

    /// Clean-up after processes that died: returns the users who went offline with
    /// them (no socket left on a live process), and when they left. Every such user is
    /// returned to exactly one caller. A single process has no one to clean up after.
    async fn sweep_dead_nodes(&self) -> Vec<(UserId, DateTime<Utc>)> {
        Vec::new()
    }
}

/// The ledger of a single process.
#[derive(Default)]
pub struct LocalLedger {
    state: Mutex<LedgerState>,
}

#[derive(Default)]
struct LedgerState {
    users: HashMap<UserId, UserEntry>,
    next_ticket: u64,
}

struct UserEntry {
    sockets: u32,
    status: PresenceStatus,
    /// Set while the user has no socket: the grace period and when the last one left.
    grace: Option<(GraceTicket, DateTime<Utc>)>,
}

impl LocalLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        // Every update below is complete before the guard drops: a panic elsewhere
        // cannot leave a half-written entry.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl PresenceLedger for LocalLedger {
    async fn arrive(&self, user: UserId) -> Arrival {
        let mut state = self.lock();
        match state.users.get_mut(&user) {
            Some(entry) => {
                entry.sockets += 1;
                if entry.grace.take().is_some() {
                    Arrival::Resumed
                } else {
                    Arrival::AnotherSocket
                }
            }
            None => {
                state.users.insert(
                    user,
                    UserEntry {
                        sockets: 1,
                        status: PresenceStatus::Online,
                        grace: None,
                    },
                );
                Arrival::CameOnline
            }
        }
    }

    async fn depart(&self, user: UserId, at: DateTime<Utc>) -> Departure {
        let mut state = self.lock();
        state.next_ticket += 1;
        let ticket = GraceTicket(state.next_ticket);
        let Some(entry) = state.users.get_mut(&user).filter(|e| e.sockets > 0) else {
            return Departure::Unknown;
        };
        entry.sockets -= 1;
        if entry.sockets > 0 {
            return Departure::StillConnected;
        }
        entry.grace = Some((ticket, at));
        Departure::LastSocket(ticket)
    }

    async fn expire(&self, user: UserId, ticket: GraceTicket) -> Option<DateTime<Utc>> {
        let mut state = self.lock();
        let left_at = match state.users.get(&user)?.grace {
            Some((current, left_at)) if current == ticket => left_at,
            _ => return None,
        };
        state.users.remove(&user);
        Some(left_at)
    }

    async fn set_status(&self, user: UserId, status: PresenceStatus) -> StatusChange {
        let mut state = self.lock();
        match state.users.get_mut(&user) {
            None => StatusChange::NotOnline,
            Some(entry) if entry.status == status => StatusChange::Unchanged,
            Some(entry) => {
                entry.status = status;
                StatusChange::Changed
            }
        }
    }

    async fn statuses(&self, users: &[UserId]) -> HashMap<UserId, PresenceStatus> {
        let state = self.lock();
        users
            .iter()
            .filter_map(|u| state.users.get(u).map(|e| (*u, e.status)))
            .collect()
    }

    async fn drain(&self) -> Vec<UserId> {
        let mut state = self.lock();
        state.users.drain().map(|(user, _)| user).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reload_in_either_order_is_no_transition() {
        let ledger = LocalLedger::new();
        let user = UserId::new_random();
        let now = Utc::now();
        assert_eq!(ledger.arrive(user).await, Arrival::CameOnline);

        // New tab counted before the old one leaves.
        assert_eq!(ledger.arrive(user).await, Arrival::AnotherSocket);
        assert_eq!(ledger.depart(user, now).await, Departure::StillConnected);

        // Old one leaves first, new one back within grace.
        let Departure::LastSocket(ticket) = ledger.depart(user, now).await else {
            panic!("expected last socket");
        };
        assert_eq!(ledger.arrive(user).await, Arrival::Resumed);
        assert_eq!(ledger.expire(user, ticket).await, None, "stale ticket");
        assert_eq!(
            ledger.statuses(&[user]).await.get(&user),
            Some(&PresenceStatus::Online)
        );
    }

    #[tokio::test]
    async fn grace_expiry_makes_the_user_offline_and_keeps_the_departure_time() {
        let ledger = LocalLedger::new();
        let user = UserId::new_random();
        ledger.arrive(user).await;
        assert_eq!(
            ledger.set_status(user, PresenceStatus::Away).await,
            StatusChange::Changed
        );
        assert_eq!(
            ledger.set_status(user, PresenceStatus::Away).await,
            StatusChange::Unchanged
        );
        let left_at = Utc::now();
        let Departure::LastSocket(ticket) = ledger.depart(user, left_at).await else {
            panic!("expected last socket");
        };
        // Still visible (with its status) during grace.
        assert_eq!(
            ledger.statuses(&[user]).await.get(&user),
            Some(&PresenceStatus::Away)
        );
        assert_eq!(ledger.expire(user, ticket).await, Some(left_at));
        assert!(ledger.statuses(&[user]).await.is_empty());
        assert_eq!(ledger.depart(user, left_at).await, Departure::Unknown);
        assert_eq!(ledger.arrive(user).await, Arrival::CameOnline);
        assert_eq!(ledger.drain().await, vec![user]);
    }
}
