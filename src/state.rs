//! The state shared by every handler and background task of one running server.

use std::sync::{Arc, OnceLock};

use crate::cluster::{NodeLink, SocketIo};
use tokio_util::sync::CancellationToken;

use crate::auth::JwtKeys;
use crate::capacity::Capacity;
use crate::collab::replication::Replication;
use crate::collab::Collab;
use crate::config::Settings;
use crate::connections::ConnectionRegistry;
use crate::fanout::Fanout;
use crate::history::HistoryService;
use crate::notifications::NotificationService;
use crate::presence::ledger::{LocalLedger, PresenceLedger};
use crate::presence::redis_ledger::RedisLedger;
use crate::presence::Presence;
use crate::ratelimit::UserRateLimiter;
use crate::realtime::fanout::SocketIoFanout;
use crate::realtime::room::SocketRoom;
use crate::secret_mismatch::SecretMismatchLog;
use crate::store::Store;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub keys: JwtKeys,
    pub limiter: UserRateLimiter,
    pub connections: ConnectionRegistry,
    pub collab: Collab,
    /// The notification inbox: operations and fan-out to users' sockets.
    pub notifications: Arc<NotificationService>,
    /// Entry history: listing and reading checkpoints.
    pub history: HistoryService,
    /// Friend presence: every socket is reported here (see [`crate::presence`]).
    pub presence: Presence,
    /// This process as a cluster node (`REDIS_URL` set); `None` for a single process.
    pub node: Option<NodeLink>,
    /// Says once a minute per peer that tokens are signed with another secret.
    pub secret_mismatch: SecretMismatchLog,
    /// Load signals and the overload verdict `/ready` reports.
    pub capacity: Capacity,
    /// Cancelled when the server starts shutting down; background tasks stop on it.
    pub shutdown: CancellationToken,
    /// Shared with the fan-out, which needs the server once it exists.
    io: Arc<OnceLock<SocketIo>>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// `node`: set for a cluster node, whose per-user limits and presence are then
    /// shared through Redis.
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        keys: JwtKeys,
        node: Option<NodeLink>,
        replication: Arc<dyn Replication>,
    ) -> Self {
        let io = Arc::new(OnceLock::new());
        let fanout: Arc<dyn Fanout> = Arc::new(SocketIoFanout::new(io.clone()));
        let (rate, cap) = (
            settings.rate_limit_per_second,
            settings.max_connections_per_user,
        );
        let (limiter, connections, ledger): (_, _, Arc<dyn PresenceLedger>) = match &node {
            None => (
                UserRateLimiter::new(rate),
                ConnectionRegistry::new(cap),
                Arc::new(LocalLedger::new()),
            ),
            Some(link) => (
                UserRateLimiter::shared(rate, link.clone()),
                ConnectionRegistry::shared(cap, link.clone()),
                Arc::new(RedisLedger::new(link.clone())),
            ),
        };
        let presence = Presence::new(
            ledger,
            store.clone(),
            fanout.clone(),
            settings.presence_grace,
        );
        AppState(Arc::new(AppInner {
            notifications: Arc::new(NotificationService::new(store.clone(), fanout)),
            history: HistoryService::new(store.clone()),
            limiter,
            connections,
            collab: Collab::start(
                store.clone(),
                replication,
                SocketRoom::shared(),
                settings.history_interval,
            ),
            presence,
            node,
            secret_mismatch: SecretMismatchLog::new(),
            capacity: Capacity::new(settings.overload),
            shutdown: CancellationToken::new(),
            io,
            settings,
            store,
            keys,
        }))
    }

    /// The Socket.IO server; set once while the app is built, before any socket exists.
    pub fn io(&self) -> &SocketIo {
        self.0
            .io
            .get()
            .unwrap_or_else(|| unreachable!("io is set before the server accepts sockets"))
    }

    pub(crate) fn set_io(&self, io: SocketIo) {
        let _ = self.0.io.set(io);
    }
}
