#!/usr/bin/env node
// Connects, authenticates with a JWT and prints who the server says we are.
//   npm run connect -- --token <jwt> [--url http://localhost:8003]

import { connect, log, options } from './lib/cli.mjs';

const usage = `usage: npm run connect -- --token <jwt> [--url http://localhost:8003] [--path /realtime/ws]
  env: DIARY_TOKEN, DIARY_URL, DIARY_SOCKET_PATH`;
const opts = options({ usage, need: ['token'] });

const { socket, ready } = connect(opts, { reconnection: false });
const auth = await ready;
log('[connected]', `socket ${socket.id} over ${socket.io.engine.transport.name}`);
log('[authenticated]', `userId ${auth.userId} at ${auth.timestamp}`);
socket.close();
