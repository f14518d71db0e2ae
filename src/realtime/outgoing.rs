//! What happens when a socket cannot keep up with what is sent to it.
//!
//! Each socket has a bounded outgoing buffer (socketioxide's `max_buffer_size`,
//! [`super::SOCKET_BUFFER_PACKETS`] unless `SOCKET_BUFFER_PACKETS` says otherwise). An
//! emit that finds it full is handled by the kind of event (PROTOCOL.md section 3,
//! "Past capacity"; docs/behaviour.md):
//! - volatile events (cursor moves, typing) wait in the socket's [`Outgoing`] backlog,
//!   one per event, entry and user: a newer one replaces the waiting one (latest wins,
//!   counted in `diary_volatile_merged_total`), and a flusher sends them once the buffer
//!   has room. A newer event of a key that is waiting never overtakes it;
//! - anything else (edits, acks, viewer lists) cannot be dropped without leaving the
//!   client silently out of sync: the socket is cut off. It gets `error`
//!   `RATE_LIMIT_EXCEEDED` and is disconnected (its client reconnects and resyncs),
//!   and nothing more is sent to it meanwhile. Both wait for room in the buffer, since
//!   socketioxide refuses to queue even its disconnect packet on a full one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use socketioxide::{SendError, SocketError};

use super::reply::error_event;
use super::session::SocketSession;
use crate::cluster::SocketRef;
use crate::error::AppError;
use crate::ids::{EntryId, UserId};

/// How often a full buffer is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(20);
/// How long a cut-off socket's disconnect may wait for room before we give up on it
/// (Engine.IO's ping timeout then closes a client that reads nothing at all).
const CUT_OFF_PATIENCE: Duration = Duration::from_secs(30);

/// Which latest-wins slot a volatile event takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolatileKey {
    pub event: &'static str,
    pub entry: EntryId,
    pub user: UserId,
}

/// A socket's outgoing state beyond socketioxide's buffer.
#[derive(Default)]
pub struct Outgoing {
    /// Volatile events waiting for room, oldest first, one per key.
    waiting: Mutex<Vec<(VolatileKey, Box<RawValue>)>>,
    /// Set while `waiting` is non-empty (the fast path looks only at this).
    backlogged: AtomicBool,
    /// Set once the socket is being cut off: nothing more is sent.
    cut_off: AtomicBool,
}

fn session_of(socket: &SocketRef) -> Option<Arc<SocketSession>> {
    socket.extensions.get::<Arc<SocketSession>>()
}

/// Sends a volatile event (see the module): now if the buffer has room and no older
/// event of its key waits, else it waits (replacing an older one of its key).
pub fn volatile(socket: &SocketRef, key: VolatileKey, payload: &RawValue) {
    let Some(session) = session_of(socket) else {
        let _ = socket.emit(key.event, payload);
        return;
    };
    let out = &session.outgoing;
    if out.cut_off.load(Ordering::Relaxed) {
        return;
    }
    if !out.backlogged.load(Ordering::Acquire) {
        match socket.emit(key.event, payload) {
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {}
            _ => return,
        }
    }
    let mut waiting = lock(&out.waiting);
    metrics::counter!("diary_volatile_deferred_total", "event" => key.event).increment(1);
    match waiting.iter_mut().find(|(k, _)| *k == key) {
        Some((_, older)) => {
            metrics::counter!("diary_volatile_merged_total", "event" => key.event).increment(1);
            *older = payload.to_owned();
        }
        None => waiting.push((key, payload.to_owned())),
    }
    if !out.backlogged.swap(true, Ordering::AcqRel) {
        tokio::spawn(flush(socket.clone(), session.clone()));
    }
}

/// Sends waiting volatile events as the buffer makes room, until none wait.
async fn flush(socket: SocketRef, session: Arc<SocketSession>) {
    let out = &session.outgoing;
    loop {
        tokio::time::sleep(RETRY_EVERY).await;
        if !socket.connected() || out.cut_off.load(Ordering::Relaxed) {
            lock(&out.waiting).clear();
            return;
        }
        let mut waiting = lock(&out.waiting);
        let mut sent = 0;
        for (key, payload) in waiting.iter() {
            match socket.emit(key.event, payload) {
                Err(SendError::Socket(SocketError::InternalChannelFull)) => break,
                _ => sent += 1,
            }
        }
        waiting.drain(..sent);
        if waiting.is_empty() {
            // Under the lock: a sender that saw the flag set has already queued here.
            out.backlogged.store(false, Ordering::Release);
            return;
        }
    }
}

/// Checks the result of sending a non-volatile event: a full buffer cuts the socket
/// off (see the module).
pub fn reliable(socket: &SocketRef, sent: Result<(), SendError>) {
    if let Err(SendError::Socket(SocketError::InternalChannelFull)) = sent {
        cut_off(socket);
    }
}

/// True once the socket is being cut off: senders may skip it.
pub fn is_cut_off(socket: &SocketRef) -> bool {
    session_of(socket).is_some_and(|s| s.outgoing.cut_off.load(Ordering::Relaxed))
}

/// Tells the client `RATE_LIMIT_EXCEEDED` and disconnects it, as soon as its buffer
/// has room for each; once per socket.
pub fn cut_off(socket: &SocketRef) {
    if let Some(session) = session_of(socket) {
        if session.outgoing.cut_off.swap(true, Ordering::AcqRel) {
            return;
        }
    }
    metrics::counter!("diary_sockets_cut_off_total").increment(1);
    tracing::warn!(sid = %socket.id, "outgoing buffer full; disconnecting the socket so it resyncs");
    let socket = socket.clone();
    tokio::spawn(async move {
        let error = AppError::rate_limited(1000);
        let payload = error_event(&error, "outgoing", None);
        let give_up = tokio::time::Instant::now() + CUT_OFF_PATIENCE;
        let mut told = false;
        while socket.connected() && tokio::time::Instant::now() < give_up {
            if !told {
                told = !matches!(
                    socket.emit("error", &payload),
                    Err(SendError::Socket(SocketError::InternalChannelFull))
                );
            }
            if told && socket.clone().disconnect().is_ok() {
                return;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
