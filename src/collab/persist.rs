//! Group commit: one task appends every entry's updates to the log, batching whatever
//! has queued up while the previous transaction ran, so a burst costs few
//! transactions. Batches commit strictly in submission order, so an update is never
//! stored before one it may depend on; each entry's actor learns the highest committed
//! `seq` and only then acknowledges.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::command::DocCommand;
use crate::ids::EntryId;
use crate::store::{LoggedUpdate, Store};

/// Most rows per transaction.
const MAX_BATCH_ROWS: usize = 512;
/// Most payload bytes per transaction.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// One update to append, and where to report its commit.
pub struct Write {
    pub row: LoggedUpdate,
    pub notify: mpsc::UnboundedSender<DocCommand>,
}

/// Submits writes to the committer task.
#[derive(Clone)]
pub struct Persister {
    tx: mpsc::UnboundedSender<Write>,
    /// Writes submitted and not yet committed.
    backlog: Arc<AtomicUsize>,
}

impl Persister {
    /// Starts the committer; it runs until every `Persister` clone is dropped and the
    /// queue is drained.
    pub fn start(store: Arc<dyn Store>) -> (Persister, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(store, rx, backlog.clone()));
        (Persister { tx, backlog }, task)
    }

    pub fn submit(&self, write: Write) -> bool {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.send(write).is_ok();
        if !sent {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Updates waiting to be committed (queued or in the transaction running now).
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    backlog: Arc<AtomicUsize>,
) {
    let mut batch: Vec<Write> = Vec::new();
    let mut rows: Vec<LoggedUpdate> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let mut bytes = batch[0].row.payload.len();
        while batch.len() < MAX_BATCH_ROWS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(write) => {
                    bytes += write.row.payload.len();
                    batch.push(write);
                }
                Err(_) => break,
            }
        }
        rows.clear();
        rows.extend(batch.iter().map(|w| w.row.clone()));
        commit_with_retry(store.as_ref(), &rows).await;
        backlog.fetch_sub(batch.len(), Ordering::Relaxed);
        // Report the highest committed seq per entry, once per entry.
        let mut reported: Vec<(EntryId, i64)> = Vec::new();
        for write in batch.iter().rev() {
            if !reported.iter().any(|(e, _)| *e == write.row.entry) {
                reported.push((write.row.entry, write.row.seq));
                let _ = write.notify.send(DocCommand::Committed {
                    upto_seq: write.row.seq,
                });
            }
        }
        batch.clear();
    }
}

/// Retries until the database takes the batch: acknowledged edits must never be lost,
/// and nothing later may commit before it. Waiting acks simply wait meanwhile.
async fn commit_with_retry(store: &dyn Store, rows: &[LoggedUpdate]) {
    let mut delay = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        match store.append_updates(rows).await {
            Ok(()) => {
                metrics::histogram!("diary_persist_latency_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("diary_updates_persisted_total").increment(rows.len() as u64);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, rows = rows.len(), "committing updates failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
