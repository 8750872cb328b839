// Browser end-to-end test of the collector UI: starts `tracemart collector`
// on a free port with a temporary data dir, posts two linked synthetic
// traces (OTLP JSON), then drives Debian's chromium with playwright-core:
// search, open the trace, check every service in the waterfall, follow the
// link both ways, open the service map and the dashboard. Screenshots go to
// $TM_BUILD_DIR/e2e-screenshots. Exit 77 (skip) when chromium or
// playwright-core is missing; any failed check exits 1.
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { BIN, CHROMIUM, OUT, chromium } from './env.mjs';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-e2e-collector-'));
const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-e2e-chromium-'));
let proc = null;
let context = null;
let passed = 0;

function check(name, fn) {
  return Promise.resolve(fn()).then(() => { passed++; console.log('ok - ' + name); });
}

function startCollector() {
  return new Promise((resolve, reject) => {
    proc = spawn(BIN, ['collector', '--listen', '127.0.0.1:0', '--data-dir', dataDir],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    const timer = setTimeout(() => reject(new Error('collector did not start in 20 s')), 20000);
    proc.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error('collector exited early: ' + code)); });
  });
}

function stopCollector() {
  return new Promise((resolve) => {
    if (!proc || proc.exitCode !== null) return resolve(proc ? proc.exitCode : 0);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20000);
    proc.removeAllListeners('exit');
    proc.on('exit', (code, sig) => { clearTimeout(timer); resolve(sig ? -1 : code); });
    proc.kill('SIGTERM');
  });
}

// ---------------------------------------------------------------- data
const hex = (n, len) => n.toString(16).padStart(len, '0');
const rand = (len) => Array.from({ length: len }, () => Math.floor(Math.random() * 16).toString(16)).join('');
const TA = rand(32), TB = rand(32);
const now = BigInt(Date.now()) * 1000000n - 5000000000n;
const ms = 1000000n;
const XSS = '<img src=x onerror="window.__xss=1">';

function span(t, id, parent, name, kind, startMs, durMs, attrs = {}, extra = {}) {
  return {
    traceId: t, spanId: id, parentSpanId: parent, name, kind,
    startTimeUnixNano: String(now + BigInt(startMs) * ms),
    endTimeUnixNano: String(now + BigInt(startMs) * ms + BigInt(Math.round(durMs * 1000)) * 1000n),
    attributes: Object.entries(attrs).map(([key, v]) => ({ key, value: typeof v === 'number' ? { intValue: String(v) } : { stringValue: v } })),
    status: { code: 0 }, ...extra,
  };
}
const msg = (d) => ({ 'messaging.destination.name': d, 'messaging.system': 'tracemart' });
const S = (n) => hex(n, 16);
function rs(service, spans) {
  return { resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
    scopeSpans: [{ scope: { name: 'e2e' }, spans }] };
}
const traceA = { resourceSpans: [
  rs('product-api', [
    span(TA, S(1), '', 'POST /product', 2, 0, 40, { 'http.route': '/product', 'product.id': 'WIDGET', 'product.name': XSS }),
    span(TA, S(2), S(1), 'send product-created', 4, 5, 1.5, msg('product-created')),
  ]),
  rs('pricing', [
    span(TA, S(3), S(2), 'process product-created', 5, 8, 12, msg('product-created')),
    span(TA, S(4), S(3), 'send price-calculated', 4, 15, 1, msg('price-calculated')),
  ]),
  rs('product-api-worker', [
    span(TA, S(5), S(4), 'process price-calculated', 5, 18, 6, msg('price-calculated')),
  ]),
  rs('public-event-publisher', [
    span(TA, S(6), S(2), 'process product-public-event-publisher', 5, 9, 10, msg('product-public-event-publisher')),
    span(TA, S(7), S(6), 'send ' + XSS, 4, 14, 2, msg('event-bus'),
      { status: { code: 2, message: 'retry ' + XSS }, events: [{ name: 'exception', timeUnixNano: String(now + 15n * ms), attributes: [{ key: 'exception.message', value: { stringValue: 'boom' } }] }] }),
  ]),
  rs('inventory-acl', [
    span(TA, S(8), S(7), 'process inventory-acl', 5, 20, 8, msg('inventory-acl')),
  ]),
] };
const traceB = { resourceSpans: [
  rs('analytics', [
    span(TB, S(101), '', 'process analytics', 5, 30, 4, msg('analytics'),
      { links: [{ traceId: TA, spanId: S(7), attributes: [{ key: 'link.reason', value: { stringValue: 'analytics' } }] }] }),
    span(TB, S(102), S(101), 'increment counter', 1, 31, 1, { 'analytics.eventType': 'product.productCreated.v1' }),
  ]),
] };
const SERVICES_A = ['product-api', 'pricing', 'product-api-worker', 'public-event-publisher', 'inventory-acl'];

async function post(url, body) {
  const r = await fetch(url + '/v1/traces', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, 'POST /v1/traces: ' + (await r.text()));
}

// Ingest is asynchronous (a writer thread stores batches), so a trace can
// be visible before all of it — or the trace linking into it — is stored:
// poll until ready(trace) holds.
async function waitForTrace(url, id, ready = () => true) {
  let last = null;
  for (let i = 0; i < 200; i++) {
    const r = await fetch(url + '/api/traces/' + id);
    if (r.status === 200) {
      last = await r.json();
      if (ready(last)) return last;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  if (last) return last; // let the assertions say what is missing
  throw new Error('trace ' + id + ' never became visible');
}

// ---------------------------------------------------------------- run
async function main() {
  const url = await startCollector();
  console.log('collector at ' + url);
  await post(url, traceA);
  await post(url, traceB);
  await waitForTrace(url, TB);
  const apiA = await waitForTrace(url, TA, (t) => t.spans.length === 8 && t.linkedFrom.length === 1);
  await check('API trace shape has every field of the issue', () => {
    assert.equal(apiA.traceId, TA);
    assert.equal(apiA.spans.length, 8);
    for (const s of apiA.spans)
      for (const k of ['traceId', 'spanId', 'parentSpanId', 'name', 'service', 'kind', 'startTimeUnixNano', 'durationNano', 'attributes', 'events', 'links', 'status'])
        assert.ok(k in s, 'span field ' + k);
    assert.deepEqual(apiA.linkedFrom, [{ traceId: TB, spanId: S(101), linkedSpanId: S(7) }]);
  });

  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    viewport: { width: 1400, height: 900 },
  });
  const page = context.pages()[0] || await context.newPage();
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith(url) && !r.url().startsWith('data:')) external.push(r.url()); });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  await page.goto(url + '/');
  await check('search lists the trace', async () => {
    await page.waitForSelector(`tr.trace-row[data-trace-id="${TA}"]`, { timeout: 15000 });
    await page.screenshot({ path: path.join(OUT, 'collector-search.png'), fullPage: true });
  });
  await check('search filters by service and sorts', async () => {
    await page.selectOption('#f-service', 'analytics');
    await page.click('#f-submit');
    await page.waitForFunction((tb) => {
      const rows = [...document.querySelectorAll('tr.trace-row')];
      return rows.length === 1 && rows[0].dataset.traceId === tb;
    }, TB, { timeout: 15000 });
    await page.selectOption('#f-service', '');
    await page.click('#f-submit');
    await page.waitForFunction(() => document.querySelectorAll('tr.trace-row').length === 2);
    await page.click('th[data-sort="spans"]');
    const first = await page.$eval('tr.trace-row', (r) => r.dataset.traceId);
    assert.equal(first, TA, 'sorted by span count, descending');
  });
  await check('opening the trace shows every service in the waterfall', async () => {
    await page.click(`tr.trace-row[data-trace-id="${TA}"] a`);
    await page.waitForURL(url + '/trace/' + TA);
    await page.waitForSelector('#waterfall .span-row');
    const services = await page.$$eval('#waterfall .span-row', (rows) => [...new Set(rows.map((r) => r.dataset.service))]);
    for (const s of SERVICES_A) assert.ok(services.includes(s), 'waterfall lacks ' + s);
    assert.equal(await page.locator('#waterfall .span-row').count(), 8);
  });
  await check('user data is rendered as text, never as HTML', async () => {
    const text = await page.textContent('#waterfall');
    assert.ok(text.includes('send ' + XSS), 'span name shown literally');
    assert.equal(await page.locator('#waterfall img, #span-details img').count(), 0);
    assert.equal(await page.evaluate(() => window.__xss), undefined);
  });
  await check('span details show attributes, events and status', async () => {
    await page.click(`#waterfall .span-row[data-span-id="${S(7)}"]`);
    const details = await page.textContent('#span-details');
    assert.ok(details.includes('messaging.destination.name'));
    assert.ok(details.includes('exception'));
    assert.ok(details.includes('ERROR'));
    assert.ok(details.includes('retry ' + XSS));
    await page.screenshot({ path: path.join(OUT, 'collector-trace.png'), fullPage: true });
  });
  await check('the collapsible tree hides and shows children', async () => {
    const toggle = page.locator(`#waterfall .span-row[data-span-id="${S(1)}"] .wf-toggle`);
    await toggle.click();
    assert.equal(await page.locator('#waterfall .span-row').count(), 1);
    await page.locator(`#waterfall .span-row[data-span-id="${S(1)}"] .wf-toggle`).click();
    assert.equal(await page.locator('#waterfall .span-row').count(), 8);
  });
  await check('"linked from" leads to the analytics trace', async () => {
    await page.click('#linked-from a.link-in');
    await page.waitForURL(url + '/trace/' + TB);
    await page.waitForSelector('#waterfall .span-row[data-service="analytics"]');
    await page.screenshot({ path: path.join(OUT, 'collector-linked-trace.png'), fullPage: true });
  });
  await check('the link leads back to the product trace', async () => {
    await page.click('#links-panel a.link-out');
    await page.waitForURL(url + '/trace/' + TA);
    await page.waitForSelector('#waterfall .span-row[data-service="inventory-acl"]');
  });
  await check('a deep link opens the trace directly', async () => {
    await page.goto(url + '/trace/' + TB);
    await page.waitForSelector('#waterfall .span-row[data-service="analytics"]');
  });
  await check('the service map shows services, destinations and edges', async () => {
    await page.goto(url + '/map');
    await page.waitForSelector('svg.map g.node');
    const ids = await page.$$eval('svg.map g.node', (ns) => ns.map((n) => n.dataset.nodeId));
    for (const s of [...SERVICES_A, 'analytics']) assert.ok(ids.includes('service:' + s), 'map lacks ' + s);
    for (const d of ['product-created', 'price-calculated', 'analytics', 'event-bus']) assert.ok(ids.includes('messaging:' + d), 'map lacks ' + d);
    assert.ok(await page.locator('svg.map g.edge-g[data-source="service:product-api"][data-target="messaging:product-created"]').count() === 1);
    await page.screenshot({ path: path.join(OUT, 'collector-map.png'), fullPage: true });
  });
  await check('clicking a map node lists its traces', async () => {
    await page.click('svg.map g.node[data-node-id="service:pricing"]');
    await page.waitForURL(/\/\?service=pricing/);
    await page.waitForSelector(`tr.trace-row[data-trace-id="${TA}"]`);
    assert.equal(await page.locator('tr.trace-row').count(), 1);
  });
  await check('the dashboard shows per-service rates', async () => {
    await page.goto(url + '/dashboard?lookback=1h');
    await page.waitForSelector('#svc-metrics tbody tr');
    const text = await page.textContent('#svc-metrics');
    for (const s of SERVICES_A) assert.ok(text.includes(s));
    await page.screenshot({ path: path.join(OUT, 'collector-dashboard.png'), fullPage: true });
  });
  await check('the page loaded nothing from elsewhere and threw nothing', () => {
    assert.deepEqual(external, []);
    assert.deepEqual(pageErrors, []);
  });
}

let failed = 0;
try {
  await main();
} catch (e) {
  failed = 1;
  console.error('not ok - ' + (e && e.stack ? e.stack : e));
} finally {
  if (context) await context.close().catch(() => {});
  const code = await stopCollector();
  if (code !== 0) { failed = 1; console.error('not ok - collector exited with ' + code); }
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(profileDir, { recursive: true, force: true });
}
console.log(passed + ' passed, ' + failed + ' failed');
console.log('screenshots in ' + OUT);
process.exit(failed ? 1 : 0);
