// Keeps a Yjs doc in sync with one diary entry over the server's MAIN namespace, where
// the same socket also carries the inbox and presence events. Shared by the browser
// editor (web/) and the Node watcher (node/watch-entry.mjs).
//
// Protocol (PROTOCOL.md 5.1 and 5.3), run on EVERY (re)connect:
//   1. `join_entry_room {entryId}`          -> ack {ok, role, version, content, viewers}
//   2. `entry_sync_step1 {entryId, stateVector}` -> ack: binary update we lack
//   3. the server sends its own `entry_sync_step1`; our ack is what IT lacks, which is
//      how edits typed while offline reach everyone after a reconnect.
// Afterwards local changes go out as `entry_update` and remote ones arrive the same way.
// Awareness (remote cursors and names) travels as `entry_awareness`.
//
// The server allows 10 events per second per user (all sockets together). Edits over
// that are held by the server, not lost, but awareness would be dropped, so local
// updates are batched (at most one `entry_update` per `updateIntervalMs`) and awareness
// is throttled (`awarenessIntervalMs`) and retried when the server says to wait.

import * as Y from 'yjs';
import * as awarenessProtocol from 'y-protocols/awareness';

/** socket.io-client hands binaries over as ArrayBuffer (browser) or Buffer (Node). */
function bytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

export class EntrySync {
  /**
   * @param socket a socket.io-client socket on the main namespace (`/`), created with
   *   `reconnection: true` so it comes back by itself.
   * @param entryId the entry's UUID.
   * @param options `doc` (a Y.Doc; its Y.Text `content` is the entry), `awareness`
   *   (a y-protocols Awareness on that doc, optional), intervals and ack timeout.
   */
  constructor(
    socket,
    entryId,
    { doc = new Y.Doc(), awareness = null, updateIntervalMs = 150, awarenessIntervalMs = 300, ackTimeoutMs = 15000 } = {},
  ) {
    this.socket = socket;
    this.entryId = entryId;
    this.doc = doc;
    this.text = doc.getText('content');
    this.awareness = awareness;
    this.updateIntervalMs = updateIntervalMs;
    this.awarenessIntervalMs = awarenessIntervalMs;
    this.ackTimeoutMs = ackTimeoutMs;

    /** 'connecting' | 'syncing' | 'synced' | 'offline' | 'error' */
    this.state = socket.connected ? 'syncing' : 'connecting';
    this.role = null;
    this.version = null;
    this.viewers = [];
    this.joined = false;
    this.pending = [];
    this.inflight = 0;
    this.lastError = null;

    this._generation = 0;
    this._handlers = new Map();
    this._flushTimer = null;
    this._lastUpdateSent = 0;
    this._awarenessTimer = null;
    this._lastAwarenessSent = 0;
    this._off = [];

    const on = (target, event, fn) => {
      target.on(event, fn);
      this._off.push(() => target.off(event, fn));
    };
    on(socket, 'connect', () => this._join());
    on(socket, 'disconnect', () => this._lost());
    // Once the connection is lost the state stays 'offline' through the reconnect
    // attempts, until the next join: a page shows it is offline, not merely busy.
    on(socket.io, 'reconnect_attempt', () => this.state !== 'offline' && this._setState('connecting'));
    on(socket, 'entry_update', (msg) => {
      const update = msg && msg.entryId === entryId ? bytes(msg.update) : null;
      if (update) {
        Y.applyUpdate(doc, update, this);
        this._emit('remote-update', update);
      }
    });
    on(socket, 'entry_sync_step1', (msg, ack) => {
      const sv = msg && msg.entryId === entryId ? bytes(msg.stateVector) : null;
      if (sv && typeof ack === 'function') ack(Y.encodeStateAsUpdate(doc, sv));
    });
    on(socket, 'entry_awareness', (msg) => {
      const update = msg && msg.entryId === entryId ? bytes(msg.update) : null;
      if (update && this.awareness) awarenessProtocol.applyAwarenessUpdate(this.awareness, update, this);
    });
    on(socket, 'current_viewers', (msg) => {
      if (msg && msg.entryId === entryId && Array.isArray(msg.viewers)) this._setViewers(msg.viewers);
    });
    on(doc, 'update', (update, origin) => {
      if (origin === this) return;
      this.pending.push(update);
      this._scheduleFlush();
    });
    if (awareness) {
      on(awareness, 'update', (_changes, origin) => {
        if (origin === 'local') this._scheduleAwareness();
      });
    }
    if (socket.connected) this._join();
  }

  /** `fn(payload)` on 'state', 'joined', 'viewers', 'error', 'remote-update', 'ack'. */
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this._handlers.get(event).delete(fn);
  }

  /** True when joined and every local change has been sent and acknowledged. */
  isSettled() {
    return this.joined && this.pending.length === 0 && this.inflight === 0 && this._flushTimer === null;
  }

  /** Stops syncing (the socket is left open: it may carry other things). */
  destroy() {
    this._generation++;
    this.joined = false;
    clearTimeout(this._flushTimer);
    clearTimeout(this._awarenessTimer);
    for (const off of this._off) off();
    this._off = [];
    if (this.socket.connected) this.socket.emit('leave_entry_room', { entryId: this.entryId });
  }

  _emit(event, payload) {
    for (const fn of this._handlers.get(event) ?? []) fn(payload);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  }

  _setViewers(viewers) {
    this.viewers = viewers;
    this._emit('viewers', viewers);
  }

  _fail(error, event) {
    this.lastError = { ...error, event };
    this._emit('error', this.lastError);
  }

  async _join() {
    const generation = ++this._generation;
    this.joined = false;
    this._setState('syncing');
    const current = () => generation === this._generation && this.socket.connected;
    try {
      const ack = await this.socket
        .timeout(this.ackTimeoutMs)
        .emitWithAck('join_entry_room', { entryId: this.entryId });
      if (!current()) return;
      if (!ack || !ack.ok) {
        this._fail(ack?.error ?? { code: 'SERVER_ERROR', message: 'no answer' }, 'join_entry_room');
        this._setState('error');
        return;
      }
      this.role = ack.role;
      this.version = ack.version;
      this._setViewers(ack.viewers ?? []);
      const reply = await this.socket.timeout(this.ackTimeoutMs).emitWithAck('entry_sync_step1', {
        entryId: this.entryId,
        stateVector: Y.encodeStateVector(this.doc),
      });
      if (!current()) return;
      const diff = bytes(reply);
      if (!diff) {
        this._fail(reply?.error ?? { code: 'SERVER_ERROR', message: 'bad sync reply' }, 'entry_sync_step1');
        this._setState('error');
        return;
      }
      Y.applyUpdate(this.doc, diff, this);
      this.joined = true;
      this._setState('synced');
      this._emit('joined', ack);
      // Anything typed while we were away is also in our answer to the server's step 1;
      // sending it again is harmless (Yjs updates are idempotent).
      this._scheduleFlush();
      if (this.awareness && this.awareness.getLocalState() !== null) {
        // Re-setting the state bumps its clock: peers that dropped it while we were away
        // keep its old clock and would ignore the same state sent again.
        this.awareness.setLocalState({ ...this.awareness.getLocalState() });
      }
    } catch {
      // Timed out or disconnected mid-way: try again while still connected; a
      // disconnect brings a fresh `connect`, which joins again.
      if (current()) setTimeout(() => current() && this._join(), 1000);
    }
  }

  _lost() {
    this._generation++;
    this.joined = false;
    this._setState('offline');
    clearTimeout(this._flushTimer);
    this._flushTimer = null;
    if (this.awareness) {
      const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID);
      awarenessProtocol.removeAwarenessStates(this.awareness, others, this);
      // Forget their clocks too: after the reconnect the server replays the current
      // states, with the clocks we already saw, and those must be taken, not ignored.
      for (const id of others) this.awareness.meta.delete(id);
    }
  }

  _scheduleFlush() {
    if (this._flushTimer !== null || !this.joined || this.pending.length === 0) return;
    const wait = Math.max(0, this._lastUpdateSent + this.updateIntervalMs - Date.now());
    this._flushTimer = setTimeout(() => {
      this._flushTimer = null;
      this._flush();
    }, wait);
  }

  _flush() {
    if (!this.joined || !this.socket.connected || this.pending.length === 0) return;
    const update = this.pending.length === 1 ? this.pending[0] : Y.mergeUpdates(this.pending);
    this.pending = [];
    this._lastUpdateSent = Date.now();
    this.inflight++;
    this.socket.timeout(this.ackTimeoutMs).emit('entry_update', { entryId: this.entryId, update }, (err, ack) => {
      this.inflight--;
      // A timeout needs no retry here: the next (re)sync exchanges state vectors.
      if (!err && ack && ack.ok) this.version = ack.version;
      else if (!err) this._fail(ack?.error ?? { code: 'SERVER_ERROR' }, 'entry_update');
      this._emit('ack', ack);
    });
  }

  _scheduleAwareness(delay) {
    if (this._awarenessTimer !== null || !this.awareness) return;
    const wait = delay ?? Math.max(0, this._lastAwarenessSent + this.awarenessIntervalMs - Date.now());
    this._awarenessTimer = setTimeout(() => {
      this._awarenessTimer = null;
      this._sendAwareness();
    }, wait);
  }

  _sendAwareness() {
    if (!this.joined || !this.socket.connected) return;
    this._lastAwarenessSent = Date.now();
    const update = awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.doc.clientID]);
    this.socket
      .timeout(this.ackTimeoutMs)
      .emit('entry_awareness', { entryId: this.entryId, update }, (err, ack) => {
        if (err || !ack || ack.ok) return;
        // Dropped over the rate limit: our latest state must still get through.
        if (ack.error?.code === 'RATE_LIMIT_EXCEEDED') this._scheduleAwareness(ack.error.retryAfterMs ?? 500);
      });
  }
}

export { Y, awarenessProtocol };
