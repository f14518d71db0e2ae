// Collaborative entries on a cluster (issue 9): three server processes on one
// PostgreSQL database and one Redis. An entry's doc is loaded on every node that has
// members of it; the replicas exchange committed updates, cursors, typing, awareness
// and viewers over Redis, and each relays to its own members.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as awarenessProtocol from 'y-protocols/awareness';
import {
  startCluster,
  REDIS_URL,
  tokenFor,
  seedUsers,
  seedEntry,
  addCollaborator,
  request,
  waitFor,
  record,
  eventually,
} from './lib/harness.mjs';
import { MainYjsEditor, ySocketIoEditor, Y } from './lib/yjs-clients.mjs';
import { DeltaClient } from './lib/delta-client.mjs';
import pg from 'pg';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

// A short heartbeat, so a dead node's viewers drop out (three missed) within the test;
// a high rate limit, because editors here send many events.
const CLUSTER_ENV = { RATE_LIMIT_PER_SECOND: '1000', HEARTBEAT_INTERVAL_SECS: '1' };

/** A cluster, a db client, Alice (owner), Bob and Carol (editors) of one entry. */
async function setup({ size = 3 } = {}) {
  const cluster = await startCluster({ size, env: CLUSTER_ENV });
  const db = new pg.Client({ connectionString: cluster.db.url });
  await db.connect();
  const [alice, bob, carol] = await seedUsers(db, 'Alice', 'Bob', 'Carol');
  const entry = await seedEntry(db, alice);
  await addCollaborator(db, entry, bob, 'editor');
  await addCollaborator(db, entry, carol, 'editor');
  const users = { alice, bob, carol };
  return {
    cluster,
    db,
    users,
    entry,
    /** A main-namespace Yjs editor of `name` on node `i`, joined and synced. */
    async editor(name, i) {
      const e = new MainYjsEditor(await cluster.nodes[i].connect(tokenFor(users[name])), entry);
      const ack = await e.join();
      assert.equal(ack.ok, true, JSON.stringify(ack));
      return e;
    },
    async close() {
      await db.end();
      await cluster.cleanup();
    },
  };
}

/** `n` random local edits of `text` (inserts and deletes), one transaction each. */
async function randomEdits(text, n, tag) {
  for (let i = 0; i < n; i++) {
    const len = text.length;
    if (len > 0 && Math.random() < 0.3) {
      const at = Math.floor(Math.random() * len);
      text.delete(at, Math.min(1 + Math.floor(Math.random() * 3), len - at));
    } else {
      text.insert(Math.floor(Math.random() * (len + 1)), `${tag}${i} `);
    }
    // Interleave with what arrives from the other editors.
    if (i % 5 === 4) await new Promise((r) => setImmediate(r));
  }
}

/** Resolves once every doc has the same text; returns it. */
async function converged(docs, what, ms = 20000) {
  await eventually(
    () => docs.every((d) => d.getText('content').toString() === docs[0].getText('content').toString()),
    ms,
    what,
  );
  return docs[0].getText('content').toString();
}

/** Whether `doc` already holds every change in `update`. */
function holds(doc, update) {
  const copy = new Y.Doc();
  Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc));
  const before = Y.encodeStateVector(copy);
  Y.applyUpdate(copy, update);
  return Buffer.compare(Buffer.from(before), Buffer.from(Y.encodeStateVector(copy))) === 0;
}

test('editors on different nodes converge; a third node serves the whole doc; viewers, cursors, typing and awareness cross nodes', async () => {
  const f = await setup();
  try {
    const a = await f.editor('alice', 0);
    const viewersAtA = record(a.socket, 'current_viewers');
    const b = await ySocketIoEditor(f.cluster.nodes[1], tokenFor(f.users.bob), f.entry);

    // Concurrent random edits, main namespace on node 0 and y-socket.io on node 1.
    await Promise.all([randomEdits(a.text, 60, 'a'), randomEdits(b.text, 60, 'b')]);
    const acks = await a.settled();
    assert.ok(acks.every((ack) => ack.ok), JSON.stringify(acks.find((ack) => !ack.ok)));
    const text = await converged([a.doc, b.doc], 'node 0 and node 1 editors to converge');
    assert.ok(text.length > 0);

    // A third user joining through the third node gets the whole doc.
    const c = await f.editor('carol', 2);
    assert.equal(c.text.toString(), text);

    // current_viewers: one row per user cluster-wide, even with Alice on two nodes.
    const a2 = await f.editor('alice', 1);
    const expected = [f.users.alice, f.users.bob, f.users.carol].sort();
    await eventually(
      () => {
        const last = viewersAtA.at(-1);
        return last && JSON.stringify(last.viewers.map((v) => v.userId).sort()) === JSON.stringify(expected);
      },
      5000,
      'current_viewers with Alice, Bob and Carol once each',
    );
    assert.equal(viewersAtA.at(-1).viewers.length, 3);

    // Cursors and typing from node 2 reach a member on node 0.
    const moved = waitFor(a.socket, 'entry_cursor_move', (m) => m.userId === f.users.carol);
    const typing = waitFor(a.socket, 'typing', (t) => t.userId === f.users.carol && t.isTyping);
    assert.equal(
      (await request(c.socket, 'entry_cursor_move', {
        entryId: f.entry,
        position: { index: 1, length: 0 },
        selection: { start: 1, end: 1 },
      })).ok,
      true,
    );
    assert.equal((await request(c.socket, 'typing', { entryId: f.entry, isTyping: true })).ok, true);
    const move = await moved;
    assert.deepEqual(move.position, { index: 1, length: 0 });
    await typing;
    // The cursor is anchored on node 0 too: state_response there reports it.
    const [, state] = await Promise.all([
      request(a.socket, 'state_request', { entryId: f.entry }),
      waitFor(a.socket, 'state_response', (r) => r.entryId === f.entry),
    ]);
    assert.ok(state.cursors.some((cur) => cur.userId === f.users.carol), JSON.stringify(state.cursors));

    // Awareness from node 0 reaches the y-socket.io client on node 1, and its removal
    // when Alice's socket leaves.
    const aw = new awarenessProtocol.Awareness(a.doc);
    aw.setLocalState({ user: { name: 'Alice' } });
    const seen = () => b.provider.awareness.getStates().has(a.doc.clientID);
    assert.equal(
      (await request(a.socket, 'entry_awareness', {
        entryId: f.entry,
        update: awarenessProtocol.encodeAwarenessUpdate(aw, [a.doc.clientID]),
      })).ok,
      true,
    );
    await eventually(seen, 5000, "Alice's awareness state at Bob");

    // Carol's last socket leaves node 2: node 0 clears her cursor and drops her row.
    const viewersAtA2 = record(a2.socket, 'current_viewers');
    const cleared = waitFor(a.socket, 'entry_cursor_clear', (m) => m.userId === f.users.carol);
    c.close();
    await cleared;
    await eventually(
      () => viewersAtA.at(-1).viewers.every((v) => v.userId !== f.users.carol),
      5000,
      'Carol gone from current_viewers',
    );
    a.close();
    await eventually(() => !seen(), 5000, "Alice's awareness removed at Bob");
    // Alice still has a socket on node 1: she stays a viewer, listed once.
    await eventually(
      () => JSON.stringify(viewersAtA2.at(-1)?.viewers.map((v) => v.userId).sort()) === JSON.stringify([f.users.alice, f.users.bob].sort()),
      5000,
      'Alice and Bob listed at node 1',
    );
    b.close();
    a2.close();
  } finally {
    await f.close();
  }
});

test('a node killed during editing: survivors keep serving, its clients resync elsewhere, every acknowledged edit is stored', async () => {
  const f = await setup();
  try {
    const a = await f.editor('alice', 0);
    const b = await f.editor('bob', 1);
    const c = await f.editor('carol', 2);
    const viewersAtA = record(a.socket, 'current_viewers');
    // What node 1 acknowledged to Bob, kept apart: it must all be stored.
    const ackedByDead = new Y.Doc();
    b.doc.on('update', (update, origin) => {
      if (origin === 'server') return;
      b.acks.at(-1).then((ack) => ack.ok && Y.applyUpdate(ackedByDead, update), () => {});
    });

    const editing = Promise.all([randomEdits(a.text, 80, 'a'), randomEdits(c.text, 80, 'c')]);
    await randomEdits(b.text, 40, 'b');
    // Some of Bob's edits are acknowledged, some still in flight: now node 1 dies.
    await b.acks[10];
    await f.cluster.nodes[1].kill();
    await editing;

    // Survivors keep serving and converge with each other.
    assert.ok((await a.settled()).every((ack) => ack.ok));
    assert.ok((await c.settled()).every((ack) => ack.ok));
    await converged([a.doc, c.doc], 'survivors to converge');

    // Node 1 is quiet: once the stale timeout passes its viewers (Bob) drop out.
    await eventually(
      () => {
        const last = viewersAtA.at(-1);
        return last && last.viewers.every((v) => v.userId !== f.users.bob);
      },
      10000,
      "the dead node's viewer to drop out",
    );

    // Bob reconnects to node 2 with the doc he had, and resyncs both ways.
    const b2 = new MainYjsEditor(await f.cluster.nodes[2].connect(tokenFor(f.users.bob)), f.entry);
    Y.applyUpdate(b2.doc, Y.encodeStateAsUpdate(b.doc), 'server');
    assert.equal((await b2.join()).ok, true);
    await randomEdits(b2.text, 20, 'B');
    // One last acknowledged edit each: everything before it on that node is committed.
    a.text.insert(0, '[a]');
    b2.text.insert(0, '[b]');
    assert.ok((await a.settled()).every((ack) => ack.ok));
    assert.ok((await b2.settled()).every((ack) => ack.ok));
    const text = await converged([a.doc, b2.doc, c.doc], 'everyone to converge after the resync');
    assert.ok(holds(a.doc, Y.encodeStateAsUpdate(ackedByDead)), 'the survivors lack an edit node 1 acknowledged');

    // Stored: kill every node, and a fresh one loads the doc from the database alone.
    await Promise.all(f.cluster.nodes.map((n) => n.kill()));
    const fresh = await f.cluster.startNode();
    const reader = new MainYjsEditor(await fresh.connect(tokenFor(f.users.alice)), f.entry);
    assert.equal((await reader.join()).ok, true);
    assert.equal(reader.text.toString(), text);
    assert.ok(holds(reader.doc, Y.encodeStateAsUpdate(ackedByDead)), 'an acknowledged edit is not stored');
    reader.close();
  } finally {
    await f.close();
  }
});

test('compaction with writers on two nodes never loses an update', async () => {
  const f = await setup({ size: 2 });
  try {
    const a = await f.editor('alice', 0);
    const b = await f.editor('bob', 1);
    // Well past 256 log rows from each node, concurrently.
    for (let round = 0; round < 6; round++) {
      await Promise.all([randomEdits(a.text, 60, `a${round}.`), randomEdits(b.text, 60, `b${round}.`)]);
    }
    assert.ok((await a.settled()).every((ack) => ack.ok));
    assert.ok((await b.settled()).every((ack) => ack.ok));
    const text = await converged([a.doc, b.doc], 'both writers to converge');

    const rows = async () =>
      (await f.db.query('SELECT count(*)::int AS n FROM entry_updates WHERE entry_id = $1', [f.entry])).rows[0].n;
    const snapshots = async () =>
      (await f.db.query('SELECT count(*)::int AS n FROM entry_snapshots WHERE entry_id = $1', [f.entry])).rows[0].n;
    assert.ok((await snapshots()) >= 1, 'no compaction ran');
    assert.ok((await rows()) < 720, `the log was not compacted (${await rows()} rows)`);

    // Reload from the database alone.
    await Promise.all(f.cluster.nodes.map((n) => n.kill()));
    const fresh = await f.cluster.startNode();
    const reader = new MainYjsEditor(await fresh.connect(tokenFor(f.users.carol)), f.entry);
    assert.equal((await reader.join()).ok, true);
    assert.equal(reader.text.toString(), text);
    assert.ok(holds(reader.doc, Y.encodeStateAsUpdate(a.doc)));
    reader.close();
  } finally {
    await f.close();
  }
});

test('a delta client on one node and a Yjs client on another converge', async () => {
  const f = await setup({ size: 2 });
  try {
    const d = new DeltaClient(await f.cluster.nodes[0].connect(tokenFor(f.users.alice)), f.entry, 'delta');
    await d.join();
    const y = await f.editor('bob', 1);
    // The delta client sends one edit at a time against the version it has (as Quill
    // clients do), while the Yjs client on node 1 keeps editing.
    const yjsEditing = randomEdits(y.text, 60, 'y');
    for (let i = 0; i < 30; i++) {
      const len = d.text.length;
      const at = Math.floor(Math.random() * (len + 1));
      const ops =
        len > 4 && i % 4 === 3 ? [{ retain: Math.min(at, len - 2) }, { delete: 2 }] : [{ retain: at }, { insert: `d${i} ` }];
      await d.edit(ops.filter((op) => op.retain !== 0), { base: d.version });
    }
    await yjsEditing;
    assert.ok((await y.settled()).every((ack) => ack.ok));
    const serverText = async () => {
      const [, state] = await Promise.all([
        request(d.socket, 'state_request', { entryId: f.entry }),
        waitFor(d.socket, 'state_response', (r) => r.entryId === f.entry),
      ]);
      return state;
    };
    try {
      await eventually(() => d.pending.length === 0 && d.text === y.text.toString(), 10000, 'delta model equal to the Yjs doc');
    } catch (e) {
      // Which side diverged: the delta client's model, or node 0's doc from node 1's?
      const state = await serverText();
      e.message +=
        `\nnode 0 (v${state.version}): ${JSON.stringify(state.content)}` +
        `\ndelta model (v${d.version}, ${d.pending.length} pending): ${JSON.stringify(d.text)}` +
        `\nYjs doc on node 1: ${JSON.stringify(y.text.toString())}` +
        `\nrelayed versions: ${d.received.map((r) => r.version).join(',')}`;
      throw e;
    }
    // The server's own view on node 0 agrees.
    const state = await serverText();
    assert.equal(state.content, y.text.toString());
    d.socket.close();
    y.close();
  } finally {
    await f.close();
  }
});

/** Closes, from Redis's side, every connection the cluster's replicas receive on. */
async function killReplicaConnections(prefix) {
  const redis = (...args) => promisify(execFile)('redis-cli', ['-u', REDIS_URL, ...args]);
  const { stdout } = await redis('CLIENT', 'LIST');
  const ids = stdout
    .split('\n')
    .filter((line) => line.includes(` name=${prefix}:replica:`))
    .map((line) => line.match(/^id=(\d+)/)[1]);
  for (const id of ids) await redis('CLIENT', 'KILL', 'ID', id);
  return ids.length;
}

test('replicas that lose their Redis connection reconnect and catch up on what they missed', async () => {
  const f = await setup({ size: 2 });
  try {
    const a = await f.editor('alice', 0);
    const b = await f.editor('bob', 1);
    a.text.insert(0, 'before ');
    await converged([a.doc, b.doc], 'the first edit to cross');
    assert.equal(await killReplicaConnections(f.cluster.prefix), 2);
    // Edits made now are published while nobody listens; they are in the database.
    await Promise.all([randomEdits(a.text, 20, 'a'), randomEdits(b.text, 20, 'b')]);
    assert.ok((await a.settled()).every((ack) => ack.ok));
    assert.ok((await b.settled()).every((ack) => ack.ok));
    await converged([a.doc, b.doc], 'both editors to converge after the reconnect');
    // And the channel works again.
    a.text.insert(0, 'after ');
    await converged([a.doc, b.doc], 'an edit after the reconnect to cross');
    assert.ok(b.text.toString().startsWith('after '));
    a.close();
    b.close();
  } finally {
    await f.close();
  }
});
