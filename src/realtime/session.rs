//! What the server knows about one connected socket, stored in its extensions.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ordered::QueuedEvent;
use super::outgoing::Outgoing;
use crate::auth::AuthUser;
use crate::connections::ConnectionPermit;
use crate::ids::{EntryId, UserId};
use crate::state::AppState;

/// One socket's session. Shared (`Arc`) between its handlers and its event queue task.
pub struct SocketSession {
    /// The socket's user; fixed for its life (a refreshed token must name the same one).
    user: UserId,
    /// The token's `exp` (Unix seconds), replaced by `auth:refresh`.
    expires_at: Mutex<Option<u64>>,
    pub app: AppState,
    queue: mpsc::UnboundedSender<QueuedEvent>,
    /// Handed to the socket's queue task when the socket is set up.
    queue_rx: Mutex<Option<mpsc::UnboundedReceiver<QueuedEvent>>>,
    /// Bytes of edits waiting for rate-limit budget; bounded by [`MAX_HELD_EDIT_BYTES`].
    held_edit_bytes: AtomicUsize,
    started: Instant,
    last_activity_ms: AtomicU64,
    last_rate_error_ms: AtomicU64,
    /// Cancelled when the socket disconnects: its queue stops and held edits are dropped.
    pub closed: CancellationToken,
    permit: Mutex<Option<ConnectionPermit>>,
    /// Entries this socket has joined (events for others are refused).
    joined: Mutex<HashSet<EntryId>>,
    /// What waits beyond the socket's outgoing buffer.
    pub(super) outgoing: Outgoing,
}

/// Per-socket bound on edits held back by the rate limit (PROTOCOL.md section 3).
pub const MAX_HELD_EDIT_BYTES: usize = 1 << 20;

const NEVER: u64 = u64::MAX;

impl SocketSession {
    pub fn new(user: AuthUser, app: AppState, permit: ConnectionPermit) -> Arc<Self> {
        let (queue, rx) = mpsc::unbounded_channel();
        Arc::new(SocketSession {
            user: user.user_id,
            expires_at: Mutex::new(user.expires_at),
            app,
            queue,
            queue_rx: Mutex::new(Some(rx)),
            held_edit_bytes: AtomicUsize::new(0),
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            last_rate_error_ms: AtomicU64::new(NEVER),
            closed: CancellationToken::new(),
            permit: Mutex::new(Some(permit)),
            joined: Mutex::new(HashSet::new()),
            outgoing: Outgoing::default(),
        })
    }

    pub(super) fn take_queue(&self) -> Option<mpsc::UnboundedReceiver<QueuedEvent>> {
        self.queue_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub fn user_id(&self) -> UserId {
        self.user
    }

    /// When the current token expires (Unix seconds), if it says.
    pub fn expires_at(&self) -> Option<u64> {
        *self.expires_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adopts a refreshed token of the same user: its expiry now applies. Called from
    /// the socket's queue task, which reads the expiry again before waiting.
    pub fn replace_token(&self, token: AuthUser) {
        debug_assert_eq!(token.user_id, self.user);
        *self.expires_at.lock().unwrap_or_else(|p| p.into_inner()) = token.expires_at;
    }

    /// Records that the client said something (any event, or `pong`).
    pub fn touch(&self) {
        self.last_activity_ms
            .store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// When the client last said something.
    pub fn last_activity(&self) -> Instant {
        self.started + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    /// Reserves room for an edit waiting for budget; false when the socket already holds
    /// too much (it must then be disconnected).
    pub fn hold_edit(&self, bytes: usize) -> bool {
        let before = self.held_edit_bytes.fetch_add(bytes, Ordering::AcqRel);
        before + bytes <= MAX_HELD_EDIT_BYTES
    }

    pub fn release_edit(&self, bytes: usize) {
        self.held_edit_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// True at most once per second: rate-limit errors without an ack are throttled.
    pub fn may_report_rate_limit(&self) -> bool {
        let now = self.elapsed_ms();
        let last = self.last_rate_error_ms.load(Ordering::Relaxed);
        if last != NEVER && now.saturating_sub(last) < 1000 {
            return false;
        }
        self.last_rate_error_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    pub(super) fn enqueue(&self, event: QueuedEvent) {
        // Fails only after the queue task ended, i.e. the socket is gone.
        let _ = self.queue.send(event);
    }

    /// Ends the session: stops its queue and gives its connection slot back.
    /// Returns true when this was the user's last socket.
    pub fn close(&self) -> bool {
        self.closed.cancel();
        let permit = self.permit.lock().unwrap_or_else(|p| p.into_inner()).take();
        permit.is_some_and(ConnectionPermit::release)
    }

    pub fn has_joined(&self, entry: EntryId) -> bool {
        self.lock_joined().contains(&entry)
    }

    pub fn mark_joined(&self, entry: EntryId) {
        self.lock_joined().insert(entry);
    }

    /// Returns whether the socket had joined.
    pub fn mark_left(&self, entry: EntryId) -> bool {
        self.lock_joined().remove(&entry)
    }

    /// Every joined entry, forgetting them (the socket is leaving).
    pub fn take_joined(&self) -> Vec<EntryId> {
        self.lock_joined().drain().collect()
    }

    fn lock_joined(&self) -> std::sync::MutexGuard<'_, HashSet<EntryId>> {
        self.joined.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }
}
