//! Everything an entry's actor sends to its members goes through [`Outbound`], the
//! room interface. The core decides who gets what; the implementation (Socket.IO's
//! lives in `realtime::room`) owns the event names and each member form's encoding,
//! and encodes a message once per form, not once per member.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::command::{Member, MemberId, Viewer};
use super::cursors::{Position, Selection};
use super::delta::QuillDelta;
use crate::ids::{EntryId, UserId};

/// The members a message goes to.
pub type Recipients<'r, 'm> = &'r mut dyn Iterator<Item = &'m Member>;

/// A change applied to the doc, in every form a member may need.
pub struct Change<'a> {
    pub entry: EntryId,
    /// The update yrs integrated (for the Yjs forms).
    pub update: &'a Bytes,
    /// The same change as a text delta (for the delta form).
    pub delta: &'a QuillDelta,
    /// Who made it; unknown only for what a replica caught up on from storage.
    pub editor: Option<UserId>,
    /// The doc's version once the change is applied.
    pub version: u64,
}

/// A user's cursor moved.
pub struct CursorMove {
    pub entry: EntryId,
    pub user: UserId,
    pub position: Position,
    pub selection: Selection,
}

/// How the actor reaches its members. Members with a form that has no such message
/// (y-socket.io has no cursors, typing or viewers) are skipped by the implementation.
pub trait Outbound: Send + Sync + 'static {
    /// Returns the members whose send buffer is full: they fell too far behind to be
    /// sent this change.
    fn change(&self, to: Recipients<'_, '_>, change: &Change<'_>) -> Vec<MemberId>;

    fn cursor(&self, to: Recipients<'_, '_>, cursor: &CursorMove);

    /// The user's cursor is gone (their last member left).
    fn cursor_clear(&self, to: Recipients<'_, '_>, entry: EntryId, user: UserId);

    fn typing(&self, to: Recipients<'_, '_>, entry: EntryId, user: UserId, is_typing: bool);

    fn viewers(&self, to: Recipients<'_, '_>, entry: EntryId, viewers: &[Viewer]);

    /// A y-protocols awareness update (states, or their removal).
    fn awareness(&self, to: Recipients<'_, '_>, entry: EntryId, update: &Bytes);

    /// Sends the server's sync step 1 (the doc's state vector) to one member. The
    /// future resolves to the member's answer: the update the server lacks, or `None`
    /// when the member gives none.
    fn sync_step(
        &self,
        to: &Member,
        entry: EntryId,
        state_vector: Bytes,
    ) -> BoxFuture<'static, Option<Bytes>>;

    /// Disconnects a member (it resyncs when it comes back).
    fn drop_member(&self, member: &Member);
}
