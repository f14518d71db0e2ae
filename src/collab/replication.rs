//! Replicas of one entry on several nodes. Every node with members of an entry runs
//! its own actor; the actors exchange what they applied on a per-entry Redis pub/sub
//! channel (`{REDIS_PREFIX}:entry:{id}`), so each relays changes to its own members in
//! each member's form. Without Redis the [`Standalone`] implementation publishes
//! nowhere, and the actor keeps a single code path.
//!
//! What goes over the channel is this node's doing only: an update once *committed*
//! here (a replica elsewhere then never holds an update the database may lack, so
//! nothing it commits later can depend on a lost one), cursor and typing changes,
//! awareness updates, and this node's viewers of the entry, re-announced while it has
//! any so that a node that dies drops out of `current_viewers` once it goes quiet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::command::{DocCommand, Viewer};
use super::cursors::{Position, Selection};
use crate::cluster::node::NodeId;
use crate::config::Settings;
use crate::ids::{EntryId, UserId};

/// What one replica tells the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Message {
    /// A committed update from `user`.
    Update {
        user: UserId,
        update: Bytes,
    },
    Cursor {
        user: UserId,
        position: Position,
        selection: Selection,
    },
    Typing {
        user: UserId,
        is_typing: bool,
    },
    /// A y-protocols awareness update (states, or their removal when members leave).
    Awareness {
        update: Bytes,
    },
    /// Every viewer the origin has now; empty once it has none.
    Viewers {
        viewers: Vec<Viewer>,
    },
}

/// A message and the node it comes from.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: NodeId,
    message: Message,
}

/// How often a node re-announces its viewers, and after how long without one the
/// others forget them (the node is presumed dead).
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub announce_every: Duration,
    pub stale_after: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("replication channel: {0}")]
pub struct ReplicationError(#[from] redis::RedisError);

/// The channel between the replicas of each entry.
#[async_trait]
pub trait Replication: Send + Sync + 'static {
    fn node(&self) -> NodeId;

    /// Whether any other node may exist (without one, nothing needs announcing).
    fn clustered(&self) -> bool;

    fn liveness(&self) -> Liveness;

    /// Delivers the entry's messages from other nodes to `mailbox` as
    /// [`DocCommand::Replica`], from the moment this returns.
    async fn subscribe(
        &self,
        entry: EntryId,
        mailbox: mpsc::UnboundedSender<DocCommand>,
    ) -> Result<(), ReplicationError>;

    /// Stops delivering to `mailbox` (another actor of the entry may be subscribed).
    async fn unsubscribe(&self, entry: EntryId, mailbox: &mpsc::UnboundedSender<DocCommand>);

    /// Sends to the entry's other replicas, in order, without waiting.
    fn publish(&self, entry: EntryId, message: Message);
}

/// A single node: no other replica exists.
pub struct Standalone {
    node: NodeId,
    liveness: Liveness,
}

impl Standalone {
    pub fn new(node: NodeId, liveness: Liveness) -> Self {
        Standalone { node, liveness }
    }
}

#[async_trait]
impl Replication for Standalone {
    fn node(&self) -> NodeId {
        self.node
    }

    fn clustered(&self) -> bool {
        false
    }

    fn liveness(&self) -> Liveness {
        self.liveness
    }

    async fn subscribe(
        &self,
        _entry: EntryId,
        _mailbox: mpsc::UnboundedSender<DocCommand>,
    ) -> Result<(), ReplicationError> {
        Ok(())
    }

    async fn unsubscribe(&self, _entry: EntryId, _mailbox: &mpsc::UnboundedSender<DocCommand>) {}

    fn publish(&self, _entry: EntryId, _message: Message) {}
}

/// Subscribed actors by channel name. More than one while an unloading actor and its
/// successor overlap.
type Subscribers = Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<DocCommand>>>>>;

/// The subscribing connection; replaced when it is lost.
type SharedConnection = Arc<Mutex<redis::aio::MultiplexedConnection>>;

/// Redis pub/sub: one RESP3 connection receives every subscribed channel and hands
/// each message straight to the actors' (unbounded) mailboxes, so none is dropped
/// however busy an actor is; one task publishes, in submission order. A lost
/// connection is replaced and resubscribed, and every actor then catches up from the
/// database on what it missed meanwhile.
pub struct RedisReplication {
    node: NodeId,
    prefix: String,
    liveness: Liveness,
    conn: SharedConnection,
    subscribers: Subscribers,
    /// Serializes SUBSCRIBE/UNSUBSCRIBE with the changes to `subscribers`, so Redis
    /// sees them in the order the map changed.
    control: Arc<tokio::sync::Mutex<()>>,
    outbox: mpsc::UnboundedSender<(String, Vec<u8>)>,
}

/// The replication this node runs: Redis when `REDIS_URL` is set, else standalone.
/// Viewers are re-announced every heartbeat interval; a node missing three in a row
/// (and never longer than the stale timeout for sockets) is presumed dead.
pub async fn connect(
    settings: &Settings,
    node: NodeId,
) -> Result<Arc<dyn Replication>, ReplicationError> {
    let liveness = Liveness {
        announce_every: settings.heartbeat_interval,
        stale_after: (settings.heartbeat_interval * 3).min(settings.stale_timeout),
    };
    Ok(match settings.redis_url.as_deref() {
        None => Arc::new(Standalone::new(node, liveness)),
        Some(url) => {
            Arc::new(RedisReplication::connect(url, &settings.redis_prefix, node, liveness).await?)
        }
    })
}

/// Most messages per publishing pipeline.
const PUBLISH_BATCH: usize = 256;

impl RedisReplication {
    pub async fn connect(
        url: &str,
        prefix: &str,
        node: NodeId,
        liveness: Liveness,
    ) -> Result<Self, ReplicationError> {
        let subscribers: Subscribers = Arc::default();
        let dispatch = subscribers.clone();
        let (lost, lost_notices) = mpsc::unbounded_channel();
        let config = redis::AsyncConnectionConfig::new().set_push_sender(move |push| {
            deliver(node, &dispatch, &lost, push);
            Ok::<(), std::convert::Infallible>(())
        });
        let client = crate::cluster::resp3_client(url)?;
        let name = format!("{prefix}:replica:{node}");
        let conn = Arc::new(Mutex::new(subscriber(&client, &config, &name).await?));
        let control = Arc::new(tokio::sync::Mutex::new(()));
        tokio::spawn(resubscribe_when_lost(
            Resubscriber {
                client: client.clone(),
                config,
                name,
                conn: conn.clone(),
                subscribers: subscribers.clone(),
                control: control.clone(),
            },
            lost_notices,
        ));
        let (outbox, queued) = mpsc::unbounded_channel();
        let publisher = client.get_multiplexed_async_connection().await?;
        tokio::spawn(publish_all(client, publisher, queued));
        Ok(RedisReplication {
            node,
            prefix: prefix.to_owned(),
            liveness,
            conn,
            subscribers,
            control,
            outbox,
        })
    }

    fn channel(&self, entry: EntryId) -> String {
        format!("{}:entry:{entry}", self.prefix)
    }

    fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Vec<mpsc::UnboundedSender<DocCommand>>>> {
        lock_subscribers(&self.subscribers)
    }
}

#[async_trait]
impl Replication for RedisReplication {
    fn node(&self) -> NodeId {
        self.node
    }

    fn clustered(&self) -> bool {
        true
    }

    fn liveness(&self) -> Liveness {
        self.liveness
    }

    async fn subscribe(
        &self,
        entry: EntryId,
        mailbox: mpsc::UnboundedSender<DocCommand>,
    ) -> Result<(), ReplicationError> {
        let channel = self.channel(entry);
        let _control = self.control.lock().await;
        let first = {
            let mut subscribers = self.lock();
            let list = subscribers.entry(channel.clone()).or_default();
            list.push(mailbox.clone());
            list.len() == 1
        };
        if first {
            if let Err(e) = self.connection().subscribe(&channel).await {
                let mut subscribers = self.lock();
                if let Some(list) = subscribers.get_mut(&channel) {
                    list.retain(|tx| !tx.same_channel(&mailbox));
                    if list.is_empty() {
                        subscribers.remove(&channel);
                    }
                }
                return Err(e.into());
            }
        }
        Ok(())
    }

    async fn unsubscribe(&self, entry: EntryId, mailbox: &mpsc::UnboundedSender<DocCommand>) {
        let channel = self.channel(entry);
        let _control = self.control.lock().await;
        let last = {
            let mut subscribers = self.lock();
            let Some(list) = subscribers.get_mut(&channel) else {
                return;
            };
            list.retain(|tx| !tx.same_channel(mailbox));
            let last = list.is_empty();
            if last {
                subscribers.remove(&channel);
            }
            last
        };
        if last {
            if let Err(e) = self.connection().unsubscribe(&channel).await {
                tracing::warn!(%entry, error = %e, "unsubscribing from the entry channel failed");
            }
        }
    }

    fn publish(&self, entry: EntryId, message: Message) {
        let envelope = Envelope {
            origin: self.node,
            message,
        };
        match rmp_serde::to_vec(&envelope) {
            Ok(bytes) => {
                let _ = self.outbox.send((self.channel(entry), bytes));
            }
            Err(e) => tracing::error!(%entry, error = %e, "cannot encode a replica message"),
        }
    }
}

/// Hands a pushed message to the channel's actors; ignores this node's own. Reports
/// the loss of the connection (its subscriptions die with it) on `lost`.
fn deliver(
    node: NodeId,
    subscribers: &Subscribers,
    lost: &mpsc::UnboundedSender<()>,
    push: redis::PushInfo,
) {
    match push.kind {
        redis::PushKind::Message => {}
        redis::PushKind::Disconnection => {
            tracing::error!("lost the Redis connection replicating entries; reconnecting");
            let _ = lost.send(());
            return;
        }
        _ => return,
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(channel), Ok(payload)) = (
        redis::from_redis_value::<String>(channel),
        redis::from_redis_value::<Vec<u8>>(payload),
    ) else {
        return;
    };
    let envelope: Envelope = match rmp_serde::from_slice(&payload) {
        Ok(envelope) => envelope,
        Err(e) => {
            tracing::warn!(%channel, error = %e, "undecodable replica message");
            return;
        }
    };
    if envelope.origin == node {
        return;
    }
    let subscribers = lock_subscribers(subscribers);
    for mailbox in subscribers.get(&channel).into_iter().flatten() {
        let _ = mailbox.send(DocCommand::Replica {
            origin: envelope.origin,
            message: envelope.message.clone(),
        });
    }
}

/// What it takes to replace the subscribing connection.
struct Resubscriber {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    name: String,
    conn: SharedConnection,
    subscribers: Subscribers,
    control: Arc<tokio::sync::Mutex<()>>,
}

/// Most time between two attempts to reconnect or publish.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Replaces the subscribing connection each time it is lost, subscribes it to every
/// channel in use, then tells each subscribed actor to catch up: what other replicas
/// committed meanwhile is in the database, though its messages are gone.
async fn resubscribe_when_lost(this: Resubscriber, mut lost: mpsc::UnboundedReceiver<()>) {
    while lost.recv().await.is_some() {
        let mut delay = Duration::from_millis(100);
        loop {
            while lost.try_recv().is_ok() {}
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
            let mut fresh = match subscriber(&this.client, &this.config, &this.name).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "reconnecting to Redis failed; retrying");
                    continue;
                }
            };
            let _control = this.control.lock().await;
            let channels: Vec<String> = lock_subscribers(&this.subscribers)
                .keys()
                .cloned()
                .collect();
            if !channels.is_empty() {
                if let Err(e) = fresh.subscribe(&channels).await {
                    tracing::warn!(error = %e, "resubscribing entry channels failed; retrying");
                    continue;
                }
            }
            *this.conn.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
            for mailbox in lock_subscribers(&this.subscribers).values().flatten() {
                let _ = mailbox.send(DocCommand::CatchUp);
            }
            tracing::info!(
                entries = channels.len(),
                "Redis connection replicating entries restored"
            );
            break;
        }
    }
}

/// A connection for receiving, named (`CLIENT SETNAME`) so an operator can tell
/// which node's it is.
async fn subscriber(
    client: &redis::Client,
    config: &redis::AsyncConnectionConfig,
    name: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let mut conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(conn)
}

fn lock_subscribers(
    subscribers: &Subscribers,
) -> std::sync::MutexGuard<'_, HashMap<String, Vec<mpsc::UnboundedSender<DocCommand>>>> {
    subscribers.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes queued messages in order, pipelining whatever queued up meanwhile, on a
/// connection replaced when it fails.
async fn publish_all(
    client: redis::Client,
    conn: redis::aio::MultiplexedConnection,
    mut queued: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let mut conn = Some(conn);
    let mut batch = Vec::new();
    while queued.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, bytes) in batch.drain(..) {
            pipe.publish(channel, bytes).ignore();
        }
        let mut delay = Duration::from_millis(50);
        // A replica that misses an update lacks it until its members resync or it
        // reloads, so retry a while before giving up on the batch.
        for attempt in 0..5 {
            if conn.is_none() {
                conn = client.get_multiplexed_async_connection().await.ok();
            }
            if let Some(c) = conn.as_mut() {
                match pipe.query_async::<()>(c).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "publishing replica messages failed");
                        conn = None;
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }
}
