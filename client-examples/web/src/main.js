// The demo's collaborative editor: one socket on the server's main namespace carries the
// entry (Yjs sync + awareness), the viewers list, the notification inbox and friends'
// presence. Quill shows the entry's Y.Text `content`; y-quill binds the two and draws
// remote cursors from awareness.
//
// URL: /demo?token=<jwt>&entry=<uuid>[&server=http://host:8003][&path=/realtime/ws]

import Quill from 'quill';
import QuillCursors from 'quill-cursors';
import { QuillBinding } from 'y-quill';
import { io } from 'socket.io-client';
import { Awareness } from 'y-protocols/awareness';
import * as Y from 'yjs';
import { EntrySync } from '../../lib/entry-sync.js';
import 'quill/dist/quill.snow.css';
import './style.css';

Quill.register('modules/cursors', QuillCursors);

const $ = (id) => document.getElementById(id);

/** Builds an element; children are nodes or text (never parsed as HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('data-')) node.setAttribute(key, value);
    else if (key === 'style') node.style.cssText = value;
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** A stable colour per user, so a user's cursor and dot match on every page. */
const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#0f8b8d', '#f032e6', '#9a6324', '#808000', '#000075'];
function colorFor(userId) {
  let h = 0;
  for (const c of userId ?? '') h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

const shortId = (id) => (id ? `${id.slice(0, 4)}…${id.slice(-4)}` : '?');
const timeOf = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '');

function showBanner(text) {
  const banner = $('banner');
  banner.textContent = text;
  banner.hidden = !text;
}

function showSetupForm(params) {
  const form = $('setup');
  form.hidden = false;
  form.token.value = params.get('token') ?? '';
  form.entry.value = params.get('entry') ?? '';
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const next = new URLSearchParams(params);
    next.set('token', form.token.value.trim());
    next.set('entry', form.entry.value.trim());
    location.search = next.toString();
  });
}

/** A page the server refused shows the reason and nothing else. */
function showRefused(text) {
  $('app').hidden = true;
  document.querySelector('.my-status').hidden = true;
  showBanner(text);
}

function start({ token, entryId, server, path }) {
  // The editor and lists appear with the first successful join, so a refused page
  // never shows an empty editor behind its banner.
  $('app').hidden = true;

  let me = null;
  const names = new Map(); // userId -> displayName, learnt from viewers lists

  const socket = io(server, {
    path,
    auth: { token },
    // socket.io-client's defaults, spelled out: reconnect for ever with exponential
    // backoff (1 s .. 5 s) and jitter, so a restarted server is not stampeded.
    reconnection: true,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 5000,
    randomizationFactor: 0.5,
  });
  // The server drops sockets that send nothing for STALE_TIMEOUT_SECS.
  socket.on('heartbeat', () => socket.emit('pong'));

  // ---- the editor -------------------------------------------------------------------
  const doc = new Y.Doc();
  const awareness = new Awareness(doc);
  const quill = new Quill('#editor', {
    theme: 'snow',
    placeholder: 'Write together…',
    modules: {
      // y-quill moves remote cursors itself (from Yjs relative positions) on every
      // change; quill-cursors' own transform on top would shift them twice.
      cursors: { hideDelayMs: 5000 },
      toolbar: [['bold', 'italic', 'underline'], [{ header: [1, 2, false] }], [{ list: 'ordered' }, { list: 'bullet' }], ['clean']],
      history: { userOnly: true },
    },
  });
  quill.disable(); // until the first join tells us our role
  const sync = new EntrySync(socket, entryId, { doc, awareness });
  const binding = new QuillBinding(sync.text, quill, awareness);

  // ---- connection status ------------------------------------------------------------
  let refused = null;
  const renderStatus = () => {
    const state = refused ? 'error' : sync.state;
    const text = {
      connecting: 'connecting…',
      syncing: 'syncing…',
      synced: 'connected',
      offline: sync.pending.length ? 'offline, reconnecting: your edits will be sent' : 'offline, reconnecting…',
      error: refused ?? `error: ${sync.lastError?.code ?? ''} ${sync.lastError?.message ?? ''}`,
    }[state];
    $('status').dataset.state = state;
    $('status-text').textContent = text;
    // Viewers and friends are only current while connected.
    $('app').dataset.online = String(state === 'synced');
  };
  sync.on('state', renderStatus);
  doc.on('update', () => sync.state !== 'synced' && renderStatus());
  socket.on('connect_error', (err) => {
    // A refusal by the server (bad or expired token, too many tabs) is final;
    // anything else is retried by the backoff.
    if (!socket.active) {
      refused = `refused: ${err.message}`;
      renderStatus();
      showRefused(`The server refused this page (${err.message}). Tokens expire: run seed-demo again for fresh links.`);
    }
  });
  socket.on('error', (e) => {
    if (e?.code === 'AUTH_ERROR') {
      refused = `${e.code}: ${e.message}`;
      renderStatus();
    }
    showBanner(`${e?.code ?? 'error'}: ${e?.message ?? ''}${e?.event ? ` (${e.event})` : ''}`);
  });
  renderStatus();

  sync.on('joined', (ack) => {
    showBanner('');
    $('app').hidden = false;
    const canEdit = ack.role === 'owner' || ack.role === 'editor';
    quill.enable(canEdit);
    const pane = document.querySelector('.editor-pane');
    pane.dataset.readonly = String(!canEdit);
    for (const button of pane.querySelectorAll('.ql-toolbar button, .ql-toolbar .ql-picker-label')) {
      button.toggleAttribute('disabled', !canEdit);
      button.setAttribute('aria-disabled', String(!canEdit));
    }
    $('entry-meta').replaceChildren(
      el('span', { class: 'title' }, ack.title || 'Untitled entry'),
      `you are ${ack.role}${canEdit ? '' : ' (read only)'}`,
    );
    $('entry-meta').title = `entry ${entryId}`;
  });
  sync.on('error', (e) => {
    if (e.event === 'join_entry_room') showRefused(`cannot open this entry: ${e.code}: ${e.message}`);
    else if (e.event === 'entry_update') showBanner(`edit refused: ${e.code}: ${e.message}`);
    renderStatus();
  });

  // ---- viewers ----------------------------------------------------------------------
  const renderViewers = (viewers) => {
    for (const v of viewers) names.set(v.userId, v.displayName);
    const mine = viewers.find((v) => v.userId === me);
    if (mine) {
      $('me').textContent = mine.displayName;
      const user = awareness.getLocalState()?.user;
      if (user?.name !== mine.displayName) awareness.setLocalStateField('user', { name: mine.displayName, color: colorFor(me) });
    }
    $('viewers').replaceChildren(
      ...viewers.map((v) =>
        el(
          'li',
          { 'data-user': v.userId },
          el('span', { class: 'dot', style: `background:${colorFor(v.userId)}` }),
          el('span', { class: 'name' }, v.displayName + (v.userId === me ? ' (you)' : '')),
          el('span', { class: 'sub' }, v.role),
        ),
      ),
    );
    renderFriends();
  };
  sync.on('viewers', renderViewers);

  // ---- friends' presence ------------------------------------------------------------
  const friends = new Map(); // userId -> {status, lastSeen}
  const renderFriends = () => {
    const rows = [...friends.entries()].sort(([a], [b]) => (names.get(a) ?? a).localeCompare(names.get(b) ?? b));
    $('friends').replaceChildren(
      ...(rows.length
        ? rows.map(([id, f]) =>
            el(
              'li',
              { 'data-user': id, 'data-status': f.status, title: id },
              el('span', { class: 'dot' }),
              el('span', { class: 'name' }, names.get(id) ?? shortId(id)),
              el('span', { class: 'sub' }, f.status === 'offline' && f.lastSeen ? `seen ${timeOf(f.lastSeen)}` : f.status),
            ),
          )
        : [el('li', { class: 'empty' }, 'no friends yet')]),
    );
  };
  socket.on('authenticated', ({ userId }) => {
    me = userId;
    document.querySelector('.my-status').hidden = false;
    if (!awareness.getLocalState()?.user) {
      awareness.setLocalStateField('user', { name: names.get(me) ?? shortId(me), color: colorFor(me) });
    }
  });
  let statusKnown = false;
  socket.on('online', ({ status, friends: list }) => {
    // The first time, the server tells us the status we chose in another tab; after a
    // reconnect we send ours again instead (a restarted server starts us at online).
    if (!statusKnown && status) $('my-status').value = chosenStatus = status;
    statusKnown = true;
    friends.clear();
    for (const f of list) {
      if (f.displayName) names.set(f.userId, f.displayName);
      friends.set(f.userId, { status: f.status, lastSeen: f.lastSeen });
    }
    renderFriends();
  });
  socket.on('friend_online', ({ userId, displayName }) => {
    if (displayName) names.set(userId, displayName);
    friends.set(userId, { status: 'online', lastSeen: null });
    renderFriends();
  });
  socket.on('offline', ({ userId, lastSeen }) => {
    friends.set(userId, { status: 'offline', lastSeen });
    renderFriends();
  });
  socket.on('presence_update', ({ userId, status, lastSeen }) => {
    if (userId === me) {
      // Another tab of ours chose it.
      $('my-status').value = chosenStatus = status;
      return;
    }
    friends.set(userId, { status, lastSeen });
    renderFriends();
  });
  // The status we chose; sent again on every reconnect, since a restarted server (or
  // one that saw our last socket go for longer than the grace period) starts us at online.
  let chosenStatus = 'online';
  const sendStatus = async () => {
    const ack = await socket.timeout(5000).emitWithAck('presence_update', { status: chosenStatus }).catch(() => null);
    if (ack && !ack.ok) showBanner(`status not changed: ${ack.error.code}: ${ack.error.message}`);
  };
  $('my-status').addEventListener('change', (e) => {
    chosenStatus = e.target.value;
    sendStatus();
  });
  socket.on('connect', () => chosenStatus !== 'online' && sendStatus());
  renderFriends();

  // ---- notification inbox -----------------------------------------------------------
  const INBOX_SIZE = 10;
  let inbox = [];
  const setCount = (count) => {
    $('unread-count').textContent = String(count);
    $('unread-count').dataset.count = String(count);
  };
  const renderInbox = () => {
    $('inbox').replaceChildren(
      ...(inbox.length
        ? inbox.map((n) =>
            el(
              'li',
              {
                'data-id': n.id,
                'data-read': String(n.is_read),
                'data-priority': n.priority,
                title: n.is_read ? '' : 'click to mark read',
                onclick: () => !n.is_read && markRead(n),
              },
              el('div', { class: 'title' }, n.priority === 'high' || n.priority === 'urgent' ? el('span', { class: 'priority' }, n.priority) : null, n.title),
              el('div', { class: 'message' }, n.message),
              el('div', { class: 'meta' }, `${n.type} · ${n.priority} · ${timeOf(n.created_at)}`),
            ),
          )
        : [el('li', { class: 'empty' }, 'nothing here')]),
    );
    $('mark-all').hidden = !inbox.some((n) => !n.is_read);
  };
  const markRead = async (n) => {
    const ack = await socket
      .timeout(5000)
      .emitWithAck('notification:mark_read', { notificationId: n.id })
      .catch(() => null);
    if (ack?.ok) {
      n.is_read = true;
      setCount(ack.count);
      renderInbox();
    }
  };
  const loadInbox = async () => {
    const page = await socket
      .timeout(5000)
      .emitWithAck('notification:list_request', { limit: INBOX_SIZE })
      .catch(() => null);
    if (page?.ok) {
      inbox = page.notifications;
      renderInbox();
    }
    socket.emit('notification:count_request');
  };
  socket.on('connect', loadInbox);
  socket.on('notification:created', (n) => {
    inbox = [n, ...inbox.filter((x) => x.id !== n.id)].slice(0, INBOX_SIZE);
    renderInbox();
  });
  socket.on('notification:updated', ({ id, is_read, is_archived }) => {
    inbox = inbox.filter((n) => !(n.id === id && is_archived));
    for (const n of inbox) if (n.id === id) n.is_read = is_read;
    renderInbox();
  });
  socket.on('notification:count_response', ({ count }) => setCount(count));
  $('mark-all').addEventListener('click', async () => {
    const ack = await socket.timeout(5000).emitWithAck('notification:mark_all_read').catch(() => null);
    if (ack?.ok) {
      for (const n of inbox) n.is_read = true;
      setCount(ack.count);
      renderInbox();
    }
  });
  renderInbox();

  // Remote users' names show by their carets while they type (quill-cursors shows them
  // only on hover otherwise), and fade a moment after they stop.
  const cursors = quill.getModule('cursors');
  const flagTimers = new Map();
  awareness.on('change', ({ added, updated }) => {
    for (const id of [...added, ...updated]) {
      if (id === doc.clientID || !awareness.getStates().get(id)?.cursor) continue;
      cursors.toggleFlag(String(id), true);
      clearTimeout(flagTimers.get(id));
      flagTimers.set(id, setTimeout(() => cursors.toggleFlag(String(id), false), 3000));
    }
  });

  // For tests and for poking around in the console.
  window.diaryDemo = { socket, doc, text: sync.text, awareness, quill, sync, binding, Y };
}

const params = new URLSearchParams(location.search);
const token = params.get('token');
const entryId = params.get('entry');
if (token && entryId) {
  start({
    token,
    entryId,
    server: params.get('server') ?? location.origin,
    path: params.get('path') ?? '/realtime/ws',
  });
} else {
  showSetupForm(params);
}
