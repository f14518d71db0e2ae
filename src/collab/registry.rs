//! Which entries have a live actor. Getting a handle and unloading are decided under
//! one lock, so two sockets joining a cold entry at once start one actor (one load),
//! and an actor that unloads never drops a message: it leaves only when its mailbox
//! is empty, and later senders find no handle and start a fresh actor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::command::DocCommand;
use crate::ids::EntryId;

#[derive(Clone, Default)]
pub struct Registry {
    docs: Arc<Mutex<HashMap<EntryId, mpsc::UnboundedSender<DocCommand>>>>,
}

impl Registry {
    /// The entry's mailbox; `start` spawns an actor when there is none.
    pub fn get_or_start(
        &self,
        entry: EntryId,
        start: impl FnOnce(mpsc::UnboundedSender<DocCommand>, mpsc::UnboundedReceiver<DocCommand>),
    ) -> mpsc::UnboundedSender<DocCommand> {
        let mut docs = self.lock();
        if let Some(tx) = docs.get(&entry).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        docs.insert(entry, tx.clone());
        start(tx.clone(), rx);
        tx
    }

    /// Removes the actor if its mailbox is still empty; true when removed.
    pub fn remove_if_idle(
        &self,
        entry: EntryId,
        mailbox: &mpsc::UnboundedSender<DocCommand>,
        rx: &mpsc::UnboundedReceiver<DocCommand>,
    ) -> bool {
        let mut docs = self.lock();
        if !rx.is_empty() {
            return false;
        }
        if docs.get(&entry).is_some_and(|tx| tx.same_channel(mailbox)) {
            docs.remove(&entry);
        }
        true
    }

    /// Removes the actor unconditionally (it failed to load).
    pub fn remove(&self, entry: EntryId, mailbox: &mpsc::UnboundedSender<DocCommand>) {
        let mut docs = self.lock();
        if docs.get(&entry).is_some_and(|tx| tx.same_channel(mailbox)) {
            docs.remove(&entry);
        }
    }

    /// Every live actor's mailbox.
    pub fn mailboxes(&self) -> Vec<mpsc::UnboundedSender<DocCommand>> {
        self.lock().values().cloned().collect()
    }

    pub fn loaded(&self) -> usize {
        self.lock().len()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<EntryId, mpsc::UnboundedSender<DocCommand>>> {
        self.docs.lock().unwrap_or_else(|p| p.into_inner())
    }
}
