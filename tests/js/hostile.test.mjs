// Hostile Yjs input (issue 13): the two updates that used to end the server process,
// sent through every way an update reaches the doc. Each time the server stays up,
// refuses with VALIDATION_ERROR where the path has a reply, stores nothing, leaves the
// content as it was and keeps taking the next edits from everyone.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  tokenFor,
  dbClient,
  seedUsers,
  seedEntry,
  addCollaborator,
  request,
  waitFor,
  record,
  eventually,
} from './lib/harness.mjs';
import { MainYjsEditor, ySocketIoEditor, docUntil, Y } from './lib/yjs-clients.mjs';

/** Client 7 at clock 0 inserting "abc", then client 7 again at clock 1 inserting "de". */
const DUPLICATE_CLIENT = Buffer.from(
  '02010700040107636f6e74656e7403616263010701040107636f6e74656e7402646500',
  'hex',
);

/** An item in the root text `content` whose `Any` value is nested 10,000 arrays deep. */
function deepNesting(depth = 10000) {
  const head = [1, 1, 7, 0, 8, 1, 7, ...Buffer.from('content'), 1];
  const body = new Array(depth).fill([0x75, 0x01]).flat();
  return Buffer.from([...head, ...body, 0x7e, 0x00]);
}

const CRASHERS = [
  ['an update naming one client twice', DUPLICATE_CLIENT],
  ['an update nesting 10,000 deep', deepNesting()],
];

async function setup() {
  const server = await startServer({ env: { RATE_LIMIT_PER_SECOND: '1000' } });
  const db = await dbClient(server);
  const [alice, bob] = await seedUsers(db, 'Alice', 'Bob');
  const entry = await seedEntry(db, alice);
  await addCollaborator(db, entry, bob, 'editor');
  const users = { alice, bob };
  return {
    server,
    db,
    users,
    entry,
    async editor(name) {
      const e = new MainYjsEditor(await server.connect(tokenFor(users[name])), entry);
      const ack = await e.join();
      assert.equal(ack.ok, true, JSON.stringify(ack));
      return e;
    },
    async storedRows() {
      const r = await db.query('SELECT count(*) FROM entry_updates WHERE entry_id = $1', [entry]);
      return Number(r.rows[0].count);
    },
    async refusals() {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('diary_yjs_refused_total'));
      return line ? Number(line.split(' ').pop()) : 0;
    },
    async close() {
      await db.end();
      await server.cleanup();
    },
  };
}

/** The server is up, the content is `expected`, and a delta edit and a Yjs edit still apply. */
async function stillServing(t, observer, expected) {
  assert.equal((await fetch(`${t.server.url}/health`)).status, 200);
  const state = await request(observer.socket, 'state_request', { entryId: t.entry });
  assert.equal(state.content, expected);
  // The sequence that killed the process after the first crasher was acked.
  const deltaSocket = await t.server.connect(tokenFor(t.users.bob));
  assert.equal((await request(deltaSocket, 'join_entry_room', { entryId: t.entry })).ok, true);
  for (let i = 0; i < 2; i++) {
    const ack = await request(deltaSocket, 'entry_edit', {
      entryId: t.entry,
      delta: { ops: [{ retain: 1 }, { delete: 1 }] },
    });
    assert.equal(ack.ok, true, JSON.stringify(ack));
  }
  const shortened = expected[0] + expected.slice(3);
  observer.text.insert(observer.text.length, '!');
  const acks = await observer.settled();
  assert.ok(acks.every((a) => a.ok), JSON.stringify(acks));
  const after = await request(deltaSocket, 'state_request', { entryId: t.entry });
  assert.equal(after.content, `${shortened}!`);
  assert.equal(observer.text.toString(), `${shortened}!`);
  deltaSocket.close();
}

test('the crashers as entry_update: VALIDATION_ERROR, nothing stored, nobody disturbed', async () => {
  const t = await setup();
  try {
    const a = await t.editor('alice');
    const b = await t.editor('bob');
    a.text.insert(0, 'stable');
    await a.settled();
    await docUntil(b.doc, () => b.text.toString() === 'stable');
    const seenByB = record(b.socket, 'entry_update');
    const rows = await t.storedRows();
    for (const [what, update] of CRASHERS) {
      const ack = await request(a.socket, 'entry_update', { entryId: t.entry, update });
      assert.equal(ack.ok, false, `${what} was accepted`);
      assert.equal(ack.error.code, 'VALIDATION_ERROR', what);
    }
    assert.equal(await t.storedRows(), rows);
    assert.deepEqual(seenByB, []);
    assert.ok(a.socket.connected && b.socket.connected);
    await stillServing(t, b, 'stable');
    a.close();
    b.close();
  } finally {
    await t.close();
  }
});

test('the crashers as y-socket.io sync-update: an error event, nothing applied', async () => {
  const t = await setup();
  try {
    const y = await ySocketIoEditor(t.server, tokenFor(t.users.alice), t.entry);
    const b = await t.editor('bob');
    y.text.insert(0, 'stable');
    await docUntil(b.doc, () => b.text.toString() === 'stable');
    // sync-update has no ack, and relaying does not wait for the commit.
    await eventually(async () => (await t.storedRows()) === 1, 5000, 'the edit stored');
    const rows = await t.storedRows();
    for (const [what, update] of CRASHERS) {
      const error = waitFor(y.socket, 'error', (e) => e?.event === 'sync-update');
      y.socket.emit('sync-update', update);
      assert.equal((await error).code, 'VALIDATION_ERROR', what);
    }
    assert.equal(await t.storedRows(), rows);
    assert.ok(y.socket.connected && b.socket.connected);
    await stillServing(t, b, 'stable');
    // The y-socket.io client still edits and receives.
    await docUntil(y.doc, () => y.text.toString() === 'sble!');
    y.text.insert(0, '>');
    await docUntil(b.doc, () => b.text.toString() === '>sble!');
    y.close();
    b.close();
  } finally {
    await t.close();
  }
});

test("the crashers as the answer to the server's sync step 1, on both namespaces", async () => {
  const t = await setup();
  try {
    const b = await t.editor('bob');
    b.text.insert(0, 'stable');
    await b.settled();
    const rows = await t.storedRows();
    for (const [what, update] of CRASHERS) {
      const before = await t.refusals();
      // Main namespace: a Yjs socket answers the server's entry_sync_step1 with it.
      const main = await t.server.connect(tokenFor(t.users.alice));
      main.on('entry_sync_step1', (_msg, ack) => ack(update));
      assert.equal((await request(main, 'join_entry_room', { entryId: t.entry })).ok, true);
      const diff = await request(main, 'entry_sync_step1', {
        entryId: t.entry,
        stateVector: Y.encodeStateVector(new Y.Doc()),
      });
      assert.ok(Buffer.isBuffer(diff) || diff instanceof Uint8Array, JSON.stringify(diff));
      await eventually(async () => (await t.refusals()) >= before + 1, 5000, `${what} refused (main)`);
      // y-socket.io namespace: the same, answering sync-step-1.
      const ys = t.server.socket(tokenFor(t.users.alice), { ns: `/yjs|${t.entry}` });
      ys.on('sync-step-1', (_sv, ack) => ack(update));
      // As the y-socket.io client does: its step 1 first; the server's follows the answer.
      await eventually(() => ys.connected, 5000, 'y-socket.io connect');
      ys.emit('sync-step-1', Buffer.from(Y.encodeStateVector(new Y.Doc())), () => {});
      await eventually(async () => (await t.refusals()) >= before + 2, 5000, `${what} refused (y-socket.io)`);
      assert.ok(main.connected && ys.connected && b.socket.connected);
      main.close();
      ys.close();
    }
    assert.equal(await t.storedRows(), rows);
    await stillServing(t, b, 'stable');
    b.close();
  } finally {
    await t.close();
  }
});

test('a stored row the gate refuses is logged and skipped at load; the entry stays usable', async () => {
  const t = await setup();
  try {
    const a = await t.editor('alice');
    a.text.insert(0, 'stable');
    await a.settled();
    a.close();
    const loaded = async () => {
      const text = await (await fetch(`${t.server.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('diary_docs_loaded'));
      return line ? Number(line.split(' ').pop()) : 0;
    };
    await eventually(async () => (await loaded()) === 0, 10000, 'the doc unloaded');
    // A row written behind the server's back (or before the gate existed).
    const { rows } = await t.db.query(
      `SELECT GREATEST(
         (SELECT COALESCE(MAX(seq), 0) FROM entry_updates WHERE entry_id = $1),
         (SELECT COALESCE(MAX(upto_seq), 0) FROM entry_snapshots WHERE entry_id = $1)) + 1 AS seq`,
      [t.entry],
    );
    const seq = Number(rows[0].seq);
    await t.db.query('INSERT INTO entry_updates (entry_id, seq, version, payload) VALUES ($1, $2, $3, $4)', [
      t.entry,
      seq,
      seq,
      DUPLICATE_CLIENT,
    ]);
    const b = await t.editor('bob');
    assert.equal(b.text.toString(), 'stable');
    const warning = t.server.logs.find((l) => l.includes('stored update refused at load'));
    assert.ok(warning, 'no warning logged');
    assert.ok(warning.includes(t.entry) && warning.includes(`seq: ${seq}`), warning);
    await stillServing(t, b, 'stable');
    b.close();
  } finally {
    await t.close();
  }
});

test("an edit building on items the server lacks is refused, then the server's sync step 1 brings both", async () => {
  const t = await setup();
  try {
    const a = await t.editor('alice');
    const b = await t.editor('bob');
    a.text.insert(0, 'stable');
    await a.settled();
    await docUntil(b.doc, () => b.text.toString() === 'stable');
    // Another tab of Alice's hands its edit to this one directly (as y-socket.io's
    // BroadcastChannel does) before the server has it.
    const tab = new Y.Doc();
    Y.applyUpdate(tab, Y.encodeStateAsUpdate(a.doc));
    tab.getText('content').insert(6, ' tab');
    Y.applyUpdate(a.doc, Y.encodeStateAsUpdate(tab, Y.encodeStateVector(a.doc)), 'server');
    const refusal = a.acks.length;
    a.text.insert(a.text.length, '!');
    const ack = await a.acks[refusal];
    assert.equal(ack.ok, false);
    assert.equal(ack.error.code, 'VALIDATION_ERROR');
    // The server asks for what it lacks; the answer brings the tab's edit and this one.
    await docUntil(b.doc, () => b.text.toString() === 'stable tab!', 5000, 'both edits relayed');
    const state = await request(b.socket, 'state_request', { entryId: t.entry });
    assert.equal(state.content, 'stable tab!');
    a.close();
    b.close();
  } finally {
    await t.close();
  }
});
