//! The actor's side of entry history: checkpoints after each interval of editing and
//! at unload (see [`crate::collab::checkpoints`]).

use super::DocActor;

impl DocActor {
    /// Takes the interval's history checkpoint on a separate task.
    pub(super) fn checkpoint(&mut self) {
        let Some(checkpoint) = self.history.take(self.entry, &self.doc) else {
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.take_checkpoint(&checkpoint).await {
                tracing::warn!(entry = %checkpoint.entry, error = %e, "history checkpoint failed");
            }
        });
    }

    /// The unload's checkpoint, if the text changed since the last one.
    pub(super) async fn final_checkpoint(&mut self) {
        if let Some(checkpoint) = self.history.take(self.entry, &self.doc) {
            if let Err(e) = self.store.take_checkpoint(&checkpoint).await {
                tracing::warn!(entry = %self.entry, error = %e, "history checkpoint failed");
            }
        }
    }
}
