#!/usr/bin/env python3
"""Independent structural check of OTLP/HTTP JSON trace payloads.

Validates every field against the OTLP JSON mapping (opentelemetry-proto,
"JSON Protobuf Encoding"): camelCase field names only, lower-case hex ids
(traceId 16 bytes, spanId 8 bytes), enums as integers, 64-bit integers and
nanosecond times as decimal strings, AnyValue with exactly one member.
Usage: check_otlp.py FILE            (an ExportTraceServiceRequest)
       check_otlp.py --jsonl FILE    (one span per line + resource + scope)
The lead plans to add the npm @opentelemetry/otlp-transformer schema check
next to this one (see docs/internals/trace.md).
"""
import json
import re
import sys

HEX = re.compile(r"^[0-9a-f]*$")
UINT = re.compile(r"^[0-9]+$")
INT = re.compile(r"^-?[0-9]+$")
errors = []


def err(path, msg):
    errors.append(f"{path}: {msg}")


def only(path, obj, allowed, required=()):
    if not isinstance(obj, dict):
        err(path, "not an object")
        return False
    for k in obj:
        if k not in allowed:
            err(path, f"unknown field {k!r}")
    for k in required:
        if k not in obj:
            err(path, f"missing {k!r}")
    return True


def u32(path, v):
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**32:
        err(path, f"not a uint32 number: {v!r}")


def hexid(path, v, nbytes, allow_empty=False):
    if not isinstance(v, str):
        err(path, "id not a string")
        return
    if allow_empty and v == "":
        return
    if len(v) != 2 * nbytes or not HEX.match(v):
        err(path, f"not {nbytes}-byte lower-case hex: {v!r}")
    elif set(v) == {"0"}:
        err(path, "all-zero id")


def fixed64(path, v):
    if not isinstance(v, str) or not UINT.match(v) or int(v) >= 2**64:
        err(path, f"not a uint64 decimal string: {v!r}")
        return 0
    return int(v)


def anyvalue(path, v):
    if not only(path, v, {"stringValue", "boolValue", "intValue", "doubleValue",
                          "arrayValue", "kvlistValue", "bytesValue"}):
        return
    if len(v) != 1:
        err(path, f"AnyValue must have exactly one member, has {list(v)}")
        return
    (k, x), = v.items()
    if k == "stringValue" and not isinstance(x, str):
        err(path, "stringValue not a string")
    elif k == "boolValue" and not isinstance(x, bool):
        err(path, "boolValue not a bool")
    elif k == "intValue":
        if not isinstance(x, str) or not INT.match(x) or not -2**63 <= int(x) < 2**63:
            err(path, f"intValue not an int64 decimal string: {x!r}")
    elif k == "doubleValue":
        if isinstance(x, bool) or not (isinstance(x, (int, float)) or x in ("NaN", "Infinity", "-Infinity")):
            err(path, f"doubleValue not a number: {x!r}")
    elif k == "arrayValue":
        if only(path + ".arrayValue", x, {"values"}):
            for i, e in enumerate(x.get("values", [])):
                anyvalue(f"{path}.arrayValue.values[{i}]", e)
    elif k == "kvlistValue":
        if only(path + ".kvlistValue", x, {"values"}):
            attributes(path + ".kvlistValue.values", x.get("values", []))


def attributes(path, attrs):
    if not isinstance(attrs, list):
        err(path, "attributes not a list")
        return
    seen = set()
    for i, kv in enumerate(attrs):
        p = f"{path}[{i}]"
        if only(p, kv, {"key", "value"}, ("key", "value")):
            if not isinstance(kv.get("key"), str) or not kv.get("key"):
                err(p, "key not a non-empty string")
            if kv.get("key") in seen:
                err(p, f"duplicate key {kv.get('key')!r}")
            seen.add(kv.get("key"))
            anyvalue(p + ".value", kv.get("value"))


def resource(path, r):
    if only(path, r, {"attributes", "droppedAttributesCount"}, ("attributes",)):
        attributes(path + ".attributes", r.get("attributes", []))
        names = [kv.get("key") for kv in r.get("attributes", [])]
        if "service.name" not in names:
            err(path, "resource without service.name")
        if "droppedAttributesCount" in r:
            u32(path + ".droppedAttributesCount", r["droppedAttributesCount"])


def scope(path, s):
    if only(path, s, {"name", "version", "attributes", "droppedAttributesCount"}, ("name",)):
        if s.get("name") != "tracemart":
            err(path, f"scope name {s.get('name')!r}")
        if not isinstance(s.get("version", ""), str):
            err(path, "version not a string")


SPAN_FIELDS = {"traceId", "spanId", "traceState", "parentSpanId", "flags", "name", "kind",
               "startTimeUnixNano", "endTimeUnixNano", "attributes", "droppedAttributesCount",
               "events", "droppedEventsCount", "links", "droppedLinksCount", "status"}


def span(path, s, extra=()):
    if not only(path, s, SPAN_FIELDS | set(extra), ("traceId", "spanId", "name", "kind",
                                                   "startTimeUnixNano", "endTimeUnixNano")):
        return
    hexid(path + ".traceId", s["traceId"], 16)
    hexid(path + ".spanId", s["spanId"], 8)
    if "parentSpanId" in s:
        hexid(path + ".parentSpanId", s["parentSpanId"], 8, allow_empty=True)
    if "traceState" in s and not isinstance(s["traceState"], str):
        err(path, "traceState not a string")
    if "flags" in s:
        u32(path + ".flags", s["flags"])
        f = s["flags"]
        if isinstance(f, int) and (f & 0x200) and not (f & 0x100):
            err(path, "IS_REMOTE set without HAS_IS_REMOTE")
        if isinstance(f, int) and f >> 10:
            err(path, "reserved flag bits set")
    if not isinstance(s["name"], str):
        err(path, "name not a string")
    if not isinstance(s["kind"], int) or isinstance(s["kind"], bool) or not 0 <= s["kind"] <= 5:
        err(path, f"kind not an integer enum: {s['kind']!r}")
    t0 = fixed64(path + ".startTimeUnixNano", s["startTimeUnixNano"])
    t1 = fixed64(path + ".endTimeUnixNano", s["endTimeUnixNano"])
    if t1 < t0:
        err(path, "ends before it starts")
    attributes(path + ".attributes", s.get("attributes", []))
    for k in ("droppedAttributesCount", "droppedEventsCount", "droppedLinksCount"):
        if k in s:
            u32(f"{path}.{k}", s[k])
    for i, e in enumerate(s.get("events", [])):
        p = f"{path}.events[{i}]"
        if only(p, e, {"timeUnixNano", "name", "attributes", "droppedAttributesCount"},
                ("timeUnixNano", "name")):
            fixed64(p + ".timeUnixNano", e["timeUnixNano"])
            attributes(p + ".attributes", e.get("attributes", []))
            if "droppedAttributesCount" in e:
                u32(p + ".droppedAttributesCount", e["droppedAttributesCount"])
    for i, l in enumerate(s.get("links", [])):
        p = f"{path}.links[{i}]"
        if only(p, l, {"traceId", "spanId", "traceState", "attributes",
                       "droppedAttributesCount", "flags"}, ("traceId", "spanId")):
            hexid(p + ".traceId", l["traceId"], 16)
            hexid(p + ".spanId", l["spanId"], 8)
            attributes(p + ".attributes", l.get("attributes", []))
            if "flags" in l:
                u32(p + ".flags", l["flags"])
            if "droppedAttributesCount" in l:
                u32(p + ".droppedAttributesCount", l["droppedAttributesCount"])
    if "status" in s:
        st = s["status"]
        if only(path + ".status", st, {"message", "code"}):
            c = st.get("code", 0)
            if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 2:
                err(path + ".status.code", f"not an integer enum: {c!r}")
            if not isinstance(st.get("message", ""), str):
                err(path + ".status.message", "not a string")


def request(doc):
    if not only("$", doc, {"resourceSpans"}, ("resourceSpans",)):
        return 0
    n = 0
    for i, rs in enumerate(doc["resourceSpans"]):
        p = f"$.resourceSpans[{i}]"
        if not only(p, rs, {"resource", "scopeSpans", "schemaUrl"}, ("resource", "scopeSpans")):
            continue
        resource(p + ".resource", rs["resource"])
        for j, ss in enumerate(rs["scopeSpans"]):
            q = f"{p}.scopeSpans[{j}]"
            if only(q, ss, {"scope", "spans", "schemaUrl"}, ("scope", "spans")):
                scope(q + ".scope", ss["scope"])
                for k, s in enumerate(ss["spans"]):
                    span(f"{q}.spans[{k}]", s)
                    n += 1
    return n


def main():
    args = sys.argv[1:]
    jsonl = args and args[0] == "--jsonl"
    if jsonl:
        args = args[1:]
    if len(args) != 1:
        print(__doc__)
        return 2
    n = 0
    with open(args[0], encoding="utf-8") as f:
        if jsonl:
            for ln, line in enumerate(f, 1):
                obj = json.loads(line)
                resource(f"line {ln}.resource", obj.get("resource"))
                scope(f"line {ln}.scope", obj.get("scope"))
                span(f"line {ln}", obj, extra=("resource", "scope"))
                n += 1
        else:
            n = request(json.load(f))
    for e in errors:
        print("check_otlp:", e, file=sys.stderr)
    if not errors:
        print(f"check_otlp: {n} spans OK")
    return 1 if errors or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
