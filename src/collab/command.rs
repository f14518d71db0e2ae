//! What travels to and from an entry's actor: its commands, the members it serves and
//! its typed answers. The committer, the registry and replication name only these, not
//! the actor itself.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::cursors::{CursorView, Position, Selection};
use super::delta::{QuillDelta, QuillOp};
use super::error::EntryError;
use super::replication::Message;
use crate::cluster::node::NodeId;
use crate::ids::{EntryId, UserId};
use crate::store::{Compaction, EntryRole};

/// One membership of an entry, as the network side names it (for Socket.IO: the
/// socket's namespace and id). The core only compares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberId(Arc<str>);

impl MemberId {
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        MemberId(key.into())
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a member receives changes (PROTOCOL.md section 5: one form per member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberForm {
    /// Has not asked for Yjs sync: gets text deltas.
    Delta,
    /// Has sent a sync step 1 on a main namespace: gets Yjs updates.
    Yjs,
    /// A y-socket.io client: gets bare Yjs updates, and no cursor, typing or viewers.
    YSocketIo,
}

/// Where the outbound side delivers a member's messages (for Socket.IO, its socket).
/// The core keeps it with the member and hands it back, never looking inside.
#[derive(Clone)]
pub struct MemberLink(Arc<dyn Any + Send + Sync>);

impl MemberLink {
    pub fn new<T: Any + Send + Sync>(link: T) -> Self {
        MemberLink(Arc::new(link))
    }

    /// The link as the outbound side made it; `None` for another kind.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

/// A member joining an entry.
#[derive(Clone)]
pub struct Member {
    pub id: MemberId,
    pub link: MemberLink,
    pub user: UserId,
    pub display_name: String,
    pub role: EntryRole,
    pub form: MemberForm,
}

/// One row of the entry's viewers: one per user, whatever their number of members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Viewer {
    pub user_id: UserId,
    pub display_name: String,
    pub role: EntryRole,
}

/// The answer to a join, and where to report that it is on its way to the member:
/// until then the actor holds its relays, which would otherwise overtake it.
pub struct Joined {
    pub info: JoinInfo,
    pub acked: oneshot::Sender<()>,
}

/// What a joining member is told.
#[derive(Debug, Clone)]
pub struct JoinInfo {
    pub entry_id: EntryId,
    pub role: EntryRole,
    pub version: u64,
    pub content: String,
    pub viewers: Vec<Viewer>,
}

/// The whole state of the entry (`state_response`, the REST content route).
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

/// What a member's request is answered with.
#[derive(Debug)]
pub enum EntryReply {
    /// Done, nothing to add.
    Done,
    /// An edit is stored; the doc was at `version` once it was applied.
    Committed { version: u64 },
    /// The answer to a member's sync step 1 (what it lacks). Once that answer is on its
    /// way, `then` asks the actor for the member's own missing part.
    SyncAnswer { update: Bytes, then: StartSync },
}

pub type EntryResult<T = EntryReply> = Result<T, EntryError>;

/// Where the actor sends its answer to one request.
pub type ReplyTo<T = EntryReply> = oneshot::Sender<EntryResult<T>>;

/// The actor's answer to come. Resolves to [`EntryError::Unavailable`] when the
/// actor could not load the entry or is gone.
pub struct Answer<T> {
    entry: EntryId,
    rx: oneshot::Receiver<EntryResult<T>>,
}

impl<T> Answer<T> {
    pub(super) fn new(entry: EntryId, rx: oneshot::Receiver<EntryResult<T>>) -> Self {
        Answer { entry, rx }
    }
}

impl<T> Future for Answer<T> {
    type Output = EntryResult<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let entry = self.entry;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(EntryError::Unavailable(entry))))
    }
}

/// The second half of a sync exchange: the server's own sync step 1 to the member.
/// Sent by the network side once the member has the answer to its own step 1, since
/// the y-socket.io client reports itself synced when it sees ours.
#[derive(Debug)]
pub struct StartSync {
    pub(super) mailbox: mpsc::UnboundedSender<DocCommand>,
    pub(super) member: MemberId,
}

impl StartSync {
    pub fn send(self) {
        let _ = self.mailbox.send(DocCommand::StartSync {
            member: self.member,
        });
    }
}

/// Messages to an entry actor.
pub enum DocCommand {
    Join {
        member: Member,
        reply: ReplyTo<Joined>,
    },
    Leave {
        member: MemberId,
    },
    /// A member's sync step 1: answer with what it lacks (see [`EntryReply::SyncAnswer`]).
    SyncStep1 {
        member: MemberId,
        state_vector: Bytes,
        reply: ReplyTo,
    },
    /// An edit from a member, or its answer to our sync step 1 (`reply` is `None`).
    Edit {
        member: MemberId,
        edit: Edit,
        reply: Option<ReplyTo>,
    },
    Cursor {
        member: MemberId,
        position: Position,
        selection: Selection,
        reply: ReplyTo,
    },
    Typing {
        member: MemberId,
        is_typing: bool,
        reply: ReplyTo,
    },
    /// The member has our answer to its step 1: now our own step 1.
    StartSync {
        member: MemberId,
    },
    Awareness {
        member: MemberId,
        update: Bytes,
        reply: ReplyTo,
    },
    Content {
        reply: ReplyTo<ContentView>,
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
