// Shared by the Node examples: flags/env parsing and a connected socket.io client.
//
// Every script takes --url (DIARY_URL, default http://localhost:8003), --token
// (DIARY_TOKEN), and where it needs one --entry (DIARY_ENTRY). --path (DIARY_SOCKET_PATH)
// is the Engine.IO path, /realtime/ws unless the server sets SOCKET_PATH.

import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';

const COMMON = {
  url: { type: 'string' },
  token: { type: 'string' },
  entry: { type: 'string' },
  path: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

/**
 * Parses flags (falling back to env). `usage` is printed for --help and on error;
 * `need` lists the settings that must be present ('token', 'entry').
 */
export function options({ usage, need = ['token'], extra = {} }) {
  let parsed;
  try {
    parsed = parseArgs({ options: { ...COMMON, ...extra }, allowPositionals: false }).values;
  } catch (e) {
    fail(`${e.message}\n\n${usage}`);
  }
  if (parsed.help) {
    console.log(usage);
    process.exit(0);
  }
  const opts = {
    ...parsed,
    url: parsed.url || process.env.DIARY_URL || 'http://localhost:8003',
    token: parsed.token || process.env.DIARY_TOKEN,
    entry: parsed.entry || process.env.DIARY_ENTRY,
    path: parsed.path || process.env.DIARY_SOCKET_PATH || '/realtime/ws',
  };
  for (const key of need) {
    if (!opts[key]) fail(`missing --${key} (or DIARY_${key.toUpperCase()})\n\n${usage}`);
  }
  return opts;
}

/** Exits with `message`: code 2 for a usage error, 1 when the server refused us. */
export function fail(message, code = 2) {
  console.error(`error: ${message}`);
  process.exit(code);
}

/** Prints one line, prefixed with the time, so watchers read like a log. */
export function log(...parts) {
  const time = new Date().toISOString().slice(11, 23);
  console.log(time, ...parts);
}

/**
 * A socket on namespace `ns` that reconnects by itself and answers heartbeats (a socket
 * that sends nothing for STALE_TIMEOUT_SECS is dropped by the server).
 *
 * Returns `{socket, ready}` at once, so the caller can register its event handlers
 * before any packet can arrive (one polling response may carry `authenticated` and the
 * events that follow it, all dispatched in the same tick). `ready` resolves with the
 * `authenticated` payload; a refusal by the server exits with its reason.
 */
export function connect({ url, token, path }, { ns = '/', reconnection = true } = {}) {
  const socket = io(new URL(ns, url).href, {
    path,
    auth: { token },
    reconnection,
    // socket.io-client's defaults, spelled out: exponential backoff with jitter.
    reconnectionDelay: 1000,
    reconnectionDelayMax: 5000,
    randomizationFactor: 0.5,
  });
  socket.on('heartbeat', () => socket.emit('pong'));
  socket.on('error', (e) => log('[error]', JSON.stringify(e)));
  const ready = new Promise((resolve) => {
    socket.once('authenticated', resolve);
    socket.on('connect_error', (err) => {
      // A refusal by the server (bad token, too many connections) is final; a network
      // error is retried by socket.io-client's backoff.
      if (!socket.active) fail(`connection refused: ${err.message}`, 1);
      log('[connection]', `retrying: ${err.message}`);
    });
  });
  return { socket, ready };
}

/** Closes the socket and exits on Ctrl-C / SIGTERM. */
export function exitOnSignal(socket) {
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      socket.close();
      process.exit(0);
    });
  }
}
