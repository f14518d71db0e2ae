// The Node examples in client-examples/node (issue 7) run against a live server and
// print what their README says: each script is spawned as a user would run it, with a
// deadline, and its output is read line by line.
//
// Needs `npm ci` in client-examples (scripts/test.sh does it).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  addCollaborator,
  addFriends,
  dbClient,
  repoRoot,
  seedEntry,
  seedUsers,
  startServer,
  tokenFor,
  withTimeout,
} from './lib/harness.mjs';

const examples = path.join(repoRoot, 'client-examples');

/**
 * Spawns `client-examples/node/<name>.mjs`. Returns {lines, waitFor(re), exited, stop()};
 * the process is killed after `deadlineMs` whatever happens.
 */
function run(name, args, { env = {}, deadlineMs = 30000 } = {}) {
  const child = spawn(process.execPath, [path.join(examples, 'node', `${name}.mjs`), ...args], {
    cwd: examples,
    env: { ...process.env, DIARY_URL: '', DIARY_TOKEN: '', DIARY_ENTRY: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = [];
  const waiters = new Set();
  let buf = '';
  const feed = (chunk) => {
    buf += chunk.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      if (process.env.TEST_EXAMPLE_LOGS) process.stderr.write(`[${name}] ${line}\n`);
      for (const w of waiters) w(line);
    }
  };
  child.stdout.on('data', feed);
  child.stderr.on('data', feed);
  const killer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      clearTimeout(killer);
      if (buf) lines.push(buf);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    lines,
    exited,
    /** Resolves with the first line (seen so far or later) matching `re`. */
    waitFor(re, ms = 10000) {
      const seen = lines.find((l) => re.test(l));
      if (seen) return Promise.resolve(seen);
      let waiter;
      return withTimeout(
        new Promise((resolve) => {
          waiter = (line) => re.test(line) && resolve(line);
          waiters.add(waiter);
        }),
        ms,
        `${name} printing ${re}\n--- its output so far:\n${lines.join('\n')}`,
      ).finally(() => waiters.delete(waiter));
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs a script to completion; returns {code, output}. */
async function runToEnd(name, args, opts) {
  const p = run(name, args, opts);
  const { code } = await withTimeout(p.exited, 20000, `${name} to exit`);
  return { code, output: p.lines.join('\n') };
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let server;
let db;
const running = [];
const track = (p) => {
  running.push(p);
  return p;
};

before(async () => {
  if (!existsSync(path.join(examples, 'node_modules', 'socket.io-client'))) {
    throw new Error('client-examples has no node_modules: run `npm ci` in client-examples first (scripts/test.sh does)');
  }
  server = await startServer({ env: { PRESENCE_GRACE_MS: '300' } });
  db = await dbClient(server);
});

after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await db?.end();
  await server?.cleanup();
});

test('connect: authenticates with --token and prints the user id; a bad token is refused clearly', async () => {
  const [alice] = await seedUsers(db, 'Alice');
  const ok = await runToEnd('connect', ['--token', tokenFor(alice), '--url', server.url]);
  assert.equal(ok.code, 0, ok.output);
  assert.match(ok.output, new RegExp(`\\[authenticated\\] userId ${alice}`));

  // The same through the environment.
  const viaEnv = await runToEnd('connect', [], { env: { DIARY_TOKEN: tokenFor(alice), DIARY_URL: server.url } });
  assert.equal(viaEnv.code, 0, viaEnv.output);
  assert.match(viaEnv.output, new RegExp(`userId ${alice}`));

  const bad = await runToEnd('connect', ['--token', 'not-a-jwt', '--url', server.url]);
  assert.equal(bad.code, 1);
  assert.match(bad.output, /connection refused: AUTH_ERROR/);

  const missing = await runToEnd('connect', ['--url', server.url]);
  assert.equal(missing.code, 2);
  assert.match(missing.output, /missing --token/);
});

test('watch-entry prints live edits (Yjs and --deltas modes); send-delta appends and inserts', async () => {
  const [alice, bob] = await seedUsers(db, 'Alice', 'Bob');
  const entry = await seedEntry(db, alice);
  await addCollaborator(db, entry, bob, 'editor');
  const common = ['--url', server.url, '--entry', entry];

  const yjs = track(run('watch-entry', ['--token', tokenFor(alice), ...common]));
  const deltas = track(run('watch-entry', ['--token', tokenFor(alice), ...common, '--deltas']));
  await yjs.waitFor(/\[joined\] as owner, version 0/);
  await deltas.waitFor(/\[joined\] as owner, version 0/);

  const first = await runToEnd('send-delta', ['--token', tokenFor(bob), ...common, '--insert', 'Hello from send-delta']);
  assert.equal(first.code, 0, first.output);
  assert.match(first.output, /\[ack\] ok, version 1/);
  await yjs.waitFor(/\[text\] "Hello from send-delta"/);
  await deltas.waitFor(/\[edit\] v1 by .*"insert":"Hello from send-delta"/);

  const second = await runToEnd('send-delta', ['--token', tokenFor(bob), ...common, '--insert', '> ', '--at', '0']);
  assert.equal(second.code, 0, second.output);
  await yjs.waitFor(/\[text\] "> Hello from send-delta"/);
  await deltas.waitFor(/\[edit\] v2 by .*"insert":"> "/);

  const raw = await runToEnd('send-delta', [
    '--token',
    tokenFor(bob),
    ...common,
    '--delta',
    JSON.stringify({ ops: [{ retain: 2 }, { delete: 6 }] }),
  ]);
  assert.equal(raw.code, 0, raw.output);
  await yjs.waitFor(/\[text\] "> from send-delta"/);

  const res = await fetch(`${server.url}/api/entries/${entry}/content`, {
    headers: { authorization: `Bearer ${tokenFor(alice)}` },
  });
  assert.equal((await res.json()).content, '> from send-delta');

  // A stranger is refused, with the server's code.
  const [eve] = await seedUsers(db, 'Eve');
  const refused = await runToEnd('send-delta', ['--token', tokenFor(eve), ...common, '--insert', 'x']);
  assert.equal(refused.code, 1);
  assert.match(refused.output, /join refused: ACCESS_DENIED/);
  await yjs.stop();
  await deltas.stop();
});

test('watch-notifications prints the inbox, new notifications and the unread count; --mark-read marks them', async () => {
  const [alice] = await seedUsers(db, 'Alice');
  const watcher = track(run('watch-notifications', ['--token', tokenFor(alice), '--url', server.url, '--mark-read']));
  await watcher.waitFor(/\[inbox\] 0 notifications/);
  await watcher.waitFor(/\[unread\] 0/);

  const res = await fetch(`${server.url}/api/notifications`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokenFor(alice, { role: 'service' })}`, 'content-type': 'application/json' },
    body: JSON.stringify({ userId: alice, type: 'comment', title: 'Bob commented', message: 'Nice entry!', priority: 'high' }),
  });
  assert.equal(res.status, 201);
  const created = await res.json();
  await watcher.waitFor(new RegExp(`\\[new\\] \\* \\[high\\] comment: Bob commented - Nice entry! \\(${created.id}\\)`));
  await watcher.waitFor(/\[unread\] 1/);
  await watcher.waitFor(new RegExp(`\\[marked read\\] ${created.id}, unread now 0`));
  const { rows } = await db.query('SELECT is_read FROM notifications WHERE id = $1', [created.id]);
  assert.equal(rows[0].is_read, true);
  await watcher.stop();
});

test('watch-presence prints friends coming online, changing status and going offline; --status sets ours', async () => {
  const [alice, bob] = await seedUsers(db, 'Alice', 'Bob');
  await addFriends(db, alice, bob);
  const watcher = track(run('watch-presence', ['--token', tokenFor(alice), '--url', server.url, '--status', 'busy']));
  await watcher.waitFor(/\[friends\] 1 friends, 0 online/);
  await watcher.waitFor(/\[my status\] busy/);

  const bobSocket = await server.connect(tokenFor(bob));
  await watcher.waitFor(new RegExp(`\\[online\\] ${escape(bob)}`));
  const ack = await bobSocket.emitWithAck('presence_update', { status: 'away' });
  assert.equal(ack.ok, true);
  await watcher.waitFor(new RegExp(`\\[status\\] ${escape(bob)} away`));
  bobSocket.close();
  await watcher.waitFor(new RegExp(`\\[offline\\] ${escape(bob)} last seen`));
  await watcher.stop();
});
