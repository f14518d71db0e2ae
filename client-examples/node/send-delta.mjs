#!/usr/bin/env node
// Sends one Quill delta to an entry, as the diary app's existing editors do, and prints
// the server's ack (the entry's new version).
//   npm run send-delta -- --token <jwt> --entry <uuid> --insert "Hello"   (appends)
//   npm run send-delta -- --token <jwt> --entry <uuid> --insert "Hi " --at 0
//   npm run send-delta -- --token <jwt> --entry <uuid> --delta '{"ops":[{"retain":5},{"delete":1}]}'
//
// The delta carries `baseVersion` (the version we saw when joining), so if someone else
// edits in between, the server rebases it through the CRDT instead of applying it at a
// stale position.

import { connect, fail, log, options } from './lib/cli.mjs';

const usage = `usage: npm run send-delta -- --token <jwt> --entry <uuid> (--insert <text> [--at <index>] | --delta <json>)
  [--bold] [--url http://localhost:8003]
  env: DIARY_TOKEN, DIARY_ENTRY, DIARY_URL`;
const opts = options({
  usage,
  need: ['token', 'entry'],
  extra: { insert: { type: 'string' }, at: { type: 'string' }, delta: { type: 'string' }, bold: { type: 'boolean' } },
});
if ((opts.insert === undefined) === (opts.delta === undefined)) fail(`give exactly one of --insert or --delta\n\n${usage}`);

const { socket, ready } = connect(opts, { reconnection: false });
await ready;
const joined = await socket.emitWithAck('join_entry_room', { entryId: opts.entry });
if (!joined.ok) fail(`join refused: ${joined.error.code}: ${joined.error.message}`, 1);
log('[joined]', `as ${joined.role}, version ${joined.version}, text ${JSON.stringify(joined.content)}`);

let delta;
if (opts.delta !== undefined) {
  try {
    delta = JSON.parse(opts.delta);
  } catch (e) {
    fail(`--delta is not JSON: ${e.message}`);
  }
} else {
  const at = opts.at === undefined ? joined.content.length : Number(opts.at);
  if (!Number.isInteger(at) || at < 0) fail('--at must be a non-negative integer');
  const insert = opts.bold ? { insert: opts.insert, attributes: { bold: true } } : { insert: opts.insert };
  delta = { ops: at > 0 ? [{ retain: at }, insert] : [insert] };
}

const ack = await socket.timeout(10000).emitWithAck('entry_edit', {
  entryId: opts.entry,
  delta,
  baseVersion: joined.version,
});
socket.close();
if (!ack.ok) fail(`edit refused: ${ack.error.code}: ${ack.error.message}`, 1);
log('[sent]', JSON.stringify(delta.ops));
log('[ack]', `ok, version ${ack.version}`);
