/*
 * tracemart collector UI: a small router and four views (search, trace,
 * service map, dashboard) over the collector's JSON API. Plain DOM, no
 * framework, no build step. Every value that came from spans is inserted
 * with textContent / createTextNode, never as HTML.
 */
'use strict';

/* ------------------------------------------------------------ helpers */

const main = document.getElementById('main');
const statusEl = document.getElementById('status');
let refreshTimer = null;
let viewToken = 0; /* bumps on navigation so late answers of an old view are ignored */

/* el('div', {class: 'x', onclick: fn}, 'text', child, ...) — strings become text nodes. */
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    e.appendChild(typeof kid === 'string' || typeof kid === 'number' ? document.createTextNode(String(kid)) : kid);
  }
  return e;
}

const SVGNS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null) continue;
    e.appendChild(typeof kid === 'string' || typeof kid === 'number' ? document.createTextNode(String(kid)) : kid);
  }
  return e;
}

async function api(path) {
  const r = await fetch(path, {headers: {Accept: 'application/json'}});
  let body = null;
  try { body = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    const msg = body && Array.isArray(body.message) ? body.message.join('; ') : 'HTTP ' + r.status;
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return body;
}

/* Durations arrive in ns. */
function fmtDur(ns) {
  ns = Number(ns) || 0;
  if (ns < 1e3) return ns + 'ns';
  if (ns < 1e6) return (ns / 1e3).toFixed(ns < 1e4 ? 1 : 0) + 'µs';
  if (ns < 1e9) return (ns / 1e6).toFixed(ns < 1e7 ? 2 : 1) + 'ms';
  if (ns < 60e9) return (ns / 1e9).toFixed(2) + 's';
  return Math.floor(ns / 60e9) + 'm' + String(Math.round((ns % 60e9) / 1e9)).padStart(2, '0') + 's';
}

/* startTimeUnixNano is a decimal string (beyond 2^53): ms precision is plenty here. */
/* Rates: per second when at least one, else per minute or per hour. */
function fmtRate(r) {
  if (r >= 1) return r.toFixed(r < 10 ? 2 : 1) + '/s';
  if (r * 60 >= 1) return (r * 60).toFixed(1) + '/min';
  return (r * 3600).toFixed(r * 3600 < 10 ? 2 : 1) + '/h';
}

function nsToMs(s) { return Number(BigInt(s || '0') / 1000000n); }
function nsDiff(a, b) { return Number(BigInt(a || '0') - BigInt(b || '0')); }

function fmtTime(s) {
  const d = new Date(nsToMs(s));
  return d.toLocaleString(undefined, {hour12: false}) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function ago(s) {
  const sec = Math.max(0, (Date.now() - nsToMs(s)) / 1000);
  if (sec < 60) return Math.floor(sec) + 's ago';
  if (sec < 3600) return Math.floor(sec / 60) + 'm ago';
  if (sec < 86400) return Math.floor(sec / 3600) + 'h ago';
  return Math.floor(sec / 86400) + 'd ago';
}

/*
 * A colour per service: known services (the sorted /api/services list,
 * loaded at start) take distinct palette entries in order, so they are
 * the same on every view; a service seen later gets a hue from its name.
 */
const PALETTE = ['#2563eb', '#16a34a', '#db2777', '#ea580c', '#7c3aed', '#0891b2',
  '#ca8a04', '#dc2626', '#4f46e5', '#059669', '#9333ea', '#0d9488'];
const colourCache = new Map();
function assignColours(names) {
  names.forEach((n, i) => { if (i < PALETTE.length * 2) colourCache.set(n, i < PALETTE.length ? PALETTE[i] : shade(PALETTE[i % PALETTE.length])); });
}
function shade(hex) { return 'color-mix(in srgb, ' + hex + ' 60%, #000)'; }
function colour(name) {
  if (!colourCache.has(name)) {
    let h = 2166136261;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
    colourCache.set(name, 'hsl(' + ((h >>> 0) % 360) + ', 55%, 45%)');
  }
  return colourCache.get(name);
}

function dot(name) {
  const d = el('span', {class: 'dot'});
  d.style.background = colour(name);
  return d;
}

function chip(name) { return el('span', {class: 'chip'}, dot(name), name); }

function setStatus(text) { statusEl.textContent = text; }

function notice(err) { return el('div', {class: 'notice'}, String(err.message || err)); }

/* ------------------------------------------------------------- router */

function navigate(url, replace) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[data-nav]');
  if (!a || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', route);

function navLink(href, ...kids) { return el('a', {href, 'data-nav': true}, ...kids); }
function traceHref(id) { return '/trace/' + encodeURIComponent(id); }

function route() {
  viewToken++;
  if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; }
  const path = location.pathname;
  let view = 'search';
  main.replaceChildren();
  setStatus('');
  const m = path.match(/^\/trace\/([^/]+)$/);
  if (m) { view = 'trace'; showTrace(decodeURIComponent(m[1])); }
  else if (path === '/map') { view = 'map'; showMap(); }
  else if (path === '/dashboard') { view = 'dashboard'; showDashboard(); }
  else showSearch();
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.view === view);
}

/* ------------------------------------------------------------- search */

const LOOKBACKS = [['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['6h', 'Last 6 hours'],
  ['24h', 'Last day'], ['168h', 'Last 7 days'], ['', 'All']];

async function showSearch() {
  const token = viewToken;
  const q = new URLSearchParams(location.search);
  const f = {};
  const svcSel = f.service = el('select', {name: 'service', id: 'f-service'}, el('option', {value: ''}, 'All services'));
  const opSel = f.operation = el('select', {name: 'operation', id: 'f-operation'}, el('option', {value: ''}, 'All operations'));
  f.tag = el('input', {name: 'tag', id: 'f-tag', placeholder: 'key:value', value: q.get('tag') || ''});
  f.minDuration = el('input', {name: 'minDuration', class: 'small', placeholder: 'e.g. 100ms', value: q.get('minDuration') || ''});
  f.maxDuration = el('input', {name: 'maxDuration', class: 'small', placeholder: 'e.g. 1.5s', value: q.get('maxDuration') || ''});
  f.error = el('select', {name: 'error'}, el('option', {value: ''}, 'Any'),
    el('option', {value: 'true'}, 'Only errors'), el('option', {value: 'false'}, 'No errors'));
  f.error.value = q.get('error') || '';
  f.lookback = el('select', {name: 'lookback'}, LOOKBACKS.map(([v, t]) => el('option', {value: v}, t)));
  f.lookback.value = q.has('lookback') ? q.get('lookback') : '';
  f.limit = el('select', {name: 'limit'}, ['20', '50', '100', '500'].map((v) => el('option', {value: v}, v)));
  f.limit.value = q.get('limit') || '20';
  const auto = el('input', {type: 'checkbox', id: 'f-auto'});
  auto.checked = q.get('refresh') === '1';

  const form = el('form', {class: 'filters panel', id: 'search-form'},
    el('label', {}, 'Service', svcSel), el('label', {}, 'Operation', opSel),
    el('label', {}, 'Tag', f.tag), el('label', {}, 'Min duration', f.minDuration),
    el('label', {}, 'Max duration', f.maxDuration), el('label', {}, 'Status', f.error),
    el('label', {}, 'Time', f.lookback), el('label', {}, 'Limit', f.limit),
    el('button', {type: 'submit', id: 'f-submit'}, 'Find traces'),
    el('label', {class: 'check'}, auto, 'Auto-refresh (5 s)'));
  const results = el('div', {id: 'results'});
  main.append(form, results);

  function params() {
    const p = new URLSearchParams();
    for (const k of ['service', 'operation', 'tag', 'minDuration', 'maxDuration', 'error', 'limit']) {
      const v = f[k].value.trim();
      if (v && !(k === 'limit' && v === '20')) p.set(k, v);
    }
    if (f.lookback.value) p.set('lookback', f.lookback.value);
    if (auto.checked) p.set('refresh', '1');
    return p;
  }

  async function loadOperations(selected) {
    opSel.replaceChildren(el('option', {value: ''}, 'All operations'));
    if (!svcSel.value) return;
    try {
      const r = await api('/api/operations?service=' + encodeURIComponent(svcSel.value));
      for (const o of r.operations) opSel.append(el('option', {value: o.name}, o.name));
      if (selected) opSel.value = selected;
    } catch (e) { /* the search itself reports errors */ }
  }

  const sort = {key: 'start', dir: -1};
  let last = [];

  function renderResults() {
    const rows = last.slice().sort((a, b) => {
      const va = sortValue(a, sort.key), vb = sortValue(b, sort.key);
      return (va < vb ? -1 : va > vb ? 1 : 0) * sort.dir;
    });
    const maxDur = Math.max(1, ...rows.map((t) => t.durationNano));
    const cols = [['root', 'Trace'], ['services', 'Services'], ['spans', 'Spans', 'num'],
      ['errors', 'Errors', 'num'], ['duration', 'Duration', 'num'], ['start', 'Started', 'num']];
    const head = el('tr', {}, cols.map(([k, t, c]) => {
      const th = el('th', {class: 'sortable ' + (c || '') + (sort.key === k ? (sort.dir > 0 ? ' sorted-asc' : ' sorted-desc') : ''),
        'data-sort': k}, t);
      th.addEventListener('click', () => {
        if (sort.key === k) sort.dir = -sort.dir; else { sort.key = k; sort.dir = k === 'root' || k === 'services' ? 1 : -1; }
        renderResults();
      });
      return th;
    }));
    const body = el('tbody', {}, rows.map((t) => {
      const bar = el('span', {class: 'durbar'});
      bar.style.width = Math.max(2, Math.round(80 * t.durationNano / maxDur)) + 'px';
      const tr = el('tr', {class: 'clickable trace-row', 'data-trace-id': t.traceId},
        el('td', {}, navLink(traceHref(t.traceId), el('strong', {}, t.rootService), ': ', t.rootName),
          el('div', {class: 'mono muted'}, t.traceId)),
        el('td', {}, t.services.map(chip)),
        el('td', {class: 'num'}, String(t.spanCount)),
        el('td', {class: 'num'}, t.errorCount ? el('span', {class: 'badge-err'}, String(t.errorCount)) : '0'),
        el('td', {class: 'num'}, bar, fmtDur(t.durationNano)),
        el('td', {class: 'num', title: fmtTime(t.startTimeUnixNano)}, ago(t.startTimeUnixNano)));
      tr.addEventListener('click', (ev) => { if (!ev.target.closest('a')) navigate(traceHref(t.traceId)); });
      return tr;
    }));
    results.replaceChildren(rows.length
      ? el('table', {class: 'grid', id: 'results-table'}, el('thead', {}, head), body)
      : el('div', {class: 'panel empty'}, 'No traces match. Send spans to POST /v1/traces (OTLP JSON) or widen the filters.'));
  }

  async function search() {
    const p = params();
    const apiParams = new URLSearchParams(p);
    apiParams.delete('lookback');
    apiParams.delete('refresh');
    if (f.lookback.value) apiParams.set('start', '-' + f.lookback.value);
    try {
      const r = await api('/api/traces?' + apiParams.toString());
      if (token !== viewToken) return;
      last = r.traces;
      renderResults();
      setStatus(r.traces.length + (r.traces.length === 1 ? ' trace' : ' traces') + ' · updated ' + new Date().toLocaleTimeString(undefined, {hour12: false}));
    } catch (e) {
      if (token !== viewToken) return;
      results.replaceChildren(notice(e));
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const s = params().toString();
    history.replaceState(null, '', '/' + (s ? '?' + s : ''));
    search();
  });
  svcSel.addEventListener('change', () => loadOperations(''));
  function setAuto() {
    if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; }
    if (auto.checked) refreshTimer = setInterval(search, 5000);
  }
  auto.addEventListener('change', () => {
    const s = params().toString();
    history.replaceState(null, '', '/' + (s ? '?' + s : ''));
    setAuto();
  });

  try {
    const r = await api('/api/services');
    if (token !== viewToken) return;
    for (const s of r.services) svcSel.append(el('option', {value: s}, s));
    svcSel.value = q.get('service') || '';
    if (svcSel.value !== (q.get('service') || '')) {
      /* a service not seen yet still filters */
      svcSel.append(el('option', {value: q.get('service')}, q.get('service')));
      svcSel.value = q.get('service');
    }
    await loadOperations(q.get('operation'));
  } catch (e) { results.replaceChildren(notice(e)); }
  setAuto();
  search();
}

function sortValue(t, key) {
  switch (key) {
    case 'root': return (t.rootService + ': ' + t.rootName).toLowerCase();
    case 'services': return t.services.length;
    case 'spans': return t.spanCount;
    case 'errors': return t.errorCount;
    case 'duration': return t.durationNano;
    default: return nsToMs(t.startTimeUnixNano);
  }
}

/* -------------------------------------------------------------- trace */

async function showTrace(id) {
  const token = viewToken;
  main.append(el('div', {class: 'muted'}, 'Loading trace ', id, '…'));
  let t;
  try {
    t = await api('/api/traces/' + encodeURIComponent(id));
  } catch (e) {
    if (token !== viewToken) return;
    main.replaceChildren(e.status === 404 ? el('div', {class: 'panel empty'}, 'Trace ' + id + ' was not found (yet): spans may still be on their way.') : notice(e));
    return;
  }
  if (token !== viewToken) return;
  main.replaceChildren();
  renderTrace(t);
}

function renderTrace(t) {
  const spans = t.spans;
  const byId = new Map();
  for (const s of spans) byId.set(s.spanId, {span: s, kids: [], depth: 0, collapsed: false});
  const roots = [];
  for (const n of byId.values()) {
    const p = n.span.parentSpanId && byId.get(n.span.parentSpanId);
    if (p && p !== n) p.kids.push(n); else roots.push(n);
  }
  const startOf = (n) => BigInt(n.span.startTimeUnixNano);
  const cmp = (a, b) => (startOf(a) < startOf(b) ? -1 : startOf(a) > startOf(b) ? 1 : 0);
  roots.sort(cmp);
  for (const n of byId.values()) n.kids.sort(cmp);

  let t0 = null, t1 = null;
  for (const s of spans) {
    const st = BigInt(s.startTimeUnixNano), en = st + BigInt(s.durationNano);
    if (t0 === null || st < t0) t0 = st;
    if (t1 === null || en > t1) t1 = en;
  }
  const total = spans.length ? Math.max(1, Number(t1 - t0)) : 1;
  const services = [...new Set(spans.map((s) => s.service))];
  const errors = spans.filter((s) => s.status && s.status.code === 2).length;
  const root = roots[0] && roots[0].span;

  /* log lines per span (when the collector receives the process's logs) */
  const logsBySpan = new Map();
  for (const l of t.logs || []) {
    if (!logsBySpan.has(l.spanId)) logsBySpan.set(l.spanId, []);
    logsBySpan.get(l.spanId).push(l);
  }

  /* linkedFrom per target span, for the details and the row marks */
  const linkedTo = new Map();
  for (const l of t.linkedFrom) {
    if (!linkedTo.has(l.linkedSpanId)) linkedTo.set(l.linkedSpanId, []);
    linkedTo.get(l.linkedSpanId).push(l);
  }

  main.append(el('div', {class: 'panel'},
    el('div', {class: 'trace-head'},
      el('h1', {id: 'trace-title'}, root ? root.service + ': ' + root.name : 'Trace'),
      el('span', {class: 'meta mono'}, t.traceId),
      el('span', {class: 'meta'}, spans.length + ' span' + (spans.length === 1 ? '' : 's') + ' · ' + services.length + ' service' + (services.length === 1 ? '' : 's') + ' · ' + fmtDur(total) +
        (t0 !== null ? ' · started ' + fmtTime(String(t0)) : '')),
      errors ? el('span', {class: 'badge-err'}, errors + ' error' + (errors > 1 ? 's' : '')) : null),
    el('div', {class: 'legend', id: 'trace-services'}, services.map(chip))));

  const outLinks = [];
  for (const s of spans) for (const l of s.links || []) outLinks.push({from: s, link: l});
  if (outLinks.length || t.linkedFrom.length) {
    const panel = el('div', {class: 'panel links-panel', id: 'links-panel'});
    if (outLinks.length) {
      panel.append(el('strong', {}, 'Links to other traces'),
        el('ul', {}, outLinks.map(({from, link}) => el('li', {},
          from.service + ': ' + from.name + ' → ',
          navLink(traceHref(link.traceId), 'trace ' + link.traceId.slice(0, 16) + '… span ' + link.spanId)))));
      for (const a of panel.querySelectorAll('a')) a.classList.add('link-out');
    }
    if (t.linkedFrom.length) {
      panel.append(el('strong', {}, 'Linked from'),
        el('ul', {id: 'linked-from'}, t.linkedFrom.map((l) => {
          const target = byId.get(l.linkedSpanId);
          return el('li', {},
            navLink(traceHref(l.traceId), 'trace ' + l.traceId.slice(0, 16) + '… span ' + l.spanId),
            ' → ' + (target ? target.span.service + ': ' + target.span.name : 'span ' + l.linkedSpanId));
        })));
      for (const a of panel.querySelectorAll('#linked-from a')) a.classList.add('link-in');
    }
    main.append(panel);
  }

  const wf = el('div', {class: 'waterfall', id: 'waterfall'});
  const details = el('div', {class: 'details', id: 'span-details'});
  main.append(wf, details);
  let selected = null;

  function axis() {
    const track = el('div', {class: 'wf-track'});
    for (let i = 0; i <= 4; i++) {
      const tick = el('span', {class: 'wf-tick'}, fmtDur(total * i / 4));
      tick.style.left = 'calc(' + (i * 25) + '% - ' + (i === 4 ? 48 : i ? 16 : -4) + 'px)';
      track.append(tick);
    }
    return el('div', {class: 'wf-row axis'}, el('div', {class: 'wf-label'}, 'Service / operation'), track);
  }

  function draw() {
    const rows = [axis()];
    const walk = (n, depth) => {
      const s = n.span;
      const off = nsDiff(s.startTimeUnixNano, String(t0));
      const isErr = s.status && s.status.code === 2;
      const toggle = el('button', {class: 'wf-toggle', disabled: n.kids.length ? null : true,
        title: n.kids.length ? (n.collapsed ? 'Expand' : 'Collapse') : null}, n.kids.length ? (n.collapsed ? '▸' : '▾') : '');
      toggle.addEventListener('click', (ev) => { ev.stopPropagation(); n.collapsed = !n.collapsed; draw(); });
      const indent = el('span', {});
      indent.style.width = (depth * 14) + 'px';
      indent.style.flex = 'none';
      const colourBar = el('span', {class: 'wf-colour'});
      colourBar.style.background = colour(s.service);
      const marks = [];
      if ((s.links || []).length) marks.push(el('span', {class: 'wf-link-mark', title: 'links to another trace'}, '↗' + s.links.length));
      if (logsBySpan.has(s.spanId)) marks.push(el('span', {class: 'wf-link-mark', title: 'log lines'}, '≡' + logsBySpan.get(s.spanId).length));
      if (linkedTo.has(s.spanId)) marks.push(el('span', {class: 'wf-link-mark', title: 'linked from another trace'}, '↙' + linkedTo.get(s.spanId).length));
      const bar = el('div', {class: 'wf-bar' + (isErr ? ' err' : '')});
      const left = 100 * off / total, width = 100 * Number(s.durationNano) / total;
      bar.style.left = left + '%';
      bar.style.width = 'max(2px, ' + width + '%)';
      bar.style.background = colour(s.service);
      const time = el('span', {class: 'wf-time'}, fmtDur(s.durationNano));
      /* The label goes after the bar, inside it when the bar ends late and
       * is wide enough, else before it. */
      if (left + width <= 85) time.style.left = 'calc(' + (left + width) + '% + 4px)';
      else if (width >= 12) { time.style.right = 'calc(' + (100 - left - width) + '% + 4px)'; time.classList.add('inside'); }
      else time.style.right = 'calc(' + (100 - left) + '% + 4px)';
      const row = el('div', {class: 'wf-row span-row' + (selected === s.spanId ? ' selected' : ''),
        'data-span-id': s.spanId, 'data-service': s.service},
        el('div', {class: 'wf-label'}, indent, toggle, colourBar,
          el('span', {class: 'svc'}, s.service), el('span', {class: 'name'}, s.name),
          isErr ? el('span', {class: 'badge-err'}, '!') : null, marks),
        el('div', {class: 'wf-track'}, bar, time));
      row.addEventListener('click', () => { selected = s.spanId; draw(); showDetails(s); });
      rows.push(row);
      if (!n.collapsed) for (const k of n.kids) walk(k, depth + 1);
    };
    for (const r of roots) walk(r, 0);
    wf.replaceChildren(...rows);
  }

  function kvTable(obj) {
    const entries = Object.entries(obj || {});
    if (!entries.length) return el('div', {class: 'muted'}, 'none');
    return el('table', {class: 'kv'}, entries.map(([k, v]) =>
      el('tr', {}, el('td', {class: 'k'}, k), el('td', {}, typeof v === 'string' ? v : JSON.stringify(v)))));
  }

  function showDetails(s) {
    const st = s.status || {code: 0};
    const statusText = ['UNSET', 'OK', 'ERROR'][st.code] || String(st.code);
    const incoming = linkedTo.get(s.spanId) || [];
    details.replaceChildren(el('div', {class: 'panel'},
      el('h2', {}, s.service + ': ' + s.name),
      el('div', {class: 'cols'},
        el('div', {},
          kvTable({kind: s.kind, status: statusText + (st.message ? ' — ' + st.message : ''),
            duration: fmtDur(s.durationNano), start: fmtTime(s.startTimeUnixNano),
            'offset in trace': fmtDur(nsDiff(s.startTimeUnixNano, String(t0))),
            spanId: s.spanId, parentSpanId: s.parentSpanId || '(root)'}),
          el('h2', {}, 'Attributes'), kvTable(s.attributes)),
        el('div', {},
          el('h2', {}, 'Events'),
          (s.events || []).length ? el('div', {}, s.events.map((e) => el('div', {class: 'panel'},
            el('strong', {}, e.name), ' ', el('span', {class: 'muted'}, '+' + fmtDur(nsDiff(e.timeUnixNano, s.startTimeUnixNano))),
            kvTable(e.attributes)))) : el('div', {class: 'muted'}, 'none'),
          el('h2', {}, 'Links'),
          (s.links || []).length ? el('ul', {}, s.links.map((l) => el('li', {},
            navLink(traceHref(l.traceId), 'trace ' + l.traceId + ' span ' + l.spanId), kvTable(l.attributes))))
            : el('div', {class: 'muted'}, 'none'),
          el('h2', {}, 'Logs'),
          (logsBySpan.get(s.spanId) || []).length ? el('div', {class: 'logs'}, logsBySpan.get(s.spanId).map((l) => el('div', {class: 'log-line mono'},
            el('span', {class: 'muted'}, '+' + fmtDur(nsDiff(l.timeUnixNano, s.startTimeUnixNano)) + ' '),
            el('span', {class: 'log-level ' + (l.level === 'error' ? 'error-text' : '')}, l.level.toUpperCase() + ' '),
            l.message,
            Object.entries(l.fields || {}).map(([k, v]) => el('span', {class: 'muted'}, ' ' + k + '=' + (typeof v === 'string' ? v : JSON.stringify(v)))))))
            : el('div', {class: 'muted'}, 'none'),
          el('h2', {}, 'Linked from'),
          incoming.length ? el('ul', {}, incoming.map((l) => el('li', {},
            navLink(traceHref(l.traceId), 'trace ' + l.traceId + ' span ' + l.spanId))))
            : el('div', {class: 'muted'}, 'none')))));
  }

  draw();
  if (root) { selected = root.spanId; draw(); showDetails(root); }
}

/* ---------------------------------------------------------------- map */

async function showMap() {
  const token = viewToken;
  const lookback = el('select', {id: 'map-lookback'}, LOOKBACKS.filter(([v]) => v).map(([v, t]) => el('option', {value: v}, t)));
  lookback.value = new URLSearchParams(location.search).get('lookback') || '24h';
  const wrap = el('div', {class: 'map-wrap', id: 'map'});
  main.append(el('form', {class: 'filters panel'}, el('label', {}, 'Time', lookback),
    el('span', {class: 'muted'}, 'Services (rounded) and messaging destinations (square) with calls and error rates. Click a node for its traces.')), wrap);
  async function load() {
    try {
      const d = await api('/api/dependencies?start=-' + lookback.value);
      if (token !== viewToken) return;
      drawMap(wrap, d);
      setStatus(d.nodes.length + ' nodes · ' + d.edges.length + ' edges');
    } catch (e) { wrap.replaceChildren(notice(e)); }
  }
  lookback.addEventListener('change', () => { history.replaceState(null, '', '/map?lookback=' + lookback.value); load(); });
  load();
}

function drawMap(wrap, d) {
  if (!d.nodes.length) { wrap.replaceChildren(el('div', {class: 'empty'}, 'No spans in this time window.')); return; }
  /* Layers: longest path from the sources over a DAG. Cycles (a service
   * calling back upstream) are broken by dropping the DFS back edges from
   * the layering only; every edge is still drawn. */
  const out = new Map(), indeg = new Map();
  for (const n of d.nodes) { out.set(n.id, []); indeg.set(n.id, 0); }
  for (const e of d.edges) {
    if (e.source === e.target || !out.has(e.source) || !out.has(e.target)) continue;
    out.get(e.source).push(e.target);
    indeg.set(e.target, indeg.get(e.target) + 1);
  }
  /* DFS from where traces start (services with root spans), then from
   * nodes nothing points to: a cycle is cut where it returns upstream. */
  const roots = new Map(d.nodes.map((n) => [n.id, n.roots || 0]));
  const order = d.nodes.map((n) => n.id).sort((a, b) =>
    (roots.get(b) - roots.get(a)) || (indeg.get(a) - indeg.get(b)) || a.localeCompare(b));
  const state = new Map(), back = new Set();
  const dfs = (u) => {
    state.set(u, 1);
    for (const v of out.get(u)) {
      if (state.get(v) === 1) back.add(u + '\n' + v);
      else if (!state.get(v)) dfs(v);
    }
    state.set(u, 2);
  };
  for (const id of order) if (!state.get(id)) dfs(id);
  const dagIn = new Map(d.nodes.map((n) => [n.id, 0]));
  for (const [u, vs] of out) for (const v of vs) if (!back.has(u + '\n' + v)) dagIn.set(v, dagIn.get(v) + 1);
  const layer = new Map();
  const queue = order.filter((id) => dagIn.get(id) === 0);
  for (const id of queue) layer.set(id, 0);
  for (let qi = 0; qi < queue.length; qi++) {
    const u = queue[qi];
    for (const v of out.get(u)) {
      if (back.has(u + '\n' + v)) continue;
      layer.set(v, Math.max(layer.get(v) || 0, layer.get(u) + 1));
      dagIn.set(v, dagIn.get(v) - 1);
      if (dagIn.get(v) === 0) queue.push(v);
    }
  }
  for (const n of d.nodes) if (!layer.has(n.id)) layer.set(n.id, 0);
  const layers = [];
  for (const n of d.nodes) (layers[layer.get(n.id)] ||= []).push(n);
  /* Order each layer by the mean row of its predecessors (barycentre):
   * one sweep removes most crossings of a left-to-right flow. */
  const preds = new Map(d.nodes.map((n) => [n.id, []]));
  for (const e of d.edges) if (preds.has(e.target) && e.source !== e.target) preds.get(e.target).push(e.source);
  const row = new Map();
  layers.forEach((l, i) => {
    if (!l) return;
    const key = (n) => {
      const ps = preds.get(n.id).filter((p) => row.has(p) && layer.get(p) < i);
      return ps.length ? ps.reduce((a, p) => a + row.get(p), 0) / ps.length : Infinity;
    };
    l.sort((a, b) => (key(a) - key(b)) || a.name.localeCompare(b.name) || 0);
    l.forEach((n, j) => row.set(n.id, j));
  });

  const W = 200, H = 54, GX = 140, GY = 34, PAD = 30;
  const pos = new Map();
  let maxRows = 0;
  layers.forEach((l, i) => {
    if (!l) return;
    maxRows = Math.max(maxRows, l.length);
    l.forEach((n, j) => pos.set(n.id, {x: PAD + i * (W + GX), y: PAD + j * (H + GY)}));
  });
  const hasBack = d.edges.some((e) => pos.has(e.source) && pos.has(e.target) && pos.get(e.target).x <= pos.get(e.source).x);
  /* room below the rows for edges that loop back upstream */
  const width = PAD * 2 + layers.length * (W + GX) - GX, height = PAD * 2 + maxRows * (H + GY) - GY + (hasBack ? 50 : 0);
  const root = svg('svg', {class: 'map', width, height, viewBox: '0 0 ' + width + ' ' + height, role: 'img'});
  /* Shrinks to the page width, never grows past its natural size. */
  root.style.width = '100%';
  root.style.height = 'auto';
  root.style.maxWidth = width + 'px';
  root.style.minWidth = Math.round(width * 0.75) + 'px'; /* scroll rather than shrink text below 75% */
  root.append(svg('defs', {}, svg('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
    svg('path', {d: 'M 0 0 L 10 5 L 0 10 z', fill: '#94a3b8'}))));
  const outIndex = new Map(); /* labels of one source's edges are stacked */
  for (const e of d.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const k = outIndex.get(e.source) || 0;
    outIndex.set(e.source, k + 1);
    let x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    let path;
    if (x2 > x1) {
      const mx = (x1 + x2) / 2;
      path = 'M ' + x1 + ' ' + y1 + ' C ' + mx + ' ' + y1 + ', ' + mx + ' ' + y2 + ', ' + x2 + ' ' + y2;
    } else { /* back edge: loop below */
      x1 = a.x + W / 2; y1 = a.y + H; x2 = b.x + W / 2; y2 = b.y + H;
      const dy = Math.max(y1, y2) + 40;
      path = 'M ' + x1 + ' ' + y1 + ' C ' + x1 + ' ' + dy + ', ' + x2 + ' ' + dy + ', ' + x2 + ' ' + y2;
    }
    const g = svg('g', {class: 'edge-g', 'data-source': e.source, 'data-target': e.target},
      svg('path', {class: 'edge' + (e.errors ? ' err' : ''), d: path, 'marker-end': 'url(#arrow)'},
        svg('title', {}, e.calls + ' calls, ' + e.errors + ' errors, p50 ' + fmtDur(e.p50) + ', p95 ' + fmtDur(e.p95) + ', p99 ' + fmtDur(e.p99))));
    /* Labels sit near the source end, where edges of one gap are still apart. */
    const lx = x2 > x1 ? x1 + 8 : (x1 + x2) / 2, ly = x2 > x1 ? y1 - 5 - 11 * k : Math.max(y1, y2) + 34;
    g.append(svg('text', {class: 'edge-label', x: lx, y: ly, 'text-anchor': x2 > x1 ? 'start' : 'middle'},
      e.calls + '× · p95 ' + fmtDur(e.p95) + (e.errors ? ' · ' + e.errors + ' err' : '')));
    root.append(g);
  }
  for (const n of d.nodes) {
    const p = pos.get(n.id);
    const isMsg = n.type === 'messaging';
    const rate = n.calls ? (100 * n.errors / n.calls) : 0;
    const fill = isMsg ? '#fffbeb' : '#fff';
    const stroke = isMsg ? '#d97706' : colour(n.name);
    const label = n.name.length > 24 ? n.name.slice(0, 22) + '…' : n.name;
    const g = svg('g', {class: 'node', 'data-node-id': n.id, transform: 'translate(' + p.x + ',' + p.y + ')', tabindex: 0},
      svg('title', {}, n.name + (isMsg && n.system ? ' (' + n.system + ')' : '')),
      svg('rect', {width: W, height: H, rx: isMsg ? 2 : 12, fill, stroke}),
      svg('text', {x: 12, y: 21, 'font-weight': 600}, (isMsg ? '✉ ' : '') + label),
      svg('text', {class: 'sub', x: 12, y: 40}, n.calls + (isMsg ? ' msgs' : ' spans') + ' · ' +
        (rate ? rate.toFixed(rate < 10 ? 1 : 0) + '% err' : 'no errors') + (isMsg ? '' : ' · p95 ' + fmtDur(n.p95))));
    if (n.errors) g.append(svg('circle', {cx: W - 12, cy: 12, r: 5, fill: '#dc2626'}));
    const href = isMsg ? '/?tag=' + encodeURIComponent('messaging.destination.name:' + n.name) + '&lookback=24h'
      : '/?service=' + encodeURIComponent(n.name) + '&lookback=24h';
    g.addEventListener('click', () => navigate(href));
    g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') navigate(href); });
    root.append(g);
  }
  wrap.replaceChildren(root);
}

/* ---------------------------------------------------------- dashboard */

async function showDashboard() {
  const token = viewToken;
  const lookback = el('select', {id: 'dash-lookback'}, LOOKBACKS.filter(([v]) => v).map(([v, t]) => el('option', {value: v}, t)));
  lookback.value = new URLSearchParams(location.search).get('lookback') || '15m';
  const body = el('div', {id: 'dashboard'});
  main.append(el('form', {class: 'filters panel'}, el('label', {}, 'Window', lookback),
    el('span', {class: 'muted'}, 'Computed from stored spans; refreshes every 5 s.')), body);
  async function load() {
    try {
      const m = await api('/api/metrics?start=-' + lookback.value);
      if (token !== viewToken) return;
      renderDashboard(body, m);
      setStatus('updated ' + new Date().toLocaleTimeString(undefined, {hour12: false}));
    } catch (e) { body.replaceChildren(notice(e)); }
  }
  lookback.addEventListener('change', () => { history.replaceState(null, '', '/dashboard?lookback=' + lookback.value); load(); });
  refreshTimer = setInterval(load, 5000);
  load();
}

function renderDashboard(body, m) {
  const c = m.collector || {};
  const totalReq = m.services.reduce((a, s) => a + s.requests, 0);
  const totalErr = m.services.reduce((a, s) => a + s.errors, 0);
  const card = (v, l) => el('div', {class: 'card'}, el('div', {class: 'v'}, String(v)), el('div', {class: 'l'}, l));
  const parts = [el('div', {class: 'cards'},
    card(fmtRate(totalReq / m.windowSeconds), 'requests (all services)'),
    card(totalReq ? (100 * totalErr / totalReq).toFixed(1) + '%' : '0%', 'error rate'),
    card(c.spansInStore ?? '–', 'spans stored'),
    card(c.queueDepth ?? '–', 'collector queue'),
    card((c.sinkDropped || 0) + (c.httpThrottled || 0), 'dropped / throttled'))];
  const maxRate = Math.max(1e-9, ...m.services.map((s) => s.rate));
  parts.push(el('h2', {}, 'Services'));
  parts.push(m.services.length ? el('table', {class: 'grid', id: 'svc-metrics'},
    el('thead', {}, el('tr', {}, ['Service', 'Requests', 'Rate', 'Errors', 'Error rate', 'p50', 'p95', 'p99']
      .map((h, i) => el('th', {class: i ? 'num' : ''}, h)))),
    el('tbody', {}, m.services.map((s) => {
      const spark = el('span', {class: 'spark'});
      spark.style.width = Math.max(2, Math.round(60 * s.rate / maxRate)) + 'px';
      const espark = el('span', {class: 'spark err'});
      espark.style.width = Math.round(60 * s.errorRate) + 'px';
      return el('tr', {},
        el('td', {}, navLink('/?service=' + encodeURIComponent(s.service) + '&lookback=' + encodeURIComponent(document.getElementById('dash-lookback').value), chip(s.service))),
        el('td', {class: 'num'}, String(s.requests)),
        el('td', {class: 'num'}, spark, ' ', fmtRate(s.rate)),
        el('td', {class: 'num'}, String(s.errors)),
        el('td', {class: 'num'}, espark, ' ', (100 * s.errorRate).toFixed(1) + '%'),
        el('td', {class: 'num'}, fmtDur(s.p50)), el('td', {class: 'num'}, fmtDur(s.p95)), el('td', {class: 'num'}, fmtDur(s.p99)));
    }))) : el('div', {class: 'panel empty'}, 'No spans in this window.'));
  if (Array.isArray(m.queues)) {
    parts.push(el('h2', {}, 'Queues'));
    parts.push(el('table', {class: 'grid', id: 'queues'},
      el('thead', {}, el('tr', {}, el('th', {}, 'Queue'), el('th', {class: 'num'}, 'Depth'), el('th', {}, 'Dead-letter queue'), el('th', {class: 'num'}, 'DLQ depth'))),
      el('tbody', {}, m.queues.map((q) => el('tr', {},
        el('td', {}, String(q.name)), el('td', {class: 'num'}, String(q.depth ?? '')),
        el('td', {}, String(q.dlq ?? '')), el('td', {class: 'num'}, q.dlqDepth ? el('span', {class: 'badge-err'}, String(q.dlqDepth)) : String(q.dlqDepth ?? '')))))));
  }
  if (m.counters && typeof m.counters === 'object') {
    parts.push(el('h2', {}, 'Analytics counters'));
    parts.push(el('table', {class: 'grid', id: 'counters'},
      el('thead', {}, el('tr', {}, el('th', {}, 'Event type'), el('th', {class: 'num'}, 'Count'))),
      el('tbody', {}, Object.entries(m.counters).map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {class: 'num'}, String(v)))))));
  }
  body.replaceChildren(...parts);
}

/* Colours first (they must not change between views), then the view. */
api('/api/services').then((r) => assignColours(r.services)).catch(() => {}).finally(route);
