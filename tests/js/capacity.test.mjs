// Past capacity (PROTOCOL.md section 3, docs/behaviour.md): `/ready` answers 503
// {status:'overloaded'} while a load signal is at its threshold, `/metrics` exports the
// signals, and readiness returns once the load is gone. Driven past a tiny threshold:
// at one event per second per user, a burst of edits waits in its socket's queue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer, tokenFor, eventually } from './lib/harness.mjs';

async function ready(server) {
  const res = await fetch(`${server.url}/ready`);
  return { status: res.status, body: await res.json() };
}

async function gauge(server, name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

test('/ready reports overloaded while sockets queue past the threshold, then recovers', async () => {
  const server = await startServer({
    env: { RATE_LIMIT_PER_SECOND: '1', OVERLOAD_QUEUED_EVENTS: '10' },
  });
  try {
    assert.deepEqual((await ready(server)).status, 200);
    const s = await server.connect(tokenFor(randomUUID()));
    // Edits over the rate limit are held in order, not dropped: 30 of them queue.
    const entryId = randomUUID();
    for (let i = 0; i < 30; i++) {
      s.emit('entry_edit', { entryId, delta: { ops: [{ insert: 'x' }] }, version: 0 });
    }
    const overloaded = await eventually(async () => {
      const r = await ready(server);
      return r.status === 503 ? r : null;
    }, 10000, '/ready 503');
    assert.equal(overloaded.body.status, 'overloaded');
    assert.ok((await gauge(server, 'diary_socket_queued_events')) >= 10);
    assert.equal(await gauge(server, 'diary_overloaded'), 1);
    assert.ok((await gauge(server, 'diary_event_loop_lag_seconds')) >= 0);
    assert.ok((await gauge(server, 'diary_commit_backlog_updates')) >= 0);

    // The socket goes: its held edits are dropped, the queue empties, and after the
    // calm spell (2 s below half of every threshold) the process is ready again.
    s.close();
    const back = await eventually(async () => {
      const r = await ready(server);
      return r.status === 200 ? r : null;
    }, 15000, '/ready 200 again');
    assert.equal(back.body.status, 'ready');
    assert.equal(await gauge(server, 'diary_socket_queued_events'), 0);
    assert.equal(await gauge(server, 'diary_overloaded'), 0);
  } finally {
    await server.cleanup();
  }
});
