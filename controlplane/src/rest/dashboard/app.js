// Corral's live picture: lists and watches nodes, pods and ReplicaSets through the REST API
// (JSON lines over a streamed fetch), with the bearer token from the URL's fragment, and draws
// one column per node with the pods as tiles grouped by owner. Names reach the DOM only
// through textContent and attribute values; the page holds no other data.
'use strict';

const RESOURCES = {
  nodes: '/api/v1/nodes',
  pods: '/api/v1/pods',
  replicasets: '/apis/apps/v1/replicasets',
};
const REVISION = 'deployment.kubernetes.io/revision';
const state = { nodes: new Map(), pods: new Map(), replicasets: new Map() };
const live = { nodes: false, pods: false, replicasets: false };
// For tests and the curious: when each resourceVersion was drawn (epoch ms).
const probe = { drawn: [], renders: 0, lists: 0, watches: 0 };
window.corralDashboard = probe;
let pending = [];
let scheduled = false;
let stopped = false;

function takeToken() {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (m) {
    let value = m[1];
    try {
      value = decodeURIComponent(value);
    } catch (e) {
      // A mangled fragment: use it as it is; the API answers 401 if it is wrong.
    }
    sessionStorage.setItem('corral-token', value);
    // Out of the address bar and the history.
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem('corral-token');
}

const token = takeToken();

function key(obj) {
  const m = obj.metadata || {};
  return (m.namespace ? m.namespace + '/' : '') + m.name;
}

function say(text) {
  const el = document.getElementById('message');
  el.textContent = text;
  el.hidden = !text;
}

function showStatus() {
  const el = document.getElementById('status');
  const all = Object.values(live).every(Boolean);
  el.textContent = stopped ? 'stopped' : all ? 'live' : 'reconnecting';
  el.className = 'status ' + (stopped ? 'broken' : all ? 'live' : '');
}

class Refused extends Error {}

async function request(url, signal) {
  const resp = await fetch(url, {
    headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
    cache: 'no-store',
    signal,
  });
  if (resp.status === 401 || resp.status === 403) {
    let msg = resp.status === 401 ? 'the token was refused (expired?)' : 'not allowed';
    try { msg = (await resp.json()).message || msg; } catch (e) { /* keep msg */ }
    throw new Refused(msg + ': run `corral dashboard` again');
  }
  return resp;
}

// Applies one watch event to the store; returns its resourceVersion.
function apply(kind, type, obj) {
  const rv = (obj.metadata || {}).resourceVersion;
  if (type === 'ADDED' || type === 'MODIFIED') state[kind].set(key(obj), obj);
  else if (type === 'DELETED') state[kind].delete(key(obj));
  return rv;
}

function changed(kind, rv) {
  pending.push({ kind, rv: Number(rv) });
  if (!scheduled) {
    scheduled = true;
    setTimeout(render, 0);
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// List, then watch from the list's resourceVersion; resume from the last one seen after a
// break, list again when the server says it is too old (410).
async function follow(kind) {
  const base = RESOURCES[kind];
  let rv = null;
  let backoff = 250;
  for (;;) {
    try {
      if (rv === null) {
        const resp = await request(base);
        if (!resp.ok) throw new Error(kind + ': list answered ' + resp.status);
        const list = await resp.json();
        probe.lists += 1;
        state[kind].clear();
        for (const item of list.items || []) state[kind].set(key(item), item);
        rv = list.metadata.resourceVersion;
        changed(kind, rv);
      }
      const url = base + '?watch=1&allowWatchBookmarks=true&resourceVersion=' + encodeURIComponent(rv);
      const resp = await request(url);
      if (resp.status === 410) { rv = null; continue; }
      if (!resp.ok) throw new Error(kind + ': watch answered ' + resp.status);
      probe.watches += 1;
      live[kind] = true;
      showStatus();
      backoff = 250;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line);
          if (ev.type === 'ERROR') {
            if ((ev.object || {}).code === 410) rv = null;
            throw new Error(kind + ': ' + ((ev.object || {}).message || 'watch error'));
          }
          if (ev.type === 'BOOKMARK') { rv = ev.object.metadata.resourceVersion; continue; }
          rv = apply(kind, ev.type, ev.object) || rv;
          changed(kind, rv);
        }
      }
    } catch (e) {
      live[kind] = false;
      if (e instanceof Refused) {
        stopped = true;
        say(e.message);
        showStatus();
        return;
      }
      showStatus();
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 4000);
    }
  }
}

function readyCondition(obj) {
  const conds = ((obj.status || {}).conditions) || [];
  const c = conds.find((x) => x.type === 'Ready');
  return c ? c.status : 'Unknown';
}

// pending, notready, ready, terminating, succeeded, failed or unknown.
function podState(p) {
  if ((p.metadata || {}).deletionTimestamp) return 'terminating';
  const phase = (p.status || {}).phase || 'Pending';
  if (phase === 'Pending') return 'pending';
  if (phase === 'Succeeded') return 'succeeded';
  if (phase === 'Failed') return 'failed';
  if (phase === 'Running') return readyCondition(p) === 'True' ? 'ready' : 'notready';
  return 'unknown';
}

// The pod's owner group: a Deployment's revision (through its ReplicaSet), a DaemonSet, a
// StatefulSet, another controller, or none.
function owner(p) {
  const m = p.metadata || {};
  const ns = m.namespace || '';
  const prefix = ns && ns !== 'default' ? ns + '/' : '';
  const ref = (m.ownerReferences || []).find((r) => r.controller);
  if (!ref) return { key: '~bare', label: 'bare pods' };
  if (ref.kind === 'ReplicaSet') {
    const rs = state.replicasets.get(ns + '/' + ref.name);
    const rm = (rs && rs.metadata) || {};
    const dep = (rm.ownerReferences || []).find((r) => r.controller && r.kind === 'Deployment');
    if (dep) {
      const rev = (rm.annotations || {})[REVISION] || '?';
      return {
        key: 'Deployment/' + ns + '/' + dep.name + '/' + rev,
        label: 'deployment ' + prefix + dep.name + ' · rev ' + rev,
      };
    }
  }
  return {
    key: ref.kind + '/' + ns + '/' + ref.name,
    label: ref.kind.toLowerCase() + ' ' + prefix + ref.name,
  };
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function column(name, title, stateText, classes, pods) {
  const col = el('section', 'node ' + classes);
  col.dataset.node = name;
  col.append(el('h2', '', title), el('span', 'state', stateText));
  const groups = new Map();
  for (const p of pods) {
    const o = owner(p);
    if (!groups.has(o.key)) groups.set(o.key, { label: o.label, pods: [] });
    groups.get(o.key).pods.push(p);
  }
  for (const k of [...groups.keys()].sort()) {
    const g = groups.get(k);
    const box = el('div', 'group');
    box.dataset.owner = k;
    box.append(el('h3', '', g.label + ' (' + g.pods.length + ')'));
    const tiles = el('div', 'tiles');
    g.pods.sort((a, b) => key(a).localeCompare(key(b)));
    for (const p of g.pods) {
      const st = podState(p);
      const t = el('span', 'pod ' + st, p.metadata.name);
      t.dataset.pod = key(p);
      t.title = key(p) + ': ' + st;
      tiles.append(t);
    }
    box.append(tiles);
    col.append(box);
  }
  return col;
}

function render() {
  scheduled = false;
  const byNode = new Map();
  for (const p of state.pods.values()) {
    const n = (p.spec || {}).nodeName || '';
    if (!byNode.has(n)) byNode.set(n, []);
    byNode.get(n).push(p);
  }
  const cols = [];
  if (byNode.has('')) cols.push(column('', 'Unscheduled', 'pending pods', 'unscheduled', byNode.get('')));
  const names = new Set([...state.nodes.keys(), ...byNode.keys()]);
  names.delete('');
  for (const name of [...names].sort()) {
    const node = state.nodes.get(name);
    const ready = node ? readyCondition(node) : 'gone';
    const text = ready === 'True' ? 'Ready' : ready === 'False' ? 'NotReady' : ready === 'gone' ? 'no such node' : 'Unknown (stopped?)';
    let cls = ready === 'True' ? 'up' : 'down';
    if (node && (node.spec || {}).unschedulable) cls += ' cordoned';
    cols.push(column(name, name, text, cls, byNode.get(name) || []));
  }
  document.getElementById('board').replaceChildren(...cols);
  const now = Date.now();
  for (const c of pending) probe.drawn.push({ kind: c.kind, rv: c.rv, t: now });
  if (probe.drawn.length > 2000) probe.drawn.splice(0, probe.drawn.length - 2000);
  pending = [];
  probe.renders += 1;
}

function start() {
  if (!token) {
    stopped = true;
    say('No token: open the URL `corral dashboard` prints (it carries a read-only token).');
    showStatus();
    return;
  }
  for (const kind of Object.keys(RESOURCES)) follow(kind);
}

start();
