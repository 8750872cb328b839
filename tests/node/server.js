// An OpenTelemetry-instrumented Node server (the official JS SDK, W3C
// propagator) for our traced client to call: node server.js. Listens on a
// free loopback port and prints "PORT <n>", serves one request by starting
// a SERVER span from the extracted context, prints that span's ids and
// parent as one JSON line, and exits. Driven by
// tests/integration/trace_node_client.c; it asserts nothing itself.
'use strict';

const http = require('node:http');
const api = require('@opentelemetry/api');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const {
  InMemorySpanExporter,
  SimpleSpanProcessor,
} = require('@opentelemetry/sdk-trace-base');

const TIMEOUT_MS = 20000;

function fail(msg) {
  process.stderr.write(`server.js: ${msg}\n`);
  process.exit(2);
}

setTimeout(() => fail(`no request within ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
provider.register({ propagator: new W3CTraceContextPropagator() });
const tracer = api.trace.getTracer('tracemart-node-server');

const server = http.createServer((req, res) => {
  const parent = api.propagation.extract(api.ROOT_CONTEXT, req.headers);
  const remote = api.trace.getSpanContext(parent);
  const span = tracer.startSpan(`${req.method} /node`, { kind: api.SpanKind.SERVER }, parent);
  span.end();
  const [done] = exporter.getFinishedSpans();
  const sc = span.spanContext();
  const report = {
    trace_id: sc.traceId,
    span_id: sc.spanId,
    sampled: (sc.traceFlags & api.TraceFlags.SAMPLED) !== 0,
    parent_span_id: done && done.parentSpanContext ? done.parentSpanContext.spanId : null,
    parent_is_remote: remote ? remote.isRemote === true : false,
    tracestate: remote && remote.traceState ? remote.traceState.serialize() : null,
  };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end('{"ok":true}', () => {
    process.stdout.write(JSON.stringify(report) + '\n');
    server.close();
    provider.shutdown().then(() => process.exit(0));
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
