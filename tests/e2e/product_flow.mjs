// Browser end-to-end test of a product's trace: starts `tracemart up` (the
// reference app with the embedded collector) on free ports with a temporary
// data dir, creates a product through the Product API, then in Debian's
// chromium (playwright-core) finds its trace in search, opens it, checks that
// every service of the flow is in the waterfall, follows the analytics link
// (linked from) and back, opens the service map and the dashboard (queues,
// analytics counters). Screenshots go to $TM_BUILD_DIR/e2e-screenshots.
// Exit 77 (skip) without chromium or playwright-core.
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { BIN, CHROMIUM, OUT, chromium } from './env.mjs';

const FLOW = ['product-api', 'pricing', 'product-api-worker', 'public-event-publisher', 'inventory-acl', 'stock-ordering'];
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-e2e-up-'));
const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-e2e-chromium-'));
let proc = null, context = null, passed = 0;

async function check(name, fn) {
  await fn();
  passed++;
  console.log('ok - ' + name);
}

function startUp() {
  return new Promise((resolve, reject) => {
    /* Model time runs 100x faster (the state machine's Wait 3 / Wait 5);
     * spans are exported every 100 ms. */
    const env = { ...process.env, TRACEMART_TIME_SCALE: '100', OTEL_BSP_SCHEDULE_DELAY: '100' };
    proc = spawn(BIN, ['up', '--listen', '127.0.0.1:0', '--collector-listen', '127.0.0.1:0', '--data-dir', dataDir],
      { stdio: ['ignore', 'pipe', 'inherit'], env });
    let buf = '';
    const timer = setTimeout(() => reject(new Error('tracemart up did not start in 30 s')), 30000);
    proc.stdout.on('data', (d) => {
      buf += d;
      const api = buf.match(/api (http:\/\/127\.0\.0\.1:\d+)/), ui = buf.match(/ui (http:\/\/127\.0\.0\.1:\d+)/);
      if (api && ui) { clearTimeout(timer); resolve({ api: api[1], ui: ui[1] }); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error('tracemart up exited early: ' + code)); });
  });
}

function stopUp() {
  return new Promise((resolve) => {
    if (!proc || proc.exitCode !== null) return resolve(proc ? proc.exitCode : 0);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30000);
    proc.removeAllListeners('exit');
    proc.on('exit', (code, sig) => { clearTimeout(timer); resolve(sig ? -1 : code); });
    proc.kill('SIGTERM');
  });
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/* Polls until the product's trace holds every service of the flow and the
 * analytics trace links into it (bounded: 60 s). */
async function waitForFlow(ui, productId) {
  let last = null;
  for (let i = 0; i < 300; i++) {
    const r = await fetch(ui + '/api/traces?tag=' + encodeURIComponent('product.id:' + productId) + '&limit=5');
    if (r.status === 200) {
      for (const s of (await r.json()).traces) {
        if (s.rootName !== 'POST /product') continue;
        const t = await (await fetch(ui + '/api/traces/' + s.traceId)).json();
        last = t;
        const services = new Set(t.spans.map((x) => x.service));
        if (FLOW.every((f) => services.has(f)) && t.linkedFrom.length) return t;
      }
    }
    await sleep(200);
  }
  throw new Error('the product trace never held the whole flow: ' +
    (last ? [...new Set(last.spans.map((x) => x.service))].join(', ') + ' linkedFrom ' + last.linkedFrom.length : 'no trace'));
}

async function main() {
  const { api, ui } = await startUp();
  console.log('api ' + api + ' ui ' + ui);
  const created = await fetch(api + '/product', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: 'E2E Widget', price: 20 }) });
  assert.equal(created.status, 201);
  const productId = (await created.json()).data.productId;
  const trace = await waitForFlow(ui, productId);
  const analyticsId = trace.linkedFrom[0].traceId;
  await check('the API answers the trace shape of the issue', () => {
    for (const s of trace.spans)
      for (const k of ['traceId', 'spanId', 'parentSpanId', 'name', 'service', 'kind', 'startTimeUnixNano', 'durationNano', 'attributes', 'events', 'links', 'status'])
        assert.ok(k in s, 'span field ' + k);
    for (const l of trace.linkedFrom) for (const k of ['traceId', 'spanId', 'linkedSpanId']) assert.ok(k in l);
  });

  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    viewport: { width: 1400, height: 1000 },
  });
  const page = context.pages()[0] || await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  await check('search finds the product trace', async () => {
    await page.goto(ui + '/');
    await page.fill('#f-tag', 'product.id:' + productId);
    await page.click('#f-submit');
    await page.waitForSelector(`tr.trace-row[data-trace-id="${trace.traceId}"]`, { timeout: 15000 });
    await page.screenshot({ path: path.join(OUT, 'product-search.png'), fullPage: true });
  });
  await check('the waterfall shows every service of the flow', async () => {
    await page.click(`tr.trace-row[data-trace-id="${trace.traceId}"] a`);
    await page.waitForURL(ui + '/trace/' + trace.traceId);
    await page.waitForSelector('#waterfall .span-row');
    const services = await page.$$eval('#waterfall .span-row', (rows) => [...new Set(rows.map((r) => r.dataset.service))]);
    for (const s of FLOW) assert.ok(services.includes(s), 'waterfall lacks ' + s);
    assert.ok(await page.locator('#waterfall .span-row').count() >= trace.spans.length);
    await page.screenshot({ path: path.join(OUT, 'product-trace.png'), fullPage: true });
  });
  await check('the analytics link is followed from "linked from" and back', async () => {
    await page.click('#linked-from a.link-in');
    await page.waitForURL(ui + '/trace/' + analyticsId);
    await page.waitForSelector('#waterfall .span-row[data-service="analytics"]');
    await page.screenshot({ path: path.join(OUT, 'product-analytics-trace.png'), fullPage: true });
    await page.click('#links-panel a.link-out');
    await page.waitForURL(ui + '/trace/' + trace.traceId);
    await page.waitForSelector('#waterfall .span-row[data-service="stock-ordering"]');
  });
  await check('the service map shows the services and messaging nodes', async () => {
    await page.goto(ui + '/map');
    await page.waitForSelector('svg.map g.node');
    const ids = await page.$$eval('svg.map g.node', (ns) => ns.map((n) => n.dataset.nodeId));
    for (const s of [...FLOW, 'analytics']) assert.ok(ids.includes('service:' + s), 'map lacks ' + s);
    assert.ok(ids.includes('messaging:product-created'), 'map lacks the product-created topic');
    await page.screenshot({ path: path.join(OUT, 'product-map.png'), fullPage: true });
  });
  await check('the dashboard shows services, queues and analytics counters', async () => {
    await page.goto(ui + '/dashboard');
    await page.waitForSelector('#svc-metrics tbody tr');
    await page.waitForSelector('#queues tbody tr');
    assert.ok((await page.textContent('#counters')).includes('product.productCreated.v1'));
    await page.screenshot({ path: path.join(OUT, 'product-dashboard.png'), fullPage: true });
  });
  await check('the page threw nothing', () => assert.deepEqual(pageErrors, []));
}

let failed = 0;
try {
  await main();
} catch (e) {
  failed = 1;
  console.error('not ok - ' + (e && e.stack ? e.stack : e));
} finally {
  if (context) await context.close().catch(() => {});
  const code = await stopUp();
  if (code !== 0) { failed = 1; console.error('not ok - tracemart up exited with ' + code); }
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.rmSync(profileDir, { recursive: true, force: true });
}
console.log(passed + ' passed, ' + failed + ' failed');
console.log('screenshots in ' + OUT);
process.exit(failed ? 1 : 0);
