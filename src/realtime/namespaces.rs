//! One table per namespace: each event the namespace understands, how it counts
//! against the rate limit, how its errors travel, and its handler (which sits next to
//! its typed request in the module named). Everything else about a socket's setup is
//! in [`super::connect`].

use crate::cluster::SocketRef;

use super::ordered::{on, EventKind};
use super::reply::ErrorDelivery;
use super::{entries, history, notifications, presence, system, token, yjs};

/// `/` and `/realtime/ws`: the full event surface (PROTOCOL.md section 1).
pub fn main(s: &SocketRef) {
    use ErrorDelivery::AckOrEvent;
    use EventKind::{Edit, Exempt, Query};
    on(s, "pong", Exempt, AckOrEvent, system::pong);
    on(s, "auth:refresh", Query, AckOrEvent, token::refresh);
    on(s, "join_entry_room", Query, AckOrEvent, entries::join);
    on(s, "leave_entry_room", Query, AckOrEvent, entries::leave);
    on(
        s,
        "entry_sync_step1",
        Query,
        AckOrEvent,
        entries::sync_step1,
    );
    on(s, "entry_update", Edit, AckOrEvent, entries::update);
    on(s, "entry_awareness", Query, AckOrEvent, entries::awareness);
    on(s, "entry_edit", Edit, AckOrEvent, entries::edit);
    on(
        s,
        "entry_cursor_move",
        Query,
        AckOrEvent,
        entries::cursor_move,
    );
    on(s, "typing", Query, AckOrEvent, entries::typing);
    on(
        s,
        "state_request",
        Query,
        AckOrEvent,
        entries::state_request,
    );
    on(
        s,
        "desync_detected",
        Query,
        AckOrEvent,
        entries::desync_detected,
    );
    on(s, "entry_history", Query, AckOrEvent, history::list);
    on(s, "entry_checkpoint", Query, AckOrEvent, history::read);
    on(
        s,
        "presence_update",
        Query,
        AckOrEvent,
        presence::presence_update,
    );
    inbox(s);
}

/// `/notifications`: the inbox only.
pub fn notifications(s: &SocketRef) {
    on(
        s,
        "pong",
        EventKind::Exempt,
        ErrorDelivery::AckOrEvent,
        system::pong,
    );
    on(
        s,
        "auth:refresh",
        EventKind::Query,
        ErrorDelivery::AckOrEvent,
        token::refresh,
    );
    inbox(s);
}

/// `/yjs|{entryId}`: the y-socket.io protocol. Errors always travel as `error`
/// events: that client applies any ack payload as a Yjs update.
pub fn yjs(s: &SocketRef) {
    use ErrorDelivery::EventOnly;
    use EventKind::{Edit, Query};
    on(s, "sync-step-1", Query, EventOnly, yjs::sync_step1);
    on(s, "sync-update", Edit, EventOnly, yjs::sync_update);
    on(
        s,
        "awareness-update",
        Query,
        EventOnly,
        yjs::awareness_update,
    );
    yjs::join(s);
}

/// The inbox events (PROTOCOL.md section 6), on the main namespaces and
/// `/notifications` alike.
fn inbox(s: &SocketRef) {
    use notifications as n;
    use ErrorDelivery::AckOrEvent;
    use EventKind::Query;
    on(s, "notification:list_request", Query, AckOrEvent, n::list);
    on(s, "notification:count_request", Query, AckOrEvent, n::count);
    on(s, "notification:mark_read", Query, AckOrEvent, n::mark_read);
    on(
        s,
        "notification:mark_all_read",
        Query,
        AckOrEvent,
        n::mark_all_read,
    );
    on(s, "notification:archive", Query, AckOrEvent, n::archive);
    on(
        s,
        "notification:preferences_get",
        Query,
        AckOrEvent,
        n::preferences_get,
    );
    on(
        s,
        "notification:preferences_update",
        Query,
        AckOrEvent,
        n::preferences_update,
    );
}
