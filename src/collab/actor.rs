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

use crate::cluster::SocketRef;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};
use tokio::sync::{mpsc, oneshot};

use super::awareness::{AwarenessStates, Owner};
use super::checkpoints::CheckpointClock;
use super::cursors::{CursorView, Cursors, Position, Selection};
use super::delta::{QuillDelta, QuillOp};
use super::doc::{Applied, DocError, EntryDoc};
use super::persist::{Persister, Write};
use super::registry::Registry;
use super::replication::{Message, Replication};
use crate::cluster::node::NodeId;
use crate::error::AppError;
use crate::ids::{EntryId, UserId};
use crate::realtime::reply::{Outcome, Reply};
use crate::store::{Compaction, EntryRole, Folded, LoggedUpdate, Store, StoredDoc};

mod replica;

/// An unrefreshed `typing: true` lapses after this long (PROTOCOL.md 5.1).
const TYPING_LAPSE: Duration = Duration::from_secs(5);
/// Log rows after which the log is folded into a snapshot.
const COMPACT_AFTER_ROWS: usize = 256;
/// Longest the actor holds its relays while a join ack is being queued.
const JOIN_ACK_WAIT: Duration = Duration::from_secs(1);
/// How often changed text is written to `entry_documents` while edits flow.
const TEXT_SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// A socket's membership in an entry: its socket id within its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberId {
    pub sid: Sid,
    pub ns: Arc<str>,
}

impl MemberId {
    pub fn of(socket: &SocketRef) -> Self {
        MemberId {
            sid: socket.id,
            ns: Arc::from(socket.ns()),
        }
    }
}

/// How a member receives changes (PROTOCOL.md section 5: one form per socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Main namespace, has not sent `entry_sync_step1`: gets `entry_edit` deltas.
    Delta,
    /// Main namespace, has sent `entry_sync_step1`: gets `entry_update`.
    Yjs,
    /// A `/yjs|{entryId}` socket (y-socket.io): gets `sync-update`.
    YSocketIo,
}

/// A socket that has joined the entry.
pub struct Member {
    pub id: MemberId,
    pub socket: SocketRef,
    pub user: UserId,
    pub display_name: String,
    pub role: EntryRole,
    pub mode: Mode,
}

/// One row of `current_viewers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Viewer {
    pub user_id: UserId,
    pub display_name: String,
    pub role: EntryRole,
}

/// The answer to a join: what to tell the socket, and where to report that the ack is
/// queued for sending.
pub struct Joined {
    pub info: JoinInfo,
    pub acked: oneshot::Sender<()>,
}

/// What a joining socket is told.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinInfo {
    pub entry_id: EntryId,
    pub role: EntryRole,
    pub version: u64,
    pub content: String,
    pub viewers: Vec<Viewer>,
}

/// The whole state of the entry, for `state_response` and the REST content route.
#[derive(Debug, Clone)]
pub struct ContentView {
    pub content: String,
    pub delta: QuillDelta,
    pub version: u64,
    pub update: Vec<u8>,
    pub cursors: Vec<CursorView>,
    pub viewers: Vec<Viewer>,
}

/// A change to the doc, in either form clients send.
pub enum Edit {
    Yjs(Bytes),
    Delta {
        ops: Vec<QuillOp>,
        base: Option<u64>,
    },
}

/// Messages to an entry actor.
pub enum DocCommand {
    Join {
        member: Member,
        reply: oneshot::Sender<Joined>,
    },
    Leave {
        member: MemberId,
    },
    /// A member's sync step 1: answer with what it lacks, then ask for what we lack.
    SyncStep1 {
        member: MemberId,
        state_vector: Bytes,
        reply: oneshot::Sender<Outcome>,
    },
    /// An edit from a member (`entry_edit`, `entry_update`, `sync-update`, or its answer
    /// to our sync step 1 when `reply` is `None`).
    Edit {
        member: MemberId,
        edit: Edit,
        reply: Option<oneshot::Sender<Outcome>>,
    },
    Cursor {
        member: MemberId,
        position: Position,
        selection: Selection,
        reply: oneshot::Sender<Outcome>,
    },
    Typing {
        member: MemberId,
        is_typing: bool,
        reply: oneshot::Sender<Outcome>,
    },
    /// Sent once the member has our answer to its step 1: now our own step 1.
    StartSync {
        member: MemberId,
    },
    Awareness {
        member: MemberId,
        update: Bytes,
        reply: oneshot::Sender<Outcome>,
    },
    Content {
        reply: oneshot::Sender<ContentView>,
    },
    /// From the committer: every update up to `upto_seq` is stored.
    Committed {
        upto_seq: i64,
    },
    /// `None`: the compaction failed.
    CompactionDone {
        outcome: Option<Compaction>,
    },
    /// What another node's replica of the entry applied or saw.
    Replica {
        origin: NodeId,
        message: Message,
    },
    /// Messages from other replicas may have been lost: catch up from the database.
    CatchUp,
    TextSaved,
    /// The server is stopping: members are gone without leaving; flush and unload.
    Shutdown,
}

/// The actor's state.
struct DocActor {
    entry: EntryId,
    store: Arc<dyn Store>,
    persister: Persister,
    replication: Arc<dyn Replication>,
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
    acks: VecDeque<(i64, u64, oneshot::Sender<Outcome>)>,
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
        Ok(stored) => rebuild(&stored, &[]).map(|doc| (doc, stored)),
        Err(e) => Err(AppError::internal(e)),
    };
    drop(permit);
    let (doc, stored) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(%entry, code = %error.code, "could not load entry doc");
            registry.remove(entry, &mailbox);
            replication.unsubscribe(entry, &mailbox).await;
            // Queued requests see their reply channel close and answer SERVER_ERROR.
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

/// Builds a doc from its stored form plus updates not yet committed.
fn rebuild(stored: &StoredDoc, uncommitted: &[LoggedUpdate]) -> Result<EntryDoc, AppError> {
    let mut doc = EntryDoc::new();
    let mut version = 0;
    if let Some(snapshot) = &stored.snapshot {
        doc.restore(&snapshot.state).map_err(AppError::internal)?;
        version = snapshot.version;
    }
    for row in stored.updates.iter().chain(uncommitted) {
        doc.restore(&row.payload).map_err(AppError::internal)?;
        version = version.max(row.version);
    }
    doc.set_version(u64::try_from(version).unwrap_or(0));
    Ok(doc)
}

/// What a compaction stores: the stored doc with this replica's state (`own`, at
/// `version`) merged in, so nothing either holds is lost.
fn fold(own: &[u8], version: u64, stored: &StoredDoc) -> Result<Folded, String> {
    // Decoding and encoding a whole doc is CPU work: keep other tasks on this worker
    // running meanwhile (where the runtime allows it).
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| fold_now(own, version, stored))
    } else {
        fold_now(own, version, stored)
    }
}

fn fold_now(own: &[u8], version: u64, stored: &StoredDoc) -> Result<Folded, String> {
    let mut doc = rebuild(stored, &[]).map_err(|e| e.message)?;
    doc.restore(own).map_err(|e| e.to_string())?;
    if doc.has_pending() {
        // The snapshot would drop what is pending: keep the log as it is.
        return Err("the log has updates with missing dependencies".into());
    }
    Ok(Folded {
        state: Bytes::from(doc.encode_full()),
        version: i64::try_from(doc.version().max(version)).unwrap_or(i64::MAX),
        text: doc.text(),
    })
}

#[derive(Serialize)]
struct UpdateMessage<'a> {
    #[serde(rename = "entryId")]
    entry_id: EntryId,
    update: &'a Bytes,
}

#[derive(Serialize)]
struct StateVectorMessage<'a> {
    #[serde(rename = "entryId")]
    entry_id: EntryId,
    #[serde(rename = "stateVector")]
    state_vector: &'a Bytes,
}

impl DocActor {
    async fn handle(&mut self, command: DocCommand) {
        match command {
            DocCommand::Join { mut member, reply } => {
                // Joining again keeps the form of changes the socket already chose.
                if let Some(previous) = self.members.get(&member.id) {
                    member.mode = previous.mode;
                }
                let role = member.role;
                self.members.insert(member.id.clone(), member);
                let (acked, delivered) = oneshot::channel();
                let info = JoinInfo {
                    entry_id: self.entry,
                    role,
                    version: self.doc.version(),
                    content: self.doc.text(),
                    viewers: self.viewers(),
                };
                if reply.send(Joined { info, acked }).is_ok() {
                    // The join ack carries the content at `version`; a relay queued
                    // before it would reach the client first and be overwritten by it.
                    // So nothing more is sent until the ack is in the socket's queue
                    // (a few task hops; bounded, in case the socket is going away).
                    let _ = tokio::time::timeout(JOIN_ACK_WAIT, delivered).await;
                }
                self.announce_viewers();
                self.publish_viewers();
            }
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
                let _ = reply.send(ContentView {
                    content: self.doc.text(),
                    delta: self.doc.delta(),
                    version: self.doc.version(),
                    update: self.doc.encode_full(),
                    cursors: self.cursors.current(&self.doc),
                    viewers: self.viewers(),
                });
            }
            DocCommand::Committed { upto_seq } => self.committed(upto_seq),
            DocCommand::CompactionDone { outcome } => {
                self.compacting = false;
                match outcome {
                    // Retry later; the log just stays longer meanwhile.
                    None => self.rows_since_snapshot = COMPACT_AFTER_ROWS / 2,
                    // Edits kept coming while it ran.
                    Some(Compaction::Done) if self.rows_since_snapshot >= COMPACT_AFTER_ROWS => {
                        self.compact()
                    }
                    Some(Compaction::Busy) => {
                        tracing::debug!(entry = %self.entry, "another process is compacting; it folds our rows too");
                    }
                    Some(Compaction::Done) => {}
                }
            }
            DocCommand::Replica { origin, message } => self.replica(origin, message).await,
            DocCommand::CatchUp => self.catch_up().await,
            DocCommand::TextSaved => self.saving_text = false,
            DocCommand::Shutdown => self.members.clear(),
        }
    }

    fn sync_step1(&mut self, member: &MemberId, state_vector: &[u8]) -> Outcome {
        let Some(m) = self.members.get_mut(member) else {
            return Err(AppError::access_denied());
        };
        if m.mode == Mode::Delta {
            m.mode = Mode::Yjs;
        }
        let diff = self
            .doc
            .diff_since(state_vector)
            .map_err(|e| AppError::validation(e.to_string()))?;
        // Our own step 1 must reach the client after this answer: the y-socket.io
        // client reports itself synced when it sees our step 1.
        let mailbox = self.mailbox.clone();
        let member = member.clone();
        Ok(Reply::Then(
            Box::new(Reply::Binary(Bytes::from(diff))),
            Box::new(move || {
                let _ = mailbox.send(DocCommand::StartSync { member });
            }),
        ))
    }

    /// Sends the server's own sync step 1 to a member and applies its answer (what the
    /// member has that the server lacks), then the current awareness states.
    fn start_sync(&self, member: &MemberId) {
        let Some(m) = self.members.get(member) else {
            return;
        };
        let state_vector = Bytes::from(self.doc.state_vector());
        let ack = match m.mode {
            Mode::YSocketIo => m
                .socket
                .emit_with_ack::<_, Bytes>("sync-step-1", &state_vector),
            _ => m.socket.emit_with_ack::<_, Bytes>(
                "entry_sync_step1",
                &StateVectorMessage {
                    entry_id: self.entry,
                    state_vector: &state_vector,
                },
            ),
        };
        if let Ok(ack) = ack {
            let mailbox = self.mailbox.clone();
            let member = member.clone();
            tokio::spawn(async move {
                // Clients without an ack handler, or answering garbage, are skipped.
                if let Ok(update) = ack.await {
                    if !update.is_empty() {
                        let _ = mailbox.send(DocCommand::Edit {
                            member,
                            edit: Edit::Yjs(update),
                            reply: None,
                        });
                    }
                }
            });
        }
        if let Some(states) = self.awareness.full_update() {
            self.send_awareness(m, &Bytes::from(states));
        }
    }

    async fn edit(&mut self, from: &MemberId, edit: Edit, reply: Option<oneshot::Sender<Outcome>>) {
        let refuse = |reply: Option<oneshot::Sender<Outcome>>, error: AppError| {
            if let Some(reply) = reply {
                let _ = reply.send(Err(error));
            }
        };
        let Some(member) = self.members.get(from) else {
            return refuse(reply, AppError::access_denied());
        };
        if !member.role.can_edit() {
            return refuse(reply, AppError::access_denied());
        }
        let editor = member.user;
        // What goes to the log: a Yjs update as received (so a reload replays exactly
        // what happened, pending parts included); a delta as the update it produced.
        let (result, raw) = match edit {
            Edit::Yjs(update) => (self.doc.apply_update(&update), Some(update)),
            Edit::Delta { ops, base } => (self.doc.apply_delta(&ops, base), None),
        };
        match result {
            Ok(Applied::Changed {
                update: effective,
                delta,
            }) => {
                let effective = Bytes::from(effective);
                let seq = self.log(raw.unwrap_or_else(|| effective.clone()), editor);
                self.relay_change(Some(from), Some(editor), &effective, &delta);
                self.text_dirty = true;
                self.history.changed_by(editor);
                self.ack_when_committed(seq, reply);
            }
            Ok(Applied::Pending) => {
                let seq = match raw {
                    Some(raw) => self.log(raw, editor),
                    None => self.next_seq - 1,
                };
                self.ack_when_committed(seq, reply);
            }
            Ok(Applied::Unchanged) => self.ack_when_committed(self.next_seq - 1, reply),
            Err(DocError::Poisoned) => {
                tracing::error!(entry = %self.entry, "yrs panicked applying an update; rebuilding the doc");
                self.recover().await;
                refuse(reply, AppError::validation(DocError::Poisoned.to_string()));
            }
            Err(e) => refuse(reply, AppError::validation(e.to_string())),
        }
    }

    fn cursor(&mut self, from: &MemberId, position: Position, selection: Selection) -> Outcome {
        let Some(member) = self.members.get(from) else {
            return Err(AppError::access_denied());
        };
        let user = member.user;
        self.move_cursor(Some(from), user, position, selection);
        self.replication.publish(
            self.entry,
            Message::Cursor {
                user,
                position,
                selection,
            },
        );
        Reply::ok()
    }

    fn move_cursor(
        &mut self,
        from: Option<&MemberId>,
        user: UserId,
        position: Position,
        selection: Selection,
    ) {
        self.cursors.set(&self.doc, user, position, selection);
        let payload = json!({
            "entryId": self.entry,
            "userId": user,
            "position": position,
            "selection": selection,
            "timestamp": chrono::Utc::now(),
        });
        self.to_main_members_except(from, "entry_cursor_move", &payload);
    }

    fn set_typing(&mut self, from: &MemberId, is_typing: bool) -> Outcome {
        let Some(member) = self.members.get(from) else {
            return Err(AppError::access_denied());
        };
        let user = member.user;
        self.typing_changed(Some(from), user, is_typing);
        self.replication
            .publish(self.entry, Message::Typing { user, is_typing });
        Reply::ok()
    }

    fn typing_changed(&mut self, from: Option<&MemberId>, user: UserId, is_typing: bool) {
        if is_typing {
            self.typing
                .insert(user, tokio::time::Instant::now() + TYPING_LAPSE);
        } else {
            self.typing.remove(&user);
        }
        let payload = json!({ "entryId": self.entry, "userId": user, "isTyping": is_typing });
        self.to_main_members_except(from, "typing", &payload);
    }

    /// Tells the room that users whose `typing: true` was not refreshed stopped.
    fn lapse_typing(&mut self) {
        let now = tokio::time::Instant::now();
        let lapsed: Vec<UserId> = self
            .typing
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(user, _)| *user)
            .collect();
        for user in lapsed {
            self.typing.remove(&user);
            let payload = json!({ "entryId": self.entry, "userId": user, "isTyping": false });
            self.to_main_members("typing", &payload);
        }
    }

    fn to_main_members(&self, event: &str, payload: &serde_json::Value) {
        self.to_main_members_except(None, event, payload);
    }

    fn to_main_members_except(
        &self,
        from: Option<&MemberId>,
        event: &str,
        payload: &serde_json::Value,
    ) {
        let Some(payload) = serialized_once(payload) else {
            return;
        };
        for member in self
            .members
            .values()
            .filter(|m| m.mode != Mode::YSocketIo && Some(&m.id) != from)
        {
            let _ = member.socket.emit(event, &payload);
        }
    }

    /// Replaces a doc yrs panicked on by a fresh one from storage plus what is in flight.
    async fn recover(&mut self) {
        let uncommitted: Vec<LoggedUpdate> = self
            .uncommitted
            .iter()
            .map(|(row, _)| row.clone())
            .collect();
        let version = self.doc.version();
        match self.store.load_doc(self.entry).await {
            Ok(stored) => match rebuild(&stored, &uncommitted) {
                Ok(mut doc) => {
                    doc.set_version(version);
                    self.doc = doc;
                }
                Err(e) => tracing::error!(entry = %self.entry, code = %e.code, "rebuild failed"),
            },
            Err(e) => tracing::error!(entry = %self.entry, error = %e, "rebuild failed"),
        }
    }

    /// Queues an update by `editor` for commit; returns its `seq` (this actor's ticket:
    /// acks follow commits in ticket order).
    fn log(&mut self, payload: Bytes, editor: UserId) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let row = LoggedUpdate {
            entry: self.entry,
            seq,
            version: i64::try_from(self.doc.version()).unwrap_or(i64::MAX),
            payload,
            author: Some(editor),
        };
        self.uncommitted.push_back((row.clone(), editor));
        self.persister.submit(Write {
            row,
            notify: self.mailbox.clone(),
        });
        seq
    }

    fn ack_when_committed(&mut self, seq: i64, reply: Option<oneshot::Sender<Outcome>>) {
        let Some(reply) = reply else { return };
        let version = self.doc.version();
        if seq <= self.committed_seq {
            let _ = reply.send(Reply::json(json!({ "version": version })));
        } else {
            self.acks.push_back((seq, version, reply));
        }
    }

    fn committed(&mut self, upto_seq: i64) {
        if upto_seq <= self.committed_seq {
            return;
        }
        let newly = usize::try_from(upto_seq - self.committed_seq).unwrap_or(0);
        self.committed_seq = upto_seq;
        self.rows_since_snapshot += newly;
        // Stored now, so other replicas may build on it.
        while self
            .uncommitted
            .front()
            .is_some_and(|(r, _)| r.seq <= upto_seq)
        {
            if let Some((row, user)) = self.uncommitted.pop_front() {
                self.replication.publish(
                    self.entry,
                    Message::Update {
                        user,
                        update: row.payload,
                    },
                );
            }
        }
        while self
            .acks
            .front()
            .is_some_and(|(seq, _, _)| *seq <= upto_seq)
        {
            if let Some((_, version, reply)) = self.acks.pop_front() {
                let _ = reply.send(Reply::json(json!({ "version": version })));
            }
        }
        if self.rows_since_snapshot >= COMPACT_AFTER_ROWS {
            self.compact();
        }
    }

    /// Folds the stored log into a snapshot on a separate task. The snapshot also takes
    /// this replica's state, which may hold updates still in flight: harmless, since
    /// applying an update twice is a no-op, and it only makes the snapshot more complete.
    fn compact(&mut self) {
        if self.compacting || self.doc.has_pending() {
            return;
        }
        self.compacting = true;
        self.rows_since_snapshot = 0;
        self.text_dirty = false;
        let own = self.doc.encode_full();
        let version = self.doc.version();
        let (store, entry, mailbox) = (self.store.clone(), self.entry, self.mailbox.clone());
        tokio::spawn(async move {
            let outcome = match store
                .compact(entry, &move |stored| fold(&own, version, stored))
                .await
            {
                Ok(outcome) => Some(outcome),
                Err(e) => {
                    tracing::warn!(%entry, error = %e, "compaction failed");
                    None
                }
            };
            let _ = mailbox.send(DocCommand::CompactionDone { outcome });
        });
    }

    fn save_text_if_dirty(&mut self) {
        if !self.text_dirty || self.saving_text {
            return;
        }
        self.text_dirty = false;
        self.saving_text = true;
        let text = self.doc.text();
        let version = i64::try_from(self.doc.version()).unwrap_or(i64::MAX);
        let (store, entry, mailbox) = (self.store.clone(), self.entry, self.mailbox.clone());
        tokio::spawn(async move {
            if let Err(e) = store.save_text(entry, &text, version).await {
                tracing::warn!(%entry, error = %e, "saving entry text failed");
            }
            let _ = mailbox.send(DocCommand::TextSaved);
        });
    }

    fn awareness(&mut self, from: &MemberId, update: Bytes) -> Outcome {
        if !self.members.contains_key(from) {
            return Err(AppError::access_denied());
        }
        let changed = self
            .awareness
            .apply(&Owner::Member(from.clone()), &update)
            .map_err(|e| AppError::validation(e.to_string()))?;
        for member in self.members.values().filter(|m| m.id != *from) {
            self.send_awareness(member, &update);
        }
        if changed {
            self.replication
                .publish(self.entry, Message::Awareness { update });
        }
        Reply::ok()
    }

    fn send_awareness(&self, member: &Member, update: &Bytes) {
        let _ = match member.mode {
            Mode::YSocketIo => member.socket.emit("awareness-update", update),
            _ => member.socket.emit(
                "entry_awareness",
                &UpdateMessage {
                    entry_id: self.entry,
                    update,
                },
            ),
        };
    }

    fn leave(&mut self, id: &MemberId) {
        let Some(left) = self.members.remove(id) else {
            return;
        };
        self.forget_absent([left.user]);
        if let Some(removal) = self.awareness.remove(&Owner::Member(id.clone())) {
            let removal = Bytes::from(removal);
            for member in self.members.values() {
                self.send_awareness(member, &removal);
            }
            self.replication
                .publish(self.entry, Message::Awareness { update: removal });
        }
        self.announce_viewers();
        self.publish_viewers();
    }

    /// Whether `user` still has a socket in the entry on any node.
    fn present(&self, user: UserId) -> bool {
        self.members.values().any(|m| m.user == user)
            || self
                .remote_viewers
                .values()
                .any(|(viewers, _)| viewers.iter().any(|v| v.user_id == user))
    }

    /// Clears the cursor and typing state of those `users` whose last socket anywhere
    /// is gone.
    fn forget_absent(&mut self, users: impl IntoIterator<Item = UserId>) {
        for user in users {
            if self.present(user) {
                continue;
            }
            self.typing.remove(&user);
            // Sent whether or not the user moved a cursor here (PROTOCOL.md 5.1: "when a
            // user's last socket leaves"): a client may show a cursor it learnt elsewhere
            // (awareness, an earlier session), and the clear is harmless otherwise.
            self.cursors.remove(user);
            let payload = json!({ "entryId": self.entry, "userId": user });
            self.to_main_members("entry_cursor_clear", &payload);
        }
    }

    /// Sends a change to every other member, in the one form each expects. `editor` is
    /// unknown (`userId: null`) only for what a replica catches up on from storage.
    fn relay_change(
        &self,
        from: Option<&MemberId>,
        editor: Option<UserId>,
        update: &Bytes,
        delta: &QuillDelta,
    ) {
        let mut edit = None;
        for member in self.members.values().filter(|m| Some(&m.id) != from) {
            let sent = match member.mode {
                Mode::Yjs => member.socket.emit(
                    "entry_update",
                    &UpdateMessage {
                        entry_id: self.entry,
                        update,
                    },
                ),
                Mode::YSocketIo => member.socket.emit("sync-update", update),
                Mode::Delta => {
                    let edit = edit.get_or_insert_with(|| {
                        serialized_once(&json!({
                            "entryId": self.entry,
                            "delta": delta,
                            "userId": editor,
                            "timestamp": chrono::Utc::now(),
                            "version": self.doc.version(),
                        }))
                    });
                    match edit {
                        Some(edit) => member.socket.emit("entry_edit", edit),
                        None => continue,
                    }
                }
            };
            if let Err(SendError::Socket(SocketError::InternalChannelFull)) = sent {
                // The socket's outgoing buffer is full (a client far behind). Dropping one
                // change would leave it silently out of sync; disconnected, it resyncs
                // when it reconnects.
                tracing::warn!(entry = %self.entry, user = %member.user, "send buffer full; disconnecting lagging socket");
                let _ = member.socket.clone().disconnect();
            }
        }
    }

    /// One row per user, whatever the number of their sockets and nodes.
    fn viewers(&self) -> Vec<Viewer> {
        let mut viewers = self.local_viewers();
        for (remote, _) in self.remote_viewers.values() {
            for viewer in remote {
                if !viewers.iter().any(|v| v.user_id == viewer.user_id) {
                    viewers.push(viewer.clone());
                }
            }
        }
        viewers.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        viewers
    }

    /// This node's members, one row per user.
    fn local_viewers(&self) -> Vec<Viewer> {
        let mut viewers: Vec<Viewer> = Vec::new();
        for member in self.members.values() {
            if !viewers.iter().any(|v| v.user_id == member.user) {
                viewers.push(Viewer {
                    user_id: member.user,
                    display_name: member.display_name.clone(),
                    role: member.role,
                });
            }
        }
        viewers
    }

    /// Tells the other replicas who is here (nobody, once the last member left).
    fn publish_viewers(&self) {
        self.replication.publish(
            self.entry,
            Message::Viewers {
                viewers: self.local_viewers(),
            },
        );
    }

    fn announce_viewers(&self) {
        let payload = json!({ "entryId": self.entry, "viewers": self.viewers() });
        self.to_main_members("current_viewers", &payload);
    }

    fn is_idle(&self) -> bool {
        self.members.is_empty()
            && self.committed_seq == self.next_seq - 1
            && !self.compacting
            && !self.saving_text
    }

    /// Takes the interval's history checkpoint on a separate task.
    fn checkpoint(&mut self) {
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

    /// Last writes before unloading: a history checkpoint if the text changed, and a
    /// snapshot when the log grew, else the plain text.
    async fn finish(&mut self) {
        if let Some(checkpoint) = self.history.take(self.entry, &self.doc) {
            if let Err(e) = self.store.take_checkpoint(&checkpoint).await {
                tracing::warn!(entry = %self.entry, error = %e, "history checkpoint failed");
            }
        }
        let text = self.doc.text();
        let version = self.doc.version();
        if self.rows_since_snapshot > 0 && !self.doc.has_pending() {
            let own = self.doc.encode_full();
            match self
                .store
                .compact(self.entry, &move |stored| fold(&own, version, stored))
                .await
            {
                Ok(Compaction::Done) => return,
                // Another node is compacting; the text is still ours to save.
                Ok(Compaction::Busy) => {}
                Err(e) => {
                    tracing::warn!(entry = %self.entry, error = %e, "final compaction failed")
                }
            }
        }
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        if let Err(e) = self.store.save_text(self.entry, &text, version).await {
            tracing::warn!(entry = %self.entry, error = %e, "saving entry text failed");
        }
    }
}

/// A relay payload serialised once for all its recipients: `emit` writes a raw JSON
/// value as it is, where it would walk and escape a `serde_json::Value` again for
/// every socket (the cursor scenario's profile: ~6 % of server time).
fn serialized_once(payload: &serde_json::Value) -> Option<Box<serde_json::value::RawValue>> {
    match serde_json::value::to_raw_value(payload) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::error!(error = %e, "relay payload does not serialise");
            None
        }
    }
}
