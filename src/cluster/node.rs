//! This process as one node of a cluster: its id, its connection to the shared Redis,
//! and the liveness key that tells the other nodes it is alive.
//!
//! Whatever a node keeps in Redis for its own sockets (socket counts per user, grace
//! periods) is filed under its id, so that when the node dies the survivors can tell
//! its share apart and remove it. A node proves it is alive by refreshing
//! `{prefix}:node:alive:{id}` (a key with a TTL of half `STALE_TIMEOUT_SECS`) and is
//! listed in the set `{prefix}:nodes` until someone has cleaned up after it. A key that
//! expired means a dead node: see [`NodeLink::dead_nodes`].

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A node's id, random per process start: a restarted node is a new node, so nothing
/// another node remembers about the old one (viewers, awareness) is mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId(Uuid);

impl NodeId {
    pub fn random() -> Self {
        NodeId(Uuid::new_v4())
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One node's handle on the cluster's shared Redis state. Cheap to clone.
#[derive(Clone)]
pub struct NodeLink {
    node: String,
    prefix: String,
    conn: MultiplexedConnection,
    liveness_ttl: Duration,
}

impl NodeLink {
    /// Connects to `url` as node `id`. `stale_timeout` bounds how long a dead node's
    /// share of the shared state may outlive it.
    pub async fn connect(
        url: &str,
        prefix: &str,
        stale_timeout: Duration,
        id: NodeId,
    ) -> Result<Self, redis::RedisError> {
        let conn = super::resp3_client(url)?
            .get_multiplexed_async_connection()
            .await?;
        let link = Self {
            node: id.0.simple().to_string(),
            prefix: prefix.to_owned(),
            conn,
            liveness_ttl: (stale_timeout / 2)
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
        };
        // Alive before the first socket is counted under this id.
        link.beat().await?;
        Ok(link)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `{prefix}:{suffix}`: every key of this crate lives under the prefix.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    /// The prefix of liveness keys; a node's key is this followed by its id.
    pub fn alive_prefix(&self) -> String {
        self.key("node:alive:")
    }

    /// A connection (multiplexed: clones share one socket).
    pub fn conn(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// How long this node's liveness key outlives its last refresh.
    pub fn liveness_ttl(&self) -> Duration {
        self.liveness_ttl
    }

    /// Refreshes this node's liveness key and its place in the node set.
    pub async fn beat(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        let ttl_ms = u64::try_from(self.liveness_ttl.as_millis()).unwrap_or(u64::MAX);
        redis::pipe()
            .cmd("SET")
            .arg(format!("{}{}", self.alive_prefix(), self.node))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .sadd(self.key("nodes"), &self.node)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    /// Nodes still listed whose liveness key has expired: dead, their share not yet
    /// cleaned up. Never this node.
    pub async fn dead_nodes(&self) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.conn();
        let nodes: Vec<String> = conn.smembers(self.key("nodes")).await?;
        let mut dead = Vec::new();
        for node in nodes.into_iter().filter(|n| *n != self.node) {
            let alive: bool = conn
                .exists(format!("{}{node}", self.alive_prefix()))
                .await?;
            if !alive {
                dead.push(node);
            }
        }
        Ok(dead)
    }

    /// A dead node has been cleaned up after: it is no longer listed.
    pub async fn forget_node(&self, node: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        conn.srem::<_, _, ()>(self.key("nodes"), node).await
    }

    /// Graceful stop: the liveness key goes at once, so the survivors clean up after
    /// this node (and tell friends about users who had sockets only here) without
    /// waiting for the TTL. The node stays listed until one of them has.
    pub async fn leave(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn();
        conn.del::<_, ()>(format!("{}{}", self.alive_prefix(), self.node))
            .await
    }
}

/// Refreshes the liveness key three times per TTL until `shutdown`. (Removing it is
/// [`NodeLink::leave`], once the node has stopped serving.)
pub async fn run_heartbeat(link: NodeLink, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(link.liveness_ttl() / 3);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if let Err(e) = link.beat().await {
            tracing::warn!(error = %e, "cannot refresh this node's liveness key");
        }
    }
}

/// Links of `n` nodes sharing a fresh prefix on the test Redis (`REDIS_URL`, default
/// `redis://127.0.0.1:6379`), with a one-second liveness TTL.
#[cfg(test)]
pub(crate) async fn test_links(n: usize) -> Vec<NodeLink> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("diary-unit-{}", uuid::Uuid::new_v4().simple());
    let mut links = Vec::new();
    for _ in 0..n {
        links.push(
            NodeLink::connect(&url, &prefix, Duration::from_secs(2), NodeId::random())
                .await
                .expect("the unit tests need Redis on REDIS_URL"),
        );
    }
    links
}

/// Deletes every key under the links' prefix (tests only: `KEYS` walks the keyspace).
#[cfg(test)]
pub(crate) async fn test_cleanup(link: &NodeLink) {
    let mut conn = link.conn();
    let keys: Vec<String> = conn.keys(link.key("*")).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = conn.del(keys).await;
    }
}
