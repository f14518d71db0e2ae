//! Logs and metrics, set up in one place.
//!
//! Metric names (Prometheus, see `/metrics`):
//! - `diary_connections` (gauge): live sockets;
//! - `diary_presence_online_users` (gauge): users online (or in their grace period);
//! - `diary_events_total{event}`: client events received;
//! - `diary_rate_limited_total{event}`: events refused or held by the rate limit;
//! - `diary_errors_total{code}`: error replies sent, by wire code;
//! - `diary_docs_loaded` (gauge): entry documents in memory;
//! - `diary_doc_loads_total`: entry documents loaded from storage;
//! - `diary_updates_persisted_total`: document updates committed;
//! - `diary_persist_latency_seconds` (histogram): time to commit one batch of updates;
//! - `diary_desync_reports_total`: `desync_detected` reports from clients.
//! - `diary_event_loop_lag_seconds`, `diary_socket_queued_events`,
//!   `diary_commit_backlog_updates`, `diary_overloaded` (gauges): load signals and the
//!   overload verdict, see [`crate::capacity`];
//! - `diary_notifications_created_total`: notifications created through the REST API;
//! - `diary_notifications_pushed_total`: `notification:created` fan-outs (one per row, per
//!   process serving its user);
//! - `diary_notifications_muted_total`: new rows not pushed because their type is muted;
//! - `diary_notifications_caught_up_total`: rows delivered by the listener's catch-up
//!   after its connection was lost;
//! - `diary_notification_listener_reconnects_total`: lost LISTEN connections.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, FilterExt, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::{LogFormat, Settings};

/// Crates whose debug and trace logs print raw packets: handshake `auth` objects with
/// their JWT, `?token=` URLs, diary text. They are capped at `info` whatever `RUST_LOG`
/// says, because tokens must never reach the logs.
const WIRE_CRATES: [&str; 2] = ["socketioxide", "engineioxide"];

fn may_carry_secrets(meta: &Metadata<'_>) -> bool {
    *meta.level() > Level::INFO && WIRE_CRATES.iter().any(|c| meta.target().starts_with(c))
}

/// Installs the global tracing subscriber. Call once, from `main`.
pub fn init_tracing(settings: &Settings) {
    // `RUST_LOG` was validated with the settings.
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    // One filter with a level hint: `log` records (tungstenite logs every frame at
    // trace level) are then discarded by the `log` crate's max level, instead of each
    // being turned into a tracing event only to be filtered out. A filter without a
    // hint (as `filter_fn` is) would leave that level at TRACE.
    let redact = filter_fn(|meta| !may_carry_secrets(meta)).with_max_level_hint(LevelFilter::TRACE);
    let filter = filter.and(redact);
    // Colour codes only help a terminal; in a file or a pipe they are noise.
    let ansi = std::io::stdout().is_terminal();
    let layer = match settings.log_format {
        LogFormat::Json => fmt::layer()
            .with_target(true)
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .boxed(),
        LogFormat::Pretty => fmt::layer().with_target(true).with_ansi(ansi).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

/// The process-wide Prometheus recorder (installed on first use, so several apps in
/// one test process share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
