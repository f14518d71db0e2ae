#!/usr/bin/env node
// Watches the notification inbox on the inbox-only `/notifications` namespace: prints
// the unread count and the latest notifications, then every new one as it arrives.
//   npm run watch-notifications -- --token <jwt> [--mark-read] [--limit 5]
// --mark-read marks each new notification read as it arrives.

import { connect, exitOnSignal, log, options } from './lib/cli.mjs';

const usage = `usage: npm run watch-notifications -- --token <jwt> [--limit 5] [--mark-read] [--url http://localhost:8003]
  env: DIARY_TOKEN, DIARY_URL`;
const opts = options({
  usage,
  need: ['token'],
  extra: { limit: { type: 'string' }, 'mark-read': { type: 'boolean' } },
});
const limit = Number(opts.limit ?? 5);

const { socket } = connect(opts, { ns: '/notifications' });
exitOnSignal(socket);
const show = (n) => `${n.is_read ? ' ' : '*'} [${n.priority}] ${n.type}: ${n.title} - ${n.message} (${n.id})`;

socket.on('notification:count_response', ({ count }) => log('[unread]', count));
socket.on('notification:created', async (n) => {
  log('[new]', show(n));
  if (opts['mark-read']) {
    const ack = await socket.emitWithAck('notification:mark_read', { notificationId: n.id });
    log('[marked read]', ack.ok ? `${n.id}, unread now ${ack.count}` : `${ack.error.code}: ${ack.error.message}`);
  }
});
socket.on('notification:updated', (u) => log('[updated]', `${u.id} read=${u.is_read} archived=${u.is_archived}`));

// On every (re)connect: the current state of the inbox.
const load = async () => {
  const page = await socket.emitWithAck('notification:list_request', { limit });
  if (!page.ok) return log('[error]', `${page.error.code}: ${page.error.message}`);
  log('[inbox]', `${page.total} notifications, latest ${page.notifications.length}:`);
  for (const n of page.notifications) log('  ', show(n));
  await socket.emitWithAck('notification:count_request');
};
socket.on('connect', load);
