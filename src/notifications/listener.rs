//! The task that pushes every row the database announces (PostgreSQL): the one path
//! by which rows in `notifications` reach sockets there, whoever inserted them. How
//! announcements are heard, and caught up after a lost connection, is the store's
//! [`NotificationFeed`].

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::NotificationService;
use crate::store::NotificationFeed;

/// Hands every row of `feed` to `inbox` for delivery until `shutdown`.
pub async fn run(
    mut feed: Box<dyn NotificationFeed>,
    inbox: Arc<NotificationService>,
    shutdown: CancellationToken,
) {
    async move {
        tracing::info!("notification listener started");
        loop {
            let rows = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                rows = feed.next() => rows,
            };
            inbox.deliver(rows).await;
        }
        tracing::info!("notification listener stopped");
    }
    .instrument(tracing::info_span!("notification_listener"))
    .await
}
