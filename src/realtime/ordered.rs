//! Client events, applied one at a time in the order each socket sent them.
//!
//! socketioxide spawns a task per incoming event, so two events of one socket can run
//! out of order. [`on`] registers a `MessageHandler` whose synchronous `call` does the
//! cheap, order-free work at arrival (activity, metrics, the rate limit, decoding) and
//! appends the rest to the socket's queue; one task per socket ([`run_queue`]) drains
//! it in order.
//!
//! Rate limit (PROTOCOL.md section 3): a [`EventKind::Query`] over budget is dropped at
//! arrival with `RATE_LIMIT_EXCEEDED`; an [`EventKind::Edit`] is never dropped but waits
//! in the queue for budget, up to `MAX_HELD_EDIT_BYTES` per socket, past which the socket
//! is disconnected. In a cluster the budget is in Redis and the answer takes a round
//! trip: the query then takes its place in the queue at arrival and is dropped (with
//! the same error) when the answer says so.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use socketioxide::extract::{AckSender, TryData};
use socketioxide::handler::{FromMessageParts, MessageHandler};
use socketioxide::socket::Socket;
use socketioxide_core::Value;

use crate::cluster::{Adapter, SocketRef};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::reply::{ErrorDelivery, Outcome, Replier};
use super::session::SocketSession;
use crate::capacity::QueueSlot;
use crate::error::AppError;
use crate::ids::EntryId;
use crate::ratelimit::Verdict;

/// How an event counts against the user's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Dropped with `RATE_LIMIT_EXCEEDED` when over budget.
    Query,
    /// Held in order until budget allows.
    Edit,
    /// Not counted (`pong`).
    Exempt,
}

/// A decoded event payload. Events about one entry name it, so that an `error` event
/// can carry `entryId`.
pub trait EventPayload: DeserializeOwned + Send + 'static {
    fn entry_id(&self) -> Option<EntryId> {
        None
    }
}

impl EventPayload for serde::de::IgnoredAny {}
impl EventPayload for serde_json::Value {}

/// What a handler is given besides its payload.
#[derive(Clone)]
pub struct EventCtx {
    pub socket: SocketRef,
    pub session: Arc<SocketSession>,
}

/// One event waiting in a socket's queue.
pub struct QueuedEvent {
    /// Counts the event in the process's queue depth while it exists.
    _slot: QueueSlot,
    /// Bytes reserved from the socket's hold bound; non-zero only for edits, which
    /// wait for rate-limit budget before they run.
    edit_bytes: usize,
    run: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
}

/// Registers `handler` for `event` on `socket`, ordered and rate-limited.
pub fn on<T, F, Fut>(
    socket: &SocketRef,
    event: &'static str,
    kind: EventKind,
    delivery: ErrorDelivery,
    handler: F,
) where
    T: EventPayload,
    F: Fn(EventCtx, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    socket.on(
        event,
        Ordered {
            event,
            kind,
            delivery,
            handler: Arc::new(handler),
            payload: PhantomData,
        },
    );
}

/// Runs `job` in `session`'s queue, after the events before it and before those
/// after it (for work that is no client event, such as a y-socket.io join).
pub fn run_in_order(session: &SocketSession, job: impl Future<Output = ()> + Send + 'static) {
    session.enqueue(QueuedEvent {
        _slot: session.app.capacity.queue_slot(),
        edit_bytes: 0,
        run: Box::new(move || Box::pin(job)),
    });
}

/// Marker type for socketioxide's handler registry.
pub struct OrderedMarker;

struct Ordered<F, T> {
    event: &'static str,
    kind: EventKind,
    delivery: ErrorDelivery,
    handler: Arc<F>,
    payload: PhantomData<fn() -> T>,
}

impl<F, T, Fut> MessageHandler<Adapter, OrderedMarker> for Ordered<F, T>
where
    T: EventPayload,
    F: Fn(EventCtx, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    fn call(&self, s: Arc<Socket<Adapter>>, mut v: Value, ack_id: Option<i64>) {
        let size = payload_size(&v);
        let Ok(socket) = SocketRef::from_message_parts(&s, &mut v, &ack_id);
        let Ok(ack) = AckSender::from_message_parts(&s, &mut v, &ack_id);
        let Some(session) = socket.extensions.get::<Arc<SocketSession>>() else {
            return;
        };
        session.touch();
        metrics::counter!("diary_events_total", "event" => self.event).increment(1);
        let replier = Replier {
            socket: socket.clone(),
            ack: ack_id.map(|_| ack),
            event: self.event,
            delivery: self.delivery,
        };
        // The transports bound each frame (websocket) or request body (polling), but an
        // event's binary attachments travel in frames of their own: bound the whole event.
        if size > session.app.settings.max_payload_bytes {
            replier.fail(AppError::validation("payload too large"), None, None);
            return;
        }

        let mut pending_budget = None;
        let edit_bytes = match self.kind {
            EventKind::Exempt => 0,
            EventKind::Query => match session.app.limiter.try_acquire(session.user_id()) {
                Verdict::Now(Ok(())) => 0,
                Verdict::Now(Err(wait)) => {
                    refuse_over_budget(replier, self.event, wait, &session);
                    return;
                }
                Verdict::Pending(verdict) => {
                    pending_budget = Some(verdict);
                    0
                }
            },
            EventKind::Edit => {
                let bytes = size.max(1);
                if !session.hold_edit(bytes) {
                    session.release_edit(bytes);
                    metrics::counter!("diary_rate_limited_total", "event" => self.event)
                        .increment(1);
                    tracing::warn!(user = %session.user_id(), "edit hold bound exceeded; disconnecting");
                    replier.fail(AppError::rate_limited(1000), None, None);
                    let _ = socket.disconnect();
                    return;
                }
                bytes
            }
        };

        let TryData(payload) = match TryData::<T>::from_message_parts(&s, &mut v, &ack_id) {
            Ok(data) => data,
            Err(never) => match never {},
        };
        // `socket.emit('pong')` carries no argument at all, which the parser reports as
        // an error; such an event means "no payload", as it does for a Node handler.
        let payload = payload.or_else(|e| match without_arguments(&v) {
            true => absent_payload::<T>().ok_or(e),
            false => Err(e),
        });
        let handler = self.handler.clone();
        let event = self.event;
        let ctx = EventCtx {
            socket,
            session: session.clone(),
        };
        session.enqueue(QueuedEvent {
            _slot: session.app.capacity.queue_slot(),
            edit_bytes,
            run: Box::new(move || {
                Box::pin(async move {
                    if let Some(verdict) = pending_budget {
                        if let Err(wait) = verdict.await {
                            refuse_over_budget(replier, event, wait, &ctx.session);
                            return;
                        }
                    }
                    match payload {
                        Ok(request) => {
                            let entry = request.entry_id();
                            let outcome = handler(ctx, request).await;
                            replier.finish(outcome, entry);
                        }
                        Err(e) => replier.fail(
                            AppError::validation(format!("invalid payload: {e}")),
                            None,
                            None,
                        ),
                    }
                })
            }),
        });
    }
}

/// Drops a query over the user's budget with `RATE_LIMIT_EXCEEDED`.
fn refuse_over_budget(
    replier: Replier,
    event: &'static str,
    wait: std::time::Duration,
    session: &SocketSession,
) {
    metrics::counter!("diary_rate_limited_total", "event" => event).increment(1);
    let retry_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    replier.fail(AppError::rate_limited(retry_ms), None, Some(session));
}

/// True when an event packet holds only its name: `["pong"]`.
fn without_arguments(v: &Value) -> bool {
    match v {
        Value::Str(text, _) => serde_json::from_str::<Vec<serde::de::IgnoredAny>>(text.as_str())
            .is_ok_and(|args| args.len() <= 1),
        Value::Bytes(_) => false,
    }
}

/// The payload of an event sent without one: `null` for types that accept it
/// (`IgnoredAny`, `Option`), else `{}` (requests whose fields are all optional).
fn absent_payload<T: EventPayload>() -> Option<T> {
    serde_json::from_value(serde_json::Value::Null)
        .or_else(|_| serde_json::from_value(serde_json::json!({})))
        .ok()
}

fn payload_size(v: &Value) -> usize {
    match v {
        Value::Str(text, binaries) => {
            text.len() + binaries.iter().flatten().map(|b| b.len()).sum::<usize>()
        }
        Value::Bytes(bytes) => bytes.len(),
    }
}

/// Drains one socket's queue in order until the socket closes. Also enforces the
/// token's expiry and the stale timeout, since this task lives exactly as long as the
/// socket.
pub async fn run_queue(
    socket: SocketRef,
    session: Arc<SocketSession>,
    mut queue: mpsc::UnboundedReceiver<QueuedEvent>,
) {
    let app = session.app.clone();
    let stale_after = app.settings.stale_timeout;
    loop {
        // Read afresh each turn: `auth:refresh` (an event run by this very loop) may
        // have replaced the token.
        let expires_at = session.expires_at().map(expiry_instant);
        let idle_deadline = Instant::from_std(session.last_activity() + stale_after);
        tokio::select! {
            biased;
            _ = session.closed.cancelled() => break,
            event = queue.recv() => {
                let Some(event) = event else { break };
                if event.edit_bytes > 0 {
                    tokio::select! {
                        _ = session.closed.cancelled() => break,
                        _ = app.limiter.acquire(session.user_id()) => {}
                    }
                    session.release_edit(event.edit_bytes);
                }
                (event.run)().await;
            }
            _ = sleep_until(expires_at.unwrap_or(idle_deadline)), if expires_at.is_some() => {
                tracing::info!(user = %session.user_id(), "token expired; disconnecting");
                let error = AppError::auth("token expired");
                let _ = socket.emit("error", &super::reply::error_event(&error, "auth", None));
                let _ = socket.clone().disconnect();
                break;
            }
            _ = sleep_until(idle_deadline) => {
                if session.last_activity().elapsed() >= stale_after {
                    tracing::info!(user = %session.user_id(), "stale socket; disconnecting");
                    let _ = socket.clone().disconnect();
                    break;
                }
            }
        }
    }
}

/// A token's `exp` as a deadline, against the wall clock with sub-second precision:
/// whole seconds would let a token live up to a second past its `exp`.
fn expiry_instant(exp: u64) -> Instant {
    let exp = std::time::UNIX_EPOCH + std::time::Duration::from_secs(exp);
    let left = exp
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_without_arguments_has_an_absent_payload() {
        let bare = Value::Str("[\"pong\"]".into(), None);
        let with_null = Value::Str("[\"pong\",null]".into(), None);
        assert!(without_arguments(&bare));
        assert!(!without_arguments(&with_null));

        #[derive(serde::Deserialize)]
        struct AllOptional {
            limit: Option<u32>,
        }
        impl EventPayload for AllOptional {}
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Required {
            id: u32,
        }
        impl EventPayload for Required {}

        assert!(absent_payload::<serde::de::IgnoredAny>().is_some());
        assert!(absent_payload::<AllOptional>().is_some_and(|p| p.limit.is_none()));
        assert!(absent_payload::<Required>().is_none());
    }
}
