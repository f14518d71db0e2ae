#!/usr/bin/env node
// Joins an entry and prints every live edit until Ctrl-C.
//
// Default (Yjs) mode keeps a local Yjs copy of the entry in sync (state vectors on
// every (re)connect, as the browser editor does) and prints the whole text after each
// change. `--deltas` instead stays a Quill-delta client: it never sends
// entry_sync_step1, so the server sends it `entry_edit` deltas, printed as they come.
//   npm run watch-entry -- --token <jwt> --entry <uuid> [--deltas]

import { EntrySync } from '../lib/entry-sync.js';
import { connect, exitOnSignal, log, options } from './lib/cli.mjs';

const usage = `usage: npm run watch-entry -- --token <jwt> --entry <uuid> [--deltas] [--url http://localhost:8003]
  env: DIARY_TOKEN, DIARY_ENTRY, DIARY_URL`;
const opts = options({ usage, need: ['token', 'entry'], extra: { deltas: { type: 'boolean' } } });

const { socket } = connect(opts);
exitOnSignal(socket);
const viewerNames = (viewers) => viewers.map((v) => `${v.displayName} (${v.role})`).join(', ');
socket.on('current_viewers', ({ entryId, viewers }) => {
  if (entryId === opts.entry) log('[viewers]', viewerNames(viewers));
});
socket.on('typing', ({ entryId, userId, isTyping }) => {
  if (entryId === opts.entry) log('[typing]', userId, isTyping ? 'is typing' : 'stopped');
});

if (opts.deltas) {
  const join = async () => {
    const ack = await socket.emitWithAck('join_entry_room', { entryId: opts.entry });
    if (!ack.ok) {
      log('[join refused]', `${ack.error.code}: ${ack.error.message}`);
      process.exit(1);
    }
    log('[joined]', `as ${ack.role}, version ${ack.version}, viewers: ${viewerNames(ack.viewers)}`);
    log('[text]', JSON.stringify(ack.content));
  };
  // On every (re)connect, including the first.
  socket.on('connect', join);
  socket.on('entry_edit', ({ entryId, delta, userId, version }) => {
    if (entryId === opts.entry) log('[edit]', `v${version} by ${userId}:`, JSON.stringify(delta.ops));
  });
} else {
  const sync = new EntrySync(socket, opts.entry);
  sync.on('joined', (ack) => {
    log('[joined]', `as ${ack.role}, version ${ack.version}, viewers: ${viewerNames(ack.viewers)}`);
    log('[text]', JSON.stringify(sync.text.toString()));
  });
  sync.on('remote-update', () => log('[text]', JSON.stringify(sync.text.toString())));
  sync.on('state', (state) => state !== 'synced' && log('[connection]', state));
  sync.on('error', (e) => {
    log('[error]', `${e.event}: ${e.code} ${e.message ?? ''}`);
    if (e.event === 'join_entry_room') process.exit(1);
  });
}
