// The CLI against a real `tracemart collector`: `tracemart traces` lists
// the posted traces (with --service), `tracemart trace ID` prints the span
// tree with services, timings, errors and links in both directions, and
// a bad id or an unreachable collector is a clear error (exit 1).
import { spawn, spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BIN = process.env.TM_BINARY;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-collector-cli-'));
let proc;

function start() {
  return new Promise((resolve, reject) => {
    proc = spawn(BIN, ['collector', '--listen', '127.0.0.1:0', '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    const timer = setTimeout(() => reject(new Error('collector did not start')), 20000);
    proc.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (c) => { clearTimeout(timer); reject(new Error('collector exited: ' + c)); });
  });
}

function stop() {
  return new Promise((resolve) => {
    if (!proc || proc.exitCode !== null) return resolve(proc ? proc.exitCode : 0);
    proc.removeAllListeners('exit');
    const t = setTimeout(() => proc.kill('SIGKILL'), 20000);
    proc.on('exit', (code, sig) => { clearTimeout(t); resolve(sig ? -1 : code); });
    proc.kill('SIGTERM');
  });
}

const run = (...args) => spawnSync(BIN, args, { encoding: 'utf8', timeout: 30000 });
const now = BigInt(Date.now()) * 1000000n;
const TA = 'a1'.repeat(16), TB = 'b2'.repeat(16);
const sp = (t, id, parent, name, kind, startMs, durMs, extra = {}) => ({
  traceId: t, spanId: id, parentSpanId: parent, name, kind,
  startTimeUnixNano: String(now + BigInt(startMs) * 1000000n),
  endTimeUnixNano: String(now + BigInt(startMs + durMs) * 1000000n), ...extra });
const rs = (svc, spans) => ({ resource: { attributes: [{ key: 'service.name', value: { stringValue: svc } }] }, scopeSpans: [{ spans }] });

let failed = 0, passed = 0;
async function check(name, fn) {
  try { await fn(); passed++; console.log('ok - ' + name); } catch (e) { failed++; console.error('not ok - ' + name + '\n' + e.stack); }
}

try {
  const url = await start();
  const body = { resourceSpans: [
    rs('product-api', [sp(TA, '0000000000000001', '', 'POST /product', 2, 0, 20),
      sp(TA, '0000000000000002', '0000000000000001', 'send product-created', 4, 2, 1)]),
    rs('pricing', [sp(TA, '0000000000000003', '0000000000000002', 'process product-created', 5, 4, 5,
      { status: { code: 2, message: 'no price' } })]),
    rs('analytics', [sp(TB, '00000000000000b1', '', 'process analytics', 5, 30, 2,
      { links: [{ traceId: TA, spanId: '0000000000000002' }] })]),
  ] };
  const r = await fetch(url + '/v1/traces', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200);
  for (let i = 0; i < 100; i++) {
    if ((await fetch(url + '/api/traces/' + TB)).status === 200) break;
    await new Promise((res) => setTimeout(res, 50));
  }

  await check('traces lists recent traces, newest first', () => {
    const p = run('traces', '--collector', url);
    assert.equal(p.status, 0, p.stderr);
    const lines = p.stdout.trim().split('\n');
    assert.match(lines[0], /TRACE ID/);
    assert.ok(lines[1].startsWith(TB) && lines[1].includes('analytics: process analytics'));
    assert.ok(lines[2].startsWith(TA) && lines[2].includes('product-api: POST /product'));
    assert.match(lines[2], /\s3\s+1\s/); /* 3 spans, 1 error */
  });
  await check('traces filters by service and limit', () => {
    let p = run('traces', '--service', 'pricing', '--collector', url);
    assert.equal(p.status, 0, p.stderr);
    assert.equal(p.stdout.trim().split('\n').length, 2);
    assert.ok(p.stdout.includes(TA));
    p = run('traces', '--limit', '1', '--collector', url);
    assert.equal(p.stdout.trim().split('\n').length, 2);
  });
  await check('trace prints the span tree with services, errors and links both ways', () => {
    let p = run('trace', TA, '--collector', url);
    assert.equal(p.status, 0, p.stderr);
    assert.match(p.stdout, /3 spans, 20\.00ms/);
    assert.match(p.stdout, /product-api  POST \/product \[SERVER\]/);
    assert.match(p.stdout, /└─ pricing  process product-created \[CONSUMER\].*ERROR: no price/);
    assert.ok(p.stdout.includes('linked from trace ' + TB + ' span 00000000000000b1'));
    p = run('trace', TB, '--collector', url);
    assert.ok(p.stdout.includes('links to trace ' + TA + ' span 0000000000000002'));
  });
  await check('a bad id or an unknown trace is an error', () => {
    let p = run('trace', 'nothex', '--collector', url);
    assert.equal(p.status, 1);
    assert.match(p.stderr, /32 hex/);
    p = run('trace', 'c3'.repeat(16), '--collector', url);
    assert.equal(p.status, 1);
    assert.match(p.stderr, /not found/);
    p = run('trace', '--collector', url);
    assert.equal(p.status, 2);
  });
} catch (e) {
  failed++;
  console.error('not ok - ' + e.stack);
} finally {
  const code = await stop();
  if (code !== 0) { failed++; console.error('not ok - collector exited with ' + code); }
  fs.rmSync(dataDir, { recursive: true, force: true });
}
await check('an unreachable collector is a clear error', () => {
  const p = run('traces', '--collector', 'http://127.0.0.1:1');
  assert.equal(p.status, 1);
  assert.match(p.stderr, /cannot reach/);
});
console.log(passed + ' passed, ' + failed + ' failed');
process.exit(failed ? 1 : 0);
