use std::collections::HashMap;
use std::sync::Arc;

use super::model::{text_of, AuthorView, CheckpointContent, CheckpointView, PageRequest};
use super::HistoryError;
use crate::collab::delta::QuillDelta;
use crate::ids::{CheckpointId, EntryId, UserId};
use crate::store::history::{CheckpointMeta, PageError};
use crate::store::Store;

/// Reads entries' history. Callers have checked that the user may view the entry.
pub struct HistoryService {
    store: Arc<dyn Store>,
}

impl HistoryService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        HistoryService { store }
    }

    /// One page of the entry's checkpoints, newest first.
    pub async fn list(
        &self,
        entry: EntryId,
        page: PageRequest,
    ) -> Result<Vec<CheckpointView>, HistoryError> {
        let metas = self.store.list_checkpoints(entry, page.0).await?.map_err(
            |PageError::UnknownBefore| {
                HistoryError::BadPage("before is not a checkpoint of this entry".into())
            },
        )?;
        self.views(metas).await
    }

    /// A checkpoint with its text and its formatted content.
    pub async fn read(
        &self,
        entry: EntryId,
        id: CheckpointId,
    ) -> Result<CheckpointContent, HistoryError> {
        let stored = self
            .store
            .read_checkpoint(entry, id)
            .await?
            .ok_or(HistoryError::UnknownCheckpoint)?;
        let delta: QuillDelta = serde_json::from_slice(&stored.content)
            .map_err(|e| HistoryError::Corrupt(e.to_string()))?;
        let checkpoint = self.views(vec![stored.meta]).await?.remove(0);
        Ok(CheckpointContent {
            entry_id: entry,
            checkpoint,
            content: text_of(&delta),
            delta,
        })
    }

    /// Names the authors as the diary app does (unknown users by their id).
    pub async fn views(
        &self,
        metas: Vec<CheckpointMeta>,
    ) -> Result<Vec<CheckpointView>, HistoryError> {
        let mut everyone: Vec<UserId> = metas
            .iter()
            .flat_map(|m| m.authors.iter().copied())
            .collect();
        everyone.sort();
        everyone.dedup();
        let names: HashMap<UserId, String> = if everyone.is_empty() {
            HashMap::new()
        } else {
            self.store.display_names(&everyone).await?
        };
        Ok(metas
            .into_iter()
            .map(|meta| {
                let mut authors: Vec<AuthorView> = meta
                    .authors
                    .iter()
                    .map(|user| AuthorView {
                        user_id: *user,
                        display_name: names.get(user).cloned().unwrap_or_else(|| user.to_string()),
                    })
                    .collect();
                authors.sort_by(|a, b| a.display_name.cmp(&b.display_name));
                CheckpointView {
                    id: meta.id,
                    at: meta.at,
                    version: meta.version,
                    authors,
                    chars: meta.chars,
                }
            })
            .collect())
    }
}
