//! Edits and their durability: apply and relay at once, queue the update to the group
//! committer with the next `seq`, and acknowledge only once that `seq` is stored.

use bytes::Bytes;

use super::{rebuild, DocActor, COMPACT_AFTER_ROWS};
use crate::collab::command::{Edit, EntryReply, MemberId, ReplyTo};
use crate::collab::doc::{Applied, DocError};
use crate::collab::error::EntryError;
use crate::collab::persist::Write;
use crate::collab::replication::Message;
use crate::ids::UserId;
use crate::store::{Compaction, LoggedUpdate};

impl DocActor {
    pub(super) async fn edit(&mut self, from: &MemberId, edit: Edit, reply: Option<ReplyTo>) {
        let refuse = |reply: Option<ReplyTo>, error: EntryError| {
            if let Some(reply) = reply {
                let _ = reply.send(Err(error));
            }
        };
        let Some(member) = self.members.get(from) else {
            return refuse(reply, EntryError::NotMember);
        };
        if !member.role.can_edit() {
            return refuse(reply, EntryError::ReadOnly);
        }
        let editor = member.user;
        // What goes to the log: a Yjs update as received (so a reload replays exactly
        // what happened); a delta as the update it produced.
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
                refuse(reply, EntryError::invalid(DocError::Poisoned));
            }
            Err(DocError::Refused(e)) if e.is_missing_dependency() && reply.is_some() => {
                // The sender holds items this doc lacks (another tab of the same browser
                // can hand them over without us). Our sync step 1 asks it for all of
                // them; its answer (sent without a reply, so this never loops) brings
                // the refused edit in with what it builds on.
                refuse(reply, EntryError::invalid(DocError::Refused(e)));
                self.start_sync(from);
            }
            Err(e) => refuse(reply, EntryError::invalid(e)),
        }
    }

    /// Replaces a doc yrs panicked on by a fresh one from storage plus what is in flight.
    pub(super) async fn recover(&mut self) {
        let uncommitted: Vec<LoggedUpdate> = self
            .uncommitted
            .iter()
            .map(|(row, _)| row.clone())
            .collect();
        let version = self.doc.version();
        match self.store.load_doc(self.entry).await {
            Ok(stored) => match rebuild(self.entry, &stored, &uncommitted) {
                Ok(mut doc) => {
                    doc.set_version(version);
                    self.doc = doc;
                }
                Err(error) => tracing::error!(entry = %self.entry, %error, "rebuild failed"),
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

    fn ack_when_committed(&mut self, seq: i64, reply: Option<ReplyTo>) {
        let Some(reply) = reply else { return };
        let version = self.doc.version();
        if seq <= self.committed_seq {
            let _ = reply.send(Ok(EntryReply::Committed { version }));
        } else {
            self.acks.push_back((seq, version, reply));
        }
    }

    pub(super) fn committed(&mut self, upto_seq: i64) {
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
                let _ = reply.send(Ok(EntryReply::Committed { version }));
            }
        }
        if self.rows_since_snapshot >= COMPACT_AFTER_ROWS {
            self.compact();
        }
    }

    pub(super) fn save_text_if_dirty(&mut self) {
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
            let _ = mailbox.send(crate::collab::command::DocCommand::TextSaved);
        });
    }

    /// Last writes before unloading: a history checkpoint if the text changed, a
    /// snapshot when the log grew, else the plain text.
    pub(super) async fn finish(&mut self) {
        self.final_checkpoint().await;
        let text = self.doc.text();
        let version = self.doc.version();
        if self.rows_since_snapshot > 0 && !self.doc.has_pending() {
            match self.compact_now(version).await {
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
