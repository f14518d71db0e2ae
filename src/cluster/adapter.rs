//! The Socket.IO adapter every node runs: socketioxide's Redis adapter, on a driver that
//! is either a real Redis connection (`REDIS_URL` set: a cluster node) or a standalone
//! stub (no Redis: a single node). One adapter type for both keeps one code path in every
//! handler, and a single node pays nothing for it: the stub publishes nowhere and reports
//! itself as the only server, so remote requests finish at once.

use socketioxide_redis::drivers::redis::{RedisDriver, RedisError};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

/// The adapter of every namespace.
pub type Adapter = CustomRedisAdapter<socketioxide::adapter::Emitter, NodeDriver>;
/// A connected socket, whatever node it lives on.
pub type SocketRef = socketioxide::extract::SocketRef<Adapter>;
/// The Socket.IO server.
pub type SocketIo = socketioxide::SocketIo<Adapter>;

/// How this node talks to the others.
#[derive(Clone)]
pub enum NodeDriver {
    /// No Redis: this node is the whole cluster.
    Standalone,
    /// Redis pub/sub, shared with every other node using the same Redis.
    Redis(RedisDriver),
}

impl NodeDriver {
    /// Connects to Redis, or the standalone stub when `redis_url` is `None`.
    pub async fn connect(redis_url: Option<&str>) -> Result<Self, redis::RedisError> {
        match redis_url {
            None => Ok(NodeDriver::Standalone),
            Some(url) => Ok(NodeDriver::Redis(
                RedisDriver::new(&resp3_client(url)?).await?,
            )),
        }
    }

    /// The adapter's constructor state for [`socketioxide::SocketIoBuilder::with_adapter`].
    pub fn into_adapter_state(self, prefix: &str) -> RedisAdapterCtr<NodeDriver> {
        let config = RedisAdapterConfig::new().with_prefix(prefix.to_owned());
        RedisAdapterCtr::new_with_driver(self, config)
    }
}

impl Driver for NodeDriver {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        match self {
            NodeDriver::Standalone => Ok(()),
            NodeDriver::Redis(driver) => driver.publish(chan, val).await,
        }
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        match self {
            NodeDriver::Standalone => Ok(MessageStream::new_empty()),
            NodeDriver::Redis(driver) => driver.subscribe(chan, size).await,
        }
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        match self {
            NodeDriver::Standalone => Ok(()),
            NodeDriver::Redis(driver) => driver.unsubscribe(chan).await,
        }
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        match self {
            NodeDriver::Standalone => Ok(1),
            NodeDriver::Redis(driver) => driver.num_serv(chan).await,
        }
    }
}

/// A client for `url` speaking RESP3, which the adapter's pub/sub needs (push messages
/// on a multiplexed connection), whatever protocol the URL names.
pub fn resp3_client(url: &str) -> Result<redis::Client, redis::RedisError> {
    let info = redis::IntoConnectionInfo::into_connection_info(url)?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings))
}
