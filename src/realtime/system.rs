//! Events every namespace understands.

use serde::de::IgnoredAny;

use super::ordered::EventCtx;
use super::reply::{Outcome, Reply};

/// `pong` answers `heartbeat`; arriving at all is its job (it refreshes the stale
/// timer), and it is exempt from the rate limit.
pub(super) async fn pong(_ctx: EventCtx, _: IgnoredAny) -> Outcome {
    Reply::ok()
}
