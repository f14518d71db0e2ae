// Test harness: starts the real server binary on a free port against a fresh database,
// mints tokens, seeds the diary app's tables and connects official socket.io clients.
// Every wait is on an event with a deadline: no sleep-and-hope.

import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { io } from 'socket.io-client';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../../..');
export const serverBin = process.env.DIARY_BIN ?? path.join(repoRoot, 'target/debug/diary-realtime');
export const PG_ADMIN_URL = process.env.PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const SECRET = 'js-test-secret-0123456789abcdef-0123456789';

/** A fresh, empty PostgreSQL database; `drop()` removes it. */
export async function createDatabase() {
  const name = `diary_test_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  return {
    name,
    url,
    async drop() {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * Starts the server. `database`: 'postgres' (default; a fresh database, or `db` to reuse
 * one across restarts) or 'sqlite' (a temp file, or `sqlitePath` to reuse).
 * Resolves once it logs that it listens; returns {url, port, db, stop(), kill(), ...}.
 */
export async function startServer({ env = {}, database = 'postgres', db, sqlitePath } = {}) {
  let ownedDb = null;
  let tempDir = null;
  let databaseUrl;
  if (database === 'postgres') {
    if (!db) db = ownedDb = await createDatabase();
    databaseUrl = db.url;
  } else {
    if (!sqlitePath) {
      tempDir = mkdtempSync(path.join(tmpdir(), 'diary-sqlite-'));
      sqlitePath = path.join(tempDir, 'test.db');
    }
    databaseUrl = `sqlite://${sqlitePath}`;
  }
  const child = spawn(serverBin, [], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      DATABASE_URL: databaseUrl,
      JWT_SECRET: SECRET,
      LOG_FORMAT: 'json',
      RUST_LOG: process.env.TEST_RUST_LOG ?? 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = [];
  let port = null;
  const listening = new Promise((resolve, reject) => {
    const onLine = (line) => {
      logs.push(line);
      if (process.env.TEST_SERVER_LOGS) process.stderr.write(`[server] ${line}\n`);
      if (port === null && line.includes('"listening"')) {
        try {
          const addr = JSON.parse(line).addr;
          port = Number(addr.split(':').pop());
          resolve();
        } catch (e) {
          reject(e);
        }
      }
    };
    let buf = '';
    const feed = (chunk) => {
      buf += chunk.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    };
    child.stdout.on('data', feed);
    child.stderr.on('data', feed);
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${logs.join('\n')}`)));
  });
  await withTimeout(listening, 20000, 'server start');
  const exited = once(child, 'exit');
  const server = {
    port,
    url: `http://127.0.0.1:${port}`,
    db,
    databaseUrl,
    sqlitePath,
    logs,
    child,
    sockets: [],
    /** Graceful stop (SIGTERM); keeps the database. */
    async stop() {
      for (const s of server.sockets) s.close();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await withTimeout(exited, 15000, 'server stop');
      }
    },
    /** SIGKILL: the process dies at once. */
    async kill() {
      for (const s of server.sockets) s.close();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
    /** Stops the server and removes what it created. */
    async cleanup() {
      await server.stop();
      if (ownedDb) await ownedDb.drop();
      if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    },
    /** A socket.io client for `token` on namespace `ns` (not yet awaited). */
    socket(token, { ns = '/', transports, auth, query, extraHeaders, reconnection = false } = {}) {
      const s = io(server.url + ns, {
        path: '/realtime/ws',
        forceNew: true,
        reconnection,
        transports,
        auth: auth ?? (token ? { token } : undefined),
        query,
        extraHeaders,
      });
      server.sockets.push(s);
      return s;
    },
    /** Connects and resolves with the socket once `authenticated` arrives. */
    async connect(token, opts = {}) {
      const s = server.socket(token, opts);
      await authenticated(s);
      return s;
    },
  };
  return server;
}

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Starts `size` server processes sharing one fresh PostgreSQL database and Redis, as one
 * cluster (a Redis prefix of its own, so clusters of parallel tests never meet). The
 * first node migrates alone; the rest start together. Returns {nodes, db, prefix,
 * startNode(), cleanup()}; `startNode()` adds a node (e.g. to replace a killed one).
 */
export async function startCluster({ size = 3, env = {} } = {}) {
  const db = await createDatabase();
  const prefix = `diary-test-${randomUUID().slice(0, 8)}`;
  const clusterEnv = { REDIS_URL, REDIS_PREFIX: prefix, ...env };
  const nodes = [];
  const cluster = {
    db,
    prefix,
    nodes,
    async startNode(extraEnv = {}) {
      const node = await startServer({ db, env: { ...clusterEnv, ...extraEnv } });
      nodes.push(node);
      return node;
    },
    async cleanup() {
      await Promise.all(nodes.map((n) => n.stop().catch(() => n.kill())));
      await db.drop();
    },
  };
  try {
    await cluster.startNode();
    await Promise.all(Array.from({ length: size - 1 }, () => cluster.startNode()));
  } catch (e) {
    await cluster.cleanup();
    throw e;
  }
  return cluster;
}

/** Resolves once `s` has its `authenticated` event (kept as `s.authenticated`); rejects on connect_error. */
export async function authenticated(s) {
  const [auth] = await withTimeout(
    Promise.race([
      once(s, 'authenticated'),
      once(s, 'connect_error').then(([e]) => {
        throw new Error(`connect_error: ${e.message}`);
      }),
    ]),
    10000,
    'authenticated',
  );
  s.authenticated = auth;
  return auth;
}

/** An HS256 JWT with the given claims (defaults: `sub`, one hour). */
export function signToken(claims, secret = SECRET) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64(claims);
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

export function tokenFor(userId, { ttlSecs = 3600, role, secret } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: userId, iat: now, exp: now + ttlSecs };
  if (role) claims.role = role;
  return signToken(claims, secret);
}

/** A client on the test database, for seeding and checking rows. */
export async function dbClient(server) {
  const c = new pg.Client({ connectionString: server.databaseUrl });
  await c.connect();
  return c;
}

/** Inserts users; returns their ids in order. */
export async function seedUsers(db, ...names) {
  const ids = [];
  for (const name of names) {
    const id = randomUUID();
    await db.query('INSERT INTO users (id, username, display_name) VALUES ($1, $2, $3)', [
      id,
      `${name}-${id.slice(0, 8)}`,
      name,
    ]);
    ids.push(id);
  }
  return ids;
}

export async function seedEntry(db, ownerId, { visibility = 'private', title = 'entry' } = {}) {
  const id = randomUUID();
  await db.query('INSERT INTO entries (id, owner_id, title, visibility) VALUES ($1, $2, $3, $4)', [
    id,
    ownerId,
    title,
    visibility,
  ]);
  return id;
}

export async function addCollaborator(db, entryId, userId, role) {
  await db.query('INSERT INTO entry_collaborators (entry_id, user_id, role) VALUES ($1, $2, $3)', [
    entryId,
    userId,
    role,
  ]);
}

export async function addFriends(db, a, b) {
  await db.query('INSERT INTO friends (user_id, friend_id) VALUES ($1, $2)', [a, b]);
}

/** Resolves with the first `event` payload matching `pred`, or rejects after `ms`. */
export function waitFor(socket, event, pred = () => true, ms = 5000) {
  return withTimeout(
    new Promise((resolve) => {
      const handler = (...args) => {
        if (pred(...args)) {
          socket.off(event, handler);
          resolve(args.length > 1 ? args : args[0]);
        }
      };
      socket.on(event, handler);
    }),
    ms,
    `event ${event}`,
  );
}

/** Emits with an ack and resolves with the ack payload. */
export function request(socket, event, payload, ms = 5000) {
  return withTimeout(socket.timeout(ms).emitWithAck(event, payload), ms + 500, `ack of ${event}`);
}

/** Collects every `event` payload into an array (for "nothing else arrived" checks). */
export function record(socket, event) {
  const seen = [];
  socket.on(event, (payload) => seen.push(payload));
  return seen;
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it returns a truthy value (for database state written async). */
export async function eventually(check, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}
