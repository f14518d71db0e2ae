// Issue 9, per-user state across a cluster: notifications, presence, the connection cap
// and the rate limit, with one user's sockets spread over three server processes
// (one PostgreSQL database, one Redis with a prefix of its own per cluster).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import {
  addFriends,
  authenticated,
  dbClient,
  eventually,
  request,
  seedUsers,
  startCluster,
  tokenFor,
  waitFor,
  withTimeout,
} from './lib/harness.mjs';

const GRACE_MS = 400;
const PRESENCE_EVENTS = ['online', 'friend_online', 'offline', 'presence_update'];
/** How long a "nothing else arrived" check waits after its positive marker. */
const QUIET_MS = 300;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Connects `userId` to `node`, logging presence events (from before the connect). */
async function connectUser(node, userId, { ns = '/' } = {}) {
  const s = node.socket(tokenFor(userId), { ns });
  s.log = [];
  s.onAny((event, payload) => {
    if (PRESENCE_EVENTS.includes(event)) s.log.push({ event, payload, at: Date.now() });
  });
  const online = ns === '/notifications' ? null : waitFor(s, 'online', () => true, 10000);
  await authenticated(s);
  if (online) s.online = await online;
  return s;
}

/** Presence events about `userId` other than the socket's own `online` list. */
function about(socket, userId, event) {
  return socket.log.filter(
    (e) => e.event !== 'online' && e.payload?.userId === userId && (!event || e.event === event),
  );
}

async function seen(socket, event, userId, pred = () => true, ms = 5000) {
  return eventually(
    () => socket.log.find((e) => e.event === event && e.payload?.userId === userId && pred(e.payload)),
    ms,
    `${event} about ${userId}`,
  );
}

async function closeSocket(s) {
  if (s.connected) {
    const gone = once(s, 'disconnect');
    s.close();
    await withTimeout(gone, 5000, 'disconnect');
  }
}

/** Every payload of `event` the socket receives. */
function record(socket, event) {
  const got = [];
  socket.on(event, (payload) => got.push(payload));
  return got;
}

async function presenceRow(db, userId) {
  const { rows } = await db.query('SELECT is_online, status FROM ws_connections WHERE user_id = $1', [userId]);
  return rows[0];
}

async function refusal(node, token) {
  const s = node.socket(token);
  try {
    const [err] = await withTimeout(once(s, 'connect_error'), 5000, 'connect_error');
    return err.message;
  } finally {
    s.close();
  }
}

describe('a three-process cluster', () => {
  let cluster;
  let db;
  before(async () => {
    cluster = await startCluster({
      env: { PRESENCE_GRACE_MS: String(GRACE_MS), MAX_CONNECTIONS_PER_USER: '3', RATE_LIMIT_PER_SECOND: '10' },
    });
    db = await dbClient(cluster.nodes[0]);
  });
  after(async () => {
    await db?.end();
    await cluster?.cleanup();
  });

  test('a notification inserted by SQL reaches two tabs on two processes once each; mark_read once to the other', async () => {
    const [a] = await seedUsers(db, 'alice');
    const tab1 = await cluster.nodes[0].connect(tokenFor(a));
    const tab2 = await cluster.nodes[1].connect(tokenFor(a), { ns: '/notifications' });
    const bystander = await cluster.nodes[2].connect(tokenFor(randomUUID()));
    const tabs = [tab1, tab2];
    const created = tabs.map((t) => record(t, 'notification:created'));
    const counts = tabs.map((t) => record(t, 'notification:count_response'));
    const updated = tabs.map((t) => record(t, 'notification:updated'));
    const strangers = record(bystander, 'notification:created');

    const { rows } = await db.query(
      `INSERT INTO notifications (user_id, type, title) VALUES ($1, 'mention', 'sql row') RETURNING id`,
      [a],
    );
    const id = rows[0].id;
    await eventually(() => created.every((c) => c.length >= 1) && counts.every((c) => c.length >= 1), 5000, 'created + count on both tabs');

    // Marker: mark_read from tab1 (process 0) reaches tab2 (process 1) as updated.
    const ack = await request(tab1, 'notification:mark_read', { notificationId: id });
    assert.equal(ack.ok, true);
    assert.equal(ack.count, 0);
    await eventually(() => updated[1].length >= 1 && counts.every((c) => c.length >= 2), 5000, 'updated + count');
    await sleep(QUIET_MS);

    for (const c of created) assert.deepEqual(c.map((n) => n.id), [id], 'created exactly once per tab');
    for (const c of counts) assert.deepEqual(c.map((x) => x.count), [1, 0], 'one count per change per tab');

    // Created through REST on the third process: the same single delivery per tab.
    const res = await fetch(`${cluster.nodes[2].url}/api/notifications`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${tokenFor(randomUUID(), { role: 'service' })}`,
      },
      body: JSON.stringify({ userId: a, type: 'comment', title: 'rest row', message: 'via REST' }),
    });
    assert.equal(res.status, 201);
    const restId = (await res.json()).id;
    await eventually(() => created.every((c) => c.length >= 2) && counts.every((c) => c.length >= 3), 5000, 'REST row on both tabs');
    await sleep(QUIET_MS);
    for (const c of created) assert.deepEqual(c.map((n) => n.id), [id, restId]);
    for (const c of counts) assert.deepEqual(c.map((x) => x.count), [1, 0, 1]);
    assert.deepEqual(updated[0], [], 'the sender gets its ack, not an update');
    assert.equal(updated[1].length, 1);
    assert.equal(updated[1][0].id, id);
    assert.equal(updated[1][0].is_read, true);
    assert.deepEqual(strangers, []);
    for (const s of [...tabs, bystander]) s.close();
  });

  test('presence: online on the first socket anywhere, offline only after the last one (on another process) and the grace', async () => {
    const [a, b] = await seedUsers(db, 'alice', 'bob');
    await addFriends(db, a, b);
    const bob = await connectUser(cluster.nodes[0], b);

    const tabB = await connectUser(cluster.nodes[1], a);
    await seen(bob, 'friend_online', a);
    assert.equal(tabB.online.friends[0].status, 'online', 'bob, on another process, is listed online');
    const tabC = await connectUser(cluster.nodes[2], a);
    assert.equal(tabC.online.friends[0].status, 'online');

    await closeSocket(tabB);
    await sleep(GRACE_MS + 200);
    // Marker: a status change from the remaining tab reaches bob after anything the
    // closed tab could have caused.
    assert.equal((await request(tabC, 'presence_update', { status: 'busy' })).ok, true);
    await seen(bob, 'presence_update', a, (p) => p.status === 'busy');
    assert.deepEqual(
      about(bob, a).map((e) => e.event),
      ['friend_online', 'presence_update', 'presence_update'],
      'closing the tab on process 1 tells friends nothing',
    );

    const closedAt = Date.now();
    await closeSocket(tabC);
    const off = await seen(bob, 'offline', a, () => true, GRACE_MS + 5000);
    assert.ok(off.at - closedAt >= GRACE_MS, `offline ${off.at - closedAt} ms after the last tab closed`);
    await seen(bob, 'presence_update', a, (p) => p.status === 'offline');
    await eventually(async () => (await presenceRow(db, a))?.is_online === false, 3000, 'ws_connections offline');

    // A reload across processes within the grace period: nothing at all.
    const before = await connectUser(cluster.nodes[1], a);
    await eventually(() => about(bob, a, 'friend_online').length === 2, 5000, 'second friend_online');
    const countBefore = about(bob, a).length;
    await closeSocket(before);
    const after = await connectUser(cluster.nodes[2], a);
    await sleep(GRACE_MS + 200);
    assert.equal((await request(after, 'presence_update', { status: 'away' })).ok, true);
    await seen(bob, 'presence_update', a, (p) => p.status === 'away');
    assert.deepEqual(
      about(bob, a).slice(countBefore).map((e) => [e.event, e.payload.status]),
      [['presence_update', 'away']],
      'a reload onto another process within grace tells friends nothing',
    );
    const row = await presenceRow(db, a);
    assert.equal(row.is_online, true);
    assert.equal(row.status, 'away');

    await closeSocket(after);
    await seen(bob, 'offline', a, (p) => p.lastSeen !== off.payload.lastSeen, GRACE_MS + 5000);
    await sleep(QUIET_MS);
    assert.equal(about(bob, a, 'offline').length, 2, 'each offline exactly once');
    await closeSocket(bob);
  });

  test('a friendship made and removed while the two are on different processes is told to each once', async () => {
    const [a, b] = await seedUsers(db, 'alice', 'bob');
    const alice = await connectUser(cluster.nodes[1], a);
    const bob = await connectUser(cluster.nodes[2], b);
    const bobTab2 = await connectUser(cluster.nodes[1], b);
    await addFriends(db, a, b);
    await seen(alice, 'friend_online', b);
    await seen(bob, 'friend_online', a);
    await seen(bobTab2, 'friend_online', a);
    await seen(alice, 'presence_update', b, (p) => p.status === 'online');
    await db.query('DELETE FROM friends WHERE user_id = $1 AND friend_id = $2', [a, b]);
    await seen(alice, 'offline', b);
    await seen(bob, 'offline', a);
    await seen(bobTab2, 'offline', a);
    await sleep(QUIET_MS);
    for (const [socket, other] of [[alice, b], [bob, a], [bobTab2, a]]) {
      assert.deepEqual(
        about(socket, other).map((e) => e.event),
        ['friend_online', 'presence_update', 'offline', 'presence_update'],
      );
    }
    for (const s of [alice, bob, bobTab2]) s.close();
  });

  test('the connection cap holds over all processes; a slot frees anywhere', async () => {
    const token = tokenFor(randomUUID());
    const s0 = await cluster.nodes[0].connect(token);
    const s1 = await cluster.nodes[1].connect(token, { ns: '/notifications' });
    const s2 = await cluster.nodes[2].connect(token, { ns: '/realtime/ws' });
    for (const node of cluster.nodes) {
      assert.equal(await refusal(node, token), 'RATE_LIMIT_EXCEEDED: too many connections');
    }
    const other = await cluster.nodes[0].connect(tokenFor(randomUUID()));
    await closeSocket(s1);
    const again = await eventually(async () => {
      try {
        return await cluster.nodes[2].connect(token);
      } catch (e) {
        assert.match(e.message, /RATE_LIMIT_EXCEEDED/);
        return null;
      }
    }, 5000, 'a freed slot');
    assert.equal(await refusal(cluster.nodes[1], token), 'RATE_LIMIT_EXCEEDED: too many connections');
    for (const s of [s0, s2, again, other]) s.close();
  });

  test('the rate limit holds over processes: 20 events/s over two processes get 10/s through', async (t) => {
    const token = tokenFor(randomUUID());
    const sockets = [await cluster.nodes[0].connect(token), await cluster.nodes[1].connect(token)];
    const RUN_MS = 3000;
    const results = [];
    const start = Date.now();
    const pending = [];
    // Each socket sends 10/s, the two offset by 50 ms: 20/s for the user.
    for (let i = 0; i * 100 < RUN_MS; i++) {
      for (const [k, s] of sockets.entries()) {
        const at = start + i * 100 + k * 50;
        const wait = at - Date.now();
        if (wait > 0) await sleep(wait);
        const sentAt = Date.now() - start;
        pending.push(
          request(s, 'notification:count_request', null).then((ack) => results.push({ sentAt, ok: ack.ok !== false, ack })),
        );
      }
    }
    await Promise.all(pending);
    for (const r of results.filter((r) => !r.ok)) assert.equal(r.ack.error.code, 'RATE_LIMIT_EXCEEDED');
    // The first second spends the burst; from then on the budget is the rate.
    const steady = results.filter((r) => r.sentAt >= 1000);
    const accepted = steady.filter((r) => r.ok).length;
    const seconds = (RUN_MS - 1000) / 1000;
    assert.ok(
      Math.abs(accepted / seconds - 10) <= 1,
      `${accepted} accepted of ${steady.length} sent in ${seconds} s: ${(accepted / seconds).toFixed(1)}/s`,
    );
    const total = results.filter((r) => r.ok).length;
    t.diagnostic(`steady state ${(accepted / seconds).toFixed(1)}/s; ${total} of ${results.length} accepted in all`);
    assert.ok(total <= 10 + 10 * (RUN_MS / 1000) + 2, `${total} accepted in all`);
    for (const s of sockets) s.close();
  });
});

describe('a process killed with SIGKILL (STALE_TIMEOUT_SECS = 4)', () => {
  test('its user goes offline for a friend on a surviving process within the stale timeout, once', async (t) => {
    const STALE_MS = 4000;
    const cluster = await startCluster({
      size: 2,
      env: { PRESENCE_GRACE_MS: String(GRACE_MS), STALE_TIMEOUT_SECS: String(STALE_MS / 1000) },
    });
    const db = await dbClient(cluster.nodes[0]);
    let keepAlive;
    try {
      const [a, b] = await seedUsers(db, 'alice', 'bob');
      await addFriends(db, a, b);
      const bob = await connectUser(cluster.nodes[0], b);
      // bob stays active (a silent socket would be stale itself).
      keepAlive = setInterval(() => bob.emit('pong'), 500);
      await connectUser(cluster.nodes[1], a);
      await seen(bob, 'friend_online', a);
      await eventually(async () => (await presenceRow(db, a))?.is_online === true, 3000, 'ws_connections online');

      const killedAt = Date.now();
      await cluster.nodes[1].kill();
      const off = await seen(bob, 'offline', a, () => true, STALE_MS + 3000);
      assert.ok(off.at - killedAt <= STALE_MS, `offline ${off.at - killedAt} ms after the kill`);
      t.diagnostic(`offline ${off.at - killedAt} ms after the kill`);
      await seen(bob, 'presence_update', a, (p) => p.status === 'offline');
      await eventually(async () => (await presenceRow(db, a))?.is_online === false, 3000, 'ws_connections offline');

      // The survivor still serves, and alice comes back online through it.
      await connectUser(cluster.nodes[0], a);
      await eventually(() => about(bob, a, 'friend_online').length === 2, 5000, 'back online');
      await sleep(QUIET_MS);
      assert.equal(about(bob, a, 'offline').length, 1, 'offline exactly once');
    } finally {
      clearInterval(keepAlive);
      await db.end();
      await cluster.cleanup();
    }
  });
});

describe('a process stopped gracefully (SIGTERM)', () => {
  test('hands its users over at once: offline for friends within the liveness TTL of its exit', async (t) => {
    const STALE_MS = 4000;
    const cluster = await startCluster({
      size: 2,
      env: { PRESENCE_GRACE_MS: String(GRACE_MS), STALE_TIMEOUT_SECS: String(STALE_MS / 1000) },
    });
    const db = await dbClient(cluster.nodes[0]);
    let keepAlive;
    try {
      const [a, b, c] = await seedUsers(db, 'alice', 'bob', 'carol');
      await addFriends(db, a, b);
      await addFriends(db, c, b);
      const bob = await connectUser(cluster.nodes[0], b);
      keepAlive = setInterval(() => bob.emit('pong'), 500);
      // alice only on the stopping process; carol on both.
      const alice = await connectUser(cluster.nodes[1], a);
      const carolGoes = await connectUser(cluster.nodes[1], c);
      const carolStays = await connectUser(cluster.nodes[0], c);
      await seen(bob, 'friend_online', a);
      await seen(bob, 'friend_online', c);

      // The clients stay open: the server ends their sockets as it shuts down, after
      // its presence worker has stopped, so only the hand-over can make alice offline.
      const stopping = cluster.nodes[1];
      stopping.sockets = stopping.sockets.filter((s) => s !== alice && s !== carolGoes);
      await stopping.stop();
      const exitedAt = Date.now();
      const off = await seen(bob, 'offline', a, () => true, STALE_MS + 3000);
      // The liveness key goes at exit; the survivors sweep twice per TTL (STALE / 2).
      assert.ok(off.at - exitedAt <= STALE_MS / 2, `offline ${off.at - exitedAt} ms after the exit`);
      t.diagnostic(`offline ${off.at - exitedAt} ms after the exit`);
      alice.close();
      carolGoes.close();
      // Marker: carol, still connected to the survivor, changes status.
      assert.equal((await request(carolStays, 'presence_update', { status: 'busy' })).ok, true);
      await seen(bob, 'presence_update', c, (p) => p.status === 'busy');
      assert.deepEqual(about(bob, c, 'offline'), [], 'a user with a socket on a survivor stays online');
      assert.equal(about(bob, a, 'offline').length, 1);
    } finally {
      clearInterval(keepAlive);
      await db.end();
      await cluster.cleanup();
    }
  });
});
