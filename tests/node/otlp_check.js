// Judges tracemart's OTLP/HTTP JSON with @opentelemetry/otlp-transformer,
// not with our own code: node otlp_check.js FILE (one
// ExportTraceServiceRequest per line). Driven by
// tests/integration/trace_otlp_node.c; prints "OK <n> spans" or the
// differences and exits 1.
//
// The package ships no .proto files (only compiled serializers and their
// TypeScript declarations), so the check is in three parts:
//  1. Schema: every object is validated against the OTLP interfaces the
//     package declares in build/src/{trace,common}/internal-types.d.ts,
//     parsed at run time (no unknown member, right JSON type, enum values in
//     range), plus the OTLP JSON rules the types cannot express: ids are
//     lower-case hex of the right length, 64-bit integers are decimal
//     strings (proto3 JSON mapping), an AnyValue sets exactly one member.
//  2. Reference encoding: the same spans are rebuilt as SDK ReadableSpans
//     and encoded by the package's JsonTraceSerializer; after dropping
//     proto3 default values (which JSON may omit) the result must equal ours.
//  3. The rebuilt spans also go through ProtobufTraceSerializer (the binary
//     encoding the collector protocol uses) without error.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const {
  JsonTraceSerializer,
  ProtobufTraceSerializer,
} = require('@opentelemetry/otlp-transformer');

const errors = [];
function err(where, msg) {
  if (errors.length < 50) errors.push(`${where}: ${msg}`);
}

// ------------------------------------------------ 1. the declared schema

function loadDeclarations() {
  const base = path.dirname(require.resolve('@opentelemetry/otlp-transformer'));
  const files = ['trace/internal-types.d.ts', 'common/internal-types.d.ts'];
  const interfaces = {};
  const enums = {};
  const aliases = {};
  for (const f of files) {
    const text = fs.readFileSync(path.join(base, f), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/.*$/gm, '');
    for (const m of text.matchAll(/export interface (\w+) \{([\s\S]*?)\n\}/g)) {
      const fields = {};
      for (const fm of m[2].matchAll(/^\s*(\w+)(\?)?: ([^;]+);/gm)) {
        fields[fm[1]] = { optional: fm[2] === '?', type: fm[3].trim() };
      }
      interfaces[m[1]] = fields;
    }
    for (const m of text.matchAll(/export declare (?:const )?enum (\w+) \{([\s\S]*?)\}/g)) {
      enums[m[1]] = new Set([...m[2].matchAll(/=\s*(\d+)/g)].map((x) => Number(x[1])));
    }
    for (const m of text.matchAll(/export type (\w+) = ([^;]+);/g)) {
      aliases[m[1]] = m[2].trim();
    }
  }
  for (const need of ['IExportTraceServiceRequest', 'ISpan', 'IAnyValue', 'Resource']) {
    if (!interfaces[need]) throw new Error(`otlp-transformer declares no ${need}: package layout changed`);
  }
  return { interfaces, enums, aliases };
}

const decl = loadDeclarations();

// Members OTLP needs even though proto3 JSON may omit defaults elsewhere.
const MUST_BE_PRESENT = new Set([
  'ISpan.traceId', 'ISpan.spanId', 'ISpan.name', 'ISpan.kind',
  'ISpan.startTimeUnixNano', 'ISpan.endTimeUnixNano',
  'IKeyValue.key', 'IKeyValue.value', 'ILink.traceId', 'ILink.spanId',
  'IEvent.timeUnixNano', 'IEvent.name', 'IResourceSpans.scopeSpans',
]);
const HEX_IDS = {
  'ISpan.traceId': 32, 'ISpan.spanId': 16, 'ISpan.parentSpanId': 16,
  'ILink.traceId': 32, 'ILink.spanId': 16,
};
// int64 members the proto3 JSON mapping writes as decimal strings; the
// declarations say number because the JS encoder emits numbers.
const INT64_AS_STRING = new Set(['IAnyValue.intValue']);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

function isDecimal(v, signed) {
  if (typeof v !== 'string' || !(signed ? /^-?\d+$/ : /^\d+$/).test(v)) return false;
  const b = BigInt(v);
  return signed ? b >= INT64_MIN && b <= INT64_MAX : b <= UINT64_MAX;
}

function splitUnion(t) {
  return t.split('|').map((s) => s.trim()).filter(Boolean);
}

// True when v matches type expression t (reporting nested errors).
function matches(t, v, where) {
  for (const alt of splitUnion(t)) {
    if (matchesOne(alt, v, where, false)) {
      matchesOne(alt, v, where, true); // report nested errors once
      return true;
    }
  }
  return false;
}

function matchesOne(t, v, where, report) {
  if (t.endsWith('[]')) {
    if (!Array.isArray(v)) return false;
    if (report) v.forEach((x, i) => {
      if (!matches(t.slice(0, -2), x, `${where}[${i}]`)) err(`${where}[${i}]`, `not a ${t.slice(0, -2)}`);
    });
    return true;
  }
  switch (t) {
    case 'string': return typeof v === 'string';
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'boolean': return typeof v === 'boolean';
    case 'null': return v === null;
    case 'Uint8Array': return false; // not representable in JSON
  }
  if (decl.aliases[t]) return matches(decl.aliases[t], v, where);
  if (decl.enums[t]) return Number.isInteger(v) && decl.enums[t].has(v);
  if (decl.interfaces[t]) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
    if (report) validateObject(t, v, where);
    return true;
  }
  throw new Error(`unknown type ${t} in the declarations`);
}

function validateObject(iface, obj, where) {
  const fields = decl.interfaces[iface];
  for (const [k, v] of Object.entries(obj)) {
    const f = fields[k];
    const key = `${iface}.${k}`;
    if (!f) {
      err(where, `unknown member "${k}" (not in ${iface})`);
      continue;
    }
    if (INT64_AS_STRING.has(key)) {
      if (!isDecimal(v, true)) err(`${where}.${k}`, `int64 must be a decimal string, got ${JSON.stringify(v)}`);
      continue;
    }
    if (f.type === 'Fixed64') {
      // Our encoder writes every 64-bit integer as a string (issue 3).
      if (!isDecimal(v, false)) err(`${where}.${k}`, `fixed64 must be a decimal string, got ${JSON.stringify(v)}`);
      continue;
    }
    if (HEX_IDS[key]) {
      const n = HEX_IDS[key];
      if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${n}}$`).test(v) || /^0+$/.test(v)) {
        err(`${where}.${k}`, `must be ${n} lower-case hex digits, not all zero: ${JSON.stringify(v)}`);
      }
      continue;
    }
    if (!matches(f.type, v, `${where}.${k}`)) {
      err(`${where}.${k}`, `${JSON.stringify(v)} is not a ${f.type}`);
    }
  }
  for (const [k] of Object.entries(fields)) {
    if (MUST_BE_PRESENT.has(`${iface}.${k}`) && !(k in obj)) err(where, `missing "${k}"`);
  }
  if (iface === 'IAnyValue') {
    const set = Object.keys(obj).filter((k) => obj[k] !== null && obj[k] !== undefined);
    if (set.length !== 1) err(where, `an AnyValue sets exactly one member, got ${JSON.stringify(set)}`);
  }
  if (iface === 'ISpan' && isDecimal(obj.startTimeUnixNano, false) && isDecimal(obj.endTimeUnixNano, false) &&
      BigInt(obj.endTimeUnixNano) < BigInt(obj.startTimeUnixNano)) {
    err(where, 'ends before it starts');
  }
}

// ------------------------------------- 2. the package's own encoding

function hrTime(ns) {
  const b = BigInt(ns);
  return [Number(b / 1000000000n), Number(b % 1000000000n)];
}

function jsValue(av) {
  if ('stringValue' in av) return av.stringValue;
  if ('boolValue' in av) return av.boolValue;
  if ('doubleValue' in av) return av.doubleValue;
  if ('intValue' in av) return Number(BigInt(av.intValue));
  if ('arrayValue' in av) return (av.arrayValue.values || []).map(jsValue);
  throw new Error(`unsupported AnyValue ${JSON.stringify(av)}`);
}

function jsAttributes(kvs) {
  const o = {};
  for (const kv of kvs || []) o[kv.key] = jsValue(kv.value);
  return o;
}

function traceState(s) {
  return s ? { serialize: () => s } : undefined;
}

// A ReadableSpan as the JS SDK would have produced for the same data.
function readableSpan(s, resource, scope) {
  const flags = s.flags || 0;
  return {
    name: s.name,
    kind: (s.kind || 0) - 1, // API SpanKind = OTLP kind - 1
    spanContext: () => ({
      traceId: s.traceId, spanId: s.spanId, traceFlags: flags & 0xff,
      traceState: traceState(s.traceState),
    }),
    parentSpanContext: s.parentSpanId
      ? { traceId: s.traceId, spanId: s.parentSpanId, traceFlags: 0, isRemote: (flags & 0x200) !== 0 }
      : undefined,
    startTime: hrTime(s.startTimeUnixNano),
    endTime: hrTime(s.endTimeUnixNano),
    attributes: jsAttributes(s.attributes),
    droppedAttributesCount: s.droppedAttributesCount || 0,
    events: (s.events || []).map((e) => ({
      name: e.name, time: hrTime(e.timeUnixNano),
      attributes: jsAttributes(e.attributes), droppedAttributesCount: e.droppedAttributesCount || 0,
    })),
    droppedEventsCount: s.droppedEventsCount || 0,
    links: (s.links || []).map((l) => ({
      context: {
        traceId: l.traceId, spanId: l.spanId, traceFlags: (l.flags || 0) & 0xff,
        traceState: traceState(l.traceState), isRemote: ((l.flags || 0) & 0x200) !== 0,
      },
      attributes: jsAttributes(l.attributes), droppedAttributesCount: l.droppedAttributesCount || 0,
    })),
    droppedLinksCount: s.droppedLinksCount || 0,
    status: { code: (s.status && s.status.code) || 0, message: s.status && s.status.message },
    resource,
    instrumentationScope: { name: scope.name, version: scope.version },
    duration: [0, 0], ended: true,
  };
}

function rebuild(req) {
  const spans = [];
  for (const rs of req.resourceSpans || []) {
    // One resource object per ResourceSpans: the serializer groups by
    // object identity, so its grouping reproduces ours.
    const resource = { attributes: jsAttributes(rs.resource && rs.resource.attributes) };
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) spans.push(readableSpan(s, resource, ss.scope || { name: '' }));
    }
  }
  return spans;
}

// proto3 JSON: default values (0, "", false, [], absent message) may be
// omitted, and int64 may be a string or a number; canonicalise both sides.
function canon(v, key) {
  if (Array.isArray(v)) {
    const a = v.map((x) => canon(x));
    return a.length ? a : undefined;
  }
  if (v && typeof v === 'object') {
    if ('intValue' in v) return { num: Number(BigInt(v.intValue)) };
    if ('doubleValue' in v) return { num: v.doubleValue }; // JS has one number type
    const o = {};
    for (const k of Object.keys(v).sort()) {
      const c = canon(v[k], k);
      if (c !== undefined) o[k] = c;
    }
    return Object.keys(o).length ? o : undefined;
  }
  if (v === 0 || v === '' || v === false || v === null || v === undefined) return undefined;
  return v;
}

function diff(a, b, where, out) {
  if (out.length >= 20) return;
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b)) {
    out.push(`${where}: ours ${JSON.stringify(a)} vs otlp-transformer ${JSON.stringify(b)}`);
    return;
  }
  if (a && typeof a === 'object') {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) diff(a[k], b[k], `${where}.${k}`, out);
    return;
  }
  if (a !== b) out.push(`${where}: ours ${JSON.stringify(a)} vs otlp-transformer ${JSON.stringify(b)}`);
}

// ----------------------------------------------------------------- main

function main() {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node otlp_check.js FILE\n');
    process.exit(2);
  }
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
  let nspans = 0;
  lines.forEach((line, i) => {
    const where = `request[${i}]`;
    let ours;
    try {
      ours = JSON.parse(line);
    } catch (e) {
      err(where, `not JSON: ${e.message}`);
      return;
    }
    validateObject('IExportTraceServiceRequest', ours, where);
    let spans;
    try {
      spans = rebuild(ours);
      nspans += spans.length;
      const ref = JSON.parse(Buffer.from(JsonTraceSerializer.serializeRequest(spans)).toString('utf8'));
      const out = [];
      diff(canon(ours), canon(ref), where, out);
      for (const d of out) err(where, `differs from the reference encoding: ${d}`);
    } catch (e) {
      err(where, `the JSON serializer cannot encode these spans: ${e.message}`);
      return;
    }
    try {
      const pb = ProtobufTraceSerializer.serializeRequest(spans);
      if (!pb || !pb.length) err(where, 'ProtobufTraceSerializer produced nothing');
    } catch (e) {
      err(where, `the protobuf serializer cannot encode these spans: ${e.message}`);
    }
  });
  if (!lines.length) err(file, 'no request');
  if (errors.length) {
    process.stdout.write(`FAIL\n${errors.join('\n')}\n`);
    process.exit(1);
  }
  process.stdout.write(`OK ${nspans} spans in ${lines.length} request(s): schema of ` +
    `@opentelemetry/otlp-transformer, equal to its JSON encoding, protobuf-encodable\n`);
}

main();
