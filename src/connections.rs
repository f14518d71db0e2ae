//! Who is connected: the number of live sockets per user, over all namespaces.
//! It enforces `MAX_CONNECTIONS_PER_USER` and reports (for logs) a user's first and
//! last socket. Presence does not use these flags: a socket's release and its report
//! to presence are two steps another socket can come between, so the presence ledger
//! counts the reports itself, in the order its worker applies them
//! (see `crate::presence::ledger`).
//!
//! In a cluster the cap counts every process's sockets: each process files its count
//! per user in Redis under its node id ([`SharedCounts`]); counts of nodes whose
//! liveness key expired are dropped when summed, so a dead process's sockets stop
//! counting within `STALE_TIMEOUT_SECS`. The in-process counts are kept as well (this
//! process's share, for health and logs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::Script;

use crate::cluster::NodeLink;
use crate::ids::UserId;

/// Counts sockets per user. Cheap to clone; all clones share the counts.
#[derive(Clone)]
pub struct ConnectionRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    max_per_user: u32,
    counts: Mutex<HashMap<UserId, u32>>,
    /// Set in a cluster: the counts of every process.
    shared: Option<SharedCounts>,
}

/// One socket's place in the registry; released exactly once, explicitly or on drop.
pub struct ConnectionPermit {
    /// `None` once released.
    registry: Option<ConnectionRegistry>,
    user: UserId,
    /// True when this is the user's only socket in this process.
    pub first_for_user: bool,
    /// True once the place in the cluster's counts is taken (cluster only).
    shared_held: bool,
}

/// The user already holds the maximum number of sockets.
#[derive(Debug)]
pub struct TooManyConnections;

impl ConnectionRegistry {
    /// A single process's registry.
    pub fn new(max_per_user: u32) -> Self {
        Self::with_shared(max_per_user, None)
    }

    /// A cluster node's registry: the cap holds over every node sharing `link`'s Redis.
    pub fn shared(max_per_user: u32, link: NodeLink) -> Self {
        Self::with_shared(max_per_user, Some(SharedCounts::new(link)))
    }

    fn with_shared(max_per_user: u32, shared: Option<SharedCounts>) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_per_user,
                counts: Mutex::new(HashMap::new()),
                shared,
            }),
        }
    }

    pub async fn try_acquire(&self, user: UserId) -> Result<ConnectionPermit, TooManyConnections> {
        let first_for_user = {
            let mut counts = self.lock();
            let count = counts.entry(user).or_insert(0);
            if *count >= self.inner.max_per_user {
                return Err(TooManyConnections);
            }
            *count += 1;
            *count == 1
        };
        // Held from here on, so that the local place is given back however this ends.
        let mut permit = ConnectionPermit {
            registry: Some(self.clone()),
            user,
            first_for_user,
            shared_held: false,
        };
        if let Some(shared) = &self.inner.shared {
            if !shared.try_acquire(user, self.inner.max_per_user).await {
                return Err(TooManyConnections);
            }
            permit.shared_held = true;
        }
        Ok(permit)
    }

    /// Live sockets of one user.
    pub fn sockets_of(&self, user: UserId) -> u32 {
        self.lock().get(&user).copied().unwrap_or(0)
    }

    /// Live sockets in total.
    pub fn total(&self) -> u64 {
        self.lock().values().map(|c| u64::from(*c)).sum()
    }

    /// Returns true when the user has no socket left (here).
    fn release(&self, user: UserId, shared_held: bool) -> bool {
        if let (Some(shared), true) = (&self.inner.shared, shared_held) {
            shared.release(user);
        }
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
            .is_some_and(|registry| registry.release(self.user, self.shared_held))
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.take() {
            registry.release(self.user, self.shared_held);
        }
    }
}

/// Per-node socket counts in Redis: hash `{prefix}:conn:{user}`, field = node id.
struct SharedCounts {
    link: NodeLink,
    acquire: Script,
    release: Script,
}

/// KEYS: the user's hash. ARGV: alive prefix, node, max. Counts the live nodes'
/// sockets (dropping dead nodes' fields) and takes a place if one is free: 1, else 0.
const ACQUIRE: &str = r#"
local total = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] == ARGV[2] or redis.call('EXISTS', ARGV[1] .. all[i]) == 1 then
    total = total + tonumber(all[i + 1])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
if total >= tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
return 1
"#;

/// KEYS: the user's hash. ARGV: node.
const RELEASE: &str = r#"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"#;

impl SharedCounts {
    fn new(link: NodeLink) -> Self {
        Self {
            link,
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
        }
    }

    fn key(&self, user: UserId) -> String {
        self.link.key(&format!("conn:{user}"))
    }

    async fn try_acquire(&self, user: UserId, max: u32) -> bool {
        let mut conn = self.link.conn();
        let taken: redis::RedisResult<i64> = self
            .acquire
            .key(self.key(user))
            .arg(self.link.alive_prefix())
            .arg(self.link.node())
            .arg(max)
            .invoke_async(&mut conn)
            .await;
        match taken {
            Ok(taken) => taken == 1,
            Err(e) => {
                // Redis down: the local cap still holds.
                tracing::warn!(%user, error = %e, "connection cap unavailable; allowing");
                true
            }
        }
    }

    /// Gives a place back in the background (called from `Drop`).
    fn release(&self, user: UserId) {
        let mut conn = self.link.conn();
        let key = self.key(user);
        let node = self.link.node().to_owned();
        let script = self.release.clone();
        // No runtime (the process is ending): the count goes with this node's liveness.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let done: redis::RedisResult<i64> =
                script.key(key).arg(node).invoke_async(&mut conn).await;
            if let Err(e) = done {
                tracing::warn!(%user, error = %e, "cannot release a connection place");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_and_reports_first_and_last() {
        let registry = ConnectionRegistry::new(2);
        let user = UserId::new_random();
        let a = registry.try_acquire(user).await.unwrap();
        let b = registry.try_acquire(user).await.unwrap();
        assert!(a.first_for_user && !b.first_for_user);
        assert!(registry.try_acquire(user).await.is_err());
        assert!(!a.release());
        drop(b);
        assert_eq!(registry.sockets_of(user), 0);
        assert!(registry.try_acquire(user).await.unwrap().release());
        assert_eq!(registry.total(), 0);
    }

    #[tokio::test]
    async fn the_cap_counts_every_node_and_forgets_dead_ones() {
        let links = crate::cluster::node::test_links(3).await;
        let nodes: Vec<ConnectionRegistry> = links
            .iter()
            .map(|l| ConnectionRegistry::shared(2, l.clone()))
            .collect();
        let user = UserId::new_random();
        let on_a = nodes[0].try_acquire(user).await.unwrap();
        let on_c = nodes[2].try_acquire(user).await.unwrap();
        assert!(nodes[1].try_acquire(user).await.is_err());
        assert_eq!(
            nodes[1].sockets_of(user),
            0,
            "a refusal keeps no local place"
        );
        // Node c dies: its socket stops counting once its liveness key is gone.
        links[2].leave().await.unwrap();
        let on_b = nodes[1].try_acquire(user).await.unwrap();
        assert!(nodes[0].try_acquire(user).await.is_err());
        drop(on_b);
        // The release reaches Redis in the background.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let again = loop {
            match nodes[1].try_acquire(user).await {
                Ok(permit) => break permit,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(_) => panic!("the released place never came back"),
            }
        };
        drop((on_a, on_c, again));
        crate::cluster::node::test_cleanup(&links[0]).await;
    }
}
