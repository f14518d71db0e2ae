//! The per-entry actor: one task owns an entry's doc while anyone has it open. Every
//! change goes through its mailbox, so order, versions, relays and durability have one
//! home:
//!
//! 1. an update is applied to the doc and relayed at once (to Yjs peers as the update
//!    yrs integrated, to delta peers as the text delta);
//! 2. the raw update is queued to the group committer with the next `seq`;
//! 3. its ack waits until the committer reports that `seq` (and so everything before
//!    it) is stored.
//!
//! An update yrs keeps pending (missing dependencies) is logged like any other, so the
//! doc reloads exactly as it was. The actor unloads once the last member has left and
//! every update is committed.
//!
//! In a cluster every node with members of the entry runs such an actor (a replica);
//! each committed update, cursor, typing and awareness change, and the node's viewers,
//! go to the other replicas through [`super::replication`], which apply them (without
//! committing them again) and relay them to their own members. Each replica counts
//! versions itself, one per change it applies (local or remote), starting from the
//! highest stored version when it loads: consecutive on each node, as delta clients
//! need, and close across nodes, since every node applies every change once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::awareness::AwarenessStates;
use super::checkpoints::CheckpointClock;
use super::command::{ContentView, DocCommand, Member, MemberId, ReplyTo, Viewer};
use super::cursors::Cursors;
use super::doc::{EntryDoc, StoredRow};
use super::outbound::Outbound;
use super::persist::Persister;
use super::registry::Registry;
use super::replication::Replication;
use crate::cluster::node::NodeId;
use crate::ids::{EntryId, UserId};
use crate::store::{LoggedUpdate, Store, StoredDoc};

mod commit;
mod compaction;
mod history;
mod members;
mod replica;

/// An unrefreshed `typing: true` lapses after this long (PROTOCOL.md 5.1).
const TYPING_LAPSE: Duration = Duration::from_secs(5);
/// Log rows after which the log is folded into a snapshot.
const COMPACT_AFTER_ROWS: usize = 256;
/// Longest the actor holds its relays while a join answer is on its way.
const JOIN_ACK_WAIT: Duration = Duration::from_secs(1);
/// How often changed text is written to `entry_documents` while edits flow.
const TEXT_SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// The actor's state.
struct DocActor {
    entry: EntryId,
    store: Arc<dyn Store>,
    persister: Persister,
    replication: Arc<dyn Replication>,
    outbound: Arc<dyn Outbound>,
    /// Other nodes' viewers of the entry, and when each node last announced them.
    remote_viewers: HashMap<NodeId, (Vec<Viewer>, tokio::time::Instant)>,
    mailbox: mpsc::UnboundedSender<DocCommand>,
    doc: EntryDoc,
    awareness: AwarenessStates,
    members: HashMap<MemberId, Member>,
    cursors: Cursors,
    /// When each typing user's `isTyping: true` lapses.
    typing: HashMap<UserId, tokio::time::Instant>,
    next_seq: i64,
    committed_seq: i64,
    /// Acks waiting for their `seq` to commit, in `seq` order.
    acks: VecDeque<(i64, u64, ReplyTo)>,
    /// Submitted but not yet committed (and who made each): to rebuild the doc if yrs
    /// ever panics, and to publish to the other replicas once committed.
    uncommitted: VecDeque<(LoggedUpdate, UserId)>,
    rows_since_snapshot: usize,
    compacting: bool,
    text_dirty: bool,
    saving_text: bool,
    /// Changes since the last history checkpoint.
    history: CheckpointClock,
}

/// What every entry actor shares with the others.
pub struct Services {
    pub store: Arc<dyn Store>,
    pub persister: Persister,
    pub replication: Arc<dyn Replication>,
    pub outbound: Arc<dyn Outbound>,
    pub registry: Registry,
    /// Turns for loading a doc (see `collab::DOC_LOADS_AT_ONCE`).
    pub loads: Arc<tokio::sync::Semaphore>,
    /// `HISTORY_INTERVAL_SECS`.
    pub history_interval: Duration,
}

/// Runs an entry's actor: loads the doc, serves its mailbox, unloads when idle.
pub async fn run(
    entry: EntryId,
    services: Services,
    mailbox: mpsc::UnboundedSender<DocCommand>,
    mut rx: mpsc::UnboundedReceiver<DocCommand>,
) {
    let Services {
        store,
        persister,
        replication,
        outbound,
        registry,
        loads,
        history_interval,
    } = services;
    // Subscribe before loading: whatever other replicas commit from now on either is
    // in the load or arrives here (or both: applying an update twice changes nothing).
    if let Err(e) = replication.subscribe(entry, mailbox.clone()).await {
        tracing::error!(%entry, error = %e, "cannot follow the entry's other replicas");
        registry.remove(entry, &mailbox);
        return;
    }
    // A reconnect storm opens many entries at once: loads take turns (see
    // `DOC_LOADS_AT_ONCE`) instead of all waiting on the pool and timing out.
    let permit = loads.acquire().await.ok();
    let loaded = match store.load_doc(entry).await {
        Ok(stored) => rebuild(entry, &stored, &[]).map(|doc| (doc, stored)),
        Err(e) => Err(e.to_string()),
    };
    drop(permit);
    let (doc, stored) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(%entry, %error, "could not load entry doc");
            registry.remove(entry, &mailbox);
            replication.unsubscribe(entry, &mailbox).await;
            // Queued requests see their reply channel close and answer `Unavailable`.
            return;
        }
    };
    let last_seq = stored.last_seq();
    metrics::counter!("diary_doc_loads_total").increment(1);
    metrics::gauge!("diary_docs_loaded").increment(1.0);
    tracing::debug!(%entry, version = doc.version(), rows = stored.updates.len(), "doc loaded");
    let mut actor = DocActor {
        entry,
        store,
        persister,
        replication: replication.clone(),
        outbound,
        remote_viewers: HashMap::new(),
        mailbox: mailbox.clone(),
        doc,
        awareness: AwarenessStates::new(),
        members: HashMap::new(),
        cursors: Cursors::default(),
        typing: HashMap::new(),
        next_seq: last_seq + 1,
        committed_seq: last_seq,
        acks: VecDeque::new(),
        uncommitted: VecDeque::new(),
        rows_since_snapshot: stored.updates.len(),
        compacting: false,
        text_dirty: false,
        saving_text: false,
        history: CheckpointClock::new(history_interval),
    };
    let mut text_timer = tokio::time::interval(TEXT_SAVE_INTERVAL);
    let clustered = replication.clustered();
    let mut announce_timer = tokio::time::interval(replication.liveness().announce_every);
    loop {
        let typing_lapse = actor.typing.values().min().copied();
        let checkpoint_due = actor.history.due();
        tokio::select! {
            command = rx.recv() => match command {
                Some(command) => actor.handle(command).await,
                None => break,
            },
            _ = text_timer.tick() => actor.save_text_if_dirty(),
            _ = tokio::time::sleep_until(typing_lapse.unwrap_or_else(tokio::time::Instant::now)),
                if typing_lapse.is_some() => actor.lapse_typing(),
            _ = announce_timer.tick(), if clustered => actor.heartbeat(),
            _ = tokio::time::sleep_until(checkpoint_due.unwrap_or_else(tokio::time::Instant::now)),
                if checkpoint_due.is_some() => actor.checkpoint(),
        }
        if actor.is_idle() && registry.remove_if_idle(entry, &mailbox, &rx) {
            break;
        }
    }
    actor.finish().await;
    if clustered {
        actor.publish_viewers();
    }
    replication.unsubscribe(entry, &mailbox).await;
    metrics::gauge!("diary_docs_loaded").decrement(1.0);
    tracing::debug!(%entry, "doc unloaded");
}

/// Builds a doc from its stored form plus updates not yet committed. A stored row the
/// gate refuses is logged and skipped; the entry stays usable without it.
fn rebuild(
    entry: EntryId,
    stored: &StoredDoc,
    uncommitted: &[LoggedUpdate],
) -> Result<EntryDoc, String> {
    let mut doc = EntryDoc::new();
    let snapshot = stored.snapshot.iter().map(|s| {
        let row = StoredRow::Snapshot {
            upto_seq: s.upto_seq,
        };
        (row, &s.state[..])
    });
    let log = stored.updates.iter().chain(uncommitted);
    let rows = log
        .clone()
        .map(|r| (StoredRow::Log { seq: r.seq }, &r.payload[..]));
    let skipped = doc
        .restore_all(snapshot.chain(rows))
        .map_err(|e| e.to_string())?;
    for (row, error) in skipped {
        tracing::warn!(%entry, ?row, %error, "stored update refused at load; skipped");
    }
    let version = log
        .map(|r| r.version)
        .chain(stored.snapshot.iter().map(|s| s.version))
        .max()
        .unwrap_or(0);
    doc.set_version(u64::try_from(version).unwrap_or(0));
    Ok(doc)
}

impl DocActor {
    async fn handle(&mut self, command: DocCommand) {
        match command {
            DocCommand::Join { member, reply } => self.join(member, reply).await,
            DocCommand::Leave { member } => self.leave(&member),
            DocCommand::SyncStep1 {
                member,
                state_vector,
                reply,
            } => {
                let _ = reply.send(self.sync_step1(&member, &state_vector));
            }
            DocCommand::StartSync { member } => self.start_sync(&member),
            DocCommand::Edit {
                member,
                edit,
                reply,
            } => self.edit(&member, edit, reply).await,
            DocCommand::Cursor {
                member,
                position,
                selection,
                reply,
            } => {
                let _ = reply.send(self.cursor(&member, position, selection));
            }
            DocCommand::Typing {
                member,
                is_typing,
                reply,
            } => {
                let _ = reply.send(self.set_typing(&member, is_typing));
            }
            DocCommand::Awareness {
                member,
                update,
                reply,
            } => {
                let _ = reply.send(self.awareness(&member, update));
            }
            DocCommand::Content { reply } => {
                let _ = reply.send(Ok(ContentView {
                    content: self.doc.text(),
                    delta: self.doc.delta(),
                    version: self.doc.version(),
                    update: self.doc.encode_full(),
                    cursors: self.cursors.current(&self.doc),
                    viewers: self.viewers(),
                }));
            }
            DocCommand::Committed { upto_seq } => self.committed(upto_seq),
            DocCommand::CompactionDone { outcome } => self.compaction_done(outcome),
            DocCommand::Replica { origin, message } => self.replica(origin, message).await,
            DocCommand::CatchUp => self.catch_up().await,
            DocCommand::TextSaved => self.saving_text = false,
            DocCommand::Shutdown => self.members.clear(),
        }
    }

    fn is_idle(&self) -> bool {
        self.members.is_empty()
            && self.committed_seq == self.next_seq - 1
            && !self.compacting
            && !self.saving_text
    }
}
