// The embedded default (SQLite): edits, then everyone leaves, several times over. Each
// unload folds the entry's log into a snapshot while presence and session rows are
// written for the same sockets leaving; none of those writes may fail on SQLite's
// write lock ("database is locked"), and nothing is logged above INFO.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import initSqlJs from 'sql.js';
import { startServer, serverBin, SECRET, tokenFor, eventually } from './lib/harness.mjs';
import { DeltaClient } from './lib/delta-client.mjs';

// `seed-demo`'s fixed ids: alice owns the shared entry, bob edits it.
const ALICE = '00000000-0000-4000-8000-00000000a11c';
const BOB = '00000000-0000-4000-8000-000000000b0b';
const ENTRY = '00000000-0000-4000-8000-0000000e0001';

const levels = (server) =>
  server.logs.flatMap((line) => {
    try {
      return [JSON.parse(line)];
    } catch {
      return [];
    }
  });

test('sqlite: each unload after edits compacts, and no write meets a locked database', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'diary-sqlite-writes-'));
  const sqlitePath = path.join(dir, 'diary.db');
  const env = { DATABASE_URL: `sqlite://${sqlitePath}`, JWT_SECRET: SECRET, RATE_LIMIT_PER_SECOND: '1000' };
  execFileSync(serverBin, ['seed-demo'], { env: { ...process.env, ...env }, stdio: 'ignore' });
  const server = await startServer({
    database: 'sqlite',
    sqlitePath,
    env: { ...env, RUST_LOG: 'info,diary_realtime::collab::actor=debug' },
  });
  try {
    const ROUNDS = 6;
    let expected = '';
    for (let round = 1; round <= ROUNDS; round++) {
      const clients = [];
      for (const [user, name] of [
        [ALICE, 'alice'],
        [BOB, 'bob'],
      ]) {
        const c = new DeltaClient(await server.connect(tokenFor(user)), ENTRY, name);
        await c.join();
        clients.push(c);
      }
      for (let i = 0; i < 10; i++) {
        const c = clients[i % 2];
        const { version } = await c.edit(expected ? [{ retain: expected.length }, { insert: `${round}` }] : [{ insert: `${round}` }]);
        expected += `${round}`;
        await clients[(i + 1) % 2].until(version);
      }
      // Both leave at once: the final compaction races the presence and session writes.
      for (const c of clients) c.socket.close();
      await eventually(
        () => levels(server).filter((l) => l.message === 'doc unloaded').length >= round,
        10000,
        `unload ${round}`,
      );
    }
    await server.stop();
    const loud = levels(server).filter((l) => l.level === 'WARN' || l.level === 'ERROR');
    assert.deepEqual(loud, [], 'nothing logged above INFO');

    // The log was folded into one snapshot each time: no rows left over.
    const SQL = await initSqlJs();
    const db = new SQL.Database(readFileSync(sqlitePath));
    const one = (sql) => db.exec(sql, [ENTRY])[0]?.values[0];
    assert.deepEqual(one('SELECT count(*) FROM entry_updates WHERE entry_id = ?'), [0]);
    assert.deepEqual(one('SELECT count(*) FROM entry_snapshots WHERE entry_id = ?'), [1]);
    assert.deepEqual(one('SELECT content, version FROM entry_documents WHERE entry_id = ?'), [expected, ROUNDS * 10]);
    db.close();
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
