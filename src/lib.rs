//! diary-realtime: a Socket.IO-compatible server for collaborative diary entries.
//!
//! [`Application::build`] wires everything from [`config::Settings`] and binds the
//! listener (port 0 picks a free one), so `main` and the tests start the same server.

pub mod auth;
pub mod config;
pub mod connections;
pub mod demo;
pub mod error;
pub mod http;
pub mod ids;
pub mod presence;
pub mod ratelimit;
pub mod realtime;
pub mod state;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::auth::JwtKeys;
use crate::config::Settings;
use crate::state::AppState;

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Opens (and migrates) the database, builds the Socket.IO and HTTP stack and binds.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Install the recorder before anything records.
        telemetry::metrics_handle();
        let store = store::open(&settings).await?;
        presence::reset(store.as_ref()).await?;
        let keys = JwtKeys::from_settings(&settings);
        let addr = SocketAddr::new(settings.host, settings.port);
        let state = AppState::new(settings, store, keys);
        let socket_layer = realtime::build(&state);
        let router = http::router(state.clone())
            .layer(socket_layer)
            .layer(http::cors(&state.settings.cors_origins));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        Ok(Self {
            listener,
            router,
            state,
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
        let presence = presence::spawn(&state);
        tracing::info!(addr = %self.listener.local_addr()?, path = %state.settings.socket_path, "listening");
        let closing = state.clone();
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutting down");
            closing.shutdown.cancel();
            closing.io().close().await;
        })
        .await?;
        state.shutdown.cancel();
        let _ = heartbeat.await;
        presence.join().await;
        tracing::info!("stopped");
        Ok(())
    }
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
