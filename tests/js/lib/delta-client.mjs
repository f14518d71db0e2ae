// A plain-text Quill delta toolkit and a delta (entry_edit) client that keeps an OT model
// of the entry, shared by the delta and cluster tests.

import assert from 'node:assert/strict';
import { request, withTimeout } from './harness.mjs';

// ---------------------------------------------------------------------------------------
// A tiny Quill delta toolkit for plain text (attributes are carried but not modelled).

const opLength = (op) =>
  op.delete ?? (typeof op.retain === 'number' ? op.retain : typeof op.insert === 'string' ? op.insert.length : 1);

/** Applies `ops` to `text`; throws when the delta does not fit. */
export function applyDelta(text, ops) {
  let out = '';
  let at = 0;
  for (const op of ops) {
    if (typeof op.insert === 'string') out += op.insert;
    else if (op.insert !== undefined) out += '\uFFFC';
    else if (typeof op.retain === 'number') {
      if (at + op.retain > text.length) throw new Error(`retain past end: ${JSON.stringify(ops)} on ${text.length}`);
      out += text.slice(at, at + op.retain);
      at += op.retain;
    } else if (typeof op.delete === 'number') {
      if (at + op.delete > text.length) throw new Error(`delete past end: ${JSON.stringify(ops)} on ${text.length}`);
      at += op.delete;
    } else throw new Error(`unknown op ${JSON.stringify(op)}`);
  }
  return out + text.slice(at);
}

/** Walks a delta's ops, splitting them to the requested lengths (Quill's OpIterator). */
class OpIter {
  constructor(ops) {
    this.ops = ops;
    this.i = 0;
    this.offset = 0;
  }
  hasNext() {
    return this.i < this.ops.length;
  }
  peekType() {
    const op = this.ops[this.i];
    if (!op) return 'retain';
    return op.insert !== undefined ? 'insert' : op.delete !== undefined ? 'delete' : 'retain';
  }
  peekLength() {
    const op = this.ops[this.i];
    return op ? opLength(op) - this.offset : Infinity;
  }
  next(length = Infinity) {
    const op = this.ops[this.i];
    if (!op) return { retain: Infinity };
    const left = opLength(op) - this.offset;
    const take = Math.min(length, left);
    const start = this.offset;
    if (take === left) {
      this.i += 1;
      this.offset = 0;
    } else this.offset += take;
    if (op.delete !== undefined) return { delete: take };
    if (op.retain !== undefined) return { retain: take, attributes: op.attributes };
    if (typeof op.insert === 'string') return { insert: op.insert.slice(start, start + take), attributes: op.attributes };
    return { insert: op.insert, attributes: op.attributes };
  }
}

/**
 * Quill's `a.transform(b, aFirst)`: `b` rewritten to apply after `a`. `aFirst` breaks
 * ties between inserts at one position (true: `a`'s insert stays left).
 */
export function transform(a, b, aFirst) {
  const ai = new OpIter(a);
  const bi = new OpIter(b);
  const out = [];
  const push = (op) => {
    if (op.retain === 0 || op.delete === 0) return;
    out.push(op);
  };
  while (ai.hasNext() || bi.hasNext()) {
    if (ai.peekType() === 'insert' && (aFirst || bi.peekType() !== 'insert')) {
      push({ retain: opLength(ai.next()) });
    } else if (bi.peekType() === 'insert') {
      push(bi.next());
    } else {
      const n = Math.min(ai.peekLength(), bi.peekLength());
      const aOp = ai.next(n);
      const bOp = bi.next(n);
      if (aOp.delete !== undefined) continue;
      if (bOp.delete !== undefined) push(bOp);
      else push({ retain: n, ...(bOp.attributes ? { attributes: bOp.attributes } : {}) });
    }
  }
  while (out.length && out.at(-1).retain !== undefined && !out.at(-1).attributes) out.pop();
  return out;
}

// ---------------------------------------------------------------------------------------
// A delta client of the main namespace, with a plain-text model of the entry.

export class DeltaClient {
  constructor(socket, entryId, name = 'client') {
    this.socket = socket;
    this.entryId = entryId;
    this.name = name;
    this.text = null;
    this.version = null; // the server version `text` (minus pending edits) reflects
    this.pending = []; // own edits sent, not yet known to be applied: [{ops}]
    this.received = []; // every relayed entry_edit, in arrival order
    this.early = []; // relays that overtook the join ack: the server must never do that
    this.waiters = [];
    socket.on('entry_edit', (e) => {
      if (e.entryId !== entryId) return;
      this.received.push(e);
      if (this.version === null) this.early.push(e);
      else this.integrate(e);
    });
  }

  async join() {
    const ack = await request(this.socket, 'join_entry_room', { entryId: this.entryId });
    assert.equal(ack.ok, true, `${this.name} join: ${JSON.stringify(ack)}`);
    this.text = ack.content;
    this.version = ack.version;
    assert.deepEqual(this.early, [], `${this.name}: a relay arrived before the join ack`);
    return ack;
  }

  /** A remote change the server applied as version `e.version`. */
  integrate(e) {
    const gap = e.version - this.version - 1;
    assert.ok(gap >= 0, `${this.name}: version went back (${this.version} -> ${e.version})`);
    // Versions we were not sent are our own edits, applied in the order we sent them.
    assert.ok(gap <= this.pending.length, `${this.name}: missed ${gap - this.pending.length} remote versions`);
    this.pending.splice(0, gap);
    // The remote change was applied before our remaining edits: rebase it over them
    // (it stays left on ties), and them over it.
    let remote = e.delta.ops;
    for (const p of this.pending) {
      const rebased = transform(p.ops, remote, false);
      p.ops = transform(remote, p.ops, true);
      remote = rebased;
    }
    this.text = applyDelta(this.text, remote);
    this.version = e.version;
    this.wake();
  }

  /** Applies `ops` locally and sends them; resolves with the ack. */
  edit(ops, { base } = {}) {
    const payload = { entryId: this.entryId, delta: { ops } };
    if (base !== undefined) payload.baseVersion = base;
    this.text = applyDelta(this.text, ops);
    const mine = { ops };
    this.pending.push(mine);
    return request(this.socket, 'entry_edit', payload, 15000).then((ack) => {
      assert.equal(ack.ok, true, `${this.name} edit refused: ${JSON.stringify(ack)}`);
      const i = this.pending.indexOf(mine);
      if (i >= 0) {
        this.pending.splice(0, i + 1);
        this.version = Math.max(this.version, ack.version);
      }
      this.wake();
      return ack;
    });
  }

  /** Resolves once the model reflects server version `v` with nothing pending. */
  until(v, ms = 10000) {
    const done = () => this.version >= v && this.pending.length === 0;
    if (done()) return Promise.resolve();
    return withTimeout(
      new Promise((resolve) => this.waiters.push({ done, resolve })),
      ms,
      `${this.name} at version ${v} (now ${this.version}, ${this.pending.length} pending)`,
    );
  }

  wake() {
    this.waiters = this.waiters.filter((w) => (w.done() ? (w.resolve(), false) : true));
  }
}

