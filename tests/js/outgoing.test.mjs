// A socket that falls behind (PROTOCOL.md section 3, "Past capacity"; docs/behaviour.md):
// its outgoing buffer is bounded (SOCKET_BUFFER_PACKETS, tiny here). Cursor moves that
// do not fit are merged, latest wins, and delivered once it catches up, never out of
// order; an edit relay that does not fit cuts the socket off with RATE_LIMIT_EXCEEDED
// and a disconnect, so its client resyncs. The lagging client is a hand-driven
// Engine.IO polling client: nothing reaches it until it asks, so its buffer fills
// exactly when we choose.
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
} from './lib/harness.mjs';

const BUFFER = 8;

/** A Socket.IO client over Engine.IO long-polling that only reads when told to. */
class PollingClient {
  constructor(server) {
    this.base = `${server.url}/realtime/ws/?EIO=4&transport=polling`;
  }

  async open(token) {
    const open = await (await fetch(this.base)).text();
    assert.ok(open.startsWith('0'), open);
    this.url = `${this.base}&sid=${JSON.parse(open.slice(1)).sid}`;
    await this.post(`0${JSON.stringify({ token })}`);
    const packets = await this.readUntil((p) => p.startsWith('0') || p.startsWith('4'));
    assert.ok(packets.some((p) => p.startsWith('0{')), packets.join(' | '));
  }

  async post(packet) {
    const res = await fetch(this.url, { method: 'POST', body: `4${packet}` });
    assert.equal(res.status, 200);
    await res.text();
  }

  /** One long-poll: every packet waiting (Socket.IO packets, Engine.IO `4` removed;
   * `closed` for the Engine.IO close). */
  async read() {
    const body = await (await fetch(this.url)).text();
    const out = [];
    for (const p of body.split('\x1e')) {
      if (p === '2') await this.pong();
      else if (p.startsWith('4')) out.push(p.slice(1));
      else if (p.startsWith('1')) out.push('closed');
    }
    return out;
  }

  async pong() {
    const res = await fetch(this.url, { method: 'POST', body: '3' });
    await res.text();
  }

  /** Reads until a packet matches; returns every packet read. */
  async readUntil(pred, polls = 50) {
    const all = [];
    for (let i = 0; i < polls; i++) {
      const got = await this.read();
      all.push(...got);
      if (got.some(pred)) return all;
    }
    throw new Error(`no matching packet in ${polls} polls: ${all.join(' | ')}`);
  }
}

const events = (packets, name) =>
  packets
    .filter((p) => p.startsWith('2['))
    .map((p) => JSON.parse(p.slice(1)))
    .filter(([event]) => event === name)
    .map(([, payload]) => payload);

async function fixture() {
  const server = await startServer({
    env: { RATE_LIMIT_PER_SECOND: '1000', SOCKET_BUFFER_PACKETS: String(BUFFER) },
  });
  const db = await dbClient(server);
  const [alice, bob] = await seedUsers(db, 'alice', 'bob');
  const entryId = await seedEntry(db, alice);
  await addCollaborator(db, entryId, bob, 'editor');
  const a = await server.connect(tokenFor(alice));
  assert.equal((await request(a, 'join_entry_room', { entryId })).ok, true);
  const lagging = new PollingClient(server);
  await lagging.open(tokenFor(bob));
  await lagging.post(`21${JSON.stringify(['join_entry_room', { entryId }])}`);
  await lagging.readUntil((p) => p.startsWith('31['));
  const cleanup = async () => {
    await db.end();
    await server.cleanup();
  };
  return { server, a, alice, entryId, lagging, cleanup };
}

const move = (entryId, i) => ({
  entryId,
  position: { index: i, length: 0 },
  selection: { start: i, end: i },
});

test('cursor moves to a socket whose buffer is full are merged, latest wins, in order', async () => {
  const f = await fixture();
  try {
    const MOVES = 60;
    for (let i = 0; i < MOVES; i++) {
      assert.equal((await request(f.a, 'entry_cursor_move', move(f.entryId, i))).ok, true);
    }
    const seen = events(
      await f.lagging.readUntil((p) => p.includes(`"index":${MOVES - 1},`)),
      'entry_cursor_move',
    );
    const indices = seen.map((m) => m.position.index);
    assert.equal(indices.at(-1), MOVES - 1, 'the latest position arrives');
    assert.ok(indices.length < MOVES, `nothing was merged: ${indices.length} moves arrived`);
    for (let i = 1; i < indices.length; i++) {
      assert.ok(indices[i] > indices[i - 1], `moves out of order: ${indices.join(',')}`);
    }
    // The socket was not cut off: it still gets what comes next.
    assert.equal((await request(f.a, 'entry_cursor_move', move(f.entryId, 1000))).ok, true);
    await f.lagging.readUntil((p) => p.includes('"index":1000,'));
  } finally {
    await f.cleanup();
  }
});

test('an edit relay that does not fit cuts the socket off with RATE_LIMIT_EXCEEDED', async () => {
  const f = await fixture();
  try {
    for (let i = 0; i < BUFFER * 3; i++) {
      const ack = await request(f.a, 'entry_edit', {
        entryId: f.entryId,
        delta: { ops: [{ insert: 'x' }] },
      });
      assert.equal(ack.ok, true);
    }
    // The sender is unaffected; the lagging socket gets what fitted, then the error and
    // the disconnect once it reads again.
    const packets = await f.lagging.readUntil((p) => p.startsWith('1') || p === 'closed');
    const errors = events(packets, 'error');
    assert.deepEqual(
      errors.map((e) => e.code),
      ['RATE_LIMIT_EXCEEDED'],
      packets.join(' | '),
    );
    const relayed = events(packets, 'entry_edit').length;
    assert.ok(relayed < BUFFER * 3, `every edit was relayed: ${relayed}`);
    assert.equal((await request(f.a, 'state_request', { entryId: f.entryId })).ok, true);
  } finally {
    await f.cleanup();
  }
});
