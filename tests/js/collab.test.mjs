// Collaborative entries (PROTOCOL.md 5.1, 5.3, 5.4): access, Yjs sync over the main
// namespace and the y-socket.io namespace, convergence, durability, bad input.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import * as awarenessProtocol from 'y-protocols/awareness';
import {
  startServer,
  tokenFor,
  dbClient,
  seedUsers,
  seedEntry,
  addCollaborator,
  addFriends,
  request,
  waitFor,
  record,
  eventually,
  withTimeout,
} from './lib/harness.mjs';
import { MainYjsEditor, ySocketIoEditor, docUntil, Y } from './lib/yjs-clients.mjs';

/** A server with Alice (owner), Bob (editor), Carol (viewer), Dave (Alice's friend), Eve (stranger). */
async function setup(opts = {}) {
  const server = await startServer(opts);
  const db = await dbClient(server);
  const [alice, bob, carol, dave, eve] = await seedUsers(db, 'Alice', 'Bob', 'Carol', 'Dave', 'Eve');
  const entry = await seedEntry(db, alice, { visibility: 'friends' });
  const privateEntry = await seedEntry(db, alice, { visibility: 'private' });
  await addCollaborator(db, entry, bob, 'editor');
  await addCollaborator(db, entry, carol, 'viewer');
  await addFriends(db, alice, dave);
  const users = { alice, bob, carol, dave, eve };
  return {
    server,
    db,
    users,
    entry,
    privateEntry,
    async editor(name, entryId = entry, transports) {
      const e = new MainYjsEditor(await server.connect(tokenFor(users[name]), { transports }), entryId);
      const ack = await e.join();
      assert.equal(ack.ok, true, JSON.stringify(ack));
      return e;
    },
    async close() {
      await db.end();
      await server.cleanup();
    },
  };
}

async function metric(server, name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('access matrix for join_entry_room, the y-socket.io namespace and the REST content', async () => {
  const t = await setup();
  try {
    const { server, users, entry, privateEntry } = t;
    const cases = [
      ['alice', entry, 'owner'],
      ['bob', entry, 'editor'],
      ['carol', entry, 'viewer'],
      ['dave', entry, 'viewer'], // friend of the owner on a friends-visible entry
      ['dave', privateEntry, 'ACCESS_DENIED'], // friends see only 'friends' entries
      ['eve', entry, 'ACCESS_DENIED'],
      ['eve', randomUUID(), 'ACCESS_DENIED'], // unknown entry: same answer
      ['eve', 'not-a-uuid', 'VALIDATION_ERROR'],
    ];
    for (const [name, entryId, expected] of cases) {
      const s = await server.connect(tokenFor(users[name]));
      const ack = await request(s, 'join_entry_room', { entryId });
      if (expected === 'owner' || expected === 'editor' || expected === 'viewer') {
        assert.equal(ack.ok, true, `${name} ${JSON.stringify(ack)}`);
        assert.equal(ack.role, expected);
        assert.equal(ack.entryId, entryId);
        assert.equal(typeof ack.version, 'number');
        assert.equal(typeof ack.content, 'string');
        assert.equal(ack.title, 'entry'); // the harness's default title
        assert.ok(ack.viewers.some((v) => v.userId === users[name]));
      } else {
        assert.equal(ack.ok, false, `${name} should be refused`);
        assert.equal(ack.error.code, expected, `${name}: ${JSON.stringify(ack)}`);
      }
      // Events for an entry the socket has not joined are refused.
      if (expected === 'ACCESS_DENIED') {
        const upd = await request(s, 'entry_update', { entryId: entry, update: new Uint8Array([0, 0]) });
        assert.equal(upd.error.code, 'ACCESS_DENIED');
      }
      s.close();
    }

    // y-socket.io namespace: refusal at connect time.
    await ySocketIoEditor(server, tokenFor(users.bob), entry).then((e) => e.close());
    for (const [token, entryId, prefix] of [
      [tokenFor(users.eve), entry, 'ACCESS_DENIED'],
      [tokenFor(users.eve), randomUUID(), 'ACCESS_DENIED'],
      [tokenFor(users.alice), 'nope', 'ACCESS_DENIED'],
      ['garbage', entry, 'AUTH_ERROR'],
    ]) {
      await assert.rejects(ySocketIoEditor(server, token, entryId), (e) => {
        assert.match(e.message, new RegExp(`connect_error: ${prefix}`));
        return true;
      });
    }

    // REST content: 401 without token, 404 without access, unknown or malformed.
    const get = (id, token) =>
      fetch(`${server.url}/api/entries/${id}/content`, {
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      });
    assert.equal((await get(entry)).status, 401);
    assert.equal((await get(entry, tokenFor(users.eve))).status, 404);
    assert.equal((await get(randomUUID(), tokenFor(users.alice))).status, 404);
    assert.equal((await get('x', tokenFor(users.alice))).status, 404);
    const ok = await get(entry, tokenFor(users.carol));
    assert.equal(ok.status, 200);
    const body = await ok.json();
    assert.deepEqual(Object.keys(body).sort(), ['content', 'delta', 'entryId', 'title', 'updatedAt', 'version']);
    assert.equal(body.title, 'entry');
  } finally {
    await t.close();
  }
});

/** A random edit on `text`: insert, delete or format. */
function randomEdit(text, rnd) {
  const len = text.length;
  const r = rnd();
  if (len === 0 || r < 0.55) {
    const s = randomBytes(1 + Math.floor(rnd() * 4)).toString('hex');
    text.insert(Math.floor(rnd() * (len + 1)), s, rnd() < 0.2 ? { italic: true } : undefined);
  } else if (r < 0.8) {
    const at = Math.floor(rnd() * len);
    text.delete(at, Math.min(len - at, 1 + Math.floor(rnd() * 3)));
  } else {
    const at = Math.floor(rnd() * len);
    text.format(at, Math.min(len - at, 1 + Math.floor(rnd() * 5)), { bold: rnd() < 0.5 ? true : null });
  }
}

test('8 Yjs clients over both transports and both namespaces converge, and the stored doc matches after a restart', async () => {
  const t = await setup();
  const db = t.db;
  try {
    const { server, users, entry } = t;
    const clients = [];
    const names = ['alice', 'bob', 'alice', 'bob', 'alice', 'bob'];
    for (const [i, name] of names.entries()) {
      clients.push(await t.editor(name, entry, i % 2 ? ['websocket'] : ['polling']));
    }
    clients.push(await ySocketIoEditor(server, tokenFor(users.bob), entry));
    clients.push(await ySocketIoEditor(server, tokenFor(users.alice), entry));
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    // Rate limit: 10 edits/s per user; edits over budget are held, never lost.
    const rounds = 12;
    for (let round = 0; round < rounds; round++) {
      for (const c of clients) randomEdit(c.text, rnd);
      await new Promise((r) => setImmediate(r));
    }
    for (const c of clients) if (c.settled) await withTimeout(c.settled(), 60000, 'acks');
    const expected = () => clients[0].text.toString();
    for (const c of clients) {
      await docUntil(c.doc, () => c.text.toString() === expected() && clients.every((o) => o.text.toString() === expected()), 30000, 'convergence');
    }
    const final = clients[0].text.toString();
    const finalDelta = JSON.stringify(clients[0].text.toDelta());
    assert.ok(final.length > 0);
    for (const c of clients) {
      assert.equal(c.text.toString(), final);
      assert.equal(JSON.stringify(c.text.toDelta()), finalDelta);
    }
    for (const c of clients) if (c.errors) assert.deepEqual(c.errors, []);
    for (const c of clients) c.close();

    // Restart on the same database: the stored doc is the same document.
    await server.stop();
    const again = await startServer({ db: server.db });
    try {
      const late = new MainYjsEditor(await again.connect(tokenFor(users.carol)), entry);
      const ack = await late.join();
      assert.equal(ack.content, final);
      assert.equal(late.text.toString(), final);
      assert.equal(JSON.stringify(late.text.toDelta()), finalDelta);
      const rows = await db.query('SELECT content FROM entry_documents WHERE entry_id = $1', [entry]);
      assert.equal(rows.rows[0].content, final);
    } finally {
      await again.stop();
    }
  } finally {
    await t.close();
  }
});

test('SIGKILL right after acks: every acknowledged edit survives the restart', async () => {
  const t = await setup({ env: { RATE_LIMIT_PER_SECOND: '1000' } });
  try {
    const { server, users, entry } = t;
    const a = await t.editor('alice');
    const acked = [];
    const sent = [];
    for (let i = 0; i < 200; i++) {
      const token = `<${i}>`;
      a.text.insert(a.text.length, token);
      sent.push(token);
      a.acks[a.acks.length - 1].then((ack) => ack.ok && acked.push(token), () => {});
    }
    await eventually(() => acked.length >= 20, 10000, 'first acks');
    await server.kill();
    const snapshot = [...acked];
    assert.ok(snapshot.length >= 20);
    const again = await startServer({ db: server.db });
    try {
      const b = new MainYjsEditor(await again.connect(tokenFor(users.bob)), entry);
      await b.join();
      const text = b.text.toString();
      for (const token of snapshot) assert.ok(text.includes(token), `acknowledged ${token} lost`);
      // Whatever was stored is a prefix of what was sent (order kept, nothing unacked
      // before an acked edit is missing).
      const stored = sent.filter((tok) => text.includes(tok));
      assert.deepEqual(stored, sent.slice(0, stored.length));
    } finally {
      await again.stop();
    }
  } finally {
    await t.close();
  }
});

test('viewers sync and see awareness, but their updates are refused and change nothing', async () => {
  const t = await setup();
  try {
    const { server, users, entry } = t;
    const a = await t.editor('alice');
    a.text.insert(0, 'owner text');
    await a.settled();
    const v = await t.editor('carol');
    assert.equal(v.text.toString(), 'owner text');
    const seenByA = record(a.socket, 'entry_update');
    // Awareness from the owner reaches the viewer.
    const aw = new awarenessProtocol.Awareness(a.doc);
    aw.setLocalState({ user: 'alice' });
    const got = waitFor(v.socket, 'entry_awareness');
    const awAck = await request(a.socket, 'entry_awareness', {
      entryId: entry,
      update: awarenessProtocol.encodeAwarenessUpdate(aw, [a.doc.clientID]),
    });
    assert.equal(awAck.ok, true);
    await got;
    // The viewer's edit is refused.
    v.text.insert(0, 'viewer text');
    const [ack] = await v.settled();
    assert.equal(ack.ok, false);
    assert.equal(ack.error.code, 'ACCESS_DENIED');
    // y-socket.io viewer: refused with an error event, never an ack.
    const yv = await ySocketIoEditor(server, tokenFor(users.carol), entry);
    assert.equal(yv.text.toString(), 'owner text');
    const err = waitFor(yv.socket, 'error');
    yv.text.insert(0, 'nope');
    assert.equal((await err).code, 'ACCESS_DENIED');
    const state = await request(a.socket, 'state_request', { entryId: entry });
    assert.equal(state.content, 'owner text');
    assert.deepEqual(seenByA, []);
    aw.destroy();
    for (const c of [a, v, yv]) c.close();
  } finally {
    await t.close();
  }
});

test('awareness states are removed and the removal broadcast when a socket leaves; a late joiner gets the whole doc', async () => {
  const t = await setup();
  try {
    const { server, users, entry } = t;
    const a = await t.editor('alice');
    const aAware = new awarenessProtocol.Awareness(new Y.Doc());
    a.socket.on('entry_awareness', ({ update }) =>
      awarenessProtocol.applyAwarenessUpdate(aAware, new Uint8Array(update), 'server'),
    );
    const b = await ySocketIoEditor(server, tokenFor(users.bob), entry);
    const bClient = b.doc.clientID;
    const present = new Promise((resolve) => {
      aAware.on('change', () => aAware.getStates().has(bClient) && resolve());
    });
    b.provider.awareness.setLocalState({ user: { name: 'Bob' } });
    await withTimeout(present, 5000, 'b awareness at a');
    const gone = new Promise((resolve) => {
      aAware.on('change', ({ removed }) => removed.includes(bClient) && resolve());
    });
    b.socket.disconnect();
    await withTimeout(gone, 5000, 'awareness removal');
    assert.equal(aAware.getStates().has(bClient), false);

    a.text.insert(0, 'x'.repeat(5000));
    a.text.insert(0, 'start ');
    await a.settled();
    const late = await t.editor('bob', entry, ['websocket']);
    assert.equal(late.text.toString(), a.text.toString());
    const lateY = await ySocketIoEditor(server, tokenFor(users.bob), entry);
    assert.equal(lateY.text.toString(), a.text.toString());
    aAware.destroy();
    for (const c of [a, late, lateY]) c.close();
  } finally {
    await t.close();
  }
});

test('hostile Yjs updates are refused with VALIDATION_ERROR and disturb nobody', async () => {
  const t = await setup({ env: { RATE_LIMIT_PER_SECOND: '1000' } });
  try {
    const { server, entry } = t;
    const a = await t.editor('alice');
    const b = await t.editor('bob');
    a.text.insert(0, 'stable');
    await a.settled();
    await docUntil(b.doc, () => b.text.toString() === 'stable');
    const seenByB = record(b.socket, 'entry_update');
    const valid = Y.encodeStateAsUpdate(a.doc);
    const hostile = [
      randomBytes(64),
      randomBytes(3),
      valid.slice(0, valid.length - 3),
      Uint8Array.from([1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]), // huge lengths
      Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
      new Uint8Array(0),
    ];
    for (let i = 0; i < 200; i++) hostile.push(randomBytes(1 + (i % 40)));
    for (const update of hostile) {
      const ack = await request(a.socket, 'entry_update', { entryId: entry, update });
      if (!ack.ok) assert.equal(ack.error.code, 'VALIDATION_ERROR', JSON.stringify(ack));
    }
    const notBinary = await request(a.socket, 'entry_update', { entryId: entry, update: 'abc' });
    assert.equal(notBinary.error.code, 'VALIDATION_ERROR');
    const state = await request(b.socket, 'state_request', { entryId: entry });
    assert.equal(state.content, 'stable');
    assert.deepEqual(seenByB, []);
    assert.ok(b.socket.connected && a.socket.connected);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    a.close();
    b.close();
  } finally {
    await t.close();
  }
});

test('a doc over 10 MiB refuses further growth', async () => {
  const t = await setup();
  try {
    const { entry } = t;
    const a = await t.editor('alice', entry, ['websocket']);
    const chunk = 'y'.repeat(900 * 1024);
    let refused = null;
    for (let i = 0; i < 14 && !refused; i++) {
      a.text.insert(a.text.length, chunk);
      const ack = await a.acks[a.acks.length - 1];
      if (!ack.ok) refused = { i, ack };
    }
    assert.ok(refused, 'growth past 10 MiB was accepted');
    assert.equal(refused.ack.error.code, 'VALIDATION_ERROR');
    assert.ok(refused.i >= 10, `refused too early at ${refused.i}`);
    a.close();
  } finally {
    await t.close();
  }
});

test('two sockets joining a cold entry load it once; it unloads after the last leaves', async () => {
  const t = await setup();
  try {
    const { server, users, entry } = t;
    const loadsBefore = await metric(server, 'diary_doc_loads_total');
    const [s1, s2] = await Promise.all([
      server.connect(tokenFor(users.alice)),
      server.connect(tokenFor(users.bob)),
    ]);
    const [j1, j2] = await Promise.all([
      request(s1, 'join_entry_room', { entryId: entry }),
      request(s2, 'join_entry_room', { entryId: entry }),
    ]);
    assert.ok(j1.ok && j2.ok);
    assert.equal((await metric(server, 'diary_doc_loads_total')) - loadsBefore, 1);
    assert.equal(await metric(server, 'diary_docs_loaded'), 1);
    // One row per user however many tabs.
    const s3 = await server.connect(tokenFor(users.alice));
    const viewers = waitFor(s2, 'current_viewers', (v) => v.viewers.length === 2);
    await request(s3, 'join_entry_room', { entryId: entry });
    const rows = (await viewers).viewers;
    assert.deepEqual(rows.map((v) => v.userId).sort(), [users.alice, users.bob].sort());
    for (const s of [s1, s2, s3]) await request(s, 'leave_entry_room', { entryId: entry });
    await eventually(async () => (await metric(server, 'diary_docs_loaded')) === 0, 5000, 'unload');
    for (const s of [s1, s2, s3]) s.close();
  } finally {
    await t.close();
  }
});

test('compaction folds the log into a snapshot; the doc reloads the same', async () => {
  const t = await setup({ env: { RATE_LIMIT_PER_SECOND: '100000' } });
  try {
    const { server, users, entry, db } = t;
    const a = await t.editor('alice', entry, ['websocket']);
    for (let i = 0; i < 600; i++) a.text.insert(a.text.length, String(i % 10));
    const acks = await a.settled();
    assert.ok(acks.every((ack) => ack.ok));
    const expected = a.text.toString();
    const counts = async () => {
      const logRows = Number((await db.query('SELECT count(*) FROM entry_updates WHERE entry_id = $1', [entry])).rows[0].count);
      const snaps = (await db.query('SELECT upto_seq, version FROM entry_snapshots WHERE entry_id = $1', [entry])).rows;
      return { logRows, snaps };
    };
    let last;
    await eventually(async () => {
      const c = await counts();
      last = c;
      return c.snaps.length === 1 && c.logRows < 256;
    }, 5000, 'a bounded log behind one snapshot').catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(last)}`);
    });
    const { logRows, snaps } = await counts();
    assert.ok(logRows < 256, `log not bounded: ${logRows} rows`);
    assert.equal(snaps.length, 1, 'older snapshots are deleted');
    a.close();
    await server.stop();
    const again = await startServer({ db: server.db });
    try {
      const b = new MainYjsEditor(await again.connect(tokenFor(users.bob)), entry);
      const ack = await b.join();
      assert.equal(ack.content, expected);
      assert.equal(ack.version, 600);
    } finally {
      await again.stop();
    }
  } finally {
    await t.close();
  }
});
