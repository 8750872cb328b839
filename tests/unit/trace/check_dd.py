#!/usr/bin/env python3
"""Independent check of a Datadog agent v0.4 traces payload.

Decodes the msgpack body with Debian's python3-msgpack (strict: strings
must be valid UTF-8, no trailing bytes) and checks the agent's span schema:
trace_id/span_id/parent_id uint64, name/resource/service/type strings,
start/duration int64, error int32, meta map<string,string>,
metrics map<string,float64>; spans grouped per trace.
Usage: check_dd.py PAYLOAD.msgpack [DECODED.json]  (writes the decoded
payload as JSON for the C test's own spot checks).
"""
import json
import re
import sys

import msgpack

FIELDS = {"trace_id", "span_id", "parent_id", "name", "resource", "service", "type",
          "start", "duration", "error", "meta", "metrics"}
errors = []


def err(path, msg):
    errors.append(f"{path}: {msg}")


def check_span(p, s, tid):
    if not isinstance(s, dict):
        err(p, "span is not a map")
        return
    for k in s:
        if k not in FIELDS:
            err(p, f"unknown field {k!r}")
    for k in FIELDS:
        if k not in s:
            err(p, f"missing {k!r}")
    for k in ("trace_id", "span_id", "parent_id"):
        v = s.get(k)
        if not isinstance(v, int) or not 0 <= v < 2**64:
            err(p, f"{k} not a uint64: {v!r}")
    if s.get("span_id") == 0 or s.get("trace_id") == 0:
        err(p, "zero id")
    if tid is not None and s.get("trace_id") != tid:
        err(p, "span of another trace in this trace chunk")
    for k in ("name", "resource", "service", "type"):
        if not isinstance(s.get(k), str):
            err(p, f"{k} not a string")
    for k in ("start", "duration"):
        v = s.get(k)
        if not isinstance(v, int) or not -2**63 <= v < 2**63:
            err(p, f"{k} not an int64")
    if s.get("duration", 0) < 0:
        err(p, "negative duration")
    if s.get("error") not in (0, 1):
        err(p, "error not 0/1")
    meta = s.get("meta", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in meta.items()):
        err(p, "meta not map<string,string>")
        meta = {}
    metrics = s.get("metrics", {})
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and isinstance(v, float)
                                                for k, v in metrics.items()):
        err(p, "metrics not map<string,float64>")
    if not re.fullmatch(r"[0-9a-f]{16}", meta.get("_dd.p.tid", "")):
        err(p, "_dd.p.tid missing or not 16 hex digits")
    if meta.get("span.kind") not in ("internal", "server", "client", "producer", "consumer"):
        err(p, "span.kind missing")
    if "_dd.span_links" in meta:
        links = json.loads(meta["_dd.span_links"])
        for i, l in enumerate(links):
            if not re.fullmatch(r"[0-9a-f]{32}", l.get("trace_id", "")):
                err(f"{p}.links[{i}]", "trace_id not 32 hex digits")
            if not re.fullmatch(r"[0-9a-f]{16}", l.get("span_id", "")):
                err(f"{p}.links[{i}]", "span_id not 16 hex digits")
            for k, v in l.get("attributes", {}).items():
                if not isinstance(v, str):
                    err(f"{p}.links[{i}]", "attribute value not a string")


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    data = open(sys.argv[1], "rb").read()
    payload = msgpack.unpackb(data, raw=False, strict_map_key=True)
    n = 0
    if not isinstance(payload, list):
        err("$", "payload is not an array of traces")
        payload = []
    for i, trace in enumerate(payload):
        if not isinstance(trace, list) or not trace:
            err(f"$[{i}]", "trace is not a non-empty array")
            continue
        tid = trace[0].get("trace_id") if isinstance(trace[0], dict) else None
        roots = 0
        for j, s in enumerate(trace):
            check_span(f"$[{i}][{j}]", s, tid)
            if isinstance(s, dict) and "_sampling_priority_v1" in s.get("metrics", {}):
                roots += 1
            n += 1
        if roots == 0:
            err(f"$[{i}]", "no span carries _sampling_priority_v1")
    if len(sys.argv) == 3:
        # uint64 ids do not fit every JSON reader's integers: dump them as hex.
        for trace in payload:
            for s in trace:
                for k in ("trace_id", "span_id", "parent_id"):
                    if isinstance(s.get(k), int):
                        s[k] = f"{s[k]:016x}"
        with open(sys.argv[2], "w") as f:
            json.dump(payload, f)
    for e in errors:
        print("check_dd:", e, file=sys.stderr)
    if not errors:
        print(f"check_dd: {n} spans OK")
    return 1 if errors or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
