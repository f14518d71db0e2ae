//! The entry core's outbound side on Socket.IO: every event an entry sends its members,
//! by name, in each member form. A member's link is its socket.
//!
//! Relays are encoded once per message and form where the payload is the same for
//! every recipient: `emit` writes a raw JSON value as it is, where it would walk and
//! escape a `serde_json::Value` again for every socket (the cursor scenario's profile:
//! ~6 % of server time).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::json;
use socketioxide::{SendError, SocketError};

use crate::cluster::SocketRef;
use crate::collab::command::{Member, MemberForm, MemberId, MemberLink, Viewer};
use crate::collab::outbound::{Change, CursorMove, Outbound, Recipients};
use crate::ids::{EntryId, UserId};
use crate::realtime::outgoing::{self, VolatileKey};
use crate::store::EntryRole;

/// The one [`Outbound`] of this process: it holds no state of its own, each member
/// carries its socket.
pub struct SocketRoom;

/// The core's name for `socket`'s membership: unique per namespace and socket.
pub fn member_id(socket: &SocketRef) -> MemberId {
    MemberId::new(format!("{}#{}", socket.ns(), socket.id))
}

/// A member of an entry for `socket`.
pub fn member(
    socket: &SocketRef,
    user: UserId,
    display_name: String,
    role: EntryRole,
    form: MemberForm,
) -> Member {
    Member {
        id: member_id(socket),
        link: MemberLink::new(socket.clone()),
        user,
        display_name,
        role,
        form,
    }
}

fn socket(member: &Member) -> Option<&SocketRef> {
    member.link.get::<SocketRef>()
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

impl Outbound for SocketRoom {
    fn change(&self, to: Recipients<'_, '_>, change: &Change<'_>) -> Vec<MemberId> {
        let mut lagging = Vec::new();
        let mut edit = None;
        for member in to {
            // A socket being cut off gets nothing more: it resyncs when it reconnects.
            let Some(socket) = socket(member).filter(|s| !outgoing::is_cut_off(s)) else {
                continue;
            };
            let sent = match member.form {
                MemberForm::Yjs => socket.emit(
                    "entry_update",
                    &UpdateMessage {
                        entry_id: change.entry,
                        update: change.update,
                    },
                ),
                MemberForm::YSocketIo => socket.emit("sync-update", change.update),
                MemberForm::Delta => {
                    let edit = edit.get_or_insert_with(|| {
                        serialized_once(&json!({
                            "entryId": change.entry,
                            "delta": change.delta,
                            "userId": change.editor,
                            "timestamp": chrono::Utc::now(),
                            "version": change.version,
                        }))
                    });
                    match edit {
                        Some(edit) => socket.emit("entry_edit", edit),
                        None => continue,
                    }
                }
            };
            if let Err(SendError::Socket(SocketError::InternalChannelFull)) = sent {
                lagging.push(member.id.clone());
            }
        }
        lagging
    }

    fn cursor(&self, to: Recipients<'_, '_>, cursor: &CursorMove) {
        let payload = json!({
            "entryId": cursor.entry,
            "userId": cursor.user,
            "position": cursor.position,
            "selection": cursor.selection,
            "timestamp": chrono::Utc::now(),
        });
        let key = VolatileKey {
            event: "entry_cursor_move",
            entry: cursor.entry,
            user: cursor.user,
        };
        volatile_to_main_members(to, key, &payload);
    }

    fn cursor_clear(&self, to: Recipients<'_, '_>, entry: EntryId, user: UserId) {
        let payload = json!({ "entryId": entry, "userId": user });
        to_main_members(to, "entry_cursor_clear", &payload);
    }

    fn typing(&self, to: Recipients<'_, '_>, entry: EntryId, user: UserId, is_typing: bool) {
        let payload = json!({ "entryId": entry, "userId": user, "isTyping": is_typing });
        let key = VolatileKey {
            event: "typing",
            entry,
            user,
        };
        volatile_to_main_members(to, key, &payload);
    }

    fn viewers(&self, to: Recipients<'_, '_>, entry: EntryId, viewers: &[Viewer]) {
        let payload = json!({ "entryId": entry, "viewers": viewers });
        to_main_members(to, "current_viewers", &payload);
    }

    fn awareness(&self, to: Recipients<'_, '_>, entry: EntryId, update: &Bytes) {
        for member in to {
            let Some(socket) = socket(member) else {
                continue;
            };
            let _ = match member.form {
                MemberForm::YSocketIo => socket.emit("awareness-update", update),
                MemberForm::Delta | MemberForm::Yjs => socket.emit(
                    "entry_awareness",
                    &UpdateMessage {
                        entry_id: entry,
                        update,
                    },
                ),
            };
        }
    }

    fn sync_step(
        &self,
        to: &Member,
        entry: EntryId,
        state_vector: Bytes,
    ) -> BoxFuture<'static, Option<Bytes>> {
        let Some(socket) = socket(to) else {
            return Box::pin(async { None });
        };
        let ack = match to.form {
            MemberForm::YSocketIo => socket.emit_with_ack::<_, Bytes>("sync-step-1", &state_vector),
            MemberForm::Delta | MemberForm::Yjs => socket.emit_with_ack::<_, Bytes>(
                "entry_sync_step1",
                &StateVectorMessage {
                    entry_id: entry,
                    state_vector: &state_vector,
                },
            ),
        };
        match ack {
            Ok(ack) => Box::pin(async move { ack.await.ok() }),
            Err(_) => Box::pin(async { None }),
        }
    }

    /// Only for a member whose buffer is full: socketioxide would refuse the disconnect
    /// packet itself, so the cut-off waits for room (see `realtime::outgoing`).
    fn drop_member(&self, member: &Member) {
        if let Some(socket) = socket(member) {
            outgoing::cut_off(socket);
        }
    }
}

impl SocketRoom {
    pub fn shared() -> Arc<dyn Outbound> {
        Arc::new(SocketRoom)
    }
}

/// Sends to the members on a main namespace (y-socket.io has no such events).
fn to_main_members(to: Recipients<'_, '_>, event: &str, payload: &serde_json::Value) {
    let Some(payload) = serialized_once(payload) else {
        return;
    };
    for member in to.filter(|m| m.form != MemberForm::YSocketIo) {
        if let Some(socket) = socket(member).filter(|s| !outgoing::is_cut_off(s)) {
            outgoing::reliable(socket, socket.emit(event, &payload));
        }
    }
}

/// Cursor moves and typing: latest wins per user when a socket is behind.
fn volatile_to_main_members(to: Recipients<'_, '_>, key: VolatileKey, payload: &serde_json::Value) {
    let Some(payload) = serialized_once(payload) else {
        return;
    };
    for member in to.filter(|m| m.form != MemberForm::YSocketIo) {
        if let Some(socket) = socket(member) {
            outgoing::volatile(socket, key, &payload);
        }
    }
}

/// A relay payload serialised once for all its recipients.
fn serialized_once(payload: &serde_json::Value) -> Option<Box<serde_json::value::RawValue>> {
    match serde_json::value::to_raw_value(payload) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::error!(error = %e, "relay payload does not serialise");
            None
        }
    }
}
