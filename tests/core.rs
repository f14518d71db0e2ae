//! The entry core on its own: `Collab` with a real SQLite store and an outbound
//! interface that records what each member would be sent, no sockets anywhere.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::json;
use tokio::sync::mpsc;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Text, Transact, Update};

use diary_realtime::cluster::NodeId;
use diary_realtime::collab::command::{
    Edit, EntryReply, Joined, Member, MemberForm, MemberId, MemberLink, Viewer,
};
use diary_realtime::collab::cursors::{Position, Selection};
use diary_realtime::collab::delta::{QuillDelta, QuillOp};
use diary_realtime::collab::error::EntryError;
use diary_realtime::collab::outbound::{Change, CursorMove, Outbound, Recipients};
use diary_realtime::collab::replication::{Liveness, Standalone};
use diary_realtime::collab::Collab;
use diary_realtime::ids::{EntryId, UserId};
use diary_realtime::store::sqlite::SqliteStore;
use diary_realtime::store::{EntryRole, NewEntry, NewUser, Store, Visibility};

/// Longest any awaited message or answer may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// One message to one member, as the outbound side was asked to send it.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Change {
        form: MemberForm,
        update: Bytes,
        delta: QuillDelta,
        editor: Option<UserId>,
        version: u64,
    },
    Cursor(UserId),
    CursorClear(UserId),
    Typing(UserId, bool),
    Viewers(Vec<UserId>),
    Awareness(Bytes),
    SyncStep,
    Dropped,
}

/// Records every message, per recipient, in the order the actor sent them.
struct Recorder {
    tx: mpsc::UnboundedSender<(MemberId, Sent)>,
    /// What members answer to the server's sync step 1.
    sync_answer: Option<Bytes>,
}

impl Recorder {
    fn each(&self, to: Recipients<'_, '_>, sent: impl Fn(&Member) -> Sent) {
        for member in to {
            let _ = self.tx.send((member.id.clone(), sent(member)));
        }
    }
}

impl Outbound for Recorder {
    fn change(&self, to: Recipients<'_, '_>, change: &Change<'_>) -> Vec<MemberId> {
        self.each(to, |m| Sent::Change {
            form: m.form,
            update: change.update.clone(),
            delta: change.delta.clone(),
            editor: change.editor,
            version: change.version,
        });
        Vec::new()
    }

    fn cursor(&self, to: Recipients<'_, '_>, cursor: &CursorMove) {
        self.each(to, |_| Sent::Cursor(cursor.user));
    }

    fn cursor_clear(&self, to: Recipients<'_, '_>, _entry: EntryId, user: UserId) {
        self.each(to, |_| Sent::CursorClear(user));
    }

    fn typing(&self, to: Recipients<'_, '_>, _entry: EntryId, user: UserId, is_typing: bool) {
        self.each(to, |_| Sent::Typing(user, is_typing));
    }

    fn viewers(&self, to: Recipients<'_, '_>, _entry: EntryId, viewers: &[Viewer]) {
        let users: Vec<UserId> = viewers.iter().map(|v| v.user_id).collect();
        self.each(to, |_| Sent::Viewers(users.clone()));
    }

    fn awareness(&self, to: Recipients<'_, '_>, _entry: EntryId, update: &Bytes) {
        self.each(to, |_| Sent::Awareness(update.clone()));
    }

    fn sync_step(
        &self,
        to: &Member,
        _entry: EntryId,
        _state_vector: Bytes,
    ) -> BoxFuture<'static, Option<Bytes>> {
        let _ = self.tx.send((to.id.clone(), Sent::SyncStep));
        let answer = self.sync_answer.clone();
        Box::pin(async move { answer })
    }

    fn drop_member(&self, member: &Member) {
        let _ = self.tx.send((member.id.clone(), Sent::Dropped));
    }
}

struct Core {
    collab: Collab,
    store: Arc<dyn Store>,
    entry: EntryId,
    sent: mpsc::UnboundedReceiver<(MemberId, Sent)>,
    _dir: tempfile::TempDir,
}

impl Core {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// `sync_answer`: what every member answers to the server's sync step 1.
    async fn start_with(sync_answer: Option<Bytes>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("core.db"))
                .await
                .expect("sqlite store"),
        );
        let owner = UserId::new_random();
        let entry = EntryId::new_random();
        store
            .upsert_user(&NewUser {
                id: owner,
                username: "owner".into(),
                display_name: None,
            })
            .await
            .expect("user");
        store
            .upsert_entry(&NewEntry {
                id: entry,
                owner,
                title: "core".into(),
                visibility: Visibility::Private,
            })
            .await
            .expect("entry");
        let replication = Arc::new(Standalone::new(
            NodeId::random(),
            Liveness {
                announce_every: Duration::from_secs(60),
                stale_after: Duration::from_secs(180),
            },
        ));
        let (tx, sent) = mpsc::unbounded_channel();
        let outbound = Arc::new(Recorder { tx, sync_answer });
        Core {
            collab: Collab::start(
                store.clone(),
                replication,
                outbound,
                Duration::from_secs(300),
            ),
            store,
            entry,
            sent,
            _dir: dir,
        }
    }

    async fn join(&self, name: &str, role: EntryRole, form: MemberForm) -> (MemberId, UserId) {
        let id = MemberId::new(name);
        let user = UserId::new_random();
        let member = Member {
            id: id.clone(),
            link: MemberLink::new(()),
            user,
            display_name: name.into(),
            role,
            form,
        };
        let Joined { acked, .. } = within(self.collab.join(self.entry, member))
            .await
            .expect("joined");
        let _ = acked.send(());
        (id, user)
    }

    /// The next message sent to `to` that `want` picks, skipping others.
    async fn next_to<T>(&mut self, to: &MemberId, want: impl Fn(&Sent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (member, sent) = tokio::time::timeout_at(deadline, self.sent.recv())
                .await
                .expect("message within the deadline")
                .expect("outbound open");
            if &member == to {
                if let Some(found) = want(&sent) {
                    return found;
                }
            }
        }
    }

    /// Everything sent so far, once the actor has handled all that came before.
    async fn drain(&mut self) -> Vec<(MemberId, Sent)> {
        // The actor answers in mailbox order: once this answer is in, every message
        // of the commands before it has been handed to the outbound side.
        within(self.collab.content(self.entry))
            .await
            .expect("content");
        let mut all = Vec::new();
        while let Ok(sent) = self.sent.try_recv() {
            all.push(sent);
        }
        all
    }

    async fn text(&self) -> String {
        within(self.collab.content(self.entry))
            .await
            .expect("content")
            .content
    }
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("answered within the deadline")
}

fn insert(at: u32, text: &str) -> Edit {
    let mut ops = Vec::new();
    if at > 0 {
        ops.push(QuillOp::Retain {
            retain: at,
            attributes: None,
        });
    }
    ops.push(QuillOp::Insert {
        insert: json!(text),
        attributes: None,
    });
    Edit::Delta { ops, base: None }
}

fn based_on(edit: Edit, version: u64) -> Edit {
    match edit {
        Edit::Delta { ops, .. } => Edit::Delta {
            ops,
            base: Some(version),
        },
        yjs => yjs,
    }
}

/// A Yjs update inserting `text` at the start of a fresh client's doc.
fn yjs_insert(text: &str) -> Bytes {
    let doc = Doc::new();
    let content = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    content.insert(&mut txn, 0, text);
    Bytes::from(txn.encode_update_v1())
}

fn committed_version(reply: EntryReply) -> u64 {
    match reply {
        EntryReply::Committed { version } => version,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[tokio::test]
async fn a_join_answers_the_doc_and_tells_everyone_who_is_here() {
    let mut core = Core::start().await;
    let (a, alice) = core.join("a", EntryRole::Owner, MemberForm::Delta).await;
    assert_eq!(
        core.next_to(&a, |s| match s {
            Sent::Viewers(users) => Some(users.clone()),
            _ => None,
        })
        .await,
        [alice]
    );

    let member = Member {
        id: MemberId::new("b"),
        link: MemberLink::new(()),
        user: UserId::new_random(),
        display_name: "b".into(),
        role: EntryRole::Viewer,
        form: MemberForm::Delta,
    };
    let joined = within(core.collab.join(core.entry, member)).await.unwrap();
    assert_eq!(joined.info.entry_id, core.entry);
    assert_eq!(joined.info.role, EntryRole::Viewer);
    assert_eq!(joined.info.version, 0);
    assert_eq!(joined.info.content, "");
    assert_eq!(joined.info.viewers.len(), 2);
    let _ = joined.acked.send(());
    let viewers = core
        .next_to(&a, |s| match s {
            Sent::Viewers(users) => Some(users.len()),
            _ => None,
        })
        .await;
    assert_eq!(viewers, 2);
}

#[tokio::test]
async fn an_edit_is_acked_only_once_stored_and_relayed_to_others_in_their_form() {
    let mut core = Core::start().await;
    let (a, alice) = core.join("a", EntryRole::Owner, MemberForm::Delta).await;
    let (b, _) = core.join("b", EntryRole::Editor, MemberForm::Delta).await;
    let (y, _) = core
        .join("y", EntryRole::Editor, MemberForm::YSocketIo)
        .await;
    core.drain().await;

    let answer = within(core.collab.edit(core.entry, a.clone(), insert(0, "hello")))
        .await
        .expect("edit accepted");
    assert_eq!(committed_version(answer), 1);
    // Acked, so stored: a fresh load of the log has it.
    let stored = core.store.load_doc(core.entry).await.unwrap();
    assert_eq!(stored.updates.len(), 1);

    let relays = core.drain().await;
    let changes: Vec<_> = relays
        .iter()
        .filter_map(|(to, sent)| match sent {
            Sent::Change {
                form,
                update,
                delta,
                editor,
                version,
            } => Some((
                to.clone(),
                *form,
                update.clone(),
                delta.clone(),
                *editor,
                *version,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 2, "everyone but the editor: {changes:?}");
    assert!(changes.iter().all(|(to, ..)| to != &a));
    for (to, form, update, delta, editor, version) in changes {
        assert_eq!(editor, Some(alice));
        assert_eq!(version, 1);
        // The delta form as an insert, the Yjs forms as an update that makes the text.
        assert_eq!(
            delta.ops,
            [QuillOp::Insert {
                insert: json!("hello"),
                attributes: None
            }]
        );
        let replica = Doc::new();
        let text = replica.get_or_insert_text("content");
        replica
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(text.get_string(&replica.transact()), "hello");
        assert_eq!(
            form,
            if to == b {
                MemberForm::Delta
            } else {
                MemberForm::YSocketIo
            }
        );
        assert!(to == b || to == y);
    }
}

#[tokio::test]
async fn a_member_switches_to_yjs_with_its_sync_step_and_gets_our_step_after_it() {
    let mut core = Core::start_with(Some(yjs_insert("from the client"))).await;
    let (a, _) = core.join("a", EntryRole::Owner, MemberForm::Delta).await;
    let (b, _) = core.join("b", EntryRole::Editor, MemberForm::Delta).await;
    within(core.collab.edit(core.entry, a.clone(), insert(0, "x")))
        .await
        .unwrap();

    let answer = within(
        core.collab
            .sync_step1(core.entry, b.clone(), Bytes::from_static(&[0])),
    )
    .await
    .expect("sync answer");
    let EntryReply::SyncAnswer { update, then } = answer else {
        panic!("expected a sync answer");
    };
    assert!(!update.is_empty(), "b lacks everything");
    then.send();
    core.next_to(&b, |s| (s == &Sent::SyncStep).then_some(()))
        .await;
    // b's answer to our step is applied like an edit by b, and relayed to a.
    let delta = core
        .next_to(&a, |s| match s {
            Sent::Change { delta, .. } => Some(delta.clone()),
            _ => None,
        })
        .await;
    assert!(!delta.ops.is_empty());
    // From now on b gets Yjs updates.
    within(core.collab.edit(core.entry, a.clone(), insert(0, "y")))
        .await
        .unwrap();
    let form = core
        .next_to(&b, |s| match s {
            Sent::Change { form, .. } => Some(*form),
            _ => None,
        })
        .await;
    assert_eq!(form, MemberForm::Yjs);
    let text = core.text().await;
    assert!(text.contains("from the client") && text.contains('x') && text.starts_with('y'));
}

#[tokio::test]
async fn a_delta_on_a_stale_base_is_rebased_over_what_came_since() {
    let core = Core::start().await;
    let (a, _) = core.join("a", EntryRole::Owner, MemberForm::Delta).await;
    let (b, _) = core.join("b", EntryRole::Editor, MemberForm::Delta).await;
    within(core.collab.edit(core.entry, a.clone(), insert(0, "hello")))
        .await
        .unwrap();
    // Both at version 1: a prepends, b (not having seen it) appends at its index 5.
    within(
        core.collab
            .edit(core.entry, a.clone(), based_on(insert(0, ">> "), 1)),
    )
    .await
    .unwrap();
    let answer = within(
        core.collab
            .edit(core.entry, b.clone(), based_on(insert(5, "!"), 1)),
    )
    .await
    .unwrap();
    assert_eq!(committed_version(answer), 3);
    assert_eq!(core.text().await, ">> hello!");
    // A base the server never had is refused, and changes nothing.
    let refused = within(core.collab.edit(core.entry, b, based_on(insert(0, "?"), 9))).await;
    assert!(
        matches!(refused, Err(EntryError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(core.text().await, ">> hello!");
}

#[tokio::test]
async fn viewers_and_strangers_cannot_edit() {
    let core = Core::start().await;
    let (v, _) = core.join("v", EntryRole::Viewer, MemberForm::Delta).await;
    let refused = within(core.collab.edit(core.entry, v, insert(0, "no"))).await;
    assert!(matches!(refused, Err(EntryError::ReadOnly)), "{refused:?}");
    let stranger = MemberId::new("nobody");
    let refused = within(
        core.collab
            .edit(core.entry, stranger, Edit::Yjs(yjs_insert("no"))),
    )
    .await;
    assert!(matches!(refused, Err(EntryError::NotMember)), "{refused:?}");
    assert_eq!(core.text().await, "");
    let stored = core.store.load_doc(core.entry).await.unwrap();
    assert!(stored.updates.is_empty());
}

#[tokio::test]
async fn cursors_and_typing_reach_the_others() {
    let mut core = Core::start().await;
    let (a, alice) = core.join("a", EntryRole::Owner, MemberForm::Delta).await;
    let (b, _) = core.join("b", EntryRole::Viewer, MemberForm::Delta).await;
    let position = Position {
        index: 0,
        length: 0,
    };
    let selection = Selection { start: 0, end: 0 };
    within(
        core.collab
            .cursor(core.entry, a.clone(), position, selection),
    )
    .await
    .unwrap();
    within(core.collab.typing(core.entry, a.clone(), true))
        .await
        .unwrap();
    let sent: Vec<Sent> = core
        .drain()
        .await
        .into_iter()
        .filter(|(to, s)| !matches!(s, Sent::Viewers(_)) && (to == &a || to == &b))
        .map(|(to, s)| {
            assert_eq!(to, b, "the sender hears nothing back");
            s
        })
        .collect();
    assert_eq!(sent, [Sent::Cursor(alice), Sent::Typing(alice, true)]);
}

#[tokio::test]
async fn a_member_leaving_clears_its_cursor_and_awareness_and_leaves_the_viewers() {
    let mut core = Core::start().await;
    let (a, _) = core.join("a", EntryRole::Owner, MemberForm::Yjs).await;
    let (b, bob) = core.join("b", EntryRole::Editor, MemberForm::Yjs).await;
    // b's awareness state (y-protocols encoding: one client, clock 1, a JSON state).
    let mut state = vec![1, 42, 1];
    let json = br#"{"user":"b"}"#;
    state.push(json.len() as u8);
    state.extend_from_slice(json);
    within(
        core.collab
            .awareness(core.entry, b.clone(), Bytes::from(state)),
    )
    .await
    .expect("awareness accepted");
    core.drain().await;

    core.collab.leave(core.entry, b);
    let sent: Vec<Sent> = core
        .drain()
        .await
        .into_iter()
        .map(|(to, s)| {
            assert_eq!(to, a);
            s
        })
        .collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0], Sent::CursorClear(bob));
    assert!(
        matches!(sent[1], Sent::Awareness(_)),
        "the removal of b's state"
    );
    assert!(matches!(&sent[2], Sent::Viewers(users) if users.len() == 1 && users[0] != bob));
}

#[tokio::test]
async fn the_log_is_folded_into_a_snapshot_as_it_grows() {
    let core = Core::start().await;
    let (a, _) = core.join("a", EntryRole::Owner, MemberForm::Delta).await;
    for i in 0..300 {
        within(core.collab.edit(core.entry, a.clone(), insert(i, "x")))
            .await
            .unwrap();
    }
    // Compaction runs on its own task: wait for its outcome in the store.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let stored = loop {
        let stored = core.store.load_doc(core.entry).await.unwrap();
        if stored.snapshot.is_some() {
            break stored;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot in time"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(stored.updates.len() < 300, "folded rows are gone");
    // What is stored still makes the whole text.
    let mut doc = diary_realtime::collab::doc::EntryDoc::new();
    if let Some(snapshot) = &stored.snapshot {
        doc.restore(&snapshot.state).unwrap();
    }
    for row in &stored.updates {
        doc.restore(&row.payload).unwrap();
    }
    assert_eq!(doc.text(), "x".repeat(300));
    assert_eq!(core.text().await, "x".repeat(300));
}

#[tokio::test]
async fn an_entry_reloads_as_it_was_once_its_last_member_left() {
    let core = Core::start().await;
    let (a, _) = core.join("a", EntryRole::Owner, MemberForm::Delta).await;
    within(core.collab.edit(core.entry, a.clone(), insert(0, "kept")))
        .await
        .unwrap();
    core.collab.leave(core.entry, a);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while core.collab.loaded() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never unloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, _) = core
        .join("again", EntryRole::Owner, MemberForm::Delta)
        .await;
    assert_eq!(core.text().await, "kept");
    let view = within(core.collab.content(core.entry)).await.unwrap();
    assert_eq!(view.version, 1);
}
