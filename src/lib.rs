//! diary-realtime: a Socket.IO-compatible server for collaborative diary entries.
//!
//! [`Application::build`] wires everything from [`config::Settings`] and binds the
//! listener (port 0 picks a free one), so `main` and the tests start the same server.

pub mod auth;
pub mod capacity;
pub mod cluster;
pub mod collab;
pub mod config;
pub mod connections;
pub mod demo;
pub mod error;
pub mod fanout;
pub mod history;
pub mod http;
pub mod ids;
pub mod memory;
pub mod notifications;
pub mod presence;
pub mod ratelimit;
pub mod realtime;
pub mod secret_mismatch;
pub mod state;
pub mod store;
pub mod telemetry;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

use crate::auth::JwtKeys;
use crate::config::Settings;
use crate::state::AppState;
use crate::store::NotificationFeed;

/// How long in-flight HTTP requests may take to finish once shutdown has started.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// Postgres only: already LISTENing, so no row committed once we serve is missed.
    notification_feed: Option<Box<dyn NotificationFeed>>,
}

impl Application {
    /// Opens (and migrates) the database, builds the Socket.IO and HTTP stack and binds.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Install the recorder before anything records.
        telemetry::metrics_handle();
        // Bind first: a second server started by mistake stops here, before it opens
        // the database and resets the presence rows of the one already running.
        let addr = SocketAddr::new(settings.host, settings.port);
        let listener = bind(addr).await?;
        let store = store::open(&settings).await?;
        // One id for everything this process files under its name in Redis.
        let node_id = cluster::NodeId::random();
        let node = match settings.redis_url.as_deref() {
            Some(url) => Some(
                cluster::NodeLink::connect(
                    url,
                    &settings.redis_prefix,
                    settings.stale_timeout,
                    node_id,
                )
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to Redis: {e}"))?,
            ),
            // Only a single process may take every presence row as left over.
            None => {
                presence::reset(store.as_ref()).await?;
                None
            }
        };
        let keys = JwtKeys::from_settings(&settings);
        let notification_feed = store
            .notification_feed()
            .await
            .map_err(|e| anyhow::anyhow!("cannot LISTEN for notifications: {e}"))?;
        let driver = cluster::NodeDriver::connect(settings.redis_url.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Redis: {e}"))?;
        let replication = collab::replication::connect(&settings, node_id)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Redis: {e}"))?;
        let state = AppState::new(settings, store, keys, node, replication);
        let socket_layer = realtime::build(&state, driver).await?;
        let router = http::router(state.clone())
            .layer(socket_layer)
            .layer(http::cors(&state.settings.cors_origins));
        Ok(Self {
            listener,
            router,
            state,
            notification_feed,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `stop` resolves, then shuts down gracefully: stop accepting,
    /// disconnect every socket, let background work finish.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let heartbeat = tokio::spawn(realtime::run_heartbeat(state.clone()));
        let capacity = {
            let app = state.clone();
            tokio::spawn(
                state
                    .capacity
                    .clone()
                    .watch(move || app.collab.commit_backlog(), state.shutdown.clone()),
            )
        };
        let node_heartbeat = state
            .node
            .clone()
            .map(|link| tokio::spawn(cluster::node::run_heartbeat(link, state.shutdown.clone())));
        let notification_listener = self.notification_feed.map(|feed| {
            tokio::spawn(notifications::listener::run(
                feed,
                state.notifications.clone(),
                state.shutdown.clone(),
            ))
        });
        let history_pruning = tokio::spawn(tracing::Instrument::instrument(
            history::pruning::run(
                state.store.clone(),
                state.settings.history_retention,
                state.shutdown.clone(),
            ),
            tracing::info_span!("history-pruning"),
        ));
        let presence = state.presence.start(
            &state.shutdown,
            state.settings.stale_timeout,
            state.node.as_ref().map(|link| link.liveness_ttl() / 2),
        );
        tracing::info!(addr = %self.listener.local_addr()?, path = %state.settings.socket_path, "listening");
        let closing = state.clone();
        // Replies and relays are small writes: without TCP_NODELAY, Nagle holds each
        // one back until the previous is acknowledged (tens of ms with delayed ACKs).
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutting down");
            closing.shutdown.cancel();
            realtime::end_all_sessions(&closing).await;
            closing.io().close().await;
            // Every entry flushes its last updates and unloads.
            closing
                .collab
                .shutdown(std::time::Duration::from_secs(10))
                .await;
        });
        // Graceful shutdown waits for every open HTTP connection, and a client that
        // never finishes sending its request would keep the process alive for ever.
        let grace_over = {
            let state = state.clone();
            async move {
                state.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            }
        };
        tokio::select! {
            served = serve.into_future() => served?,
            _ = grace_over => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; stopping anyway");
            }
        }
        state.shutdown.cancel();
        let _ = heartbeat.await;
        let _ = capacity.await;
        if let Some(task) = notification_listener {
            let _ = task.await;
        }
        let _ = history_pruning.await;
        presence.join().await;
        if let Some(task) = node_heartbeat {
            let _ = task.await;
        }
        if let Some(link) = &state.node {
            // Last: the survivors now take over this node's users at once.
            if let Err(e) = link.leave().await {
                tracing::warn!(error = %e, "cannot remove this node's liveness key");
            }
        }
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {addr}: port {} is already in use (another diary-realtime \
             still running?); stop that process or set PORT",
            addr.port()
        ),
        _ => anyhow::anyhow!("cannot listen on {addr}: {e}"),
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
