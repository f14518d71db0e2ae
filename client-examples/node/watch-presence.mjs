#!/usr/bin/env node
// Watches friends' presence: who is online when we connect, then friends coming online,
// going offline and changing status. --status away|busy|online sets our own status.
//   npm run watch-presence -- --token <jwt> [--status busy]

import { connect, exitOnSignal, fail, log, options } from './lib/cli.mjs';

const usage = `usage: npm run watch-presence -- --token <jwt> [--status online|away|busy] [--url http://localhost:8003]
  env: DIARY_TOKEN, DIARY_URL`;
const opts = options({ usage, need: ['token'], extra: { status: { type: 'string' } } });
if (opts.status && !['online', 'away', 'busy'].includes(opts.status)) fail('--status must be online, away or busy');

const { socket } = connect(opts);
exitOnSignal(socket);
let me = null;
socket.on('authenticated', ({ userId }) => {
  me = userId;
});

socket.on('online', ({ friends }) => {
  const here = friends.filter((f) => f.status !== 'offline');
  log('[friends]', `${friends.length} friends, ${here.length} online`);
  for (const f of friends) log('  ', f.userId, f.status, f.lastSeen ? `last seen ${f.lastSeen}` : '');
});
socket.on('friend_online', ({ userId }) => log('[online]', userId));
socket.on('offline', ({ userId, lastSeen }) => log('[offline]', userId, `last seen ${lastSeen}`));
socket.on('presence_update', ({ userId, status }) => log('[status]', userId === me ? `${userId} (me)` : userId, status));

const setStatus = async () => {
  if (!opts.status) return;
  const ack = await socket.emitWithAck('presence_update', { status: opts.status });
  log('[my status]', ack.ok ? ack.status : `${ack.error.code}: ${ack.error.message}`);
};
// On every (re)connect: the server forgets a status when our last socket has gone.
socket.on('connect', setStatus);
