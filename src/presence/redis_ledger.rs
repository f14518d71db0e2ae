//! The presence ledger of a cluster, in the shared Redis: every node counts its own
//! sockets there, and each transition is decided by one atomic script, so exactly one
//! node observes it (and tells the user's friends, cluster-wide).
//!
//! Layout, under the cluster's prefix:
//! - `presence:user:{id}`, a hash per user who is online or in grace: `s:{node}` = that
//!   node's socket count, `status`, and while no socket is left `grace` (the ticket),
//!   `gnode` (the node running the grace timer) and `left` (ms since the epoch);
//! - `presence:held:{node}`, the users a node has sockets of or runs a grace timer for,
//!   so that survivors know what to clean up when it dies;
//! - `presence:ticket`, the grace ticket counter.
//!
//! Counts of a node whose liveness key expired are dropped by the next script that
//! sums a user's sockets. A dead node's users are swept by the survivors
//! ([`PresenceLedger::sweep_dead_nodes`]): whoever ends up with no socket on a live
//! node, and no grace timer on a live node, is offline at once (their sockets have
//! been gone for at least the liveness TTL).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use redis::Script;

use super::ledger::{Arrival, Departure, GraceTicket, PresenceLedger, StatusChange};
use super::status::PresenceStatus;
use crate::cluster::NodeLink;
use crate::ids::UserId;

/// Lua shared by the scripts: the live socket count of hash `KEYS[1]`, dropping the
/// counts of nodes whose liveness key (prefix `ARGV[1]`) is gone.
const LIVE_TOTAL: &str = r#"
local function live_total(key, alive_prefix)
  local total = 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local field = all[i]
    if string.sub(field, 1, 2) == 's:' then
      if redis.call('EXISTS', alive_prefix .. string.sub(field, 3)) == 1 then
        total = total + tonumber(all[i + 1])
      else
        redis.call('HDEL', key, field)
      end
    end
  end
  return total
end
"#;

/// KEYS: user hash, held set. ARGV: alive prefix, node, user id.
const ARRIVE: &str = r#"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HINCRBY', KEYS[1], 's:' .. ARGV[2], 1)
redis.call('SADD', KEYS[2], ARGV[3])
if existed == 0 then
  redis.call('HSET', KEYS[1], 'status', 'online')
  return 'online'
end
if redis.call('HEXISTS', KEYS[1], 'grace') == 1 then
  redis.call('HDEL', KEYS[1], 'grace', 'gnode', 'left')
  return 'resumed'
end
return 'another'
"#;

/// KEYS: user hash, held set, ticket counter. ARGV: alive prefix, node, user id, at ms.
const DEPART: &str = r#"
local field = 's:' .. ARGV[2]
local n = tonumber(redis.call('HGET', KEYS[1], field) or '0')
if n <= 0 then return {'unknown', 0} end
if n == 1 then
  redis.call('HDEL', KEYS[1], field)
else
  redis.call('HINCRBY', KEYS[1], field, -1)
end
if live_total(KEYS[1], ARGV[1]) > 0 then
  if n == 1 then redis.call('SREM', KEYS[2], ARGV[3]) end
  return {'still', 0}
end
local ticket = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'grace', ticket, 'gnode', ARGV[2], 'left', ARGV[4])
return {'last', ticket}
"#;

/// KEYS: user hash, held set. ARGV: node, user id, ticket.
const EXPIRE: &str = r#"
if redis.call('HGET', KEYS[1], 'grace') == ARGV[3] then
  local left = redis.call('HGET', KEYS[1], 'left')
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return left
end
if redis.call('HEXISTS', KEYS[1], 's:' .. ARGV[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return false
"#;

/// KEYS: user hash. ARGV: status.
const SET_STATUS: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'none' end
if redis.call('HGET', KEYS[1], 'status') == ARGV[1] then return 'same' end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 'changed'
"#;

/// KEYS: user hash. ARGV: alive prefix, dead node, now ms. Returns when the user left
/// if this call made them offline.
const SWEEP: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HDEL', KEYS[1], 's:' .. ARGV[2])
if live_total(KEYS[1], ARGV[1]) > 0 then return false end
local gnode = redis.call('HGET', KEYS[1], 'gnode')
if gnode and redis.call('EXISTS', ARGV[1] .. gnode) == 1 then return false end
local left = redis.call('HGET', KEYS[1], 'left') or ARGV[3]
redis.call('DEL', KEYS[1])
return left
"#;

/// The cluster's presence ledger.
pub struct RedisLedger {
    link: NodeLink,
    arrive: Script,
    depart: Script,
    expire: Script,
    set_status: Script,
    sweep: Script,
}

impl RedisLedger {
    pub fn new(link: NodeLink) -> Self {
        let with_total = |body: &str| Script::new(&format!("{LIVE_TOTAL}\n{body}"));
        Self {
            link,
            arrive: Script::new(ARRIVE),
            depart: with_total(DEPART),
            expire: Script::new(EXPIRE),
            set_status: Script::new(SET_STATUS),
            sweep: with_total(SWEEP),
        }
    }

    fn user_key(&self, user: UserId) -> String {
        self.link.key(&format!("presence:user:{user}"))
    }

    fn held_key(&self, node: &str) -> String {
        self.link.key(&format!("presence:held:{node}"))
    }

    /// Cleans up after one dead node; returns who went offline with it.
    async fn sweep_node(&self, node: &str) -> redis::RedisResult<Vec<(UserId, DateTime<Utc>)>> {
        let mut conn = self.link.conn();
        let held: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.held_key(node))
            .query_async(&mut conn)
            .await?;
        let now = Utc::now().timestamp_millis();
        let mut offline = Vec::new();
        for raw in held {
            let Ok(id) = uuid::Uuid::parse_str(&raw) else {
                continue;
            };
            let user = UserId(id);
            let left: Option<i64> = self
                .sweep
                .key(self.user_key(user))
                .arg(self.link.alive_prefix())
                .arg(node)
                .arg(now)
                .invoke_async(&mut conn)
                .await?;
            if let Some(left) = left {
                offline.push((user, from_millis(left)));
            }
        }
        redis::cmd("DEL")
            .arg(self.held_key(node))
            .query_async::<()>(&mut conn)
            .await?;
        self.link.forget_node(node).await?;
        Ok(offline)
    }
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

fn parse_status(raw: &str) -> Option<PresenceStatus> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
}

#[async_trait]
impl PresenceLedger for RedisLedger {
    async fn arrive(&self, user: UserId) -> Arrival {
        let mut conn = self.link.conn();
        let answer: redis::RedisResult<String> = self
            .arrive
            .key(self.user_key(user))
            .key(self.held_key(self.link.node()))
            .arg(self.link.alive_prefix())
            .arg(self.link.node())
            .arg(user.to_string())
            .invoke_async(&mut conn)
            .await;
        match answer.as_deref() {
            Ok("online") => Arrival::CameOnline,
            Ok("resumed") => Arrival::Resumed,
            Ok(_) => Arrival::AnotherSocket,
            Err(e) => {
                // Friends are not told; the user's next socket or departure corrects it.
                tracing::warn!(%user, error = %e, "presence ledger: cannot count an arrival");
                Arrival::AnotherSocket
            }
        }
    }

    async fn depart(&self, user: UserId, at: DateTime<Utc>) -> Departure {
        let mut conn = self.link.conn();
        let answer: redis::RedisResult<(String, u64)> = self
            .depart
            .key(self.user_key(user))
            .key(self.held_key(self.link.node()))
            .key(self.link.key("presence:ticket"))
            .arg(self.link.alive_prefix())
            .arg(self.link.node())
            .arg(user.to_string())
            .arg(at.timestamp_millis())
            .invoke_async(&mut conn)
            .await;
        match answer {
            Ok((kind, ticket)) if kind == "last" => {
                Departure::LastSocket(GraceTicket::from_raw(ticket))
            }
            Ok((kind, _)) if kind == "still" => Departure::StillConnected,
            Ok(_) => Departure::Unknown,
            Err(e) => {
                // The count stays; the sweep of this node (once it stops) settles it.
                tracing::warn!(%user, error = %e, "presence ledger: cannot count a departure");
                Departure::StillConnected
            }
        }
    }

    async fn expire(&self, user: UserId, ticket: GraceTicket) -> Option<DateTime<Utc>> {
        let mut conn = self.link.conn();
        let answer: redis::RedisResult<Option<i64>> = self
            .expire
            .key(self.user_key(user))
            .key(self.held_key(self.link.node()))
            .arg(self.link.node())
            .arg(user.to_string())
            .arg(ticket.raw())
            .invoke_async(&mut conn)
            .await;
        match answer {
            Ok(left) => left.map(from_millis),
            Err(e) => {
                tracing::warn!(%user, error = %e, "presence ledger: cannot end a grace period");
                None
            }
        }
    }

    async fn set_status(&self, user: UserId, status: PresenceStatus) -> StatusChange {
        let mut conn = self.link.conn();
        let answer: redis::RedisResult<String> = self
            .set_status
            .key(self.user_key(user))
            .arg(status.as_str())
            .invoke_async(&mut conn)
            .await;
        match answer.as_deref() {
            Ok("changed") => StatusChange::Changed,
            Ok("same") => StatusChange::Unchanged,
            Ok(_) => StatusChange::NotOnline,
            Err(e) => {
                tracing::warn!(%user, error = %e, "presence ledger: cannot set a status");
                StatusChange::Unchanged
            }
        }
    }

    async fn statuses(&self, users: &[UserId]) -> HashMap<UserId, PresenceStatus> {
        if users.is_empty() {
            return HashMap::new();
        }
        let mut conn = self.link.conn();
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hget(self.user_key(*user), "status");
        }
        match pipe.query_async::<Vec<Option<String>>>(&mut conn).await {
            Ok(found) => users
                .iter()
                .zip(found)
                .filter_map(|(user, raw)| Some((*user, parse_status(raw.as_deref()?)?)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "presence ledger: cannot read statuses");
                HashMap::new()
            }
        }
    }

    /// Nothing: the survivors sweep this node once its liveness key is gone (see
    /// [`crate::cluster::NodeLink::leave`]), and tell friends who went offline with it.
    async fn drain(&self) -> Vec<UserId> {
        Vec::new()
    }

    async fn sweep_dead_nodes(&self) -> Vec<(UserId, DateTime<Utc>)> {
        let dead = match self.link.dead_nodes().await {
            Ok(dead) => dead,
            Err(e) => {
                tracing::warn!(error = %e, "presence ledger: cannot list dead nodes");
                return Vec::new();
            }
        };
        let mut offline = Vec::new();
        for node in dead {
            match self.sweep_node(&node).await {
                Ok(users) => {
                    tracing::info!(node, offline = users.len(), "cleaned up after a dead node");
                    offline.extend(users);
                }
                Err(e) => tracing::warn!(node, error = %e, "cannot clean up after a dead node"),
            }
        }
        offline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::node::{test_cleanup, test_links};

    #[tokio::test]
    async fn transitions_are_decided_once_across_nodes() {
        let links = test_links(2).await;
        let (a, b) = (
            RedisLedger::new(links[0].clone()),
            RedisLedger::new(links[1].clone()),
        );
        let user = UserId::new_random();
        let now = Utc::now();
        assert_eq!(a.arrive(user).await, Arrival::CameOnline);
        assert_eq!(b.arrive(user).await, Arrival::AnotherSocket);
        assert_eq!(a.depart(user, now).await, Departure::StillConnected);
        assert_eq!(a.depart(user, now).await, Departure::Unknown);
        let Departure::LastSocket(ticket) = b.depart(user, now).await else {
            panic!("expected last socket");
        };
        // A reload onto the other node within grace: the ticket goes stale.
        assert_eq!(a.arrive(user).await, Arrival::Resumed);
        assert_eq!(b.expire(user, ticket).await, None);
        assert_eq!(
            b.set_status(user, PresenceStatus::Busy).await,
            StatusChange::Changed
        );
        assert_eq!(
            a.set_status(user, PresenceStatus::Busy).await,
            StatusChange::Unchanged
        );
        assert_eq!(
            b.statuses(&[user, UserId::new_random()]).await,
            HashMap::from([(user, PresenceStatus::Busy)])
        );
        let left = Utc::now();
        let Departure::LastSocket(ticket) = a.depart(user, left).await else {
            panic!("expected last socket");
        };
        let gone = a.expire(user, ticket).await.expect("offline after grace");
        assert_eq!(gone.timestamp_millis(), left.timestamp_millis());
        assert_eq!(
            a.set_status(user, PresenceStatus::Away).await,
            StatusChange::NotOnline
        );
        test_cleanup(&links[0]).await;
    }

    #[tokio::test]
    async fn a_dead_nodes_users_go_offline_once_unless_connected_elsewhere() {
        let links = test_links(3).await;
        let ledgers: Vec<RedisLedger> = links.iter().cloned().map(RedisLedger::new).collect();
        let [only_dead, also_alive, in_grace] = [(); 3].map(|_| UserId::new_random());
        for user in [only_dead, also_alive, in_grace] {
            ledgers[2].arrive(user).await;
        }
        ledgers[0].arrive(also_alive).await;
        // A grace timer run by a live node is left to that node.
        ledgers[1].arrive(in_grace).await;
        ledgers[2].depart(in_grace, Utc::now()).await;
        assert!(matches!(
            ledgers[1].depart(in_grace, Utc::now()).await,
            Departure::LastSocket(_)
        ));

        links[2].leave().await.unwrap();
        let swept = ledgers[0].sweep_dead_nodes().await;
        assert_eq!(
            swept.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
            vec![only_dead]
        );
        assert!(ledgers[1].sweep_dead_nodes().await.is_empty(), "swept once");
        let online = ledgers[0]
            .statuses(&[only_dead, also_alive, in_grace])
            .await;
        assert!(!online.contains_key(&only_dead));
        assert!(online.contains_key(&also_alive) && online.contains_key(&in_grace));
        // The survivor's count was not touched: its departure is the last one.
        assert!(matches!(
            ledgers[0].depart(also_alive, Utc::now()).await,
            Departure::LastSocket(_)
        ));
        test_cleanup(&links[0]).await;
    }
}
