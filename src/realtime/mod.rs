//! Socket.IO: the namespaces and their events. Handlers here are thin: they parse,
//! authorize and hand off to the domain modules.

pub mod connect;
pub(crate) mod entries;
mod errors;
pub mod fanout;
mod history;
mod namespaces;
mod notifications;
pub mod ordered;
pub mod outgoing;
mod presence;
pub mod reply;
pub mod room;
pub mod session;
mod system;
mod token;
pub mod yjs;

use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::DisconnectReason;

use crate::cluster::{Adapter, NodeDriver};

use crate::state::AppState;
use connect::{authenticate, SocketSetup};

/// Namespaces carrying the full event surface (PROTOCOL.md section 1).
pub const MAIN_NAMESPACES: [&str; 2] = ["/", "/realtime/ws"];
/// The inbox-only namespace.
pub const NOTIFICATIONS_NAMESPACE: &str = "/notifications";

/// Initial read buffer of each WebSocket (engineioxide's default is 4 KiB). Client
/// events are small; the buffer grows for a large one. With ten thousand idle sockets
/// the default alone is 40 MiB.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// Builds the Socket.IO layer and registers every namespace. On a cluster node this
/// subscribes each namespace to its Redis channels, so it fails when Redis does.
pub async fn build(app: &AppState, driver: NodeDriver) -> anyhow::Result<SocketIoLayer<Adapter>> {
    let settings = &app.settings;
    let (layer, io) = socketioxide::SocketIo::builder()
        .req_path(settings.socket_path.clone())
        // Polling bodies and websocket messages alike: one limit on both transports.
        .max_payload(settings.max_payload_bytes as u64)
        .ws_max_message_size(settings.max_payload_bytes)
        .ws_max_frame_size(settings.max_payload_bytes)
        .max_buffer_size(settings.socket_buffer_packets)
        .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
        .with_state(app.clone())
        .with_adapter::<Adapter>(driver.into_adapter_state(&settings.redis_prefix))
        .build_layer();

    for ns in MAIN_NAMESPACES {
        io.ns(
            ns,
            SocketSetup {
                register: namespaces::main,
            }
            .with(authenticate),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot start namespace {ns}: {e}"))?;
    }
    io.ns(
        NOTIFICATIONS_NAMESPACE,
        SocketSetup {
            register: namespaces::notifications,
        }
        .with(authenticate),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start namespace {NOTIFICATIONS_NAMESPACE}: {e}"))?;
    if let Err(e) = io.dyn_ns(
        yjs::NAMESPACE_PATTERN,
        SocketSetup {
            register: namespaces::yjs,
        }
        .with(yjs::authorize_entry)
        .with(authenticate),
    ) {
        // The pattern is a constant: this cannot fail at run time.
        tracing::error!(error = %e, "y-socket.io namespaces unavailable");
    }
    app.set_io(io);
    Ok(layer)
}

/// Ends every socket's session (connection slots, queues, and whatever else
/// `connect::on_disconnect` cleans up) before shutdown closes the transports.
///
/// `SocketIo::close` (socketioxide 0.18.9) empties its namespace table before the
/// transports report their closing, so socketioxide would never call the disconnect
/// handlers. Calling ours directly, rather than `disconnect()`ing each socket, sends no
/// DISCONNECT packet: clients see `transport close` and reconnect to the next server,
/// as they would after a Node socket.io `io.close()`.
pub async fn end_all_sessions(app: &AppState) {
    for ns in app.io().nsps() {
        for socket in ns.sockets() {
            connect::on_disconnect(socket, DisconnectReason::ClosingServer).await;
        }
    }
}

/// Emits `heartbeat {timestamp}` to every socket on the fixed namespaces every
/// `HEARTBEAT_INTERVAL_SECS`, and forgets idle rate-limit state, until shutdown.
pub async fn run_heartbeat(app: AppState) {
    let mut ticks = tokio::time::interval(app.settings.heartbeat_interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let payload = serde_json::json!({ "timestamp": chrono::Utc::now() });
        for ns in MAIN_NAMESPACES.into_iter().chain([NOTIFICATIONS_NAMESPACE]) {
            if let Some(ns) = app.io().of(ns) {
                let _ = ns.emit("heartbeat", &payload).await;
            }
        }
        app.limiter.forget_idle();
    }
}
