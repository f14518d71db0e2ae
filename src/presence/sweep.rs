//! Clean-up after what is gone without saying so.
//!
//! [`run`], the `active_sessions` sweep: rows of sockets that are gone without a clean
//! departure (a crashed process, a lost delete) are removed once stale. Each round
//! first refreshes the rows of every socket this process still holds, so a row goes
//! stale only when no live process vouches for it, then deletes rows older than
//! `STALE_TIMEOUT_SECS`. Every process of a cluster runs it on the shared table.
//!
//! [`run_dead_nodes`], in a cluster: the presence of users whose sockets were on a
//! process that died. Twice per liveness TTL (half `STALE_TIMEOUT_SECS`) the ledger
//! cleans up after nodes whose liveness key expired, so their users go offline within
//! `STALE_TIMEOUT_SECS`; the worker tells their friends.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ledger::PresenceLedger;
use super::worker::Command;
use crate::fanout::Fanout;
use crate::store::Store;

/// Sweeps dead nodes' presence until shutdown, every `every`.
pub(super) async fn run_dead_nodes(
    ledger: Arc<dyn PresenceLedger>,
    commands: mpsc::UnboundedSender<Command>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        for (user, last_seen) in ledger.sweep_dead_nodes().await {
            let _ = commands.send(Command::WentOffline { user, last_seen });
        }
    }
}

/// Runs a sweep every half stale timeout (between 1 s and 60 s) until shutdown.
pub(super) async fn run(
    store: Arc<dyn Store>,
    fanout: Arc<dyn Fanout>,
    stale: Duration,
    shutdown: CancellationToken,
) {
    let every = (stale / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if let Err(e) = store.touch_sessions(&fanout.local_sids()).await {
            tracing::warn!(error = %e, "cannot refresh active sessions");
            continue;
        }
        let Some(cutoff) = chrono::Duration::from_std(stale)
            .ok()
            .and_then(|stale| Utc::now().checked_sub_signed(stale))
        else {
            continue; // a timeout this large never makes a row stale
        };
        match store.sweep_sessions(cutoff).await {
            Ok(0) => {}
            Ok(swept) => tracing::info!(swept, "removed stale active sessions"),
            Err(e) => tracing::warn!(error = %e, "cannot sweep active sessions"),
        }
    }
}
