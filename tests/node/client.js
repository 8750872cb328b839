// An OpenTelemetry-instrumented Node client (the official JS SDK, W3C
// propagator) calling a tracemart server: node client.js URL [METHOD].
// Prints one JSON line: the ids of the CLIENT span it injected, the HTTP
// status and the traceresponse header it got back. Driven by
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

const TIMEOUT_MS = 10000;

function fail(msg) {
  process.stderr.write(`client.js: ${msg}\n`);
  process.exit(2);
}

const url = process.argv[2];
const method = process.argv[3] || 'GET';
if (!url) fail('usage: node client.js URL [METHOD]');

// Never hang a test run: the whole script is bounded.
setTimeout(() => fail(`no answer within ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
provider.register({ propagator: new W3CTraceContextPropagator() });
const tracer = api.trace.getTracer('tracemart-node-client');

tracer.startActiveSpan(method, { kind: api.SpanKind.CLIENT }, (span) => {
  const headers = {};
  api.propagation.inject(api.context.active(), headers);
  const req = http.request(url, { method, headers }, (res) => {
    res.resume();
    res.on('end', () => {
      const sc = span.spanContext();
      span.setAttribute('http.response.status_code', res.statusCode);
      span.end();
      process.stdout.write(JSON.stringify({
        trace_id: sc.traceId,
        span_id: sc.spanId,
        sampled: (sc.traceFlags & api.TraceFlags.SAMPLED) !== 0,
        traceparent_sent: headers.traceparent || null,
        status: res.statusCode,
        traceresponse: res.headers.traceresponse || null,
      }) + '\n');
      provider.shutdown().then(() => process.exit(0));
    });
  });
  req.on('error', (err) => fail(`request failed: ${err.message}`));
  req.end();
});
