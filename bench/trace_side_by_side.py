#!/usr/bin/env python3
"""One decode step as the engine ran it and as the simulator predicts it, in one Chrome trace (issue:
profiling and calibration; sim/VALIDATION.md, "Measured beside predicted").

    python3 bench/trace_side_by_side.py --measured PROFILE.trace.json --step 3 \
        --predicted PREDICTED.trace.json --out STEP.side_by_side.trace.json

--measured is `specontext profile`'s timeline (run with --no-graph, so that every kernel carries the
NVTX range of its launch); the step is the work launched inside its `step N` range, from the range's
start. --predicted is `specontext calibrate --check --trace-line L --trace-out F` (or `specontext sim
--trace-out`). The output has two processes, both starting at 0: the measured step (one thread per
CUDA stream and the NVTX ranges) and the predicted one (host, GPU, link threads). Perfetto opens it.
"""

import argparse
import json
import sys


def load(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("%s: cannot read the %s trace: %s" % (path, what, e))
    if isinstance(doc, list):
        doc = {"traceEvents": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        sys.exit("%s: field 'traceEvents': missing or not a list" % path)
    return doc


def measured_step(doc, path, step):
    """(events shifted to the step's start on pid 1, the step's host span in us, its GPU span in us)."""
    name = "step %d" % step
    ranges = [e for e in doc["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "nvtx" and e.get("name") == name]
    if len(ranges) != 1:
        sys.exit("%s: expected one NVTX range '%s', found %d (profile with bench --no-graph; steps count from 0 over warm-up "
                 "and repetitions)" % (path, name, len(ranges)))
    t0, end = ranges[0]["ts"], ranges[0]["ts"] + ranges[0]["dur"]
    prefix = name + "/"
    out, tids, gpu_end = [], set(), t0
    for e in doc["traceEvents"]:
        if e.get("ph") != "X":
            continue
        nvtx = (e.get("args") or {}).get("nvtx")
        in_step = e.get("cat") == "nvtx" and t0 <= e["ts"] and e["ts"] + e["dur"] <= end
        launched = isinstance(nvtx, str) and (nvtx == name or nvtx.startswith(prefix))
        if not (in_step or launched):
            continue
        if launched:
            gpu_end = max(gpu_end, e["ts"] + e["dur"])
        ev = dict(e, pid=1, ts=e["ts"] - t0)
        out.append(ev)
        tids.add(e.get("tid"))
    if not any(e.get("cat") != "nvtx" for e in out):
        sys.exit("%s: no GPU work carries the NVTX range '%s' (profile with bench --no-graph)" % (path, name))
    for e in doc["traceEvents"]:  # the stream and NVTX thread names
        if e.get("ph") == "M" and e.get("name") in ("thread_name", "thread_sort_index") and e.get("tid") in tids:
            out.append(dict(e, pid=1))
    return out, end - t0, gpu_end - t0


def predicted_step(doc):
    events = [e for e in doc["traceEvents"] if e.get("ph") == "X"]
    if not events:
        sys.exit("the predicted trace has no complete ('X') events")
    t0 = min(e["ts"] for e in events)
    out = [dict(e, pid=2, ts=e["ts"] - t0) for e in events]
    out += [dict(e, pid=2) for e in doc["traceEvents"] if e.get("ph") == "M" and e.get("name") in ("thread_name", "thread_sort_index")]
    title = next((e["args"]["name"] for e in doc["traceEvents"] if e.get("ph") == "M" and e.get("name") == "process_name"), "predicted")
    return out, max(e["ts"] + e["dur"] for e in out if e.get("ph") == "X"), title


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--measured", required=True, help="specontext profile --out trace (run with --no-graph)")
    ap.add_argument("--step", type=int, required=True, help="the NVTX 'step N' range to take")
    ap.add_argument("--predicted", required=True, help="the simulator's trace of the same point")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    measured, host_us, gpu_us = measured_step(load(a.measured, "measured"), a.measured, a.step)
    predicted, predicted_us, title = predicted_step(load(a.predicted, "predicted"))
    meta = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "measured: %s, step %d (host %.3f ms, GPU work until %.3f ms)" % (a.measured, a.step, host_us / 1e3, gpu_us / 1e3)}},
        {"ph": "M", "name": "process_sort_index", "pid": 1, "args": {"sort_index": 1}},
        {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "%s (%.3f ms)" % (title, predicted_us / 1e3)}},
        {"ph": "M", "name": "process_sort_index", "pid": 2, "args": {"sort_index": 2}},
    ]
    doc = {"displayTimeUnit": "ms", "otherData": {"measured": a.measured, "step": a.step, "predicted": a.predicted,
                                                    "measured_host_ms": host_us / 1e3, "measured_gpu_ms": gpu_us / 1e3,
                                                    "predicted_ms": predicted_us / 1e3},
           "traceEvents": meta + measured + predicted}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    print("%s: measured step %d %.3f ms (GPU work until %.3f ms), predicted %.3f ms" % (a.out, a.step, host_us / 1e3, gpu_us / 1e3, predicted_us / 1e3))


if __name__ == "__main__":
    main()
