// Yjs editors for tests: one speaking the main namespace's entry_* events, and the
// published y-socket.io client. Both expose {doc, text, socket, close()}.

import * as Y from 'yjs';
import { SocketIOProvider } from 'y-socket.io';
import { once } from 'node:events';
import { request, withTimeout } from './harness.mjs';

/** A Yjs editor on the main namespace (entry_sync_step1 / entry_update / entry_awareness). */
export class MainYjsEditor {
  constructor(socket, entryId) {
    this.socket = socket;
    this.entryId = entryId;
    this.doc = new Y.Doc();
    this.text = this.doc.getText('content');
    this.acks = [];
    this.errors = [];
    socket.on('entry_update', ({ entryId: id, update }) => {
      if (id === entryId) Y.applyUpdate(this.doc, new Uint8Array(update), 'server');
    });
    // The server's own step 1 follows its answer to ours: once it is answered, both
    // sides hold everything (`join()` waits for it).
    this.serverSynced = new Promise((resolve) => {
      socket.on('entry_sync_step1', ({ entryId: id, stateVector }, ack) => {
        if (id === entryId && typeof ack === 'function') {
          ack(Y.encodeStateAsUpdate(this.doc, new Uint8Array(stateVector)));
          resolve();
        }
      });
    });
    this.doc.on('update', (update, origin) => {
      if (origin === 'server') return;
      const sent = request(socket, 'entry_update', { entryId, update }, 15000).then((ack) => {
        if (!ack.ok) this.errors.push(ack.error);
        return ack;
      });
      // Closing the socket fails acks still in flight; `settled()` reports them, but
      // an unawaited one must not become an unhandled rejection.
      sent.catch(() => {});
      this.acks.push(sent);
    });
  }

  /** Joins the room and syncs both ways. Returns the join ack. */
  async join() {
    const ack = await request(this.socket, 'join_entry_room', { entryId: this.entryId });
    if (!ack.ok) return ack;
    await this.sync();
    await withTimeout(this.serverSynced, 5000, "the server's sync step 1");
    return ack;
  }

  async sync() {
    const diff = await request(this.socket, 'entry_sync_step1', {
      entryId: this.entryId,
      stateVector: Y.encodeStateVector(this.doc),
    });
    if (diff instanceof Uint8Array || Buffer.isBuffer(diff)) {
      Y.applyUpdate(this.doc, new Uint8Array(diff), 'server');
    } else {
      throw new Error(`sync refused: ${JSON.stringify(diff)}`);
    }
  }

  /** Resolves once every edit sent so far is acknowledged; returns the acks. */
  settled() {
    return Promise.all(this.acks);
  }

  close() {
    this.socket.close();
  }
}

/** The unmodified y-socket.io client from npm, on /yjs|{entryId}. */
export async function ySocketIoEditor(server, token, entryId) {
  const doc = new Y.Doc();
  const provider = new SocketIOProvider(
    server.url,
    entryId,
    doc,
    { autoConnect: true, disableBc: true, auth: { token } },
    { path: '/realtime/ws', reconnection: false },
  );
  const errors = [];
  provider.socket.on('error', (e) => errors.push(e));
  await withTimeout(
    new Promise((resolve, reject) => {
      provider.on('sync', (synced) => synced && resolve());
      provider.socket.on('connect_error', (e) => reject(new Error(`connect_error: ${e.message}`)));
    }),
    10000,
    'y-socket.io sync',
  );
  server.sockets.push(provider.socket);
  return {
    doc,
    text: doc.getText('content'),
    provider,
    socket: provider.socket,
    errors,
    close() {
      // Disconnect first: destroy() on a connected provider publishes to a
      // BroadcastChannel (even with disableBc), whose MessagePort keeps node alive.
      provider.socket.disconnect();
      provider.destroy();
    },
  };
}

/** Resolves when `pred()` holds after some update of `doc` (or already holds). */
export function docUntil(doc, pred, ms = 10000, what = 'doc condition') {
  if (pred()) return Promise.resolve();
  return withTimeout(
    new Promise((resolve) => {
      const check = () => {
        if (pred()) {
          doc.off('update', check);
          resolve();
        }
      };
      doc.on('update', check);
    }),
    ms,
    what,
  );
}

export { Y, once };
