//! The entry's members and what they see of each other: joining and leaving, the sync
//! exchange, relays of changes, cursors, typing and awareness, and the viewers list.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{DocActor, JOIN_ACK_WAIT, TYPING_LAPSE};
use crate::collab::awareness::Owner;
use crate::collab::command::{
    DocCommand, Edit, EntryReply, EntryResult, JoinInfo, Joined, Member, MemberForm, MemberId,
    ReplyTo, StartSync, Viewer,
};
use crate::collab::cursors::{Position, Selection};
use crate::collab::delta::QuillDelta;
use crate::collab::error::EntryError;
use crate::collab::outbound::{Change, CursorMove};
use crate::collab::replication::Message;
use crate::ids::UserId;

impl DocActor {
    /// Every member but `from`.
    fn others<'a>(&'a self, from: Option<&'a MemberId>) -> impl Iterator<Item = &'a Member> {
        self.members.values().filter(move |m| Some(&m.id) != from)
    }

    fn member(&self, id: &MemberId) -> Result<&Member, EntryError> {
        self.members.get(id).ok_or(EntryError::NotMember)
    }

    pub(super) async fn join(&mut self, mut member: Member, reply: ReplyTo<Joined>) {
        // Joining again keeps the form of changes the member already chose.
        if let Some(previous) = self.members.get(&member.id) {
            member.form = previous.form;
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
        if reply.send(Ok(Joined { info, acked })).is_ok() {
            // The join answer carries the content at `version`; a relay sent before it
            // would reach the client first and be overwritten by it. So nothing more is
            // sent until the answer is on its way (a few task hops; bounded, in case
            // the member is going away).
            let _ = tokio::time::timeout(JOIN_ACK_WAIT, delivered).await;
        }
        self.announce_viewers();
        self.publish_viewers();
    }

    pub(super) fn leave(&mut self, id: &MemberId) {
        let Some(left) = self.members.remove(id) else {
            return;
        };
        self.forget_absent([left.user]);
        if let Some(removal) = self.awareness.remove(&Owner::Member(id.clone())) {
            let removal = Bytes::from(removal);
            self.outbound
                .awareness(&mut self.others(None), self.entry, &removal);
            self.replication
                .publish(self.entry, Message::Awareness { update: removal });
        }
        self.announce_viewers();
        self.publish_viewers();
    }

    /// A member's sync step 1: what it lacks, and from now on Yjs updates instead of
    /// deltas. Our own step 1 follows once the answer is on its way ([`StartSync`]).
    pub(super) fn sync_step1(&mut self, id: &MemberId, state_vector: &[u8]) -> EntryResult {
        let Some(member) = self.members.get_mut(id) else {
            return Err(EntryError::NotMember);
        };
        if member.form == MemberForm::Delta {
            member.form = MemberForm::Yjs;
        }
        let diff = self
            .doc
            .diff_since(state_vector)
            .map_err(EntryError::invalid)?;
        Ok(EntryReply::SyncAnswer {
            update: Bytes::from(diff),
            then: StartSync {
                mailbox: self.mailbox.clone(),
                member: id.clone(),
            },
        })
    }

    /// Sends the server's own sync step 1 to a member and applies its answer (what the
    /// member has that the server lacks), then the current awareness states.
    pub(super) fn start_sync(&self, id: &MemberId) {
        let Some(member) = self.members.get(id) else {
            return;
        };
        let state_vector = Bytes::from(self.doc.state_vector());
        let answer = self.outbound.sync_step(member, self.entry, state_vector);
        let mailbox = self.mailbox.clone();
        let id = id.clone();
        tokio::spawn(async move {
            // Clients without an ack handler, or answering garbage, are skipped.
            if let Some(update) = answer.await.filter(|u| !u.is_empty()) {
                let _ = mailbox.send(DocCommand::Edit {
                    member: id,
                    edit: Edit::Yjs(update),
                    reply: None,
                });
            }
        });
        if let Some(states) = self.awareness.full_update() {
            self.outbound.awareness(
                &mut std::iter::once(member),
                self.entry,
                &Bytes::from(states),
            );
        }
    }

    pub(super) fn cursor(
        &mut self,
        from: &MemberId,
        position: Position,
        selection: Selection,
    ) -> EntryResult {
        let user = self.member(from)?.user;
        self.move_cursor(Some(from), user, position, selection);
        self.replication.publish(
            self.entry,
            Message::Cursor {
                user,
                position,
                selection,
            },
        );
        Ok(EntryReply::Done)
    }

    pub(super) fn move_cursor(
        &mut self,
        from: Option<&MemberId>,
        user: UserId,
        position: Position,
        selection: Selection,
    ) {
        self.cursors.set(&self.doc, user, position, selection);
        let cursor = CursorMove {
            entry: self.entry,
            user,
            position,
            selection,
        };
        self.outbound.cursor(&mut self.others(from), &cursor);
    }

    pub(super) fn set_typing(&mut self, from: &MemberId, is_typing: bool) -> EntryResult {
        let user = self.member(from)?.user;
        self.typing_changed(Some(from), user, is_typing);
        self.replication
            .publish(self.entry, Message::Typing { user, is_typing });
        Ok(EntryReply::Done)
    }

    pub(super) fn typing_changed(
        &mut self,
        from: Option<&MemberId>,
        user: UserId,
        is_typing: bool,
    ) {
        if is_typing {
            self.typing
                .insert(user, tokio::time::Instant::now() + TYPING_LAPSE);
        } else {
            self.typing.remove(&user);
        }
        self.outbound
            .typing(&mut self.others(from), self.entry, user, is_typing);
    }

    /// Tells the room that users whose `typing: true` was not refreshed stopped.
    pub(super) fn lapse_typing(&mut self) {
        let now = tokio::time::Instant::now();
        let lapsed: Vec<UserId> = self
            .typing
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(user, _)| *user)
            .collect();
        for user in lapsed {
            self.typing.remove(&user);
            self.outbound
                .typing(&mut self.others(None), self.entry, user, false);
        }
    }

    pub(super) fn awareness(&mut self, from: &MemberId, update: Bytes) -> EntryResult {
        self.member(from)?;
        let changed = self
            .awareness
            .apply(&Owner::Member(from.clone()), &update)
            .map_err(EntryError::invalid)?;
        self.outbound
            .awareness(&mut self.others(Some(from)), self.entry, &update);
        if changed {
            self.replication
                .publish(self.entry, Message::Awareness { update });
        }
        Ok(EntryReply::Done)
    }

    /// Whether `user` still has a member in the entry on any node.
    fn present(&self, user: UserId) -> bool {
        self.members.values().any(|m| m.user == user)
            || self
                .remote_viewers
                .values()
                .any(|(viewers, _)| viewers.iter().any(|v| v.user_id == user))
    }

    /// Clears the cursor and typing state of those `users` whose last member anywhere
    /// is gone.
    pub(super) fn forget_absent(&mut self, users: impl IntoIterator<Item = UserId>) {
        for user in users {
            if self.present(user) {
                continue;
            }
            self.typing.remove(&user);
            // Sent whether or not the user moved a cursor here (PROTOCOL.md 5.1: "when a
            // user's last socket leaves"): a client may show a cursor it learnt elsewhere
            // (awareness, an earlier session), and the clear is harmless otherwise.
            self.cursors.remove(user);
            self.outbound
                .cursor_clear(&mut self.others(None), self.entry, user);
        }
    }

    /// Sends a change to every other member, in the one form each expects. `editor` is
    /// unknown only for what a replica catches up on from storage.
    pub(super) fn relay_change(
        &self,
        from: Option<&MemberId>,
        editor: Option<UserId>,
        update: &Bytes,
        delta: &QuillDelta,
    ) {
        let change = Change {
            entry: self.entry,
            update,
            delta,
            editor,
            version: self.doc.version(),
        };
        let lagging = self.outbound.change(&mut self.others(from), &change);
        for id in lagging {
            if let Some(member) = self.members.get(&id) {
                // Its send buffer is full (a client far behind). Dropping one change
                // would leave it silently out of sync; disconnected, it resyncs when it
                // reconnects.
                tracing::warn!(entry = %self.entry, user = %member.user, "send buffer full; disconnecting lagging member");
                self.outbound.drop_member(member);
            }
        }
    }

    /// One row per user, whatever the number of their members and nodes.
    pub(super) fn viewers(&self) -> Vec<Viewer> {
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
    pub(super) fn publish_viewers(&self) {
        self.replication.publish(
            self.entry,
            Message::Viewers {
                viewers: self.local_viewers(),
            },
        );
    }

    pub(super) fn announce_viewers(&self) {
        self.outbound
            .viewers(&mut self.others(None), self.entry, &self.viewers());
    }
}
