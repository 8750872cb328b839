// Ingest of OTLP JSON produced by the official OpenTelemetry JS SDK: spans
// made with @opentelemetry/sdk-trace-base and serialised by
// @opentelemetry/otlp-transformer's JsonTraceSerializer (exactly what the
// SDK's OTLP/HTTP JSON exporter sends) are POSTed to `tracemart collector`
// and read back through /api/traces/{id}. The packages come from
// tests/node (installed by scripts/test-deps.sh); exit 77 (skip) without them.
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const src = process.env.TM_SOURCE_DIR;
const BIN = process.env.TM_BINARY;
let req;
try {
  req = createRequire(path.join(src, 'tests/node/package.json'));
  req.resolve('@opentelemetry/otlp-transformer');
} catch (e) {
  console.log('SKIP: tests/node packages are not installed (scripts/test-deps.sh)');
  process.exit(77);
}
const api = req('@opentelemetry/api');
const { BasicTracerProvider, SimpleSpanProcessor, InMemorySpanExporter } = req('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = req('@opentelemetry/resources');
const { JsonTraceSerializer, ProtobufTraceSerializer } = req('@opentelemetry/otlp-transformer');

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-otel-js-'));
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

let failed = 0, passed = 0;
try {
  const url = await start();
  /* The same three spans (a linked root, a server span, a producer child
   * with an event and an error) from the SDK, sent in one encoding. */
  async function sendFlow(serializer, contentType) {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'js-checkout', 'deployment.environment': 'test' }),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const tracer = provider.getTracer('tracemart-test', '1.0.0');
    const other = tracer.startSpan('elsewhere', { root: true });
    const otherCtx = other.spanContext();
    other.end();
    const root = tracer.startSpan('POST /checkout', {
      kind: api.SpanKind.SERVER, root: true,
      attributes: { 'http.request.method': 'POST', 'http.response.status_code': 201, 'cart.items': 3.5, 'cart.tags': ['a', 'b'], 'retry': false },
      links: [{ context: otherCtx, attributes: { 'link.kind': 'follows' } }],
    });
    const ctx = api.trace.setSpan(api.context.active(), root);
    const child = tracer.startSpan('send orders', { kind: api.SpanKind.PRODUCER,
      attributes: { 'messaging.destination.name': 'orders', 'messaging.system': 'kafka' } }, ctx);
    child.addEvent('queued', { 'queue.depth': 7 });
    child.setStatus({ code: api.SpanStatusCode.ERROR, message: 'broker down' });
    child.end();
    root.end();
    await provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 3);
    const body = serializer.serializeRequest(spans);
    const r = await fetch(url + '/v1/traces', { method: 'POST', headers: { 'Content-Type': contentType }, body });
    const answer = Buffer.from(await r.arrayBuffer());
    assert.equal(r.status, 200, answer.toString());
    if (contentType === 'application/json') assert.deepEqual(JSON.parse(answer.toString()), {});
    else assert.equal(answer.length, 0, 'empty ExportTraceServiceResponse');
    const tid = root.spanContext().traceId;
    let t;
    for (let i = 0; i < 100 && !t; i++) {
      const g = await fetch(url + '/api/traces/' + tid);
      if (g.status === 200) t = await g.json(); else await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(t, 'trace stored');
    return { t, root, otherCtx, tid };
  }

  function checkFlow({ t, root, otherCtx }) {
    assert.equal(t.spans.length, 2);
    const s0 = t.spans.find((s) => s.name === 'POST /checkout'), s1 = t.spans.find((s) => s.name === 'send orders');
    assert.equal(s0.service, 'js-checkout');
    assert.equal(s0.kind, 'SERVER');
    assert.equal(s0.spanId, root.spanContext().spanId);
    assert.equal(s0.parentSpanId, '');
    assert.equal(s0.attributes['http.response.status_code'], 201);
    assert.equal(s0.attributes['cart.items'], 3.5);
    assert.deepEqual(s0.attributes['cart.tags'], ['a', 'b']);
    assert.equal(s0.attributes.retry, false);
    assert.deepEqual(s0.links, [{ traceId: otherCtx.traceId, spanId: otherCtx.spanId, attributes: { 'link.kind': 'follows' } }]);
    assert.equal(s1.kind, 'PRODUCER');
    assert.equal(s1.parentSpanId, root.spanContext().spanId);
    assert.deepEqual(s1.status, { code: 2, message: 'broker down' });
    assert.equal(s1.events[0].name, 'queued');
    assert.equal(s1.events[0].attributes['queue.depth'], 7);
    assert.ok(BigInt(s1.startTimeUnixNano) >= BigInt(s0.startTimeUnixNano));
    assert.ok(s0.durationNano >= s1.durationNano);
  }

  const json = await sendFlow(JsonTraceSerializer, 'application/json');
  checkFlow(json);
  const { tid, root, otherCtx } = json;
  passed++;
  console.log('ok - OTLP JSON of the OpenTelemetry JS SDK is stored with every field');

  const lf = await (await fetch(url + '/api/traces/' + otherCtx.traceId)).json();
  assert.deepEqual(lf.linkedFrom, [{ traceId: tid, spanId: root.spanContext().spanId, linkedSpanId: otherCtx.spanId }]);
  passed++;
  console.log('ok - the linked trace lists the JS span in linkedFrom');

  const proto = await sendFlow(ProtobufTraceSerializer, 'application/x-protobuf');
  checkFlow(proto);
  /* Both encodings store the same thing (ids and times aside). */
  const strip = (t) => t.spans.map((s) => ({ ...s, traceId: 0, spanId: 0, parentSpanId: !!s.parentSpanId,
    startTimeUnixNano: 0, durationNano: 0, links: s.links.map((l) => ({ ...l, traceId: 0, spanId: 0 })),
    events: s.events.map((e) => ({ ...e, timeUnixNano: 0 })) }));
  assert.deepEqual(strip(proto.t), strip(json.t));
  passed++;
  console.log('ok - OTLP protobuf of the OpenTelemetry JS SDK is stored exactly as its JSON');

  const bad = await fetch(url + '/v1/traces', { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' },
    body: Buffer.from([0x0a, 0xff, 0xff, 0x01]) });
  assert.equal(bad.status, 400);
  assert.match(bad.headers.get('content-type'), /protobuf/);
  passed++;
  console.log('ok - a malformed protobuf body gets 400 in protobuf');
} catch (e) {
  failed++;
  console.error('not ok - ' + (e && e.stack ? e.stack : e));
} finally {
  const code = await stop();
  if (code !== 0) { failed++; console.error('not ok - collector exited with ' + code); }
  fs.rmSync(dataDir, { recursive: true, force: true });
}
console.log(passed + ' passed, ' + failed + ' failed');
process.exit(failed ? 1 : 0);
