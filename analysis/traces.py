"""Reading Chrome traces of one predicted step (`traces/*.trace.json`)."""

import json
import os

from results import InputError, load_each

DEFAULT_THREADS = {0: "host CPU", 1: "GPU compute", 2: "host link H2D", 3: "host link D2H"}


def load_chrome_trace(path):
    """The Chrome trace at path as {'traceEvents': [...], ...}, its events checked to be objects
    and its complete ('X') events to have numeric ts and dur (microseconds)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except ValueError as e:
        raise InputError("%s: not valid JSON (%s)" % (path, e))
    if isinstance(doc, list):          # the bare-array Chrome trace form
        doc = {"traceEvents": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        raise InputError("%s: field 'traceEvents': missing or not a list" % path)
    for i, ev in enumerate(doc["traceEvents"]):
        if not isinstance(ev, dict):
            raise InputError("%s: field 'traceEvents[%d]': expected an object" % (path, i))
        if ev.get("ph") == "X":
            for k in ("ts", "dur"):
                v = ev.get(k)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise InputError("%s: field 'traceEvents[%d].%s': expected a number, got %r"
                                     % (path, i, k, v))
    return doc


def read_trace(path):
    """{'name', 'path', 'step_ms', 'threads': {tid: name}, 'events': [dict]}.

    Events are the complete ('X') events with ts/dur in microseconds.
    """
    doc = load_chrome_trace(path)
    threads = {}
    events = []
    for ev in doc["traceEvents"]:
        ph = ev.get("ph")
        if ph == "M" and ev.get("name") == "thread_name":
            name = (ev.get("args") or {}).get("name")
            if name is not None:
                threads[ev.get("tid", 0)] = str(name)
        elif ph == "X":
            args = ev.get("args") or {}
            events.append({
                "name": str(ev.get("name", "")),
                "cat": str(ev.get("cat", "") or "other"),
                "tid": ev.get("tid", 0),
                "ts": float(ev["ts"]),
                "dur": float(ev["dur"]),
                "critical": bool(args.get("critical", False)),
            })
    for tid in sorted({e["tid"] for e in events}, key=str):
        threads.setdefault(tid, DEFAULT_THREADS.get(tid, "tid %s" % tid))
    other = doc.get("otherData") or {}
    step_ms = other.get("step_ms")
    if step_ms is not None and (isinstance(step_ms, bool) or not isinstance(step_ms, (int, float))):
        raise InputError("%s: field 'otherData.step_ms': expected a number, got %r"
                         % (path, step_ms))
    if step_ms is None and events:
        step_ms = (max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)) / 1e3
    base = os.path.basename(path)
    name = base[:-len(".trace.json")] if base.endswith(".trace.json") else os.path.splitext(base)[0]
    return {"name": name, "path": path, "step_ms": step_ms, "threads": threads,
            "events": events, "other": other}


def load_traces(traces_dir, log):
    return load_each(traces_dir, "*.trace.json", read_trace, log,
                     ("predicted traces", "the timeline figures are skipped"),
                     lambda t: "%d events" % len(t["events"]))
