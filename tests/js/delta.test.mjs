// Quill-delta editing, cursors, typing and state (PROTOCOL.md sections 5.1 and 5.2),
// against the real server binary and a fresh PostgreSQL database per test.
//
// Delta clients here keep a plain-text model of the entry: observers apply every
// relayed `entry_edit` in version order; editors also apply their own edits at once and
// rebase what they receive over their unconfirmed edits, as an OT client (Quill's
// `transform`) would. Every model must end equal to the server's `state_request`.

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
  withTimeout,
} from './lib/harness.mjs';
import { MainYjsEditor, ySocketIoEditor, docUntil, Y } from './lib/yjs-clients.mjs';
import { DeltaClient, applyDelta, transform } from './lib/delta-client.mjs';

// ---------------------------------------------------------------------------------------
// Fixtures.

/** A server, a db client, users named `names` (the first owns one entry). */
async function fixture(names, { env = {}, roles = {} } = {}) {
  // A high rate limit unless a test is about the limit: these tests send many events.
  const server = await startServer({ env: { RATE_LIMIT_PER_SECOND: '1000', ...env } });
  const db = await dbClient(server);
  const ids = await seedUsers(db, ...names);
  const users = Object.fromEntries(names.map((n, i) => [n, ids[i]]));
  const entryId = await seedEntry(db, ids[0]);
  for (const [name, role] of Object.entries(roles)) await addCollaborator(db, entryId, users[name], role);
  const connect = (name) => server.connect(tokenFor(users[name]));
  const joined = async (name, label = name) => {
    const c = new DeltaClient(await connect(name), entryId, label);
    await c.join();
    return c;
  };
  const closers = [];
  return {
    server,
    db,
    users,
    entryId,
    connect,
    joined,
    closers,
    async close() {
      for (const close of closers) close();
      await db.end();
      await server.cleanup();
    },
  };
}

async function state(socket, entryId) {
  const [ack, response] = await Promise.all([
    request(socket, 'state_request', { entryId }),
    waitFor(socket, 'state_response', (r) => r.entryId === entryId),
  ]);
  assert.equal(ack.ok, true, JSON.stringify(ack));
  return { ack, response };
}

const expectError = (ack, code) => {
  assert.equal(ack.ok, false, `expected ${code}, got ${JSON.stringify(ack)}`);
  assert.equal(ack.error.code, code, JSON.stringify(ack));
  assert.equal(typeof ack.error.message, 'string');
};

async function metric(server, name) {
  const body = await (await fetch(`${server.url}/metrics`)).text();
  const line = body.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : 0;
}

const settle = () => new Promise((r) => setTimeout(r, 300));

// ---------------------------------------------------------------------------------------

test('entry_edit applies, acks its version and reaches delta, Yjs and y-socket.io peers in their own form', async () => {
  const f = await fixture(['Alice', 'Bob', 'Carol', 'Dave'], { roles: { Bob: 'editor', Carol: 'editor', Dave: 'editor' } });
  try {
    const a = await f.joined('Alice');
    const b = await f.joined('Bob');
    const c = new MainYjsEditor(await f.connect('Carol'), f.entryId);
    await c.join();
    const d = await ySocketIoEditor(f.server, tokenFor(f.users.Dave), f.entryId);
    f.closers.push(() => d.close());
    const echoed = record(a.socket, 'entry_edit');
    const yjsGotDeltas = record(c.socket, 'entry_edit');
    const deltaGotUpdates = record(b.socket, 'entry_update');

    const before = Date.now();
    const ack = await a.edit([{ insert: 'Hello world' }]);
    assert.deepEqual(ack, { ok: true, version: 1 });
    await b.until(1);
    const relayed = b.received[0];
    assert.equal(relayed.entryId, f.entryId);
    assert.equal(relayed.userId, f.users.Alice);
    assert.equal(relayed.version, 1);
    assert.deepEqual(relayed.delta, { ops: [{ insert: 'Hello world' }] });
    const ts = Date.parse(relayed.timestamp);
    assert.ok(ts >= before - 1000 && ts <= Date.now() + 1000, `timestamp ${relayed.timestamp}`);
    await docUntil(c.doc, () => c.text.toString() === 'Hello world');
    await docUntil(d.doc, () => d.text.toString() === 'Hello world');

    // Formatting, delete and insert in one delta.
    const ack2 = await a.edit([{ retain: 5, attributes: { bold: true } }, { delete: 1 }, { insert: ', ' }]);
    assert.equal(ack2.version, 2);
    await b.until(2);
    assert.deepEqual(b.received[1].delta, {
      ops: [{ retain: 5, attributes: { bold: true } }, { delete: 1 }, { insert: ', ' }],
    });
    assert.equal(b.text, 'Hello, world');
    await docUntil(c.doc, () => c.text.toString() === 'Hello, world');
    assert.deepEqual(c.text.toDelta(), [{ insert: 'Hello', attributes: { bold: true } }, { insert: ', world' }]);
    await docUntil(d.doc, () => d.text.toString() === 'Hello, world');
    assert.deepEqual(d.text.toDelta(), c.text.toDelta());

    // A Yjs edit on the main namespace reaches delta clients as a delta.
    c.text.insert(12, '!');
    await Promise.all([a.until(3), b.until(3)]);
    for (const client of [a, b]) {
      const e = client.received.at(-1);
      assert.equal(e.userId, f.users.Carol);
      assert.equal(e.version, 3);
      assert.deepEqual(e.delta, { ops: [{ retain: 12 }, { insert: '!' }] });
      assert.equal(client.text, 'Hello, world!');
    }
    assert.deepEqual(await c.settled(), [{ ok: true, version: 3 }]);
    await docUntil(d.doc, () => d.text.toString() === 'Hello, world!');

    // And so does a y-socket.io edit, with formatting.
    d.text.insert(0, '>', { italic: true });
    await Promise.all([a.until(4), b.until(4)]);
    for (const client of [a, b]) {
      const e = client.received.at(-1);
      assert.equal(e.userId, f.users.Dave);
      assert.deepEqual(e.delta, { ops: [{ insert: '>', attributes: { italic: true } }] });
      assert.equal(client.text, '>Hello, world!');
    }
    await docUntil(c.doc, () => c.text.toString() === '>Hello, world!');

    // One form per socket; the sender gets no echo.
    await settle();
    assert.equal(echoed.filter((e) => e.userId === f.users.Alice).length, 0, 'sender got its own edit back');
    assert.equal(yjsGotDeltas.length, 0, 'a Yjs socket also got entry_edit');
    assert.equal(deltaGotUpdates.length, 0, 'a delta socket also got entry_update');
    assert.deepEqual(c.errors, []);
    assert.deepEqual(d.errors, []);

    const { response } = await state(b.socket, f.entryId);
    assert.equal(response.content, '>Hello, world!');
    assert.equal(response.version, 4);
    assert.deepEqual(response.delta.ops, [
      { insert: '>', attributes: { italic: true } },
      { insert: 'Hello', attributes: { bold: true } },
      { insert: ', world!' },
    ]);
  } finally {
    await f.close();
  }
});

test('concurrent delta edits on one baseVersion keep both intents and converge everywhere', async () => {
  const f = await fixture(['Alice', 'Bob', 'Olive', 'Yves'], { roles: { Bob: 'editor', Olive: 'viewer', Yves: 'editor' } });
  try {
    const a = await f.joined('Alice');
    const b = await f.joined('Bob');
    const o = await f.joined('Olive', 'observer');
    const y = new MainYjsEditor(await f.connect('Yves'), f.entryId);
    await y.join();
    await a.edit([{ insert: 'The quick brown fox' }]);
    await Promise.all([b.until(1), o.until(1)]);

    const converged = async (version) => {
      await Promise.all([a.until(version), b.until(version), o.until(version)]);
      const { response } = await state(o.socket, f.entryId);
      assert.equal(response.version, version);
      await docUntil(y.doc, () => y.text.toString() === response.content);
      for (const client of [a, b, o]) assert.equal(client.text, response.content, `${client.name} diverged`);
      return response.content;
    };

    // An insert at the start and a delete near the end, both against version 1.
    const base = 1;
    await Promise.all([
      a.edit([{ insert: '>> ' }], { base }),
      b.edit([{ retain: 16 }, { delete: 3 }], { base }),
    ]);
    const text = await converged(3);
    assert.equal(text, '>> The quick brown ');

    // Two inserts at one position, many times, both sending orders.
    let version = 3;
    let expected = text;
    for (let round = 0; round < 6; round++) {
      const [first, second] = round % 2 ? [b, a] : [a, b];
      const at = 3 + round;
      const [m1, m2] = [`[${round}a]`, `[${round}b]`];
      await Promise.all([
        first.edit([{ retain: at }, { insert: m1 }], { base: version }),
        second.edit([{ retain: at }, { insert: m2 }], { base: version }),
      ]);
      version += 2;
      const now = await converged(version);
      const head = expected.slice(0, at);
      const tail = expected.slice(at);
      assert.ok(
        now === head + m1 + m2 + tail || now === head + m2 + m1 + tail,
        `round ${round}: ${JSON.stringify(now)} lost an intent`,
      );
      expected = now;
    }

    // Observers saw every version exactly once, in order.
    assert.deepEqual(
      o.received.map((e) => e.version),
      Array.from({ length: version }, (_, i) => i + 1),
    );
    assert.deepEqual(y.errors, []);
  } finally {
    await f.close();
  }
});

test('baseVersion in the future, older than the history or from before the doc loaded is refused', async () => {
  const f = await fixture(['Alice', 'Bob'], { roles: { Bob: 'editor' } });
  try {
    let a = await f.joined('Alice');
    const b = await f.joined('Bob');
    await a.edit([{ insert: 'abc' }]);
    await a.edit([{ retain: 3 }, { insert: 'def' }]);
    const bSaw = record(b.socket, 'entry_edit');

    const future = await request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops: [{ insert: 'x' }] }, baseVersion: 3 });
    expectError(future, 'VALIDATION_ERROR');
    assert.match(future.error.message, /resync|state_request/i);

    // Everyone leaves; the doc unloads; reloaded, its history starts at version 2.
    a.socket.close();
    b.socket.close();
    await eventually(async () => (await metric(f.server, 'diary_docs_loaded')) === 0, 10000, 'doc unloaded');
    a = await f.joined('Alice');
    assert.equal(a.version, 2);
    assert.equal(a.text, 'abcdef');
    for (const baseVersion of [0, 1]) {
      const old = await request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops: [{ insert: 'x' }] }, baseVersion });
      expectError(old, 'VALIDATION_ERROR');
      assert.match(old.error.message, /resync|state_request/i);
    }
    const { response } = await state(a.socket, f.entryId);
    assert.equal(response.version, 2);
    assert.equal(response.content, 'abcdef');
    assert.equal(bSaw.length, 0);
    // The current version is a fine base.
    assert.deepEqual(await a.edit([{ insert: 'x' }], { base: 2 }), { ok: true, version: 3 });
  } finally {
    await f.close();
  }
});

test('zero-length retains and deletes are no-ops, as in quill-delta', async () => {
  const f = await fixture(['Alice', 'Bob'], { roles: { Bob: 'editor' } });
  try {
    const a = await f.joined('Alice');
    const b = await f.joined('Bob');
    // Hand-built `[{retain: i}, {insert: c}]` at i = 0, with and without a base.
    assert.deepEqual(await a.edit([{ retain: 0 }, { insert: 'ab' }]), { ok: true, version: 1 });
    assert.deepEqual(await a.edit([{ retain: 1 }, { delete: 0 }, { insert: 'X' }, { retain: 0 }], { base: 1 }), {
      ok: true,
      version: 2,
    });
    await b.until(2);
    // Relays carry the change as applied, without the empty ops.
    assert.deepEqual(
      b.received.map((e) => e.delta),
      [{ ops: [{ insert: 'ab' }] }, { ops: [{ retain: 1 }, { insert: 'X' }] }],
    );
    // A delta of nothing but empty ops changes nothing and is relayed to no one.
    const empty = await request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops: [{ retain: 0 }, { delete: 0 }] } });
    assert.deepEqual(empty, { ok: true, version: 2 });
    // Still refused: empty ops do not excuse the rest of the delta.
    const past = await request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops: [{ retain: 0 }, { retain: 4 }] } });
    assert.equal(past.error?.code, 'VALIDATION_ERROR');
    const { response } = await state(b.socket, f.entryId);
    assert.equal(response.content, 'aXb');
    assert.equal(response.version, 2);
    assert.equal(b.text, 'aXb');
    assert.equal(b.received.length, 2);
  } finally {
    await f.close();
  }
});

test('a delta that does not fit, or is ill-typed, is refused and changes nothing', async () => {
  const f = await fixture(['Alice', 'Bob', 'Yves'], { roles: { Bob: 'editor', Yves: 'editor' } });
  try {
    const a = await f.joined('Alice');
    await a.edit([{ insert: 'hello' }]);
    await a.edit([{ retain: 5 }, { insert: ' world' }]); // version 2, 11 chars
    const b = await f.joined('Bob');
    const y = new MainYjsEditor(await f.connect('Yves'), f.entryId);
    await y.join();
    const bSaw = record(b.socket, 'entry_edit');
    const ySaw = record(y.socket, 'entry_update');

    const e = f.entryId;
    const bad = [
      { entryId: e, delta: { ops: [{ retain: 12 }] } },
      { entryId: e, delta: { ops: [{ retain: 6 }, { delete: 6 }] } },
      { entryId: e, delta: { ops: [{ insert: 'ok' }, { retain: 11 }, { insert: '!' }, { delete: 1 }] } },
      { entryId: e, delta: { ops: [{ retain: 3, delete: 'x' }] } },
      { entryId: e, delta: { ops: [{ frobnicate: 3 }] } },
      { entryId: e, delta: { ops: [{}] } },
      { entryId: e, delta: { ops: [{ retain: 'x' }] } },
      { entryId: e, delta: { ops: [{ insert: 5 }] } },
      { entryId: e, delta: { ops: [{ insert: null }] } },
      { entryId: e, delta: { ops: [{ insert: '' }] } },
      { entryId: e, delta: { ops: [{ retain: -1 }, { insert: 'x' }] } },
      { entryId: e, delta: { ops: [{ delete: -2 }] } },
      { entryId: e, delta: { ops: [{ retain: 1.5 }, { insert: 'x' }] } },
      { entryId: e, delta: { ops: [{ retain: 2, attributes: 5 }] } },
      { entryId: e, delta: { ops: 'insert hi' } },
      { entryId: e, delta: {} },
      { entryId: e, delta: null },
      { entryId: e },
      { entryId: e, delta: { ops: [{ insert: 'x' }] }, baseVersion: -1 },
      { entryId: e, delta: { ops: [{ insert: 'x' }] }, baseVersion: 'latest' },
      { entryId: 'not-a-uuid', delta: { ops: [{ insert: 'x' }] } },
      // Fits the current text (11) but not version 1's (5).
      { entryId: e, delta: { ops: [{ retain: 8 }, { insert: 'x' }] }, baseVersion: 1 },
    ];
    for (const payload of bad) {
      const ack = await request(a.socket, 'entry_edit', payload);
      assert.equal(ack.error?.code, 'VALIDATION_ERROR', `${JSON.stringify(payload)} -> ${JSON.stringify(ack)}`);
    }
    // Without an ack, the refusal is an `error` event naming the event (and entry).
    const errorEvent = waitFor(a.socket, 'error', (err) => err.event === 'entry_edit');
    a.socket.emit('entry_edit', { entryId: e, delta: { ops: [{ delete: 99 }] } });
    const err = await errorEvent;
    assert.equal(err.code, 'VALIDATION_ERROR');
    assert.equal(err.entryId, e);

    const { response } = await state(a.socket, e);
    assert.equal(response.version, 2);
    assert.equal(response.content, 'hello world');
    assert.equal(y.text.toString(), 'hello world');

    // A good edit after all that: the first and only thing the others receive.
    assert.deepEqual(await a.edit([{ retain: 11 }, { insert: '!' }]), { ok: true, version: 3 });
    await b.until(3);
    await docUntil(y.doc, () => y.text.toString() === 'hello world!');
    await settle();
    assert.deepEqual(bSaw.map((x) => x.version), [3]);
    assert.equal(ySaw.length, 1);
    assert.equal(b.text, 'hello world!');
  } finally {
    await f.close();
  }
});

test('1000 edits sent back to back apply in order; a base 1000 versions back is the oldest accepted', async () => {
  const f = await fixture(['Alice', 'Bob'], { roles: { Bob: 'editor' }, env: { RATE_LIMIT_PER_SECOND: '100000' } });
  try {
    const a = await f.joined('Alice');
    const b = await f.joined('Bob');
    await a.edit([{ insert: '#' }]);
    await b.until(1);

    const N = 1000;
    const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
    let expected = '#';
    const acks = [];
    for (let i = 0; i < N; i++) {
      const c = chars[i % chars.length];
      // Each appends at the end: `{retain: length so far}, {insert: c}`, no baseVersion.
      acks.push(
        request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops: [{ retain: expected.length }, { insert: c }] } }, 60000),
      );
      expected += c;
    }
    const results = await Promise.all(acks);
    results.forEach((ack, i) => assert.deepEqual(ack, { ok: true, version: i + 2 }, `edit ${i}`));
    await b.until(N + 1, 60000);
    assert.equal(b.text, expected);
    assert.deepEqual(
      b.received.slice(1).map((e) => e.version),
      Array.from({ length: N }, (_, i) => i + 2),
    );
    const { response } = await state(b.socket, f.entryId);
    assert.equal(response.content, expected);
    assert.equal(response.version, N + 1);

    // History holds the last 1000 versions: N+1-1001 = 0 is gone, 1 is still there.
    const tooOld = await request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops: [{ insert: 'Z' }] }, baseVersion: 0 });
    expectError(tooOld, 'VALIDATION_ERROR');
    assert.match(tooOld.error.message, /resync|state_request/i);
    // Version 1 was "#": an insert before it lands at the start of today's text.
    const oldest = await request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops: [{ insert: 'Z' }, { retain: 1 }, { insert: '!' }] }, baseVersion: 1 });
    assert.deepEqual(oldest, { ok: true, version: N + 2 });
    await b.until(N + 2);
    // "Z" before "#"; "!" after it, which every later append also was: a concurrent
    // insert at one spot applied later lands right of the earlier ones, at the end.
    assert.equal(b.text, 'Z' + expected + '!');
    assert.deepEqual(b.received.at(-1).delta, { ops: [{ insert: 'Z' }, { retain: N + 1 }, { insert: '!' }] });
  } finally {
    await f.close();
  }
});

test('joining while edits stream in: no relay overtakes the join ack, and the joiner ends in step', async () => {
  const f = await fixture(['Alice', 'Bob'], { roles: { Bob: 'editor' }, env: { RATE_LIMIT_PER_SECOND: '100000' } });
  try {
    const a = await f.joined('Alice');
    const N = 600;
    let expected = '';
    const acks = [];
    // Bob joins (several times, on fresh sockets) while Alice's edits are in flight,
    // so the actor applies and relays edits around each join.
    const joiners = [];
    for (let i = 0; i < N; i++) {
      const ops = expected.length ? [{ retain: expected.length }, { insert: 'x' }] : [{ insert: 'x' }];
      acks.push(request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops } }, 60000));
      expected += 'x';
      if (i % 60 === 30) joiners.push(f.connect('Bob').then((s) => new DeltaClient(s, f.entryId, `bob${i}`)).then(async (c) => (await c.join(), c)));
    }
    (await Promise.all(acks)).forEach((ack, i) => assert.deepEqual(ack, { ok: true, version: i + 1 }, `edit ${i}`));
    // `join()` asserts that no entry_edit arrived before its ack.
    const bobs = await Promise.all(joiners);
    assert.equal(bobs.length, 10);
    for (const b of bobs) {
      await b.until(N);
      assert.equal(b.text, expected, `${b.name} converged`);
    }
  } finally {
    await f.close();
  }
});

test('with the default rate limit a burst of 30 edits is held, not dropped, and lands in order', async () => {
  const f = await fixture(['Alice', 'Bob'], { roles: { Bob: 'editor' }, env: { RATE_LIMIT_PER_SECOND: '10' } });
  try {
    const a = await f.joined('Alice');
    const b = await f.joined('Bob');
    const errors = record(a.socket, 'error');
    const N = 30;
    const started = Date.now();
    const acks = [];
    let expected = '';
    for (let i = 0; i < N; i++) {
      const c = String.fromCharCode(65 + (i % 26));
      const ops = i === 0 ? [{ insert: c }] : [{ retain: i }, { insert: c }];
      acks.push(request(a.socket, 'entry_edit', { entryId: f.entryId, delta: { ops } }, 15000));
      expected += c;
    }
    const results = await Promise.all(acks);
    const elapsed = Date.now() - started;
    results.forEach((ack, i) => assert.deepEqual(ack, { ok: true, version: i + 1 }, `edit ${i}`));
    // 10 per second with a burst of 10 (one spent on joining): the rest waited.
    assert.ok(elapsed >= 1000, `30 edits took only ${elapsed} ms: not rate limited?`);
    assert.ok(elapsed < 8000, `30 edits took ${elapsed} ms`);
    await b.until(N);
    assert.equal(b.text, expected);
    assert.deepEqual(b.received.map((e) => e.version), Array.from({ length: N }, (_, i) => i + 1));
    assert.equal(errors.length, 0, JSON.stringify(errors));
  } finally {
    await f.close();
  }
});

test('cursors are relayed, anchored to the text, and cleared when a user leaves the room', async () => {
  const f = await fixture(['Alice', 'Bob', 'Carol'], { roles: { Bob: 'editor', Carol: 'viewer' } });
  try {
    const a = await f.joined('Alice');
    const a2 = await f.joined('Alice', 'alice-tab2');
    const b = await f.joined('Bob');
    const c = await f.joined('Carol');
    await a.edit([{ insert: '0123456789abcdefghij' }]);
    await Promise.all([b.until(1), c.until(1)]);

    const echoed = record(a.socket, 'entry_cursor_move');
    const atB = waitFor(b.socket, 'entry_cursor_move');
    const atC = waitFor(c.socket, 'entry_cursor_move');
    const before = Date.now();
    const ack = await request(a.socket, 'entry_cursor_move', {
      entryId: f.entryId,
      position: { index: 10, length: 2 },
      selection: { start: 10, end: 12 },
    });
    assert.equal(ack.ok, true);
    for (const moved of [await atB, await atC]) {
      assert.equal(moved.entryId, f.entryId);
      assert.equal(moved.userId, f.users.Alice);
      assert.deepEqual(moved.position, { index: 10, length: 2 });
      assert.deepEqual(moved.selection, { start: 10, end: 12 });
      const ts = Date.parse(moved.timestamp);
      assert.ok(ts >= before - 1000 && ts <= Date.now() + 1000, `timestamp ${moved.timestamp}`);
    }

    // Bob types five characters at the start: Alice's cursor moves with her text.
    await b.edit([{ insert: 'HELLO' }]);
    await c.until(2);
    const { ack: stateAck, response } = await state(c.socket, f.entryId);
    const alice = response.cursors.find((x) => x.userId === f.users.Alice);
    assert.deepEqual(alice, {
      userId: f.users.Alice,
      position: { index: 15, length: 2 },
      selection: { start: 15, end: 17 },
    });
    assert.deepEqual(stateAck.cursors, response.cursors);
    assert.equal(response.content.slice(15, 17), 'ab');

    await request(b.socket, 'entry_cursor_move', {
      entryId: f.entryId,
      position: { index: 0, length: 0 },
      selection: { start: 0, end: 0 },
    });
    await settle();
    assert.equal(echoed.filter((m) => m.userId === f.users.Alice).length, 0, 'cursor echoed to its sender');

    // One of Alice's two tabs leaves: her cursor stays. The other leaves: it is cleared.
    const clears = record(b.socket, 'entry_cursor_clear');
    assert.equal((await request(a2.socket, 'leave_entry_room', { entryId: f.entryId })).ok, true);
    const cleared = waitFor(b.socket, 'entry_cursor_clear', (x) => x.userId === f.users.Alice);
    assert.equal((await request(a.socket, 'leave_entry_room', { entryId: f.entryId })).ok, true);
    assert.deepEqual(await cleared, { entryId: f.entryId, userId: f.users.Alice });
    assert.deepEqual(clears, [{ entryId: f.entryId, userId: f.users.Alice }], 'cleared while a tab remained');
    const after = await state(c.socket, f.entryId);
    assert.deepEqual(after.response.cursors.map((x) => x.userId), [f.users.Bob]);

    // Disconnecting clears too, also for a user who never moved a cursor.
    const bobCleared = waitFor(c.socket, 'entry_cursor_clear', (x) => x.userId === f.users.Bob);
    b.socket.close();
    assert.deepEqual(await bobCleared, { entryId: f.entryId, userId: f.users.Bob });
    const d = await f.joined('Bob', 'bob-again');
    const dCleared = waitFor(c.socket, 'entry_cursor_clear', (x) => x.userId === f.users.Bob);
    d.socket.disconnect();
    assert.deepEqual(await dCleared, { entryId: f.entryId, userId: f.users.Bob });
    assert.deepEqual((await state(c.socket, f.entryId)).response.cursors, []);
  } finally {
    await f.close();
  }
});

test('typing is relayed with userId and an unrefreshed isTyping:true lapses after about 5 s', async () => {
  const f = await fixture(['Alice', 'Bob', 'Carol'], { roles: { Bob: 'editor', Carol: 'editor' } });
  try {
    const a = await f.joined('Alice');
    const b = await f.joined('Bob');
    const c = await f.joined('Carol');
    const echoed = record(a.socket, 'typing');
    const seen = [];
    const t0 = Date.now();
    b.socket.on('typing', (t) => seen.push({ ...t, at: Date.now() - t0 }));

    // Explicit start and stop.
    let next = waitFor(b.socket, 'typing', (t) => t.userId === f.users.Alice && t.isTyping === true);
    assert.equal((await request(a.socket, 'typing', { entryId: f.entryId, isTyping: true })).ok, true);
    assert.deepEqual(await next, { entryId: f.entryId, userId: f.users.Alice, isTyping: true });
    next = waitFor(b.socket, 'typing', (t) => t.userId === f.users.Alice && t.isTyping === false);
    await request(a.socket, 'typing', { entryId: f.entryId, isTyping: false });
    assert.deepEqual(await next, { entryId: f.entryId, userId: f.users.Alice, isTyping: false });

    // Alice and Carol start typing; Alice refreshes after 3 s, Carol never does.
    const start = Date.now();
    await Promise.all([
      request(a.socket, 'typing', { entryId: f.entryId, isTyping: true }),
      request(c.socket, 'typing', { entryId: f.entryId, isTyping: true }),
    ]);
    const carolLapsed = waitFor(b.socket, 'typing', (t) => t.userId === f.users.Carol && !t.isTyping, 9000);
    const aliceLapsed = waitFor(b.socket, 'typing', (t) => t.userId === f.users.Alice && !t.isTyping, 12000);
    await new Promise((r) => setTimeout(r, 3000));
    await request(a.socket, 'typing', { entryId: f.entryId, isTyping: true });
    assert.deepEqual(await carolLapsed, { entryId: f.entryId, userId: f.users.Carol, isTyping: false });
    const carolAt = Date.now() - start;
    assert.ok(carolAt >= 4500 && carolAt < 7000, `Carol lapsed after ${carolAt} ms`);
    assert.deepEqual(await aliceLapsed, { entryId: f.entryId, userId: f.users.Alice, isTyping: false });
    const aliceAt = Date.now() - start;
    assert.ok(aliceAt >= 7500 && aliceAt < 10500, `Alice lapsed after ${aliceAt} ms (refresh ignored?)`);
    // What Alice sent never came back to her; she did see Carol's.
    const own = echoed.filter((t) => t.userId === f.users.Alice && t.isTyping);
    assert.equal(own.length, 0, `typing echoed to its sender: ${JSON.stringify(own)}`);
    assert.ok(echoed.some((t) => t.userId === f.users.Carol && t.isTyping));
  } finally {
    await f.close();
  }
});

test('state_request and desync_detected answer with the whole state; desyncs are counted', async () => {
  const f = await fixture(['Alice', 'Bob', 'Carol'], { roles: { Bob: 'editor', Carol: 'viewer' } });
  try {
    const a = await f.joined('Alice');
    const b = await f.joined('Bob');
    await a.edit([{ insert: 'Dear diary, ' }]);
    await b.until(1);
    await b.edit([{ retain: 12 }, { insert: 'today was 😀 good', attributes: { italic: true } }]);
    await a.until(2);
    await request(a.socket, 'entry_cursor_move', {
      entryId: f.entryId,
      position: { index: 5, length: 0 },
      selection: { start: 5, end: 5 },
    });

    const c = await f.joined('Carol');
    const { ack, response } = await state(c.socket, f.entryId);
    const content = 'Dear diary, today was 😀 good';
    assert.equal(response.entryId, f.entryId);
    assert.equal(response.content, content);
    assert.equal(response.version, 2);
    assert.deepEqual(response.delta, {
      ops: [{ insert: 'Dear diary, ' }, { insert: 'today was 😀 good', attributes: { italic: true } }],
    });
    assert.equal(applyDelta('', response.delta.ops), content);
    assert.ok(Buffer.isBuffer(response.update), 'update is binary');
    const doc = new Y.Doc();
    Y.applyUpdate(doc, new Uint8Array(response.update));
    assert.equal(doc.getText('content').toString(), content);
    assert.deepEqual(doc.getText('content').toDelta(), response.delta.ops);
    assert.deepEqual(response.cursors, [
      { userId: f.users.Alice, position: { index: 5, length: 0 }, selection: { start: 5, end: 5 } },
    ]);
    assert.deepEqual(
      response.viewers.map((v) => v.userId).sort(),
      [f.users.Alice, f.users.Bob, f.users.Carol].sort(),
    );
    assert.deepEqual(
      response.viewers.find((v) => v.userId === f.users.Carol),
      { userId: f.users.Carol, displayName: 'Carol', role: 'viewer' },
    );
    for (const key of ['entryId', 'content', 'delta', 'version', 'cursors', 'viewers']) {
      assert.deepEqual(ack[key], response[key], `ack.${key}`);
    }

    // desync_detected: logged, counted, answered with state_response (with or without ack).
    const before = await metric(f.server, 'diary_desync_reports_total');
    const answered = waitFor(b.socket, 'state_response');
    const dack = await request(b.socket, 'desync_detected', { entryId: f.entryId, version: 1 });
    assert.equal(dack.ok, true);
    assert.equal(dack.version, 2);
    const r = await answered;
    assert.equal(r.content, content);
    assert.equal(r.version, 2);
    const again = waitFor(b.socket, 'state_response');
    b.socket.emit('desync_detected', { entryId: f.entryId });
    assert.equal((await again).content, content);
    await eventually(async () => (await metric(f.server, 'diary_desync_reports_total')) === before + 2, 5000, 'desync counter');
    assert.ok(f.server.logs.some((l) => l.includes('desync')), 'desync not logged');
  } finally {
    await f.close();
  }
});

test('events for an entry the socket has not joined, and a viewer\'s edits, are refused with ACCESS_DENIED', async () => {
  const f = await fixture(['Alice', 'Bob', 'Vera', 'Mallory'], { roles: { Bob: 'editor', Vera: 'viewer' } });
  try {
    const a = await f.joined('Alice');
    await a.edit([{ insert: 'secret' }]);
    const e = f.entryId;
    const position = { index: 0, length: 0 };
    const selection = { start: 0, end: 0 };
    const events = [
      ['entry_edit', { entryId: e, delta: { ops: [{ insert: 'x' }] } }],
      ['entry_cursor_move', { entryId: e, position, selection }],
      ['typing', { entryId: e, isTyping: true }],
      ['state_request', { entryId: e }],
      ['desync_detected', { entryId: e }],
      ['leave_entry_room', { entryId: e }],
    ];
    // Bob may edit, but has not joined; Mallory has no access at all.
    const bob = await f.connect('Bob');
    const mallory = await f.connect('Mallory');
    const aSaw = { edits: record(a.socket, 'entry_edit'), cursors: record(a.socket, 'entry_cursor_move'), typing: record(a.socket, 'typing') };
    for (const s of [bob, mallory]) {
      const states = record(s, 'state_response');
      for (const [event, payload] of events) expectError(await request(s, event, payload), 'ACCESS_DENIED');
      const err = waitFor(s, 'error', (x) => x.event === 'entry_edit');
      s.emit('entry_edit', { entryId: e, delta: { ops: [{ insert: 'x' }] } });
      assert.deepEqual({ ...(await err), message: undefined }, { code: 'ACCESS_DENIED', event: 'entry_edit', entryId: e, message: undefined });
      assert.equal(states.length, 0);
    }
    expectError(await request(mallory, 'join_entry_room', { entryId: e }), 'ACCESS_DENIED');
    expectError(await request(mallory, 'entry_edit', { entryId: e, delta: { ops: [{ insert: 'x' }] } }), 'ACCESS_DENIED');

    // A viewer joins and reads, but may not edit.
    const vera = await f.joined('Vera');
    assert.equal(vera.text, 'secret');
    expectError(await request(vera.socket, 'entry_edit', { entryId: e, delta: { ops: [{ insert: 'x' }] } }), 'ACCESS_DENIED');
    expectError(
      await request(vera.socket, 'entry_edit', { entryId: e, delta: { ops: [{ retain: 6 }, { insert: 'x' }] }, baseVersion: 1 }),
      'ACCESS_DENIED',
    );
    // Having left, a socket is refused again.
    const b = await f.joined('Bob');
    await request(b.socket, 'leave_entry_room', { entryId: e });
    expectError(await request(b.socket, 'entry_edit', { entryId: e, delta: { ops: [{ insert: 'x' }] } }), 'ACCESS_DENIED');

    const { response } = await state(a.socket, e);
    assert.equal(response.content, 'secret');
    assert.equal(response.version, 1);
    // A marker from Vera that she may send (a cursor) is the only thing Alice got.
    const marker = waitFor(a.socket, 'entry_cursor_move');
    await request(vera.socket, 'entry_cursor_move', { entryId: e, position, selection });
    assert.equal((await marker).userId, f.users.Vera);
    assert.equal(aSaw.edits.length, 0);
    assert.equal(aSaw.typing.length, 0);
    assert.deepEqual(aSaw.cursors.map((x) => x.userId), [f.users.Vera]);
  } finally {
    await f.close();
  }
});
