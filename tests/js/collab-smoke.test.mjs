import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, tokenFor, dbClient, seedUsers, seedEntry, addCollaborator, request, waitFor } from './lib/harness.mjs';
import { MainYjsEditor, ySocketIoEditor, docUntil } from './lib/yjs-clients.mjs';

test('smoke: main yjs + y-socket.io + delta', async () => {
  const server = await startServer();
  const db = await dbClient(server);
  try {
    const [alice, bob, carol] = await seedUsers(db, 'Alice', 'Bob', 'Carol');
    const entry = await seedEntry(db, alice);
    await addCollaborator(db, entry, bob, 'editor');
    await addCollaborator(db, entry, carol, 'viewer');
    const a = new MainYjsEditor(await server.connect(tokenFor(alice)), entry);
    const joinAck = await a.join();
    console.log('join', joinAck);
    const b = await ySocketIoEditor(server, tokenFor(bob), entry);
    const c = await server.connect(tokenFor(carol));
    console.log('carol join', await request(c, 'join_entry_room', { entryId: entry }));
    const edits = [];
    c.on('entry_edit', (e) => edits.push(e));
    a.text.insert(0, 'hello');
    await docUntil(b.doc, () => b.text.toString() === 'hello');
    b.text.insert(5, ' world');
    await docUntil(a.doc, () => a.text.toString() === 'hello world');
    console.log('acks', await a.settled());
    while (edits.length < 2) await waitFor(c, 'entry_edit');
    console.log('edits', JSON.stringify(edits));
    const res = await fetch(`${server.url}/api/entries/${entry}/content`, { headers: { Authorization: `Bearer ${tokenFor(carol)}` } });
    console.log(res.status, await res.json());
    a.close(); b.close(); c.close();
  } finally {
    await db.end();
    await server.cleanup();
  }
});
