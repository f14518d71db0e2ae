//! The `history-pruning` task: thins and expires old checkpoints (PROTOCOL.md 5.5)
//! once at start and then every hour, until shutdown. Every process of a cluster
//! runs it; the passes are plain DELETEs, so overlapping ones only find less to do.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::history::Pruning;
use crate::store::Store;

/// Time between passes: the coarsest rule is hourly.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until `stop` is cancelled; a failed pass is logged and retried next time.
pub async fn run(store: Arc<dyn Store>, retention: Duration, stop: CancellationToken) {
    let retention =
        chrono::Duration::from_std(retention).unwrap_or_else(|_| chrono::Duration::days(36500));
    let rules = Pruning::with_retention(retention);
    let mut ticks = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match store.prune_checkpoints(chrono::Utc::now(), rules).await {
            Ok(pruned) if pruned.thinned + pruned.expired > 0 => {
                tracing::info!(
                    thinned = pruned.thinned,
                    expired = pruned.expired,
                    "history pruned"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning history failed; next pass in an hour"),
        }
    }
    tracing::debug!("history-pruning stopped");
}
