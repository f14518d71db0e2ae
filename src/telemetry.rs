//! Logs and metrics, set up in one place.
//!
//! Metric names (Prometheus, see `/metrics`):
//! - `diary_connections` (gauge): live sockets;
//! - `diary_presence_online_users` (gauge): users online (or in their grace period);
//! - `diary_events_total{event}`: client events received;
//! - `diary_rate_limited_total{event}`: events refused or held by the rate limit;
//! - `diary_errors_total{code}`: error replies sent, by wire code;
//! - `diary_docs_loaded` (gauge): entry documents in memory;
//! - `diary_updates_persisted_total`: document updates committed;
//! - `diary_persist_latency_seconds` (histogram): time to commit one batch of updates;
//! - `diary_desync_reports_total`: `desync_detected` reports from clients.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, Settings};

/// Installs the global tracing subscriber. Call once, from `main`.
pub fn init_tracing(settings: &Settings) {
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
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
