//! The reply convention of PROTOCOL.md section 3, in one place. Every handler returns
//! an [`Outcome`]; the [`Replier`] turns it into an ack (`{ok:true, ...}` or
//! `{ok:false, error:{code, message}}`) when the client asked for one, and reports
//! failures without an ack as an `error` event.

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{json, Map, Value};
use socketioxide::extract::AckSender;

use crate::cluster::{Adapter, SocketRef};
use tokio::sync::oneshot;

use crate::collab::command::{Answer, EntryReply, StartSync};

use super::outgoing;
use super::session::SocketSession;
use crate::error::{AppError, ErrorCode};
use crate::ids::EntryId;

/// What a successful handler answers.
pub enum Reply {
    /// Merged into the ack as `{ok: true, ...fields}` (`Null` gives `{ok: true}`).
    Json(Value),
    /// A raw binary ack (Yjs sync answers), sent as-is.
    Binary(Bytes),
    /// The answer comes later (an edit is acknowledged only once committed); the
    /// socket's queue moves on meanwhile.
    Later(BoxFuture<'static, Outcome>),
    /// Sends the inner reply, then tells the entry's actor that it is on its way: for
    /// what must reach the client after the ack.
    Then(Box<Reply>, AfterAck),
}

/// What an entry's actor waits for until an ack is queued for sending.
pub enum AfterAck {
    /// The join ack: the actor holds its relays until then.
    Joined(oneshot::Sender<()>),
    /// The answer to the client's sync step 1: the server's own step 1 follows.
    StartSync(StartSync),
}

impl AfterAck {
    fn send(self) {
        match self {
            AfterAck::Joined(acked) => {
                let _ = acked.send(());
            }
            AfterAck::StartSync(start) => start.send(),
        }
    }
}

pub type Outcome = Result<Reply, AppError>;

impl Reply {
    pub fn ok() -> Outcome {
        Ok(Reply::Json(Value::Null))
    }

    pub fn json(value: impl Serialize) -> Outcome {
        serde_json::to_value(value)
            .map(Reply::Json)
            .map_err(AppError::internal)
    }

    /// The ack for an entry actor's answer, once it comes.
    pub fn entry(answer: Answer<EntryReply>) -> Outcome {
        Ok(Reply::Later(Box::pin(async move {
            match answer.await? {
                EntryReply::Done => Reply::ok(),
                EntryReply::Committed { version } => {
                    Reply::json(serde_json::json!({ "version": version }))
                }
                EntryReply::SyncAnswer { update, then } => Ok(Reply::Then(
                    Box::new(Reply::Binary(update)),
                    AfterAck::StartSync(then),
                )),
            }
        })))
    }
}

/// How errors reach the client on a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDelivery {
    /// Ack payload when an ack was asked for, else an `error` event.
    AckOrEvent,
    /// Always an `error` event: the y-socket.io client applies any ack payload as a
    /// Yjs update, so errors must never travel as acks there.
    EventOnly,
}

/// Answers one client event.
pub struct Replier {
    pub(super) socket: SocketRef,
    pub(super) ack: Option<AckSender<Adapter>>,
    pub(super) event: &'static str,
    pub(super) delivery: ErrorDelivery,
}

impl Replier {
    /// Sends the outcome; a deferred one is awaited on its own task.
    pub fn finish(self, outcome: Outcome, entry: Option<EntryId>) {
        match outcome {
            Ok(Reply::Later(answer)) => {
                tokio::spawn(async move {
                    let outcome = answer.await;
                    self.finish(outcome, entry);
                });
            }
            Ok(Reply::Json(fields)) => {
                if let Some(ack) = self.ack {
                    outgoing::reliable(&self.socket, ack.send(&ok_payload(fields)));
                }
            }
            Ok(Reply::Binary(bytes)) => {
                if let Some(ack) = self.ack {
                    outgoing::reliable(&self.socket, ack.send(&bytes));
                }
            }
            Ok(Reply::Then(reply, after)) => {
                self.finish(Ok(*reply), entry);
                after.send();
            }
            Err(error) => self.fail(error, entry, None),
        }
    }

    /// Reports a failure. `session` is given for rate-limit errors, which are throttled
    /// to one `error` event per second per socket when there is no ack.
    pub fn fail(self, error: AppError, entry: Option<EntryId>, session: Option<&SocketSession>) {
        metrics::counter!("diary_errors_total", "code" => error.code.as_str()).increment(1);
        if error.code == ErrorCode::ServerError {
            tracing::warn!(event = self.event, "replied SERVER_ERROR");
        }
        if let (Some(ack), ErrorDelivery::AckOrEvent) = (self.ack, self.delivery) {
            let sent = ack.send(&json!({ "ok": false, "error": error_body(&error) }));
            outgoing::reliable(&self.socket, sent);
            return;
        }
        let throttled = error.code == ErrorCode::RateLimitExceeded
            && session.is_some_and(|s| !s.may_report_rate_limit());
        if !throttled {
            let _ = self
                .socket
                .emit("error", &error_event(&error, self.event, entry));
        }
    }
}

fn ok_payload(fields: Value) -> Value {
    let mut map = match fields {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("data".to_string(), other)]),
    };
    map.insert("ok".into(), Value::Bool(true));
    Value::Object(map)
}

fn error_body(error: &AppError) -> Value {
    let mut body = json!({ "code": error.code, "message": error.message });
    if let Some(ms) = error.retry_after_ms {
        body["retryAfterMs"] = json!(ms);
    }
    body
}

/// The `error` event payload: `{code, message, event, entryId?, retryAfterMs?}`.
pub fn error_event(error: &AppError, event: &str, entry: Option<EntryId>) -> Value {
    let mut body = error_body(error);
    body["event"] = json!(event);
    if let Some(entry) = entry {
        body["entryId"] = json!(entry);
    }
    body
}
