//! Collaborative entries: one actor per loaded entry owns its yrs doc (see
//! [`actor`]); [`Collab`] finds or starts actors and carries requests to them.

mod actor;
mod awareness;
mod checkpoints;
pub mod command;
pub mod cursors;
pub mod delta;
pub mod doc;
pub mod error;
pub mod gate;
pub mod outbound;
mod persist;
mod rebase;
mod registry;
pub mod replication;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::ids::EntryId;
use crate::store::Store;
use command::{
    Answer, ContentView, DocCommand, Edit, EntryReply, EntryResult, Joined, Member, MemberId,
};
use cursors::{Position, Selection};
use outbound::Outbound;
use persist::Persister;
use registry::Registry;
use replication::Replication;

/// The collaboration service shared by all handlers.
pub struct Collab {
    store: Arc<dyn Store>,
    replication: Arc<dyn Replication>,
    outbound: Arc<dyn Outbound>,
    registry: Registry,
    /// `None` once shutting down.
    persister: Mutex<Option<Persister>>,
    committer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    actors: TaskTracker,
    /// Doc loads in flight at once (see [`DOC_LOADS_AT_ONCE`]).
    loads: Arc<tokio::sync::Semaphore>,
    /// `HISTORY_INTERVAL_SECS`: how often an edited entry gets a checkpoint.
    history_interval: Duration,
}

/// Doc loads running at once, out of the 16 PostgreSQL connections: a reconnect storm
/// opening a thousand entries then leaves connections for the joins' small queries, and
/// its loads queue here instead of timing out in the pool (`loadgen join 10000`: 1,040
/// joins refused without this, none with it; 4 or 8 slowed a 5k storm down more).
const DOC_LOADS_AT_ONCE: usize = 12;

impl Collab {
    /// Starts the group committer; actors start on demand, each replicating through
    /// `replication` and reaching its members through `outbound`.
    pub fn start(
        store: Arc<dyn Store>,
        replication: Arc<dyn Replication>,
        outbound: Arc<dyn Outbound>,
        history_interval: Duration,
    ) -> Self {
        let (persister, committer) = Persister::start(store.clone());
        Collab {
            store,
            replication,
            outbound,
            registry: Registry::default(),
            persister: Mutex::new(Some(persister)),
            committer: Mutex::new(Some(committer)),
            actors: TaskTracker::new(),
            loads: Arc::new(tokio::sync::Semaphore::new(DOC_LOADS_AT_ONCE)),
            history_interval,
        }
    }

    /// Adds a member at once (so later requests queue behind it); the answer comes
    /// once the doc is loaded and the member is in.
    pub fn join(&self, entry: EntryId, member: Member) -> Answer<Joined> {
        self.ask(entry, |reply| DocCommand::Join { member, reply })
    }

    pub fn leave(&self, entry: EntryId, member: MemberId) {
        self.deliver(entry, DocCommand::Leave { member });
    }

    /// The requests below are in the actor's mailbox (which keeps their order) when
    /// the call returns; the answer follows when the actor gives it (for edits: once
    /// committed).
    pub fn sync_step1(
        &self,
        entry: EntryId,
        member: MemberId,
        state_vector: Bytes,
    ) -> Answer<EntryReply> {
        self.ask(entry, |reply| DocCommand::SyncStep1 {
            member,
            state_vector,
            reply,
        })
    }

    pub fn edit(&self, entry: EntryId, member: MemberId, edit: Edit) -> Answer<EntryReply> {
        self.ask(entry, |reply| DocCommand::Edit {
            member,
            edit,
            reply: Some(reply),
        })
    }

    pub fn cursor(
        &self,
        entry: EntryId,
        member: MemberId,
        position: Position,
        selection: Selection,
    ) -> Answer<EntryReply> {
        self.ask(entry, |reply| DocCommand::Cursor {
            member,
            position,
            selection,
            reply,
        })
    }

    pub fn typing(&self, entry: EntryId, member: MemberId, is_typing: bool) -> Answer<EntryReply> {
        self.ask(entry, |reply| DocCommand::Typing {
            member,
            is_typing,
            reply,
        })
    }

    pub fn awareness(&self, entry: EntryId, member: MemberId, update: Bytes) -> Answer<EntryReply> {
        self.ask(entry, |reply| DocCommand::Awareness {
            member,
            update,
            reply,
        })
    }

    /// The entry's whole state (loads the doc if needed; it unloads again when idle).
    pub fn content(&self, entry: EntryId) -> Answer<ContentView> {
        self.ask(entry, |reply| DocCommand::Content { reply })
    }

    /// Updates waiting for the group committer (0 once shut down).
    pub fn commit_backlog(&self) -> usize {
        self.lock_persister().as_ref().map_or(0, Persister::backlog)
    }

    /// Entries currently in memory.
    pub fn loaded(&self) -> usize {
        self.registry.loaded()
    }

    /// Tells every actor that its members are gone (socketioxide runs no disconnect
    /// handlers when the server closes), waits for each to flush and unload, then for
    /// the committer to store what is queued.
    pub async fn shutdown(&self, grace: Duration) {
        self.actors.close();
        for mailbox in self.registry.mailboxes() {
            let _ = mailbox.send(DocCommand::Shutdown);
        }
        if tokio::time::timeout(grace, self.actors.wait())
            .await
            .is_err()
        {
            tracing::warn!("entry docs still loaded at shutdown");
        }
        self.lock_persister().take();
        let committer = self
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(committer) = committer {
            if tokio::time::timeout(grace, committer).await.is_err() {
                tracing::error!("committer did not finish within the shutdown grace period");
            }
        }
    }

    /// Delivers now; the returned future awaits the answer.
    fn ask<T>(
        &self,
        entry: EntryId,
        command: impl FnOnce(oneshot::Sender<EntryResult<T>>) -> DocCommand,
    ) -> Answer<T> {
        let (reply, answer) = oneshot::channel();
        self.deliver(entry, command(reply));
        Answer::new(entry, answer)
    }

    /// Sends to the entry's actor, starting one if needed. A send can only fail if the
    /// actor exited in between; the next attempt then starts a fresh one.
    fn deliver(&self, entry: EntryId, mut command: DocCommand) {
        for _ in 0..3 {
            let mailbox = self.mailbox(entry);
            match mailbox.send(command) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => command = back,
            }
        }
        tracing::error!(%entry, "entry actor kept exiting; request dropped");
    }

    fn mailbox(&self, entry: EntryId) -> mpsc::UnboundedSender<DocCommand> {
        self.registry.get_or_start(entry, |tx, rx| {
            let Some(persister) = self.lock_persister().clone() else {
                // Shutting down: no new actors. Dropping `rx` fails the request.
                return;
            };
            self.actors.spawn(actor::run(
                entry,
                actor::Services {
                    store: self.store.clone(),
                    persister,
                    replication: self.replication.clone(),
                    outbound: self.outbound.clone(),
                    registry: self.registry.clone(),
                    loads: self.loads.clone(),
                    history_interval: self.history_interval,
                },
                tx,
                rx,
            ));
        })
    }

    fn lock_persister(&self) -> std::sync::MutexGuard<'_, Option<Persister>> {
        self.persister.lock().unwrap_or_else(|p| p.into_inner())
    }
}
