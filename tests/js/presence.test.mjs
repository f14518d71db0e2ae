// Friend presence (PROTOCOL.md section 7) against the real server and PostgreSQL.
// Servers run with a short grace period so "offline after grace" is quick to observe.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import {
  addFriends,
  authenticated,
  dbClient,
  eventually,
  request,
  seedUsers,
  startServer,
  tokenFor,
  waitFor,
  withTimeout,
} from './lib/harness.mjs';

const GRACE_MS = 400;
const PRESENCE_EVENTS = ['online', 'friend_online', 'offline', 'presence_update'];
/** How long a "nothing else arrived" check waits after its positive marker. */
const QUIET_MS = 250;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function start(extra = {}) {
  return startServer({ env: { PRESENCE_GRACE_MS: String(GRACE_MS) }, ...extra });
}

/**
 * Connects `userId` and resolves once both `authenticated` and (on the main
 * namespaces) `online` arrived. Every presence event the socket receives is logged in
 * `socket.log` as {event, payload, at}, from before the connection is made.
 */
async function connectUser(server, userId, { ns = '/', expectOnline = ns !== '/notifications' } = {}) {
  const s = server.socket(tokenFor(userId), { ns });
  s.log = [];
  s.onAny((event, payload) => {
    if (PRESENCE_EVENTS.includes(event)) s.log.push({ event, payload, at: Date.now() });
  });
  const online = expectOnline ? waitFor(s, 'online', () => true, 10000) : null;
  await authenticated(s);
  if (online) s.online = await online;
  return s;
}

/** Presence events about `aboutUser` in a socket's log (optionally one event name). */
function about(socket, aboutUser, event) {
  return socket.log.filter(
    (e) => e.payload?.userId === aboutUser && e.event !== 'online' && (!event || e.event === event),
  );
}

/** Presence events other than `online` (the socket's own list) in a socket's log. */
function pushed(socket) {
  return socket.log.filter((e) => e.event !== 'online');
}

/** Waits until `socket` logged `event` about `userId` matching `pred`; returns the payload. */
async function seen(socket, event, userId, pred = () => true, ms = 5000) {
  const hit = await eventually(
    () => socket.log.find((e) => e.event === event && e.payload?.userId === userId && pred(e.payload)),
    ms,
    `${event} about ${userId}`,
  );
  return hit;
}

async function closeSocket(s) {
  if (s.connected) {
    const gone = once(s, 'disconnect');
    s.close();
    await withTimeout(gone, 5000, 'disconnect');
  }
}

async function presenceRow(db, userId) {
  const { rows } = await db.query(
    'SELECT socket_id, is_online, status, last_seen FROM ws_connections WHERE user_id = $1',
    [userId],
  );
  return rows[0];
}

test('a friend coming online is announced to friends only; online lists friends', async () => {
  const server = await start();
  const db = await dbClient(server);
  try {
    const [a, b, c] = await seedUsers(db, 'alice', 'bob', 'carol');
    await addFriends(db, a, b);

    // bob on the alias namespace, carol (a stranger) on the default one.
    const bob = await connectUser(server, b, { ns: '/realtime/ws' });
    const carol = await connectUser(server, c);
    assert.deepEqual(bob.online.friends, [{ userId: a, status: 'offline', lastSeen: null }]);
    assert.equal(bob.online.userId, b);
    assert.deepEqual(carol.online.friends, []);

    const alice = await connectUser(server, a);
    assert.equal(alice.online.userId, a);
    assert.equal(alice.online.status, 'online');
    assert.equal(alice.online.friends.length, 1);
    assert.equal(alice.online.friends[0].userId, b);
    assert.equal(alice.online.friends[0].status, 'online');
    assert.ok(!Number.isNaN(Date.parse(alice.online.friends[0].lastSeen)));

    const hello = await seen(bob, 'friend_online', a);
    assert.ok(!Number.isNaN(Date.parse(hello.payload.timestamp)));
    const update = await seen(bob, 'presence_update', a);
    assert.equal(update.payload.status, 'online');
    assert.ok(!Number.isNaN(Date.parse(update.payload.lastSeen)));

    await sleep(QUIET_MS);
    assert.deepEqual(pushed(carol), [], 'a stranger learns nothing');
    assert.equal(about(bob, a, 'friend_online').length, 1);
    // alice's own arrival is not pushed back to her.
    assert.deepEqual(pushed(alice), []);
  } finally {
    await db.end();
    await server.cleanup();
  }
});

test('multi-tab: closing one tab is silent; closing all is one offline after the grace period', async () => {
  const server = await start();
  const db = await dbClient(server);
  try {
    const [a, b] = await seedUsers(db, 'alice', 'bob');
    await addFriends(db, b, a); // the reverse direction counts too
    const bob = await connectUser(server, b);
    const tab1 = await connectUser(server, a);
    const tab2 = await connectUser(server, a);
    // Every tab gets its own list.
    assert.equal(tab2.online.friends[0].userId, b);
    assert.equal(tab2.online.friends[0].status, 'online');
    await seen(bob, 'friend_online', a);

    // ws_connections: online, with a socket id.
    const online = await eventually(async () => {
      const row = await presenceRow(db, a);
      return row?.is_online ? row : null;
    });
    assert.equal(online.status, 'online');
    assert.ok(online.socket_id);

    await closeSocket(tab1);
    await sleep(GRACE_MS + 200);
    // Marker: a status change from the remaining tab reaches bob after anything the
    // closed tab could have caused.
    const ack = await request(tab2, 'presence_update', { status: 'busy' });
    assert.equal(ack.ok, true);
    assert.equal(ack.status, 'busy');
    await seen(bob, 'presence_update', a, (p) => p.status === 'busy');
    assert.deepEqual(
      about(bob, a).map((e) => e.event),
      ['friend_online', 'presence_update', 'presence_update'],
      'closing one of two tabs tells friends nothing',
    );
    assert.equal((await presenceRow(db, a)).status, 'busy');

    const closedAt = Date.now();
    await closeSocket(tab2);
    const off = await seen(bob, 'offline', a, () => true, GRACE_MS + 5000);
    assert.ok(
      off.at - closedAt >= GRACE_MS,
      `offline arrived ${off.at - closedAt} ms after the last tab closed, before the ${GRACE_MS} ms grace`,
    );
    assert.ok(!Number.isNaN(Date.parse(off.payload.lastSeen)));
    const down = await seen(bob, 'presence_update', a, (p) => p.status === 'offline');
    assert.equal(down.payload.lastSeen, off.payload.lastSeen);
    await sleep(QUIET_MS);
    assert.equal(about(bob, a, 'offline').length, 1, 'offline exactly once');
    assert.equal(about(bob, a).filter((e) => e.payload.status === 'offline').length, 1);

    const row = await presenceRow(db, a);
    assert.equal(row.is_online, false);
    assert.equal(row.status, 'offline');
    assert.equal(row.socket_id, null);
    assert.equal(row.last_seen.toISOString().slice(0, 19), off.payload.lastSeen.slice(0, 19));

    // Coming back is announced again, with the status reset to online.
    const again = await connectUser(server, a);
    assert.equal(again.online.status, 'online');
    await eventually(() => about(bob, a, 'friend_online').length === 2);
    assert.equal((await presenceRow(db, a)).is_online, true);
  } finally {
    await db.end();
    await server.cleanup();
  }
});

test('a reload within the grace period shows friends nothing', async () => {
  const server = await start();
  const db = await dbClient(server);
  try {
    const [a, b] = await seedUsers(db, 'alice', 'bob');
    await addFriends(db, a, b);
    const bob = await connectUser(server, b);
    const first = await connectUser(server, a);
    await seen(bob, 'presence_update', a);
    const before = about(bob, a).length;

    // Reload: the old page goes, the new one connects at once.
    await closeSocket(first);
    const reloaded = await connectUser(server, a);
    assert.equal(reloaded.online.friends[0].status, 'online');

    await sleep(GRACE_MS + 200);
    await request(reloaded, 'presence_update', { status: 'away' });
    await seen(bob, 'presence_update', a, (p) => p.status === 'away');
    const after = about(bob, a).slice(before);
    assert.deepEqual(
      after.map((e) => `${e.event}:${e.payload.status ?? ''}`),
      ['presence_update:away'],
      'no offline, no friend_online across the reload',
    );
    assert.equal((await presenceRow(db, a)).is_online, true);
  } finally {
    await db.end();
    await server.cleanup();
  }
});

test('a chosen status reaches online friends only; bad statuses are refused', async () => {
  const server = await start();
  const db = await dbClient(server);
  try {
    const [a, b, c] = await seedUsers(db, 'alice', 'bob', 'carol');
    await addFriends(db, a, b);
    const bob = await connectUser(server, b);
    const carol = await connectUser(server, c);
    const alice = await connectUser(server, a);
    await seen(bob, 'presence_update', a);

    const ack = await request(alice, 'presence_update', { status: 'away' });
    assert.equal(ack.ok, true);
    assert.equal(ack.status, 'away');
    const away = await seen(bob, 'presence_update', a, (p) => p.status === 'away');
    assert.ok(!Number.isNaN(Date.parse(away.payload.lastSeen)));
    assert.equal((await presenceRow(db, a)).status, 'away');

    for (const bad of [{ status: 'offline' }, { status: 'sleeping' }, { status: 3 }, {}, 'away']) {
      const refused = await request(alice, 'presence_update', bad);
      assert.equal(refused.ok, false, JSON.stringify(bad));
      assert.equal(refused.error.code, 'VALIDATION_ERROR');
    }
    // Without an ack the refusal is an `error` event.
    const error = waitFor(alice, 'error');
    alice.emit('presence_update', { status: 'gone' });
    const err = await error;
    assert.equal(err.code, 'VALIDATION_ERROR');
    assert.equal(err.event, 'presence_update');

    // Marker, then check: carol saw nothing, bob saw no bad status.
    await request(alice, 'presence_update', { status: 'online' });
    await seen(bob, 'presence_update', a, (p) => p.status === 'online' && Date.parse(p.lastSeen) > Date.parse(away.payload.lastSeen));
    await sleep(QUIET_MS);
    assert.deepEqual(pushed(carol), []);
    assert.deepEqual(
      about(bob, a, 'presence_update').map((e) => e.payload.status),
      ['online', 'away', 'online'],
    );
    // An unchanged status is not relayed again.
    await request(alice, 'presence_update', { status: 'online' });
    await sleep(QUIET_MS);
    assert.equal(about(bob, a, 'presence_update').length, 3);
    // alice's own list shows her chosen status in a new tab.
    await request(alice, 'presence_update', { status: 'busy' });
    const tab = await connectUser(server, a);
    assert.equal(tab.online.status, 'busy');
    // A friend's new tab sees the chosen status too.
    const bobTab = await connectUser(server, b);
    assert.deepEqual(
      bobTab.online.friends.map((f) => [f.userId, f.status]),
      [[a, 'busy']],
    );
  } finally {
    await db.end();
    await server.cleanup();
  }
});

test('a socket on /notifications makes its user online without presence traffic', async () => {
  const server = await start();
  const db = await dbClient(server);
  try {
    const [a, b] = await seedUsers(db, 'alice', 'bob');
    await addFriends(db, a, b);
    const bob = await connectUser(server, b);
    const inbox = await connectUser(server, a, { ns: '/notifications' });
    await seen(bob, 'friend_online', a);
    // bob's status change is not sent to alice's inbox socket.
    await request(bob, 'presence_update', { status: 'away' });
    // Marker on a main-namespace tab of alice's, opened after the change.
    const tab = await connectUser(server, a);
    assert.deepEqual(tab.online.friends.map((f) => f.status), ['away']);
    await sleep(QUIET_MS);
    assert.deepEqual(inbox.log, [], 'the inbox namespace carries no presence events');
    // The status event is not registered there either.
    const refused = await request(inbox, 'presence_update', { status: 'busy' }, 300).catch((e) => e);
    assert.ok(refused instanceof Error, 'no presence_update handler on /notifications');
  } finally {
    await db.end();
    await server.cleanup();
  }
});

test('friendships added or removed in the database take effect without reconnecting', async () => {
  const server = await start();
  const db = await dbClient(server);
  try {
    const [a, b, f] = await seedUsers(db, 'alice', 'bob', 'fred');
    await addFriends(db, a, f);
    const alice = await connectUser(server, a);
    const bob = await connectUser(server, b);
    const fred = await connectUser(server, f);
    await seen(alice, 'friend_online', f);
    assert.deepEqual(bob.online.friends, []);

    await db.query('INSERT INTO friends (user_id, friend_id) VALUES ($1, $2)', [a, b]);
    await seen(alice, 'friend_online', b);
    await seen(alice, 'presence_update', b, (p) => p.status === 'online');
    await seen(bob, 'friend_online', a);
    await seen(bob, 'presence_update', a, (p) => p.status === 'online');

    await request(alice, 'presence_update', { status: 'busy' });
    await seen(bob, 'presence_update', a, (p) => p.status === 'busy');

    await db.query('DELETE FROM friends WHERE user_id = $1 AND friend_id = $2', [a, b]);
    await seen(bob, 'offline', a);
    await seen(bob, 'presence_update', a, (p) => p.status === 'offline');
    await seen(alice, 'offline', b);

    // Relays stop: fred (still a friend) is the marker, bob must see nothing.
    const bobBefore = about(bob, a).length;
    await request(alice, 'presence_update', { status: 'away' });
    await seen(fred, 'presence_update', a, (p) => p.status === 'away');
    await sleep(QUIET_MS);
    assert.equal(about(bob, a).length, bobBefore, 'no relay to a former friend');

    // Both directions inserted in one transaction: announced once each.
    await db.query('BEGIN');
    await db.query('INSERT INTO friends (user_id, friend_id) VALUES ($1, $2), ($2, $1)', [a, b]);
    await db.query('COMMIT');
    await eventually(() => about(bob, a, 'friend_online').length === 2);
    await eventually(() => about(alice, b, 'friend_online').length === 2);
    const status = await seen(bob, 'presence_update', a, (p) => p.status === 'away');
    assert.ok(status);

    // Deleting one of the two rows keeps them friends: relays continue.
    await db.query('DELETE FROM friends WHERE user_id = $1 AND friend_id = $2', [b, a]);
    await request(alice, 'presence_update', { status: 'online' });
    // bob's updates about alice so far: online, busy, offline, away, and now online.
    await eventually(() => about(bob, a, 'presence_update').length === 5);
    assert.equal(about(bob, a, 'presence_update').at(-1).payload.status, 'online');
    await sleep(QUIET_MS);
    assert.equal(about(bob, a, 'friend_online').length, 2, 'announced once per friendship');
    assert.equal(about(bob, a, 'offline').length, 1);
  } finally {
    await db.end();
    await server.cleanup();
  }
});

test('rows of a killed process are cleaned at start; a graceful stop writes users offline', async () => {
  const server = await start();
  const db = await dbClient(server);
  let restarted;
  try {
    const [a, b] = await seedUsers(db, 'alice', 'bob');
    await addFriends(db, a, b);
    const entry = (await db.query(
      "INSERT INTO entries (id, owner_id, title) VALUES (gen_random_uuid(), $1, 'e') RETURNING id",
      [a],
    )).rows[0].id;
    await connectUser(server, a);
    await connectUser(server, b);
    await eventually(async () => {
      const { rows } = await db.query('SELECT count(*)::int AS n FROM ws_connections WHERE is_online');
      return rows[0].n === 2;
    });
    // A session row as the entry-room code would leave it.
    await db.query(
      "INSERT INTO active_sessions (user_id, entry_id, socket_id) VALUES ($1, $2, 'ghost-socket')",
      [a, entry],
    );

    await server.kill();
    const { rows: stale } = await db.query('SELECT count(*)::int AS n FROM ws_connections WHERE is_online');
    assert.equal(stale[0].n, 2, 'SIGKILL leaves the rows behind');

    restarted = await start({ db: server.db });
    // Checked right after the server reports listening, before anyone connects.
    const { rows: online } = await db.query('SELECT user_id FROM ws_connections WHERE is_online');
    assert.deepEqual(online, []);
    const { rows: sessions } = await db.query('SELECT count(*)::int AS n FROM active_sessions');
    assert.equal(sessions[0].n, 0);
    const row = await presenceRow(db, a);
    assert.equal(row.status, 'offline');

    await restarted.stop();

    // Graceful stop (SIGTERM with the socket still open; a grace period far too long
    // to run out meanwhile): whoever is online is written offline.
    restarted = await startServer({ db: server.db, env: { PRESENCE_GRACE_MS: '60000' } });
    await connectUser(restarted, a);
    await eventually(async () => (await presenceRow(db, a)).is_online);
    const exited = once(restarted.child, 'exit');
    restarted.child.kill('SIGTERM');
    await withTimeout(exited, 15000, 'graceful stop');
    const after = await presenceRow(db, a);
    assert.equal(after.is_online, false);
    assert.equal(after.status, 'offline');
  } finally {
    await db.end();
    if (restarted) await restarted.cleanup();
    await server.cleanup();
  }
});

test('active_sessions: rows leave with their socket; stale rows are swept, live ones kept', async () => {
  // A short stale timeout makes the sweep run every second; pongs keep the socket alive.
  const server = await start({ env: { PRESENCE_GRACE_MS: String(GRACE_MS), STALE_TIMEOUT_SECS: '2' } });
  const db = await dbClient(server);
  let keepAlive;
  try {
    const [a] = await seedUsers(db, 'alice');
    const entry = (await db.query(
      "INSERT INTO entries (id, owner_id, title) VALUES (gen_random_uuid(), $1, 'e') RETURNING id",
      [a],
    )).rows[0].id;
    const alice = await connectUser(server, a);
    keepAlive = setInterval(() => alice.emit('pong'), 300);
    const old = "now() - interval '1 hour'";
    await db.query(
      `INSERT INTO active_sessions (user_id, entry_id, socket_id, last_seen)
       VALUES ($1, $2, $3, ${old}), ($1, $2, 'ghost-socket', ${old})`,
      [a, entry, alice.id],
    );
    const rowsOf = async (sid) =>
      (await db.query('SELECT last_seen FROM active_sessions WHERE socket_id = $1', [sid])).rows;

    await eventually(async () => (await rowsOf('ghost-socket')).length === 0, 8000, 'ghost row swept');
    const live = await rowsOf(alice.id);
    assert.equal(live.length, 1, "a live socket's row survives the sweep");
    assert.ok(Date.now() - live[0].last_seen.getTime() < 60_000, 'and is refreshed');

    clearInterval(keepAlive);
    await closeSocket(alice);
    await eventually(async () => (await rowsOf(alice.id)).length === 0, 5000, 'row removed on disconnect');
  } finally {
    clearInterval(keepAlive);
    await db.end();
    await server.cleanup();
  }
});

test('sqlite: presence runs without a friendship feed', async () => {
  const server = await start({ database: 'sqlite' });
  try {
    const user = (await import('node:crypto')).randomUUID();
    const first = await connectUser(server, user);
    assert.deepEqual(first.online, { userId: user, status: 'online', friends: [] });
    const ack = await request(first, 'presence_update', { status: 'away' });
    assert.equal(ack.ok, true);
    await closeSocket(first);
    await sleep(GRACE_MS + 200);
    const again = await connectUser(server, user);
    assert.equal(again.online.status, 'online');
    assert.deepEqual(
      server.logs.filter((l) => l.includes('"WARN"') || l.includes('"ERROR"')),
      [],
      'no storage warnings',
    );
  } finally {
    await server.cleanup();
  }
});
