import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer, tokenFor } from './lib/harness.mjs';

test('harness smoke: connect on postgres', async () => {
  const server = await startServer();
  try {
    const user = randomUUID();
    const s = await server.connect(tokenFor(user));
    assert.equal(s.authenticated.userId, user);
  } finally {
    await server.cleanup();
  }
});
