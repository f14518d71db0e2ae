//! Events every namespace understands.

use crate::cluster::SocketRef;
use serde::de::IgnoredAny;

use super::ordered::{on, EventKind};
use super::reply::{ErrorDelivery, Reply};

pub fn register(s: &SocketRef) {
    // `pong` answers `heartbeat`; arriving at all is its job (it refreshes the stale
    // timer), and it is exempt from the rate limit.
    on(
        s,
        "pong",
        EventKind::Exempt,
        ErrorDelivery::AckOrEvent,
        |_ctx, _: IgnoredAny| async { Reply::ok() },
    );
}
