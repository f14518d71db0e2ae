//! Who is connected: the number of live sockets per user, over all namespaces.
//! It enforces `MAX_CONNECTIONS_PER_USER` and reports (for logs) a user's first and
//! last socket. Presence does not use these flags: a socket's release and its report
//! to presence are two steps another socket can come between, so the presence ledger
//! counts the reports itself, in the order its worker applies them
//! (see `crate::presence::ledger`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ids::UserId;

/// Counts sockets per user. Cheap to clone; all clones share the counts.
#[derive(Clone)]
pub struct ConnectionRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    max_per_user: u32,
    counts: Mutex<HashMap<UserId, u32>>,
}

/// One socket's place in the registry; released exactly once, explicitly or on drop.
pub struct ConnectionPermit {
    /// `None` once released.
    registry: Option<ConnectionRegistry>,
    user: UserId,
    /// True when this is the user's only socket in this process.
    pub first_for_user: bool,
}

/// The user already holds the maximum number of sockets.
#[derive(Debug)]
pub struct TooManyConnections;

impl ConnectionRegistry {
    pub fn new(max_per_user: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_per_user,
                counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn try_acquire(&self, user: UserId) -> Result<ConnectionPermit, TooManyConnections> {
        let mut counts = self.lock();
        let count = counts.entry(user).or_insert(0);
        if *count >= self.inner.max_per_user {
            return Err(TooManyConnections);
        }
        *count += 1;
        Ok(ConnectionPermit {
            registry: Some(self.clone()),
            user,
            first_for_user: *count == 1,
        })
    }

    /// Live sockets of one user.
    pub fn sockets_of(&self, user: UserId) -> u32 {
        self.lock().get(&user).copied().unwrap_or(0)
    }

    /// Live sockets in total.
    pub fn total(&self) -> u64 {
        self.lock().values().map(|c| u64::from(*c)).sum()
    }

    /// Returns true when the user has no socket left.
    fn release(&self, user: UserId) -> bool {
        let mut counts = self.lock();
        match counts.get_mut(&user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                counts.remove(&user);
                true
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, u32>> {
        // The map stays consistent even if a holder panicked: every update is one step.
        self.inner.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ConnectionPermit {
    pub fn user(&self) -> UserId {
        self.user
    }

    /// Gives the place back; returns true when it was the user's last socket.
    pub fn release(mut self) -> bool {
        self.registry
            .take()
            .is_some_and(|registry| registry.release(self.user))
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.take() {
            registry.release(self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_reports_first_and_last() {
        let registry = ConnectionRegistry::new(2);
        let user = UserId::new_random();
        let a = registry.try_acquire(user).unwrap();
        let b = registry.try_acquire(user).unwrap();
        assert!(a.first_for_user && !b.first_for_user);
        assert!(registry.try_acquire(user).is_err());
        assert!(!a.release());
        drop(b);
        assert_eq!(registry.sockets_of(user), 0);
        assert!(registry.try_acquire(user).unwrap().release());
        assert_eq!(registry.total(), 0);
    }
}
