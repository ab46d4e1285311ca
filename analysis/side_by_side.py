"""Reading a measured-beside-predicted decode step (`measured/*.trace.json`, made by
bench/trace_side_by_side.py): process 1 is the engine's step as `specontext profile` recorded it on
the GPU (NVTX ranges and one thread per CUDA stream), process 2 the simulator's prediction of the
same point. Both become rows of one timeline, coloured by the simulator's categories: a measured
kernel takes the category of the innermost NVTX range it was launched in."""

import os
import re

from results import InputError, load_each
from traces import load_chrome_trace

MEASURED, PREDICTED = 1, 2
NVTX_ROW = "nvtx"
# NVTX range names (engine/nvtx.hpp) -> the simulator's operation categories.
NVTX_CATEGORY = {"retrieval_head": "retrieval", "select": "select", "prefetch": "prefetch",
                 "attention": "attention", "mlp": "mlp"}
_OTHER_DATA = ("measured_host_ms", "measured_gpu_ms", "predicted_ms")


def kernel_label(name):
    """'embedding_kernel' of 'void specontext::kernels::(anonymous namespace)::embedding_kernel<true>(
    specontext::kernels::EmbeddingParams)': the function's own name, without scope, template
    arguments, parameters or return type."""
    n = re.sub(r"\(anonymous namespace\)::", "", name)
    depth, cut = 0, len(n)
    for i, ch in enumerate(n):  # the parameter list: the first '(' outside template brackets
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            cut = i
            break
    n = re.sub(r"<[^<>]*>", "", n[:cut])
    while "<" in n:  # nested template arguments
        n = re.sub(r"<[^<>]*>", "", n)
    return n.split("::")[-1].split(" ")[-1] or name


def _category(nvtx_path):
    """The category of the innermost named range of 'step 3/layer 0/attention', else 'other'."""
    for part in reversed(nvtx_path.split("/")):
        if part in NVTX_CATEGORY:
            return NVTX_CATEGORY[part]
    return "other"


def read_side_by_side(path):
    """{'name', 'path', 'measured_ms', 'measured_gpu_ms', 'predicted_ms', 'measured_what',
    'predicted_what', 'rows': [(key, label)], 'events': [dict], 'title'}; 'events' and 'rows' in
    the form fig_timeline.figure draws."""
    doc = load_chrome_trace(path)
    other = doc.get("otherData")
    if not isinstance(other, dict):
        raise InputError("%s: field 'otherData': missing (not a trace_side_by_side.py output)" % path)
    for k in _OTHER_DATA:
        v = other.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise InputError("%s: field 'otherData.%s': expected a positive number, got %r" % (path, k, v))
    procs, threads, events = {}, {}, []
    for ev in doc["traceEvents"]:
        args = ev.get("args") or {}
        if ev.get("ph") == "M" and ev.get("name") == "process_name":
            procs[ev.get("pid")] = str(args.get("name", ""))
        elif ev.get("ph") == "M" and ev.get("name") == "thread_name":
            threads[(ev.get("pid"), ev.get("tid"))] = str(args.get("name", ""))
    for pid in (MEASURED, PREDICTED):
        if pid not in procs:
            raise InputError("%s: field 'traceEvents': no process_name for pid %d (%s)"
                             % (path, pid, "measured" if pid == MEASURED else "predicted"))
    for ev in doc["traceEvents"]:
        if ev.get("ph") != "X" or ev.get("pid") not in (MEASURED, PREDICTED):
            continue
        args = ev.get("args") or {}
        name = str(ev.get("name", ""))
        if ev["pid"] == PREDICTED:
            key, cat = (PREDICTED, ev.get("tid", 0)), str(ev.get("cat", "") or "other")
        elif ev.get("cat") == "nvtx":
            if name not in NVTX_CATEGORY:  # the step and layer ranges enclose the others
                continue
            key, cat = (MEASURED, NVTX_ROW), NVTX_CATEGORY[name]
        else:
            key, cat = (MEASURED, ev.get("tid", 0)), _category(str(args.get("nvtx", "")))
        events.append({"name": name if ev["pid"] == PREDICTED or ev.get("cat") == "nvtx" else kernel_label(name),
                       "cat": cat, "tid": key,
                       "ts": float(ev["ts"]), "dur": float(ev["dur"]),
                       "critical": bool(args.get("critical", False))})
    keys = sorted({e["tid"] for e in events},
                  key=lambda k: (k[0], k[1] != NVTX_ROW, str(k[1]) if k[1] == NVTX_ROW else k[1]))
    rows = []
    for k in keys:
        if k[1] == NVTX_ROW:
            label = "measured: NVTX (host launch)"
        elif k[0] == MEASURED:
            label = "measured: " + threads.get(k, "stream %s" % k[1])
        else:
            label = "predicted: " + threads.get(k, "tid %s" % k[1])
        rows.append((k, label))
    base = os.path.basename(path)
    name = base[:-len(".trace.json")] if base.endswith(".trace.json") else os.path.splitext(base)[0]
    title = "%s — measured %.3f ms (profiled, no graph), predicted %.3f ms" % (
        name, other["measured_host_ms"], other["predicted_ms"])
    return {"name": name, "path": path, "measured_ms": float(other["measured_host_ms"]),
            "measured_gpu_ms": float(other["measured_gpu_ms"]),
            "predicted_ms": float(other["predicted_ms"]), "measured_what": procs[MEASURED],
            "predicted_what": procs[PREDICTED], "rows": rows, "events": events, "title": title,
            "threads": dict(rows), "step_ms": float(other["measured_host_ms"])}


def load_side_by_side(measured_dir, log):
    return load_each(measured_dir, "*.trace.json", read_side_by_side, log,
                     ("measured-beside-predicted steps", "that figure is skipped"),
                     lambda t: "%d events" % len(t["events"]))
